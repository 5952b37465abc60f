r"""Analyse many model files in one run, each certified group paid for once.

A batch analyses every file with `algebra.analysis.analyze` against one on-disk
`GroupCache`, so that a group certified for one file is read back for every other
file that holds it, in this run and in later ones. Files run one after the other,
in worker processes (``jobs > 1``), or as tasks of a Dask distributed cluster
(``scheduler``); the cache's leases make each missing group computed by one worker
while the others wait for it. A file that fails is reported with its one-line
error and the batch goes on.

Notes
-----
Work is sent to workers one file at a time. With a Dask cluster, the workers read
the model files and the cache directory at the same absolute paths as this
process: a shared file system shares the cache; otherwise each machine keeps a
cache of its own, which is still correct. Dask is imported only when a scheduler
is given.

Examples
--------
>>> import pathlib, tempfile
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = (folder / "a.yaml").write_text(
...     "input: [2]\nlayers:\n  - {type: linear, out: 2}\n  - {type: relu}\n"
...     "  - {type: linear, out: 1}\n")
>>> _ = (folder / "b.yaml").write_text("input: [2]\nlayers: [{type: linaer}]\n")
>>> settings = BatchSettings(cache_dir=str(folder / "cache"))
>>> batch = run_batch(expand_paths([str(folder / "*.yaml")]), settings)
>>> [(r.status, r.laws) for r in batch.results]
[('certified', 2), ('failed', None)]
>>> expand_paths([str(folder / "*.yml")])
Traceback (most recent call last):
...
algebra.errors.ModelFileError: ...*.yml: no file matches
>>> import shutil; shutil.rmtree(folder)
"""

import glob
import os
import threading
import time
import warnings
from dataclasses import dataclass, field, replace

from algebra.errors import ModelFileError

__all__ = [
    "BatchSettings",
    "FileResult",
    "BatchResult",
    "expand_paths",
    "analyze_file",
    "run_batch",
    "render_summary",
    "progress_line",
]


@dataclass(frozen=True)
class BatchSettings:
    """What every file of a batch is analysed with.

    Parameters
    ----------
    degree : int
        Largest degree of the polynomial law search.
    seed : int
        Seed of every random point.
    cache_dir : str, optional
        Absolute path of the cache directory; None bypasses the cache.
    keep_reports : bool
        Whether each result carries its full JSON report (for ``--out``).
    announce_waits : bool
        Whether a worker prints a line on stderr when it waits for another
        process's cache lease (`algebra.cache.print_wait_notice`).
    """

    degree: int = 2
    seed: int = 0
    cache_dir: str | None = None
    keep_reports: bool = False
    announce_waits: bool = False


@dataclass(frozen=True)
class FileResult:
    """The outcome of one file of a batch.

    Parameters
    ----------
    file : str
        The path as the user gave it.
    status : str
        ``certified``, ``bounds`` or ``failed``.
    seconds : float
        Wall time of the file's analysis.
    model, parameters, laws
        The report's model name, D and number of laws (None when failed).
    cache_hits, cache_misses : int
        Groups read from the disk cache, and groups looked up there in vain.
    report_hits, report_misses : int
        Whole analyses read from the disk cache (then no group is looked up),
        and looked up there in vain: 1 and 0, 0 and 1, or 0 and 0 without a cache.
    error : str
        One line saying why the file failed (empty when it did not).
    warnings : tuple of (type, str)
        Warnings raised while analysing it: category and message.
    report : dict, optional
        The full JSON report, when the settings keep reports.
    """

    file: str
    status: str
    seconds: float
    model: str | None = None
    parameters: int | None = None
    laws: int | None = None
    cache_hits: int = 0
    cache_misses: int = 0
    error: str = ""
    warnings: tuple = ()
    report: dict | None = field(default=None, repr=False)
    report_hits: int = 0
    report_misses: int = 0

    @property
    def failed(self):
        """Whether the file could not be analysed."""
        return self.status == "failed"

    def to_record(self, report=True):
        """Return a JSON-ready dict: the summary fields, then the report's."""
        record = {
            "file": self.file,
            "status": self.status,
            "seconds": round(self.seconds, 4),
            "cache_hits": self.cache_hits,
            "cache_misses": self.cache_misses,
            "report_hits": self.report_hits,
            "report_misses": self.report_misses,
            "error": self.error or None,
            "warnings": [message for _, message in self.warnings],
        }
        if not self.failed:
            record.update(model=self.model, parameters=self.parameters, laws=self.laws)
        if report and self.report is not None:
            record.update({k: v for k, v in self.report.items() if k not in record})
        return record


