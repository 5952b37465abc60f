import json
import os
import pathlib
import random
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from algebra.analysis import analyze
from algebra.batch import BatchSettings, expand_paths, run_batch
from algebra.cache import GroupCache, StaleCacheWarning
from algebra.errors import ModelFileError
from cli import main

ROOT = pathlib.Path(__file__).resolve().parent.parent


def polynomial(prefix, widths, activation):
    lines = [f"name: {prefix}", f"input: [{widths[0]}]", "layers:"]
    for k, out in enumerate(widths[1:]):
        if k and activation != "identity":
            lines.append(f"  - {{type: {activation}}}")
        lines.append(f"  - {{type: linear, name: {prefix}{k}, out: {out}}}")
    return "\n".join(lines) + "\n"


# Small networks sharing blocks across files (about 1.5 seconds cold in all; the
# last file holds the slowest group, so that a run can be killed midway).
SWEEP = {
    "a_relu.yaml": polynomial("r", [4, 8, 8, 2], "relu"),
    "b_linear.yaml": polynomial("p", [3, 3, 3, 2], "identity"),
    "c_linear.yaml": polynomial("q", [3, 3, 3, 3], "identity"),
    "d_square.yaml": polynomial("s", [2, 3, 4, 2], "square"),
    "e_linear.yaml": polynomial("u", [3, 3, 3, 2, 2], "identity"),
    "f_square.yaml": polynomial("t", [3, 3, 4, 2], "square"),
}
BAD = "input: [3]\nlayers:\n  - {type: linaer, out: 2}\n"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sweep")
    for name, text in SWEEP.items():
        (folder / name).write_text(text)
    return folder


@pytest.fixture(scope="module")
def expected(sweep):
    """Parameters, laws and status of each file, analysed alone without a cache."""
    return {
        name: _outcome(analyze(str(sweep / name)).to_dict()) for name in sorted(SWEEP)
    }


def _outcome(record):
    return (record["parameters"], record["laws"], record["status"])


def outcomes(summary):
    return {
        pathlib.Path(r["file"]).name: _outcome(r) for r in summary["files"] if r["laws"]
    }


def batch_command(*args):
    return [sys.executable, "-c", "import cli; cli.main()", "batch", *map(str, args)]


