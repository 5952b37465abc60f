import json
import re

import pytest
import sympy

from cli import main


def test_analyze_prints_the_mlp_laws(runner, examples):
    result = runner.invoke(main, ["analyze", str(examples / "mlp.yaml"), "--no-cache"])

    assert result.exit_code == 0
    assert "5 laws (certified)" in result.output
    law = "‖fc2.weight[:,0]‖² − ‖fc1.weight[0,:]‖² − fc1.bias[0]²"
    assert law in result.output


def test_json_output_follows_the_contract(runner, examples):
    result = runner.invoke(
        main, ["analyze", str(examples / "mlp.yaml"), "--format", "json", "--no-cache"]
    )
    report = json.loads(result.output)

    assert {"model", "parameters", "laws", "status", "blocks"} <= set(report)
    (block,) = report["blocks"]
    keys = {
        "name",
        "kind",
        "parameters",
        "laws",
        "lie_dim",
        "status",
        "bounds",
        "symbols",
        "expressions",
    }
    assert keys <= set(block)
    names = {n: sympy.Symbol(n) for n in block["symbols"]}
    for text in block["expressions"]:
        assert sympy.sympify(text, locals=names).free_symbols <= set(names.values())
    assert block["symbols"]["fc1_bias_0"] == ["fc1.bias", 0]


def test_latex_output_has_an_align_environment(runner, examples):
    result = runner.invoke(
        main, ["analyze", str(examples / "mlp.yaml"), "--format", "latex", "--no-cache"]
    )

    assert result.exit_code == 0
    assert "\\begin{align*}" in result.output
    assert "\\|fc2.weight[:,0]\\|^2" in result.output


BAD_FILES = [
    ("unknown-type", "input: [3]\nlayers:\n  - {type: linaer, out: 2}\n", "linaer"),
    ("missing-out", "input: [3]\nlayers:\n  - {type: linear}\n", "out"),
    ("not-a-mapping", "- 1\n- 2\n", "mapping"),
    (
        "python-tag",
        "input: !!python/object/apply:os.system ['true']\nlayers: []\n",
        "tag",
    ),
    (
        "conv-on-vector",
        "input: [3]\nlayers:\n  - {type: conv1d, out: 2, kernel: 2}\n",
        "conv1d",
    ),
    (
        "residual-shape",
        "input: [3]\nlayers:\n  - type: residual\n    body:\n"
        "      - {type: linear, out: 4}\n",
        "shortcut",
    ),
]


@pytest.mark.parametrize(
    "text, match", [b[1:] for b in BAD_FILES], ids=[b[0] for b in BAD_FILES]
)
def test_bad_input_is_one_line_and_exit_status_2(runner, write_model, text, match):
    path = write_model(text)
    result = runner.invoke(main, ["analyze", str(path), "--no-cache"])

    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert "model.yaml" in lines[0] and match in lines[0]
    assert "Traceback" not in result.output


def test_missing_file_is_exit_status_2(runner, tmp_path):
    result = runner.invoke(main, ["analyze", str(tmp_path / "nope.yaml"), "--no-cache"])

    assert result.exit_code == 2
    assert "nope.yaml" in result.output


def test_cache_is_written_and_read_back(runner, examples, cache_dir):
    first = runner.invoke(
        main, ["analyze", str(examples / "mlp.yaml"), "--format", "json"]
    )
    second = runner.invoke(
        main, ["analyze", str(examples / "mlp.yaml"), "--format", "json"]
    )

    assert first.exit_code == second.exit_code == 0
    assert json.loads(first.output)["laws"] == json.loads(second.output)["laws"] == 5
    assert cache_dir.is_dir()


def last_run(cache_dir):
    from algebra.cache import GroupCache

    with GroupCache(cache_dir) as cache:
        return cache.last_run()


def without_seconds(output):
    """The output with the blocks' timings (which differ between runs) blanked."""
    return re.sub(r'"seconds": [0-9.e-]+', '"seconds": _', output)


OUTPUTS = {
    "text": [],
    "text-all-laws": ["--all-laws"],
    "json": ["--format", "json"],
    "latex": ["--format", "latex"],
}


@pytest.mark.parametrize("options", OUTPUTS.values(), ids=OUTPUTS.keys())
def test_warm_output_is_byte_identical_to_cold(runner, examples, tmp_path, options):
    args = ["analyze", str(examples / "mlp.yaml"), *options]
    bypass = runner.invoke(main, [*args, "--no-cache"])
    cold = runner.invoke(main, [*args, "--cache-dir", str(tmp_path)])
    cold_run = last_run(tmp_path)
    warm = runner.invoke(main, [*args, "--cache-dir", str(tmp_path)])
    warm_run = last_run(tmp_path)

    assert bypass.exit_code == cold.exit_code == warm.exit_code == 0
    assert warm.stdout_bytes == cold.stdout_bytes
    assert without_seconds(cold.stdout) == without_seconds(bypass.stdout)
    assert (cold_run["report_hits"], cold_run["report_misses"]) == (0, 1)
    assert (cold_run["cache_hits"], cold_run["cache_misses"]) == (0, 1)
    assert (warm_run["report_hits"], warm_run["report_misses"]) == (1, 0)
    assert (warm_run["cache_hits"], warm_run["cache_misses"]) == (0, 0)
    assert warm_run["hit_rate"] == 1.0