@dataclass(frozen=True)
class BatchResult:
    """All results of a batch, in the order of the files given.

    Parameters
    ----------
    results : tuple of FileResult
        One per file.
    seconds : float
        Wall time of the whole batch.
    """

    results: tuple
    seconds: float

    @property
    def failed(self):
        """The number of files that failed."""
        return sum(r.failed for r in self.results)

    @property
    def hits(self):
        """Groups read from the cache, over all files."""
        return sum(r.cache_hits for r in self.results)

    @property
    def misses(self):
        """Groups looked up in the cache in vain, over all files."""
        return sum(r.cache_misses for r in self.results)

    @property
    def report_hits(self):
        """Whole analyses read from the cache, over all files."""
        return sum(r.report_hits for r in self.results)

    @property
    def report_misses(self):
        """Whole analyses looked up in the cache in vain, over all files."""
        return sum(r.report_misses for r in self.results)

    def summary(self):
        """Return the run's statistics as a JSON-ready dict.

        ``hit_rate`` counts the lookups of whole analyses and of groups.
        """
        found = self.hits + self.report_hits
        lookups = found + self.misses + self.report_misses
        return {
            "command": "batch",
            "files": len(self.results),
            "failed": self.failed,
            "seconds": round(self.seconds, 3),
            "cache_hits": self.hits,
            "cache_misses": self.misses,
            "report_hits": self.report_hits,
            "report_misses": self.report_misses,
            "hit_rate": round(found / lookups, 4) if lookups else None,
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        }


def expand_paths(patterns):
    """Turn files, directories and glob patterns into a list of files.

    Parameters
    ----------
    patterns : sequence of str
        Paths of files, directories (their ``*.yaml`` and ``*.yml`` files) or
        glob patterns (``**`` crosses directories).

    Returns
    -------
    list of str
        Sorted within each pattern, in the order of the patterns, each file once.

    Raises
    ------
    ModelFileError
        When a pattern matches no file.
    """
    paths = []
    for pattern in patterns:
        matches = _matches(pattern)
        if not matches:
            raise ModelFileError(f"{pattern}: no file matches")
        paths.extend(m for m in matches if m not in paths)
    return paths


def _matches(pattern):
    if os.path.isdir(pattern):
        found = glob.glob(os.path.join(glob.escape(pattern), "*.y*ml"))
        return sorted(p for p in found if p.endswith((".yaml", ".yml")))
    if os.path.isfile(pattern):
        return [pattern]
    return sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))