def run_cli(*args):
    """Run a batch in a fresh process; return (exit code, JSON summary, stderr)."""
    done = subprocess.run(
        batch_command(*args, "--format", "json"),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    summary = json.loads(done.stdout) if done.stdout.strip() else None
    return done.returncode, summary, done.stderr


def test_expand_paths_takes_globs_directories_and_files_once(sweep):
    paths = expand_paths(
        [str(sweep / "b_*.yaml"), str(sweep), str(sweep / "a_relu.yaml")]
    )

    names = [pathlib.Path(p).name for p in paths]
    assert names == ["b_linear.yaml", *sorted(set(SWEEP) - {"b_linear.yaml"})]


def test_pattern_matching_nothing_is_refused(runner, sweep):
    with pytest.raises(ModelFileError, match="no file matches"):
        expand_paths([str(sweep / "*.json")])

    result = runner.invoke(main, ["batch", str(sweep / "*.json"), "--no-cache"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"Error: {sweep / '*.json'}: no file matches"
    ]


def test_summary_table_has_a_row_per_file(runner, sweep, tmp_path, expected):
    result = runner.invoke(main, ["batch", str(sweep), "--cache-dir", str(tmp_path)])

    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "file",
        "parameters",
        "laws",
        "status",
        "seconds",
        "cache",
        "hits",
    ]
    for name, (parameters, laws, status) in expected.items():
        (row,) = [line for line in lines if name in line]
        assert row.split()[1:4] == [str(parameters), str(laws), status]
    assert "6 files, 0 failed" in result.stdout


def test_failing_file_is_one_line_and_the_batch_goes_on(runner, sweep, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)

    result = runner.invoke(
        main, ["batch", str(bad), str(sweep / "a_relu.yaml"), "--no-cache"]
    )

    assert result.exit_code == 1
    (failure,) = [line for line in result.stdout.splitlines() if "linaer" in line]
    assert failure.startswith(f"failed: {bad}:3: layers[0].type: got 'linaer'")
    assert "certified" in result.stdout
    assert "Traceback" not in result.output


def test_out_has_one_json_line_per_file(runner, sweep, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    out = tmp_path / "results.jsonl"

    runner.invoke(
        main,
        [
            "batch",
            str(sweep / "a_relu.yaml"),
            str(bad),
            "--out",
            str(out),
            "--no-cache",
        ],
    )

    records = {r["file"]: r for r in map(json.loads, out.read_text().splitlines())}
    good = records[str(sweep / "a_relu.yaml")]
    assert good["status"] == "certified" and good["blocks"][0]["expressions"]
    assert records[str(bad)]["status"] == "failed"
    assert "linaer" in records[str(bad)]["error"]


def test_warm_run_reads_every_report_from_the_cache(runner, sweep, tmp_path):
    args = ["batch", str(sweep), "--cache-dir", str(tmp_path), "--format", "json"]
    cold = json.loads(runner.invoke(main, args).stdout)["summary"]
    warm = json.loads(runner.invoke(main, args).stdout)["summary"]
    stats = runner.invoke(main, ["cache", "stats", "--cache-dir", str(tmp_path)])

    assert (cold["cache_hits"], cold["cache_misses"]) == (4, 8)
    assert (cold["report_hits"], cold["report_misses"]) == (0, 6)
    assert (warm["report_hits"], warm["report_misses"]) == (6, 0)
    assert (warm["cache_hits"], warm["cache_misses"]) == (0, 0)
    assert "entries: 8 group certificates, 6 reports" in stats.output
    assert "batch of 6 files (0 failed)" in stats.output
    assert "reports 6 hits / 6 lookups, groups 0 hits / 0 lookups" in stats.output
    assert "hit rate 100.0 %" in stats.output


def test_new_file_with_known_groups_reads_them(runner, sweep, tmp_path):
    first = ["batch", str(sweep / "a_relu.yaml"), "--cache-dir", str(tmp_path)]
    runner.invoke(main, first)
    text = (sweep / "a_relu.yaml").read_text().replace("name: r\n", "name: other\n")
    renamed = tmp_path / "renamed.yaml"
    renamed.write_text(text)

    args = ["batch", str(renamed), "--cache-dir", str(tmp_path), "--format", "json"]
    summary = json.loads(runner.invoke(main, args).stdout)["summary"]

    assert (summary["report_hits"], summary["report_misses"]) == (0, 1)
    assert summary["cache_misses"] == 0 and summary["cache_hits"] > 0


def test_warnings_of_a_file_are_raised_again_naming_it(sweep, tmp_path):
    path = str(sweep / "a_relu.yaml")
    settings = BatchSettings(cache_dir=str(tmp_path))
    run_batch([path], settings)
    connection = sqlite3.connect(tmp_path / "cache.db")
    with connection:
        connection.execute("UPDATE Cache SET value = x'00' WHERE key NOT LIKE 'meta:%'")
    connection.close()

    with pytest.warns(StaleCacheWarning, match=f"^{path}: cache entry"):
        batch = run_batch([path], settings)

    assert batch.results[0].status == "certified"
    assert batch.results[0].warnings[0][0] is StaleCacheWarning


def test_no_cache_writes_no_cache(runner, sweep, tmp_path):
    result = runner.invoke(
        main,
        [
            "batch",
            str(sweep / "a_relu.yaml"),
            "--no-cache",
            "--cache-dir",
            str(tmp_path / "c"),
        ],
    )

    assert result.exit_code == 0
    assert not (tmp_path / "c").exists()


def test_plain_progress_lines_off_a_terminal(runner, sweep, tmp_path):
    result = runner.invoke(main, ["batch", str(sweep / "a_*.yaml"), "--no-cache"])

    assert result.stderr.startswith(f"[1/1] certified {sweep / 'a_relu.yaml'}")


def test_progress_bar_on_a_terminal(sweep, tmp_path):
    import pty

    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        batch_command(sweep / "a_relu.yaml", sweep / "f_square.yaml", "--no-cache"),
        stdout=subprocess.PIPE,
        stderr=terminal,
        cwd=ROOT,
    )
    os.close(terminal)
    stdout = process.communicate(timeout=120)[0].decode()
    shown = _read_all(controller).decode()

    assert process.returncode == 0 and "f_square.yaml" in stdout
    assert "batch" in shown and "100%" in shown and "[1/2]" not in shown


def _read_all(descriptor):
    chunks = []
    while True:
        try:
            chunk = os.read(descriptor, 4096)
        except OSError:  # the terminal closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(descriptor)
    return b"".join(chunks)


def test_jobs_give_the_results_of_one_process(runner, sweep, tmp_path, expected):
    result = runner.invoke(
        main,
        [
            "batch",
            str(sweep),
            "-j",
            "2",
            "--cache-dir",
            str(tmp_path),
            "--format",
            "json",
        ],
    )

    assert result.exit_code == 0
    assert outcomes(json.loads(result.stdout)) == expected


def test_unusable_cache_directory_is_exit_status_1(runner, sweep, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")

    result = runner.invoke(
        main, ["batch", str(sweep / "a_relu.yaml"), "--cache-dir", str(blocker / "c")]
    )

    assert result.exit_code == 1
    assert result.output.startswith("Error: cannot open the cache at")


def test_cache_database_that_is_not_one_is_exit_status_1(runner, sweep, tmp_path):
    (tmp_path / "cache.db").write_bytes(bytes(range(256)) * 20)

    result = runner.invoke(
        main, ["batch", str(sweep / "a_relu.yaml"), "--cache-dir", str(tmp_path)]
    )

    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: cannot open the cache at {tmp_path}: file is not a database; "
        "delete that directory to start an empty cache"
    ]


def test_scheduler_and_jobs_together_are_refused(runner, sweep):
    result = runner.invoke(
        main, ["batch", str(sweep), "-j", "2", "--scheduler", "tcp://127.0.0.1:1"]
    )

    assert result.exit_code == 2


def count_entries(cache_dir):
    with GroupCache(cache_dir) as cache:
        return cache.entries()


def test_two_concurrent_runs_lose_and_corrupt_nothing(sweep, tmp_path, expected):
    args = batch_command(sweep, "--cache-dir", tmp_path, "--format", "json")
    runs = [
        subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        for _ in range(2)
    ]
    summaries = [json.loads(run.communicate(timeout=300)[0]) for run in runs]
    code, third, stderr = run_cli(sweep, "--cache-dir", tmp_path)

    assert [run.returncode for run in runs] == [0, 0] and code == 0
    assert (
        outcomes(summaries[0]) == outcomes(summaries[1]) == outcomes(third) == expected
    )
    computed = sum(s["summary"]["cache_misses"] for s in summaries)
    assert computed == count_entries(tmp_path)  # each group computed once in all
    assert third["summary"]["cache_misses"] == 0 and "Warning" not in stderr


HEAD = (
    "input: [4]\nlayers:\n  - {type: linear, name: head, out: 3, bias: true}\n"
    "  - {type: softmax}\n"
)


@pytest.fixture(scope="module")
def long_sweep(sweep, tmp_path_factory):
    """The sweep and, last, a file whose one group takes about a second."""
    folder = tmp_path_factory.mktemp("long-sweep")
    for name, text in SWEEP.items():
        (folder / name).write_text(text)
    (folder / "z_head.yaml").write_text(HEAD)
    return folder


@pytest.fixture(scope="module")
def long_expected(long_sweep, expected):
    head = analyze(str(long_sweep / "z_head.yaml")).to_dict()
    return {**expected, "z_head.yaml": _outcome(head)}


def test_killed_runs_leave_a_cache_the_next_run_reads(
    long_sweep, tmp_path, long_expected
):
    rng = random.Random(4)
    for delay in (None, rng.uniform(0.2, 1.5), rng.uniform(0.2, 1.5)):
        run = subprocess.Popen(
            batch_command(long_sweep, "--cache-dir", tmp_path),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=ROOT,
        )
        _wait_for_an_entry(tmp_path, run) if delay is None else time.sleep(delay)
        run.send_signal(signal.SIGKILL)
        run.wait()
    kept = count_entries(tmp_path)

    start = time.monotonic()
    code, summary, stderr = run_cli(long_sweep, "--cache-dir", tmp_path)

    assert kept > 0 and code == 0
    assert outcomes(summary) == long_expected
    # Nothing the killed runs left is computed again, and some of it is read.
    assert count_entries(tmp_path) == kept + summary["summary"]["cache_misses"]
    assert summary["summary"]["cache_hits"] + summary["summary"]["report_hits"] > 0
    assert "Warning" not in stderr
    assert time.monotonic() - start < 120  # no wait on the dead runs' leases


def _wait_for_an_entry(cache_dir, run):
    for _ in range(600):
        if (cache_dir / "cache.db").exists() and count_entries(cache_dir) > 0:
            return
        assert run.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)


