"""Time ``algebra-cli analyze`` cold and warm on real architectures.

For each model file (ResNet-18 and GPT-2 small by default) the benchmark runs the
command as a child process against a fresh temporary cache: once cold (empty
cache), then `--warm` times warm (the whole analysis read back from the cache).
It prints one row per model: cold wall time, median warm wall time, their ratio,
peak resident memory of the cold and warm runs (``ru_maxrss`` of the child, from
``os.wait4``), the laws and status of the model, and whether every warm output
is byte-identical to the cold one.

Usage::

    python benchmarks/real_bench.py [--warm 5] [--format text|json|latex]
                                    [MODEL.yaml ...]

Targets (issue 6): warm under 2 s, cold under 60 s, peak memory under 4 GB.
"""

import argparse
import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODELS = ("examples/resnet18.yaml", "examples/gpt2_small.yaml")
FIRST_LINE = re.compile(r"model (\S+): (\d+) parameters, (\d+) laws? \((\w+)\)")


def command():
    """Return the ``algebra-cli`` of this interpreter's environment.

    The console script beside `sys.executable` is what an activated virtual
    environment runs; a version manager's shim in front of it adds its own time.
    """
    script = pathlib.Path(sys.executable).parent / "algebra-cli"
    if script.exists():
        return [str(script)]
    found = shutil.which("algebra-cli")
    if found is None:
        sys.exit("algebra-cli is not installed: pip install -e .")
    return [found]


def run_once(args):
    """Run one child; return (wall seconds, peak RSS in MB, stdout bytes)."""
    start = time.perf_counter()
    child = subprocess.Popen(
        args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    stdout = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        sys.exit(f"{' '.join(args)} exited with status {child.returncode}")
    return seconds, usage.ru_maxrss / 1024, stdout


def summary_of(stdout, fmt):
    """Return (laws, status) from the output of one run."""
    if fmt == "json":
        import json

        report = json.loads(stdout)
        return report["laws"], report["status"]
    if fmt == "latex":
        match = re.match(rb"% conservation laws of \S+: (\d+) \((\w+)\)", stdout)
        return int(match[1]), match[2].decode()
    match = FIRST_LINE.match(stdout.decode())
    return int(match[3]), match[4]


def measure(model, fmt, warm_runs):
    """Return the row of one model: cold and warm runs on a fresh cache."""
    with tempfile.TemporaryDirectory(prefix="algebra-bench-") as cache:
        args = [*command(), "analyze", model, "--format", fmt, "--cache-dir", cache]
        cold, cold_rss, cold_out = run_once(args)
        warm = [run_once(args) for _ in range(warm_runs)]
    median = statistics.median(seconds for seconds, _, _ in warm)
    laws, status = summary_of(cold_out, fmt)
    return {
        "model": pathlib.Path(model).stem,
        "cold": cold,
        "warm": median,
        "ratio": cold / median,
        "cold_rss": cold_rss,
        "warm_rss": max(rss for _, rss, _ in warm),
        "laws": laws,
        "status": status,
        "identical": all(out == cold_out for _, _, out in warm),
    }


def render(rows, fmt, warm_runs):
    """Return the table of results."""
    header = (
        f"{'model':<12}{'cold s':>9}{'warm s':>9}{'cold/warm':>11}"
        f"{'RSS cold':>11}{'RSS warm':>11}{'laws':>7}  {'status':<10}{'same':>5}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['model']:<12}{r['cold']:>9.2f}{r['warm']:>9.2f}{r['ratio']:>11.1f}"
            f"{r['cold_rss']:>8.0f} MB{r['warm_rss']:>8.0f} MB{r['laws']:>7}  "
            f"{r['status']:<10}{'yes' if r['identical'] else 'NO':>5}"
        )
    lines.append("")
    lines.append(
        f"--format {fmt}; warm s: median of {warm_runs} runs from the cache; "
        "RSS: peak resident memory of the child (largest warm run); same: every "
        "warm output byte-identical to the cold one; command: " + " ".join(command())
    )
    return "\n".join(lines)


def main(argv=None):
    """Parse the options, measure every model and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=list(MODELS))
    parser.add_argument("--warm", type=int, default=5, help="warm runs per model")
    parser.add_argument("--format", default="text", choices=["text", "json", "latex"])
    options = parser.parse_args(argv)

    rows = [measure(m, options.format, options.warm) for m in options.models]
    print(render(rows, options.format, options.warm))


if __name__ == "__main__":
    main()
