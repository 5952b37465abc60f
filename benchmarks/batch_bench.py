"""Benchmark cached batch runs on a 40-file sweep: cold, warm, and one by one.

Run ``python benchmarks/batch_bench.py`` (about two minutes). It writes the sweep of
`make_sweep.py` into a temporary directory, then times, in this process:

- one by one, no cache: `analyze` on each file with nothing shared between files
  (each file still shares identical groups within itself, as `analyze` always
  does). The cache argument is a recorder that never hits, so that the same pass
  measures each group's certification time; it computes exactly what
  ``cache=None`` computes;
- batch cold: `run_batch` with an empty cache directory;
- batch warm: `run_batch` again on the filled cache (median of ``--repeats``);
- the warm batch through the ``algebra-cli`` command, interpreter start included,
  and with ``--jobs N`` a cold batch on N processes (another empty cache), for
  reference.

The sharing factor is the certification time of every group lookup over that of
the first lookup of each group; "allowed" is the speed-up over one by one that a
cold run would reach if it skipped every repeated group at no cost, per-file work
included. Both come from the one-by-one pass itself. Timings on a shared machine
are noisy: the header gives the load average, and CPU seconds are shown too.
Targets: warm at least 20 times faster than cold, and cold faster than one by one
by at least the allowed factor.
"""

import argparse
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

# One BLAS thread per process, set before numpy loads: on a shared machine a
# multithreaded BLAS makes the same certification vary several-fold in time. Export
# the variables to measure with other settings.
BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
for variable in BLAS_THREADS:
    os.environ.setdefault(variable, "1")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from algebra.analysis import analyze  # noqa: E402
from algebra.batch import BatchSettings, run_batch  # noqa: E402
from benchmarks.make_sweep import make_sweep  # noqa: E402


class _Recorder:
    """A cache that never hits and records how long each missed group took."""

    def __init__(self):
        self.started = {}
        self.seconds = {}

    def get(self, key):
        self.started[key] = time.perf_counter()
        return None

    def set(self, key, value):
        self.seconds[key] = time.perf_counter() - self.started[key]


