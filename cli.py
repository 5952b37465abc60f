"""The ``algebra-cli`` command: find and certify conservation laws of a network.

Only this module turns the project's errors into click exceptions: a malformed
model file prints one line and exits with status 2; other failures exit with 1.
"""

import json
import logging
import sys
import time
import warnings

import click

from algebra.errors import ArchitectureError, ModelFileError, ProjectError

__all__ = ["main"]

USAGE_ERRORS = (ModelFileError, ArchitectureError)


class InputError(click.UsageError):
    """A bad model file: one line, exit status 2, no usage text."""

    exit_code = 2

    def show(self, file=None):
        click.echo(f"Error: {self.format_message()}", err=True)


def _translate(err):
    """Turn one of our errors into the click exception that reports it."""
    if isinstance(err, USAGE_ERRORS):
        return InputError(str(err))
    return click.ClickException(str(err))


def _open_cache(cache_dir, no_cache):
    """Open the cache, or return None when it is bypassed or read-only.

    A read-only cache (a shared, write-protected directory) is not an error:
    the run warns once and goes on without it.
    """
    if no_cache:
        return None
    from algebra.cache import GroupCache, default_cache_dir, print_wait_notice
    from algebra.errors import ReadOnlyCacheError

    directory = cache_dir or default_cache_dir()
    try:
        return GroupCache(directory, on_wait=print_wait_notice)
    except ReadOnlyCacheError as err:
        click.echo(f"Warning: {err}; running without the cache", err=True)
        return None


def _check_cache_dir(ctx, param, value):
    """Refuse ``--cache-dir ""``, which would otherwise mean the default cache.

    An empty ALGEBRA_CACHE_DIR counts as unset (click and
    `algebra.cache.default_cache_dir` both skip it).
    """
    if value == "":
        raise InputError(
            "--cache-dir: got an empty path; expected a directory "
            "(or --no-cache to bypass the cache)"
        )
    return value


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log progress to stderr.")
@click.version_option(package_name="algebra-conservation")
def main(verbose):
    """Find, count and certify the conservation laws of gradient flows."""
    if verbose:
        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
    warnings.simplefilter("default")


def search_options(command):
    """Add --degree and --seed, shared by the commands that run the engine."""
    command = click.option(
        "--seed",
        type=click.IntRange(0, 2**32 - 1),
        default=0,
        show_default=True,
        help="Seed of the random points.",
    )(command)
    return click.option(
        "--degree",
        type=click.IntRange(1, 6),
        default=2,
        show_default=True,
        help="Largest degree of the polynomial law search.",
    )(command)


_cache_dir_option = click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    envvar="ALGEBRA_CACHE_DIR",
    callback=_check_cache_dir,
    help="Cache directory (default: cache/ of the project, or ALGEBRA_CACHE_DIR).",
)


def cache_options(command):
    """Add --cache-dir and --no-cache to a command."""
    command = click.option(
        "--no-cache", is_flag=True, help="Neither read nor write the cache."
    )(command)
    return _cache_dir_option(command)


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "latex"]),
    default="text",
    show_default=True,
    help="text for people, json for programs, latex for papers.",
)
@search_options
@click.option("--all-laws", is_flag=True, help="Print every law in text format.")
@click.option(
    "--global",
    "whole",
    is_flag=True,
    help="Also analyse the whole network as one block (small networks) and "
    "report the laws that the blocks miss.",
)
@click.option(
    "--positive",
    is_flag=True,
    help="With --global: take the point with every parameter positive.",
)
@cache_options
def analyze(model, fmt, degree, seed, all_laws, whole, positive, cache_dir, no_cache):
    """Find and certify the conservation laws of MODEL (a YAML model file).

    The finished analysis is cached whole (except with --global): a second run
    on the same model, degree and seed prints it back without analysing.
    """
    start = time.perf_counter()
    try:
        cache = _open_cache(cache_dir, no_cache)
    except ProjectError as err:
        raise _translate(err) from err
    try:
        if whole:
            _analyze_whole(model, fmt, degree, seed, all_laws, positive, cache)
        else:
            view = "text-all" if fmt == "text" and all_laws else fmt
            _analyze_stored(model, view, degree, seed, cache)
    finally:
        if cache is not None:
            _record_analyze(cache, time.perf_counter() - start)
            cache.close()