def test_files_of_a_killed_worker_are_given_to_a_new_one(
    long_sweep, tmp_path, long_expected
):
    psutil = pytest.importorskip("psutil")
    command = batch_command(long_sweep, "-j", "2", "--cache-dir", tmp_path)
    run = subprocess.Popen(
        [*command, "--format", "json"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    _wait_for_an_entry(tmp_path, run)
    family = psutil.Process(run.pid).children(recursive=True)
    workers = [p for p in family if p.ppid() != run.pid]  # children of the forkserver
    workers[0].kill()
    stdout = run.communicate(timeout=300)[0]

    assert run.returncode == 0
    assert outcomes(json.loads(stdout)) == long_expected


def test_corrupted_entries_are_recomputed_by_the_next_run(sweep, tmp_path, expected):
    assert run_cli(sweep, "--cache-dir", tmp_path)[0] == 0
    entries = count_entries(tmp_path)
    connection = sqlite3.connect(tmp_path / "cache.db")
    with connection:
        connection.execute(
            "UPDATE Cache SET value = randomblob(40) WHERE rowid % 2 = 0"
        )
        connection.execute("UPDATE Cache SET value = 'text' WHERE rowid % 2 = 1")
    connection.close()

    code, repaired, stderr = run_cli(sweep, "--cache-dir", tmp_path)
    again = run_cli(sweep, "--cache-dir", tmp_path)

    assert code == 0 and outcomes(repaired) == expected
    assert stderr.count("StaleCacheWarning") >= entries - 1
    assert repaired["summary"]["cache_misses"] >= entries - 1
    assert again[0] == 0 and again[1]["summary"]["cache_misses"] == 0
    assert "Warning" not in again[2]


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address=None,
        processes=True,
    ) as local:
        yield local


def test_scheduler_runs_the_batch_on_a_dask_cluster(
    runner, cluster, sweep, tmp_path, expected
):
    args = ["batch", str(sweep), "--cache-dir", str(tmp_path), "--format", "json"]
    result = runner.invoke(main, [*args, "--scheduler", cluster.scheduler_address])

    assert result.exit_code == 0
    summary = json.loads(result.stdout)
    assert [r["file"] for r in summary["files"]] == expand_paths([str(sweep)])
    assert outcomes(summary) == expected
    assert count_entries(tmp_path) == summary["summary"]["cache_misses"] > 0


NO_DASK = """
import sys, cli
try:
    cli.main(["batch", sys.argv[1], "--no-cache"], standalone_mode=False)
finally:
    print(sorted({m.split(".")[0] for m in sys.modules} & {"dask", "distributed"}))
"""


def test_dask_is_not_imported_without_a_scheduler(sweep):
    done = subprocess.run(
        [sys.executable, "-c", NO_DASK, str(sweep / "a_relu.yaml")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