class _Clock:
    """Wall and CPU seconds of this process, from start to stop."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc_info):
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def one_by_one(paths):
    """Analyse each file alone; return clock, per-file seconds, outcomes, groups."""
    seconds, outcomes, groups = [], [], []
    with _Clock() as clock:
        for path in paths:
            recorder = _Recorder()
            start = time.perf_counter()
            report = analyze(str(path), cache=recorder)
            seconds.append(time.perf_counter() - start)
            outcomes.append((report.parameters, report.laws, report.status))
            groups.append(recorder.seconds)
    return clock, seconds, outcomes, groups


def batch(paths, cache_dir, jobs=1):
    """Run one batch; return (clock, BatchResult)."""
    settings = BatchSettings(cache_dir=str(cache_dir))
    with _Clock() as clock:
        result = run_batch([str(p) for p in paths], settings, jobs=jobs)
    return clock, result


def sharing(groups, total):
    """Return (sharing factor, allowed speed-up, lookups, distinct groups).

    A perfect cache would skip, in the one-by-one pass itself, every certification
    of a group after its first one (in file order): the allowed speed-up is that
    pass's time over the same time minus those repeats.
    """
    times = {}
    for recorded in groups:
        for key, seconds in recorded.items():
            times.setdefault(key, []).append(seconds)
    every = sum(sum(t) for t in times.values())
    repeated = sum(sum(t[1:]) for t in times.values())
    lookups = sum(len(t) for t in times.values())
    allowed = total / (total - repeated)
    return every / (every - repeated), allowed, lookups, len(times)


def cli_warm(folder, cache_dir):
    """Time the warm batch through the command line, interpreter start included."""
    command = ["algebra-cli", "batch", str(folder), "--cache-dir", str(cache_dir)]
    if shutil.which("algebra-cli") is None:
        command = [sys.executable, "-c", "import cli; cli.main()", *command[1:]]
    with _Clock() as clock:
        subprocess.run(command, check=True, capture_output=True)
    clock.cpu = None  # spent in another process
    return clock


def row(name, clock, per_file, hits, base):
    """Format one line of the table."""
    median = f"{statistics.median(per_file):.3f}" if per_file else "-"
    cpu = f"{clock.cpu:.2f}" if clock.cpu is not None else "-"
    speed = f"{base.wall / clock.wall:.1f}x"
    if clock.cpu is not None:
        speed += f" / {base.cpu / clock.cpu:.1f}x"
    return f"{name:<36}{clock.wall:>8.2f}{cpu:>8}{median:>9}{hits:>8}{speed:>17}"


def outcomes_of(result):
    return [(r.parameters, r.laws, r.status) for r in result.results]


def main():
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="Warm runs.")
    parser.add_argument(
        "--jobs",
        type=int,
        default=0,
        help="Also time a cold batch on this many processes.",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        paths = make_sweep(tmp / "sweep")
        report(paths, tmp, args)


def report(paths, tmp, args):
    """Time every run and print the table with its ratios and targets."""
    base, base_files, base_outcomes, groups = one_by_one(paths)
    cold, cold_result = batch(paths, tmp / "cache")
    warm_runs = [batch(paths, tmp / "cache") for _ in range(args.repeats)]
    warm, warm_result = _median_run(warm_runs)

    lines = [
        f"{len(paths)} files, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f} at start, Python {sys.version.split()[0]}, "
        f"OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}",
        "",
        f"{'run':<36}{'wall s':>8}{'cpu s':>8}{'median':>9}{'hits':>8}"
        f"{'vs one by one':>17}",
        row("one by one, no cache", base, base_files, "-", base),
        row(
            "batch cold (--jobs 1)", cold, _files(cold_result), _hits(cold_result), base
        ),
        row(
            f"batch warm (median of {args.repeats})",
            warm,
            _files(warm_result),
            _hits(warm_result),
            base,
        ),
    ]
    lines += extra_rows(paths, tmp, args, base)
    lines += verdicts(base, cold, warm, groups)
    lines.append(by_family(paths, base_files, cold_result, warm_result))
    results = [cold_result] + [result for _, result in warm_runs]
    same = all(outcomes_of(result) == base_outcomes for result in results)
    lines.append(f"laws and status identical in every run: {'yes' if same else 'NO'}")
    print("\n".join(lines))


def verdicts(base, cold, warm, groups):
    """Lines comparing the runs with the targets, in wall and in CPU time."""
    factor, allowed, lookups, distinct = sharing(groups, base.wall)
    lines = [
        "",
        "median: median seconds per file; hits: whole analyses and groups read from "
        "the cache / looked up; speed-ups: wall / cpu",
        f"group lookups {lookups}, distinct groups {distinct}; sharing factor "
        f"{factor:.2f} (certification time), allowed speed-up {allowed:.2f}",
    ]
    for unit in ("wall", "cpu"):
        b, c, w = (getattr(clock, unit) for clock in (base, cold, warm))
        share = 100 * b / c / allowed
        lines += [
            f"{unit}: warm vs cold {c / w:.1f}x (target >= 20: "
            f"{'met' if c / w >= 20 else 'NOT met'}); cold vs one by one "
            f"{b / c:.2f}x (target >= {allowed:.2f}: "
            f"{'met' if b / c >= allowed else 'NOT met'}, {share:.0f} %)"
        ]
    return lines


def by_family(paths, base_files, cold_result, warm_result):
    """One line: seconds per family of the sweep, one by one / cold / warm."""
    totals = {}
    columns = (paths, base_files, _files(cold_result), _files(warm_result))
    for path, *seconds in zip(*columns, strict=True):
        family = path.name.split("_w")[0]
        before = totals.get(family, [0.0] * 3)
        totals[family] = [a + b for a, b in zip(before, seconds, strict=True)]
    parts = [f"{k} {b:.1f}/{c:.1f}/{w:.2f}" for k, (b, c, w) in totals.items()]
    return "seconds per family (one by one / cold / warm): " + ", ".join(parts)


def _median_run(runs):
    wall = statistics.median(clock.wall for clock, _ in runs)
    return min(runs, key=lambda run: abs(run[0].wall - wall))


def extra_rows(paths, tmp, args, base):
    """Rows for reference: a cold run on two processes, the warm CLI."""
    rows = []
    if args.jobs > 1:
        clock, result = batch(paths, tmp / "cache-jobs", jobs=args.jobs)
        clock.cpu = None  # spent in the worker processes
        name = f"batch cold --jobs {args.jobs}"
        rows.append(row(name, clock, _files(result), _hits(result), base))
    clock = cli_warm(paths[0].parent, tmp / "cache")
    rows.append(row("algebra-cli batch, warm (whole cmd)", clock, [], "-", base))
    return rows


def _files(result):
    return [r.seconds for r in result.results]


def _hits(result):
    found = result.hits + result.report_hits
    return f"{found}/{found + result.misses + result.report_misses}"


if __name__ == "__main__":
    main()