def analyze_file(path, settings):
    """Analyse one file of a batch; never raise for a failure of the file.

    Parameters
    ----------
    path : str
        The model file.
    settings : BatchSettings
        Degree, seed, cache and what to keep.

    Returns
    -------
    FileResult
        With status ``failed`` and a one-line error when the analysis raised.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = _analyze_recorded(path, settings)
    raised = tuple((w.category, str(w.message)) for w in caught)
    return replace(result, warnings=raised)


def _analyze_recorded(path, settings):
    """Analyse `path`, turning any exception into a failed result."""
    from algebra.stored import analyze_stored

    start = time.perf_counter()
    cache = None
    view = "json" if settings.keep_reports else None
    try:
        cache = _CountingCache.open(settings.cache_dir, settings.announce_waits)
        report = analyze_stored(path, view, settings.degree, settings.seed, cache)
        kept = report.view("json")
    except Exception as err:  # noqa: BLE001 -- one bad file must not stop a batch
        seconds = time.perf_counter() - start
        return FileResult(path, "failed", seconds, error=_one_line(path, err))
    finally:
        if cache is not None:
            cache.release_leases()

    return FileResult(
        path,
        report.status,
        time.perf_counter() - start,
        report.model,
        report.parameters,
        report.laws,
        cache.hits if cache else 0,
        cache.misses if cache else 0,
        report=kept,
        report_hits=cache.report_hits if cache else 0,
        report_misses=cache.report_misses if cache else 0,
    )


def _one_line(path, err):
    """Return the error of a file as one line that names the file."""
    message = " ".join(str(err).split()) or type(err).__name__
    if not isinstance(err, (ValueError, OSError, NotImplementedError)):
        message = f"{type(err).__name__}: {message}"
    return message if path in message else f"{path}: {message}"


class _CountingCache:
    """A file's view of the process's shared cache, counting its own hits."""

    _open = {}
    _lock = threading.Lock()

    def __init__(self, cache):
        self.cache = cache
        self.hits = 0
        self.misses = 0
        self.report_hits = 0
        self.report_misses = 0

    @classmethod
    def open(cls, directory, announce_waits=False):
        """Return a view of the cache at `directory` (None: no cache)."""
        if directory is None:
            return None
        from algebra.cache import GroupCache, print_wait_notice

        key = (os.getpid(), directory)  # a forked worker opens its own connection
        on_wait = print_wait_notice if announce_waits else None
        with cls._lock:
            if key not in cls._open:
                cls._open[key] = GroupCache(directory, on_wait=on_wait)
        return cls(cls._open[key])

    @classmethod
    def close_all(cls):
        """Close the caches this process opened."""
        with cls._lock:
            for key in [k for k in cls._open if k[0] == os.getpid()]:
                cls._open.pop(key).close()

    def get(self, key):
        """Return the certificate under `key` or None, counting which."""
        value = self.cache.get(key)
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def set(self, key, value):
        """Store a certificate."""
        self.cache.set(key, value)

    def get_report(self, key, view=None):
        """Return the whole analysis under `key` with `view`, or None, counting."""
        stored = self.cache.get_report(key, view)
        if stored is None:
            self.report_misses += 1
        else:
            self.report_hits += 1
        return stored

    def set_report(self, key, stored):
        """Store a whole analysis."""
        self.cache.set_report(key, stored)

    def release_leases(self):
        """Give back the leases left by a failed analysis."""
        self.cache.release_leases()


def run_batch(paths, settings, jobs=1, scheduler=None, on_result=None):
    """Analyse every file, sharing certified groups through the cache.

    Parameters
    ----------
    paths : sequence of str
        Model files (see `expand_paths`).
    settings : BatchSettings
        Degree, seed, cache directory and what to keep.
    jobs : int
        Worker processes on this machine (1: in this process).
    scheduler : str, optional
        Address of a Dask distributed scheduler, e.g. ``tcp://127.0.0.1:8786``;
        the files are then analysed by its workers and `jobs` is ignored.
    on_result : callable, optional
        Called with (files done, file count, FileResult) as each file ends, after
        the warnings recorded for that file are raised again in this process.

    Returns
    -------
    BatchResult

    Raises
    ------
    CacheError
        When the cache directory cannot be opened.
    ConnectionError
        When the scheduler cannot be reached.
    NotImplementedError
        When a scheduler is given but dask.distributed is not installed.
    """
    start = time.perf_counter()
    settings = _absolute(settings)
    # Opened here first, so that a bad directory fails the batch, not each file.
    cache, settings = _open_or_skip(settings)

    results = [None] * len(paths)
    if scheduler:
        outcomes = _run_dask(paths, settings, scheduler)
    else:
        outcomes = _run_local(paths, settings, jobs)
    try:
        for done, (index, result) in enumerate(outcomes, start=1):
            results[index] = result
            _reemit(result)
            if on_result is not None:
                on_result(done, len(paths), result)
        batch = BatchResult(tuple(results), time.perf_counter() - start)
        if cache is not None:
            cache.cache.record_run(batch.summary())
    finally:
        _CountingCache.close_all()
    return batch


def _open_or_skip(settings):
    """Open the batch's cache; a read-only one is dropped with one warning."""
    from algebra.cache import CacheWriteWarning
    from algebra.errors import ReadOnlyCacheError

    try:
        cache = _CountingCache.open(settings.cache_dir, settings.announce_waits)
        return cache, settings
    except ReadOnlyCacheError as err:
        warnings.warn(
            f"{err}; running without the cache", CacheWriteWarning, stacklevel=3
        )
        return None, replace(settings, cache_dir=None)


def _reemit(result):
    """Raise again, here and naming the file, the warnings a worker recorded."""
    for category, message in result.warnings:
        warnings.warn(f"{result.file}: {message}", category, stacklevel=3)


def _absolute(settings):
    if settings.cache_dir is None:
        return settings
    return replace(settings, cache_dir=os.path.abspath(settings.cache_dir))


def _run_local(paths, settings, jobs):
    """Yield (index, FileResult) as files end, here or in worker processes.

    When a worker dies (killed, out of memory), the pool fails every file it had
    not finished; those files are given once more to a fresh pool.
    """
    if jobs <= 1 or len(paths) <= 1:
        for index, path in enumerate(paths):
            yield index, analyze_file(path, settings)
        return

    pending = list(range(len(paths)))
    for attempt in range(2):
        if not pending:
            return
        lost = []
        for index, result in _run_pool(paths, pending, settings, jobs):
            if result is None and attempt == 0:
                lost.append(index)
            else:
                yield index, result or _lost(paths[index])
        pending = lost