def _analyze_stored(model, view, degree, seed, cache):
    """Print one view of MODEL's analysis, from the cache when it is there."""
    from algebra.stored import analyze_stored

    try:
        stored = analyze_stored(model, view, degree, seed, cache, _progress())
    except (ProjectError, NotImplementedError) as err:
        raise _translate(err) from err
    click.echo(stored.output(view))


def _analyze_whole(model, fmt, degree, seed, all_laws, positive, cache):
    """Print the block analysis and the whole-network analysis (not cached)."""
    from algebra.output import render_latex, render_text, render_whole
    from algebra.whole import analyze_whole

    try:
        result = analyze_whole(model, degree, seed, positive, cache)
    except (ProjectError, NotImplementedError) as err:
        raise _translate(err) from err

    report = result.report
    if fmt == "json":
        data = report.to_dict()
        data["global"] = result.to_dict()
        click.echo(json.dumps(data, indent=2))
    elif fmt == "latex":
        click.echo(render_latex(report))
    else:
        click.echo(render_text(report, all_laws=all_laws))
        click.echo(render_whole(result))


def _record_analyze(cache, seconds):
    """Store this run's lookups, for ``cache stats``."""
    found = cache.report_hits + cache.hits
    lookups = found + cache.report_misses + cache.misses
    failed = int(sys.exc_info()[0] is not None)
    cache.record_run(
        {
            "command": "analyze",
            "files": 1,
            "failed": failed,
            "seconds": round(seconds, 3),
            "cache_hits": cache.hits,
            "cache_misses": cache.misses,
            "report_hits": cache.report_hits,
            "report_misses": cache.report_misses,
            "hit_rate": round(found / lookups, 4) if lookups else None,
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
    )


def _progress():
    """Return a progress callback that writes to stderr on a terminal."""
    if not sys.stderr.isatty():
        return None

    def report(k, count, name):
        click.echo(f"\r[{k + 1}/{count}] {name[:60]:<60}", err=True, nl=False)
        if k + 1 == count:
            click.echo("\r" + " " * 72 + "\r", err=True, nl=False)

    return report


class SeveralValuesCommand(click.Command):
    """A command whose ``--lr`` takes several values: ``--lr 1e-3 3e-3 1e-2``."""

    several = ("--lr",)

    def parse_args(self, ctx, args):
        """Rewrite ``--lr a b c`` as ``--lr a --lr b --lr c``, then parse."""
        rewritten, current = [], None
        for arg in args:
            if current is not None and _is_number(arg):
                rewritten.extend([current, arg])
                continue
            current = arg if arg in self.several else None
            if current is None:
                rewritten.append(arg)
        if current is not None:
            rewritten.append(current)
        return super().parse_args(ctx, rewritten)


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


@main.command(cls=SeveralValuesCommand)
@click.argument("model", type=click.Path(dir_okay=False))
@click.option(
    "--optimizer",
    type=click.Choice(["sgd", "gd", "momentum", "adam"]),
    default="sgd",
    show_default=True,
    help="gd uses every sample at each step; sgd, momentum and adam draw a batch.",
)
@click.option(
    "--lr",
    "learning_rates",
    type=click.FloatRange(min=0, min_open=True),
    multiple=True,
    help="Learning rates, one or several: --lr 1e-4 3e-4 1e-3 (the default).",
)
@click.option("--steps", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--batch", type=click.IntRange(1), default=32, show_default=True)
@click.option("--seeds", type=click.IntRange(1, 1000), default=3, show_default=True)
@click.option(
    "--samples",
    type=click.IntRange(1, 10_000_000),
    default=256,
    show_default=True,
    help="Synthetic samples (ignored with --data).",
)
@click.option(
    "--loss",
    type=click.Choice(["squared", "cross_entropy"]),
    default="squared",
    show_default=True,
)
@click.option(
    "--weight-decay",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="lambda; also reports the drift of exp(p lambda t) h.",
)
@click.option(
    "--data",
    type=click.Path(exists=True, dir_okay=False),
    help="An .npz file with arrays X and y instead of synthetic data.",
)
@click.option("--plot", type=click.Path(dir_okay=False), help="Write a PNG here.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
)
@click.option(
    "--backend",
    type=click.Choice(["auto", "numpy", "torch"]),
    default="auto",
    show_default=True,
    help="auto trains with torch when it is installed, else numpy.",
)
@cache_options
def drift(model, learning_rates, fmt, plot, cache_dir, no_cache, **settings):
    """Train MODEL with finite steps and measure how far its laws drift."""
    from algebra.drift import DEFAULT_LEARNING_RATES, DataError, measure_drift

    if plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise InputError(
                "--plot needs matplotlib: pip install -e '.[plot]'"
            ) from None
    try:
        report = measure_drift(
            model,
            learning_rates=learning_rates or DEFAULT_LEARNING_RATES,
            cache=_open_cache(cache_dir, no_cache),
            **settings,
        )
    except DataError as err:
        raise InputError(str(err)) from err
    except (ProjectError, NotImplementedError, ImportError) as err:
        raise _translate(err) from err

    click.echo(report.to_json() if fmt == "json" else report.to_text())
    if plot:
        from algebra.drift import plot_drift

        try:
            plot_drift(report, plot)
        except ImportError as err:
            raise click.ClickException(str(err)) from err


@main.command()
@click.argument("files", nargs=-1, required=True)
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Worker processes on this machine.",
)
@click.option(
    "--out",
    type=click.File("w", lazy=False),
    help="Write one JSON line per file here, with its full report.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text: a summary table; json: the summary as one JSON object.",
)
@search_options
@click.option(
    "--scheduler",
    metavar="ADDRESS",
    help="Send the files to this Dask distributed scheduler (tcp://host:port).",
)
@cache_options
def batch(files, jobs, out, fmt, degree, seed, scheduler, cache_dir, no_cache):
    """Analyse every model file in FILES (paths, directories or globs).

    Each certified group is computed once and read from the cache by every other
    file that holds it. A file that fails is reported and the batch goes on; the
    exit status is 1 when any file failed.
    """
    from algebra.batch import BatchSettings, expand_paths, render_summary, run_batch
    from algebra.cache import default_cache_dir

    if scheduler and jobs > 1:
        raise click.UsageError("give --jobs or --scheduler, not both")
    directory = None if no_cache else str(cache_dir or default_cache_dir())
    settings = BatchSettings(
        degree, seed, directory, keep_reports=out is not None, announce_waits=True
    )
    try:
        paths = expand_paths(files)
        result = run_batch(paths, settings, jobs, scheduler, _batch_listener(out))
    except (ProjectError, NotImplementedError, ConnectionError) as err:
        raise _translate(err) from err

    if fmt == "json":
        records = [r.to_record(report=False) for r in result.results]
        click.echo(json.dumps({"files": records, "summary": result.summary()}))
    else:
        click.echo(render_summary(result))
    if result.failed:
        raise click.exceptions.Exit(1)


def _batch_listener(out):
    """Return what runs as each file ends: its --out line and the progress."""
    from algebra.batch import progress_line

    bars = []

    def listen(done, total, result):
        if out is not None:
            out.write(json.dumps(result.to_record()) + "\n")
            out.flush()
        if not sys.stderr.isatty():
            click.echo(progress_line(done, total, result), err=True)
            return
        if not bars:
            bars.append(click.progressbar(length=total, file=sys.stderr, label="batch"))
        bars[0].update(1, current_item=result.file)
        if done == total:
            bars[0].render_finish()

    return listen


@main.group("cache")
def cache_group():
    """Inspect or empty the on-disk cache of certified groups."""


@cache_group.command("stats")
@_cache_dir_option
def cache_stats(cache_dir):
    """Print the entries, size and hit rate of the last analyze or batch run."""
    from algebra.cache import default_cache_dir, render_stats

    try:
        click.echo(render_stats(cache_dir or default_cache_dir()))
    except ProjectError as err:
        raise _translate(err) from err


@cache_group.command("clear")
@_cache_dir_option
def cache_clear(cache_dir):
    """Remove every entry of the cache."""
    from algebra.cache import clear_cache, default_cache_dir

    directory = cache_dir or default_cache_dir()
    try:
        count = clear_cache(directory)
    except ProjectError as err:
        raise _translate(err) from err
    click.echo(f"removed {count} entr{'y' if count == 1 else 'ies'} from {directory}")
