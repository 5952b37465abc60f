import json

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