def test_a_new_view_of_a_cached_model_reuses_its_groups(runner, examples, tmp_path):
    args = ["analyze", str(examples / "mlp.yaml"), "--cache-dir", str(tmp_path)]
    runner.invoke(main, args)
    runner.invoke(main, [*args, "--format", "json"])
    first_json = last_run(tmp_path)
    runner.invoke(main, [*args, "--format", "json"])
    runner.invoke(main, args)
    text_again = last_run(tmp_path)

    assert (first_json["report_misses"], first_json["cache_hits"]) == (1, 1)
    assert (text_again["report_hits"], text_again["cache_hits"]) == (1, 0)


MLP = """name: tiny
input: [3]
layers:
  - {type: linear, name: fc1, out: 2, bias: true}
  - {type: relu}
  - {type: linear, name: fc2, out: 2}
"""
MLP_REFORMATTED = """# the same model, with comments and other spacing

name:   tiny   # its name
input: [ 3 ]
layers:
  - type: linear
    name: fc1
    bias: true
    out: 2
  - {type: relu}   # activation

  - {type: linear,  out: 2, name: fc2}
"""


def test_report_key_ignores_comments_and_spacing(runner, write_model, tmp_path):
    cache = str(tmp_path / "cache")
    first = write_model(MLP, "first.yaml")
    second = write_model(MLP_REFORMATTED, "second.yaml")
    runner.invoke(main, ["analyze", str(first), "--cache-dir", cache])
    result = runner.invoke(main, ["analyze", str(second), "--cache-dir", cache])

    assert result.exit_code == 0
    assert last_run(cache)["report_hits"] == 1


CHANGES = {
    "width": ("out: 2, bias", "out: 3, bias"),
    "bias": ("bias: true", "bias: false"),
    "activation": ("{type: relu}", "{type: square}"),
    "layer-name": ("name: fc2", "name: head"),
    "model-name": ("name: tiny", "name: small"),
}


@pytest.mark.parametrize("old, new", CHANGES.values(), ids=CHANGES.keys())
def test_report_key_changes_with_the_model(runner, write_model, tmp_path, old, new):
    cache = str(tmp_path / "cache")
    first = write_model(MLP, "first.yaml")
    second = write_model(MLP.replace(old, new), "second.yaml")
    runner.invoke(main, ["analyze", str(first), "--cache-dir", cache])
    result = runner.invoke(main, ["analyze", str(second), "--cache-dir", cache])
    expected = runner.invoke(main, ["analyze", str(second), "--no-cache"])

    assert result.exit_code == 0
    assert last_run(cache)["report_misses"] == 1
    assert result.stdout == expected.stdout


@pytest.mark.parametrize("option", [["--degree", "3"], ["--seed", "1"]])
def test_report_key_changes_with_degree_and_seed(runner, examples, tmp_path, option):
    args = ["analyze", str(examples / "mlp.yaml"), "--cache-dir", str(tmp_path)]
    runner.invoke(main, args)
    runner.invoke(main, [*args, *option])

    assert last_run(tmp_path)["report_misses"] == 1


@pytest.mark.parametrize("command", ["analyze", "batch", "drift"])
def test_empty_cache_dir_is_refused(runner, examples, command):
    args = [command, str(examples / "mlp.yaml"), "--cache-dir", ""]
    result = runner.invoke(main, args)

    assert result.exit_code == 2
    assert result.output.splitlines() == [
        "Error: --cache-dir: got an empty path; expected a directory "
        "(or --no-cache to bypass the cache)"
    ]


@pytest.mark.parametrize("command", [["cache", "stats"], ["cache", "clear"]])
def test_cache_commands_refuse_an_empty_cache_dir(runner, command):
    result = runner.invoke(main, [*command, "--cache-dir", ""])

    assert result.exit_code == 2
    assert "--cache-dir: got an empty path" in result.output


def make_read_only(monkeypatch):
    """Fail every open as a read-only directory does (tests run as root)."""
    import sqlite3

    import diskcache

    import algebra.cache

    def refuse(*args, **kwargs):
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(diskcache, "Cache", refuse)
    monkeypatch.setattr(algebra.cache, "_writable", lambda directory: False)


def test_read_only_cache_warns_once_and_runs_without_it(
    runner, examples, tmp_path, monkeypatch
):
    model = str(examples / "mlp.yaml")
    expected = runner.invoke(main, ["analyze", model, "--no-cache"])
    make_read_only(monkeypatch)

    args = ["analyze", str(examples / "mlp.yaml"), "--cache-dir", str(tmp_path)]
    result = runner.invoke(main, args)

    assert result.exit_code == 0
    assert result.stdout == expected.stdout
    assert result.stderr.splitlines() == [
        f"Warning: the cache at {tmp_path} is read-only (attempt to write a "
        "readonly database); running without the cache"
    ]


def test_unopenable_cache_that_is_writable_is_an_error(runner, examples, tmp_path):
    (tmp_path / "cache.db").write_bytes(b"not a database" * 100)

    args = ["analyze", str(examples / "mlp.yaml"), "--cache-dir", str(tmp_path)]
    result = runner.invoke(main, args)

    assert result.exit_code == 1
    assert "delete that directory" in result.output
    assert "Traceback" not in result.output


def test_cache_stats_describe_the_last_analyze(runner, examples, tmp_path):
    args = ["analyze", str(examples / "mlp.yaml"), "--cache-dir", str(tmp_path)]
    runner.invoke(main, args)
    runner.invoke(main, args)

    stats = runner.invoke(main, ["cache", "stats", "--cache-dir", str(tmp_path)])

    assert "entries: 1 group certificates, 1 reports" in stats.output
    assert "last run: analyze of 1 file (0 failed)" in stats.output
    assert (
        "reports 1 hits / 1 lookups, groups 0 hits / 0 lookups, hit rate 100.0 %"
    ) in stats.output