def _run_pool(paths, indices, settings, jobs):
    """Yield (index, FileResult or None when the pool broke) from one pool."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    workers = min(jobs, len(indices))
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=_clean_context())
    try:
        futures = {pool.submit(analyze_file, paths[k], settings): k for k in indices}
        for future in as_completed(futures):
            index = futures[future]
            if isinstance(future.exception(), BrokenProcessPool):
                yield index, None
            else:
                yield index, _outcome(future, paths[index])
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _lost(path):
    """Return the failure of a file whose worker process died twice."""
    return FileResult(path, "failed", 0.0, error=f"{path}: worker process died")


def _clean_context():
    """Start workers from a fresh process: no inherited connections or threads."""
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["algebra.batch", "algebra.analysis"])
    return context


def _run_dask(paths, settings, address):
    """Yield (index, FileResult) as the Dask cluster at `address` ends each file."""
    distributed = _import_distributed()
    try:
        client = distributed.Client(address, timeout="10s", set_as_default=False)
    except (OSError, TimeoutError) as err:
        raise ConnectionError(
            f"cannot reach the Dask scheduler at {address}: {err}"
        ) from err

    with client:
        futures = [
            client.submit(analyze_file, os.path.abspath(path), settings, pure=False)
            for path in paths
        ]
        index = {future.key: k for k, future in enumerate(futures)}
        for future in distributed.as_completed(futures, loop=client.loop):
            k = index[future.key]
            yield k, replace(_outcome(future, paths[k]), file=paths[k])


def _import_distributed():
    try:
        import distributed
    except ImportError as err:
        raise NotImplementedError(
            "--scheduler needs dask.distributed, which is not installed; install "
            "it with: pip install 'algebra-conservation[dask]'"
        ) from err
    return distributed


def _outcome(future, path):
    """Return a finished future's result; a lost worker fails only its file."""
    try:
        return future.result()
    except Exception as err:  # noqa: BLE001 -- a dead worker, a broken pool
        message = " ".join(str(err).split()) or "no message"
        return FileResult(
            path, "failed", 0.0, error=f"{path}: worker failed ({message})"
        )


def render_summary(batch):
    """Return the summary table of a batch, then its failures, for people.

    Parameters
    ----------
    batch : BatchResult
        The results.

    Returns
    -------
    str
        Columns file, parameters, laws, status, seconds and cache hits (hits out
        of lookups), a totals line, and one line per failed file.
    """
    header = ("file", "parameters", "laws", "status", "seconds", "cache hits")
    # cache hits: whole analyses and groups read, out of those looked up.
    rows = [header] + [_row(r) for r in batch.results]
    widths = [max(len(row[k]) for row in rows) for k in range(len(header))]
    lines = [
        "  ".join(
            cell.rjust(w) if 0 < k < 3 or k > 3 else cell.ljust(w)
            for k, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]
    lines.extend(["", _totals(batch)])
    lines.extend(f"failed: {r.error}" for r in batch.results if r.failed)
    return "\n".join(lines)


def _row(result):
    if result.failed:
        return (result.file, "-", "-", "failed", f"{result.seconds:.2f}", "-")
    found = result.cache_hits + result.report_hits
    lookups = found + result.cache_misses + result.report_misses
    return (
        result.file,
        str(result.parameters),
        str(result.laws),
        result.status,
        f"{result.seconds:.2f}",
        f"{found}/{lookups}",
    )


def _totals(batch):
    count = len(batch.results)
    text = f"{count} file{'s' if count != 1 else ''}, {batch.failed} failed, "
    text += f"{batch.seconds:.2f} s; cache: {batch.report_hits} reports read, "
    text += f"{batch.hits} group hits, {batch.misses} group misses"
    rate = batch.summary()["hit_rate"]
    return text + (f" ({100 * rate:.0f} % hit rate)" if rate is not None else "")


def progress_line(done, total, result):
    """Return the plain progress line of a finished file (when not on a terminal).

    Examples
    --------
    >>> progress_line(3, 40, FileResult("mlp.yaml", "certified", 0.5, laws=5))
    '[3/40] certified mlp.yaml 0.50 s'
    """
    if result.failed:
        return f"[{done}/{total}] failed {result.error}"
    return f"[{done}/{total}] {result.status} {result.file} {result.seconds:.2f} s"
