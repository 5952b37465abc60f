"""The on-disk cache of certified groups (diskcache), shared by processes.

Keys are canonical group signatures plus the engine version
(`algebra.analysis.group_key`), never file or layer names, so renaming layers or
moving a block to another file still hits. Values are certificates written in an
explicit, versioned JSON form behind a SHA-256 digest (`encode_certificate`): an
entry whose bytes do not match their digest, that does not decode, or that breaks
the certificate's own invariants is dropped with a `StaleCacheWarning` and
recomputed. The cache is never trusted blindly and never crashes a run.

Several processes may share one directory (parallel batch jobs, two batch runs,
Dask workers on a shared disk):

- diskcache writes each entry in one SQLite transaction, so an interrupted run
  leaves either the whole entry or none of it;
- a process that misses a key first takes a lease on it (an atomic ``add`` with
  an expiry); the others wait for the value instead of computing it again. A lease
  whose holder died on this host is broken at once; one held elsewhere expires
  after `LEASE_SECONDS`. A lease only saves work: a waiter that gives up computes
  the group itself, and both write the same value.

Examples
--------
>>> import tempfile
>>> from algebra.certificate import Certificate
>>> from algebra.polynomial import Polynomial
>>> law = Polynomial.from_terms({((0, 2),): 1, ((1, 2),): -1})  # x0^2 - x1^2
>>> cert = Certificate(2, 1, (law,), "certified", (1, 1), 1, True)
>>> decode_certificate(encode_certificate(cert)) == cert
True
>>> with tempfile.TemporaryDirectory() as directory:
...     with GroupCache(directory) as cache:
...         cache.set("0" * 64, cert)
...         cache.get("0" * 64) == cert, cache.entries()
(True, 1)
>>> decode_certificate(b"not a certificate")
Traceback (most recent call last):
...
ValueError: no certificate header
"""

import hashlib
import json
import logging
import os
import pathlib
import socket
import sqlite3
import sys
import threading
import time
import uuid
import warnings
from dataclasses import fields
from fractions import Fraction

from algebra.bilinear import LawFamily
from algebra.certificate import Certificate
from algebra.errors import CacheError, ReadOnlyCacheError
from algebra.polynomial import Polynomial

__all__ = [
    "GroupCache",
    "default_cache_dir",
    "encode_certificate",
    "decode_certificate",
    "StaleCacheWarning",
    "CacheWriteWarning",
    "LEASE_SECONDS",
    "print_wait_notice",
    "render_stats",
    "clear_cache",
    "encode_report",
    "decode_report",
]

FORMAT = b"algebra-certificate/1"
LEASE_PREFIX = "lease:"
META_PREFIX = "meta:"
REPORT_PREFIX = "report:"
REPORT_FORMAT = b"algebra-report/1"
RUN_KEY = META_PREFIX + "last-run"
LEASE_SECONDS = 300.0
WAIT_NOTICE_SECONDS = 2.0
_MISSING = object()
logger = logging.getLogger(__name__)


class StaleCacheWarning(UserWarning):
    """A cache entry was unreadable or invalid and will be recomputed."""


class CacheWriteWarning(UserWarning):
    """A result could not be written to the cache; the run goes on without it."""


def default_cache_dir():
    """Return the cache directory: ALGEBRA_CACHE_DIR, else ``cache/`` of the project.

    When the project's ``cache/`` folder is absent or not writable (an installed
    copy), ``~/.cache/algebra-cli`` is used.
    """
    if os.environ.get("ALGEBRA_CACHE_DIR"):
        return pathlib.Path(os.environ["ALGEBRA_CACHE_DIR"])
    project = pathlib.Path(__file__).resolve().parent.parent / "cache"
    if project.is_dir() and os.access(project, os.W_OK):
        return project
    return pathlib.Path.home() / ".cache" / "algebra-cli"


def encode_certificate(cert):
    """Write a certificate as bytes: a header with a SHA-256 digest, then JSON.

    Parameters
    ----------
    cert : Certificate
        Laws with int or Fraction coefficients.

    Returns
    -------
    bytes
        ``FORMAT``, a space, the hex digest of the body, a newline, the body.
    """
    content = {f.name: getattr(cert, f.name) for f in fields(Certificate)}
    if isinstance(cert.laws, LawFamily):
        content["laws"] = cert.laws.to_json()
    else:
        content["laws"] = [_encode_polynomial(law) for law in cert.laws]
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), default=_plain)
    body = text.encode()
    digest = hashlib.sha256(body).hexdigest().encode()
    return FORMAT + b" " + digest + b"\n" + body


def decode_certificate(data):
    """Read bytes written by `encode_certificate`, checking everything.

    Parameters
    ----------
    data : bytes
        The stored value.

    Returns
    -------
    Certificate

    Raises
    ------
    ValueError
        When the header, the digest, the JSON, the fields or the certificate's
        invariants are wrong.
    """
    if not isinstance(data, bytes):
        raise ValueError(f"holds a {type(data).__name__}, not certificate bytes")
    header, _, body = data.partition(b"\n")
    parts = header.split(b" ")
    if len(parts) != 2 or parts[0] != FORMAT:
        raise ValueError("no certificate header")
    if hashlib.sha256(body).hexdigest().encode() != parts[1]:
        raise ValueError("digest mismatch")
    try:
        content = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise ValueError(f"body is not JSON: {err}") from err
    return _certificate_from(content)


def encode_report(key, stored):
    """Write a whole analysis as bytes: a header with a SHA-256 digest, then JSON.

    Parameters
    ----------
    key : str
        Its key (`algebra.stored.report_key`), written into the body so that an
        entry moved under another key is refused.
    stored : StoredReport
        The report.

    Returns
    -------
    bytes
        ``REPORT_FORMAT``, a space, the hex digest of the body, a newline, the body.
    """
    content = {"key": key, "report": stored.to_data()}
    body = json.dumps(content, separators=(",", ":"), allow_nan=False).encode()
    digest = hashlib.sha256(body).hexdigest().encode()
    return REPORT_FORMAT + b" " + digest + b"\n" + body


def decode_report(data, key):
    """Read bytes written by `encode_report` under `key`, checking everything.

    Returns
    -------
    StoredReport

    Raises
    ------
    ValueError
        When the header, the digest, the JSON, the key or the report is wrong.
    """
    from algebra.stored import StoredReport

    if not isinstance(data, bytes):
        raise ValueError(f"holds a {type(data).__name__}, not report bytes")
    header, _, body = data.partition(b"\n")
    if header.split(b" ") != [REPORT_FORMAT, hashlib.sha256(body).hexdigest().encode()]:
        raise ValueError("no report header, or a digest mismatch")
    try:
        content = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise ValueError(f"body is not JSON: {err}") from err
    if not isinstance(content, dict) or set(content) != {"key", "report"}:
        raise ValueError("fields differ from this version's report entry")
    if content["key"] != key:
        raise ValueError("stored under another key")
    try:
        return StoredReport.from_data(content["report"])
    except (TypeError, KeyError, AttributeError, RecursionError) as err:
        raise ValueError(f"not a stored report ({type(err).__name__})") from err


def _encode_polynomial(law):
    terms = []
    for monomial, coefficient in sorted(law.terms.items()):
        exact = Fraction(coefficient)
        value = exact.numerator
        if exact.denominator != 1:
            value = [exact.numerator, exact.denominator]
        terms.append([[[int(v), int(e)] for v, e in monomial], value])
    return terms


def _plain(value):
    """Turn a numpy scalar into the Python number JSON can write."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot write a {type(value).__name__} in a certificate")


def _certificate_from(content):
    """Build and check a certificate from its decoded JSON object."""
    names = {f.name for f in fields(Certificate)}
    if not isinstance(content, dict) or set(content) != names:
        raise ValueError("fields differ from this version's certificate")

    values = dict(content)
    if isinstance(content["laws"], dict):
        values["laws"] = LawFamily.from_json(content["laws"])
    else:
        laws = _listed(content["laws"])
        values["laws"] = tuple(_polynomial_from(law) for law in laws)
    values["bounds"] = tuple(_listed(content["bounds"]))
    cert = Certificate(**values)
    _check_invariants(cert)
    return cert


def _listed(value):
    if not isinstance(value, list):
        raise ValueError(f"expected a list, got {type(value).__name__}")
    return value


def _polynomial_from(terms):
    decoded = {}
    for term in _listed(terms):
        if not isinstance(term, list) or len(term) != 2:
            raise ValueError("a term is not [monomial, coefficient]")
        monomial = tuple(_pair(p) for p in _listed(term[0]))
        decoded[monomial] = _coefficient(term[1])
    return Polynomial(decoded)


def _pair(value):
    if not (isinstance(value, list) and len(value) == 2 and all(map(_is_int, value))):
        raise ValueError("a monomial factor is not [variable, exponent]")
    return tuple(value)


def _coefficient(value):
    if _is_int(value) and value != 0:
        return value
    if isinstance(value, list) and len(value) == 2 and all(map(_is_int, value)):
        if value[0] != 0 and value[1] > 1:
            return Fraction(*value)
    raise ValueError(f"bad coefficient {value!r}")


def _is_int(value):
    return type(value) is int


def _check_invariants(cert):
    """Raise ValueError unless the certificate is consistent with itself."""
    counts = (cert.dimension, cert.lie_dim, cert.depth)
    if not all(_is_int(n) and n >= 0 for n in counts):
        raise ValueError("dimension, lie_dim and depth must be natural numbers")
    if not (cert.lie_dim <= cert.dimension and isinstance(cert.closed, bool)):
        raise ValueError("lie_dim exceeds the dimension")
    if not isinstance(cert.note, str) or cert.status not in ("certified", "bounds"):
        raise ValueError(f"bad status {cert.status!r}")
    if cert.bounds != (len(cert.laws), cert.dimension - cert.lie_dim):
        raise ValueError(f"bounds {cert.bounds} do not match the laws")
    if cert.status == "certified" and cert.bounds[0] != cert.bounds[1]:
        raise ValueError("certified with bounds that do not meet")
    if isinstance(cert.laws, LawFamily):
        cert.laws.check(cert.dimension)
        return
    for law in cert.laws:
        _check_law(law, cert.dimension)


def _check_law(law, dimension):
    if not law.terms:
        raise ValueError("a law is the zero polynomial")
    for monomial in law.terms:
        variables = [v for v, _ in monomial]
        if variables != sorted(set(variables)):
            raise ValueError("a monomial is not in canonical order")
        if any(not 0 <= v < dimension or e < 1 for v, e in monomial):
            raise ValueError("a monomial is outside the group's variables")


def is_entry_key(key):
    """Whether `key` names a certificate, not a lease or the last run's record."""
    prefixes = (LEASE_PREFIX, META_PREFIX, REPORT_PREFIX)
    return isinstance(key, str) and not key.startswith(prefixes)


class GroupCache:
    """A diskcache-backed store of certificates, safe to share between processes.

    Parameters
    ----------
    directory : str or pathlib.Path
        Where the cache lives; created when missing.
    lease_seconds : float
        How long a lease on a missing key lasts (see the module notes).
    on_wait : callable, optional
        Called once per key with (key, holder, seconds left) when a wait for
        another process's lease has lasted `WAIT_NOTICE_SECONDS` (a quarter of
        `lease_seconds` when that is shorter); `print_wait_notice` prints it.

    Raises
    ------
    ReadOnlyCacheError
        When the directory (or its database) cannot be written.
    CacheError
        When the directory cannot be created or opened for another reason.

    Notes
    -----
    `get` on a missing key takes a lease that `set` (or `release_leases`) gives
    back: a caller that misses must then compute and `set` the value. Leases are
    held per thread. Certificates this object has read (and checked) or written are
    kept in memory, so that the files of a batch that share a group decode it once.
    """

    def __init__(self, directory, lease_seconds=LEASE_SECONDS, on_wait=None):
        import diskcache

        self.directory = pathlib.Path(directory)
        self.lease_seconds = lease_seconds
        self.on_wait = on_wait
        try:
            self.store = diskcache.Cache(str(self.directory), timeout=60)
        except (OSError, sqlite3.Error, diskcache.Timeout) as err:
            raise _open_error(self.directory, err) from err
        self._write_failed = False
        self.hits = 0
        self.misses = 0
        self.report_hits = 0
        self.report_misses = 0
        self._local = threading.local()
        self._memory = {}  # certificates read or written by this object

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def get(self, key):
        """Return the certificate stored under `key`, or None after taking a lease.

        When another live process holds the lease, wait for its value (at most
        `lease_seconds`). An unreadable or invalid entry is deleted with a
        `StaleCacheWarning` and counts as missing.
        """
        value = self._memory.get(key) or self._read(key)
        if value is None:
            value = self._claim_or_wait(key)
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def set(self, key, value):
        """Store a certificate under `key` and give back the lease on it."""
        self._memory[key] = value
        try:
            self.store.set(key, encode_certificate(value), retry=True)
        except (OSError, sqlite3.Error, TypeError) as err:
            self._warn_write(f"cannot write cache entry {key[:12]}", err)
        self._release(LEASE_PREFIX + key)

    def get_report(self, key, view=None):
        """Return the whole analysis stored under `key` with `view`, or None.

        An unreadable or invalid entry is deleted with a `StaleCacheWarning`; an
        entry without `view` counts as missing but is kept (see `set_report`).
        """
        stored = self._read_report(key)
        if stored is None or (view is not None and stored.view(view) is None):
            self.report_misses += 1
            return None
        self.report_hits += 1
        return stored

    def set_report(self, key, stored):
        """Store a whole analysis under `key`, keeping the views stored before."""
        try:
            with self.store.transact(retry=True):
                before = self._read_report(key)
                if before is not None:
                    stored = before.merged(stored)
                value = encode_report(key, stored)
                self.store.set(REPORT_PREFIX + key, value, retry=True)
        except (OSError, sqlite3.Error, TypeError, ValueError) as err:
            self._warn_write(f"cannot write report {key[:12]}", err)

    def _warn_write(self, what, err):
        """Warn of a failed write, once per cache object (a read-only disk)."""
        if self._write_failed:
            return
        self._write_failed = True
        warnings.warn(
            f"{what} to {self.directory}: {err}; further writes are not reported",
            CacheWriteWarning,
            stacklevel=3,
        )

    def release_leases(self):
        """Give back every lease this thread holds (after a failed computation)."""
        for lease in list(self._held()):
            self._release(lease)

    def entries(self):
        """Return the number of certificates stored."""
        return sum(1 for key in self.store.iterkeys() if is_entry_key(key))

    def reports(self):
        """Return the number of whole analyses stored."""
        return sum(1 for key in self.store.iterkeys() if _is_report_key(key))

    def volume(self):
        """Return the size of the cache on disk, in bytes."""
        return self.store.volume()

    def clear(self):
        """Remove every entry, lease and statistic; return the number of entries.

        Certificates and whole analyses are counted.
        """
        count = self.entries() + self.reports()
        self.store.clear(retry=True)
        self._memory.clear()
        return count

    def record_run(self, summary):
        """Store the statistics of a run (a JSON-ready dict) as the last run."""
        try:
            self.store.set(RUN_KEY, json.dumps(summary), retry=True)
        except (OSError, sqlite3.Error) as err:
            warnings.warn(
                f"cannot record the run in {self.directory}: {err}",
                CacheWriteWarning,
                stacklevel=2,
            )

    def last_run(self):
        """Return the statistics stored by `record_run`, or None."""
        try:
            summary = json.loads(self.store.get(RUN_KEY, default="null"))
        except (TypeError, ValueError, OSError, sqlite3.Error):
            return None
        return summary if isinstance(summary, dict) else None

    def close(self):
        """Give back this thread's leases and close the underlying store."""
        self.release_leases()
        self.store.close()

    def _read(self, key):
        """Return the valid certificate under `key`, or None (dropping a bad one)."""
        try:
            data = self.store.get(key, default=_MISSING, retry=True)
        except Exception as err:  # noqa: BLE001 -- unpickling garbage raises anything
            self._drop(key, f"unreadable ({type(err).__name__}: {err})")
            return None
        if data is _MISSING:
            return None
        try:
            value = decode_certificate(data)
        except ValueError as err:
            self._drop(key, f"invalid ({err})")
            return None
        self._memory[key] = value
        return value

    def _read_report(self, key):
        """Return the valid report under `key`, or None (dropping a bad one)."""
        try:
            data = self.store.get(REPORT_PREFIX + key, default=_MISSING, retry=True)
        except Exception as err:  # noqa: BLE001 -- unpickling garbage raises anything
            self._drop(REPORT_PREFIX + key, f"unreadable ({type(err).__name__}: {err})")
            return None
        if data is _MISSING:
            return None
        try:
            return decode_report(data, key)
        except ValueError as err:
            self._drop(REPORT_PREFIX + key, f"invalid ({err})")
            return None

    def _drop(self, key, reason):
        warnings.warn(
            f"cache entry {key[:12]} in {self.directory} is {reason}; recomputing it",
            StaleCacheWarning,
            stacklevel=4,
        )
        try:
            self.store.delete(key, retry=True)
        except (OSError, sqlite3.Error):
            pass  # the next write replaces it anyway

    def _claim_or_wait(self, key):
        """Take the lease on `key` (return None), or return the holder's value."""
        lease = LEASE_PREFIX + key
        start = time.monotonic()
        notice = start + min(WAIT_NOTICE_SECONDS, self.lease_seconds / 4)
        delay = 0.005
        while True:
            if self._claim(lease):
                value = self._read(key)  # set while we were claiming
                if value is not None:
                    self._release(lease)
                return value
            value = self._read(key)
            now = time.monotonic()
            if value is not None or now > start + self.lease_seconds:
                return value
            if notice is not None and now > notice:
                self._announce_wait(key, lease, start + self.lease_seconds - now)
                notice = None
            time.sleep(delay)
            delay = min(2 * delay, 0.2)

    def _announce_wait(self, key, lease, left):
        """Say, once per key, which process this one waits for."""
        try:
            holder = self.store.get(lease, default=None)
        except (OSError, sqlite3.Error):
            holder = None
        logger.debug("waiting for %s, leased by %r", key[:12], holder)
        if self.on_wait is not None:
            self.on_wait(key, _describe_holder(holder), left)

    def _claim(self, lease):
        """Try to take a lease, breaking it first when its holder died.

        The token names the host, the pid and the process's start time, so that
        a lease whose pid now belongs to another process counts as abandoned.
        """
        pid = os.getpid()
        nonce = f"{uuid.uuid4().hex}@{_start_time(pid)}"
        token = f"{socket.gethostname()}\t{pid}\t{nonce}"
        try:
            with self.store.transact(retry=True):
                holder = self.store.get(lease, default=None)
                ours = holder is not None and holder == self._held().get(lease)
                if holder is not None and not ours and not _holder_died(holder):
                    return False
                self.store.set(lease, token, expire=self.lease_seconds)
        except (OSError, sqlite3.Error):
            return True  # no lease, no wait: compute it ourselves
        self._held()[lease] = token
        return True

    def _release(self, lease):
        token = self._held().pop(lease, None)
        if token is None:
            return
        try:
            with self.store.transact(retry=True):
                if self.store.get(lease, default=None) == token:
                    self.store.delete(lease)
        except (OSError, sqlite3.Error):
            pass  # the lease expires on its own

    def _held(self):
        if not hasattr(self._local, "held"):
            self._local.held = {}
        return self._local.held


def _is_report_key(key):
    return isinstance(key, str) and key.startswith(REPORT_PREFIX)


def _holder_died(holder):
    """Whether a lease's holder is a process of this host that no longer runs."""
    parts = holder.split("\t") if isinstance(holder, str) else []
    if len(parts) != 3 or not parts[1].isdigit():
        return True  # not a lease we wrote: treat it as abandoned
    if parts[0] != socket.gethostname():
        return False
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    # A start time unknown on either side (an older token, no /proc) proves nothing.
    started = parts[2].rpartition("@")[2] if "@" in parts[2] else ""
    now = _start_time(int(parts[1]))
    return bool(started and now) and started != now


def _start_time(pid):
    """Return when process `pid` started (clock ticks since boot), or "" unknown.

    Read from ``/proc/PID/stat`` on Linux; elsewhere "" (no reuse check).
    """
    try:
        text = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    fields_after_name = text.rpartition(")")[2].split()
    return fields_after_name[19] if len(fields_after_name) > 19 else ""


def _describe_holder(holder):
    """Return who holds a lease, for people: ``process 123 on host h``."""
    parts = holder.split("\t") if isinstance(holder, str) else []
    if len(parts) != 3:
        return "another process"
    return f"process {parts[1]} on host {parts[0]}"


def print_wait_notice(key, holder, left):
    """Print on stderr that a run waits for another process's cache lease.

    The callback `GroupCache` takes as ``on_wait``; the command line passes it.
    """
    print(
        f"waiting for cache entry {key[:12]}, leased by {holder} (computing it, "
        f"or stale); at most {left:.0f} s more, then computing it here",
        file=sys.stderr,
        flush=True,
    )


def _open_error(directory, err):
    """Return the error for a cache that cannot be opened: read-only or not."""
    if not _writable(directory):
        return ReadOnlyCacheError(f"the cache at {directory} is read-only ({err})")
    hint = ""
    if isinstance(err, sqlite3.DatabaseError):
        hint = "; delete that directory to start an empty cache"
    return CacheError(f"cannot open the cache at {directory}: {err}{hint}")


def _writable(directory):
    """Whether the cache at `directory` (or its nearest existing parent) is."""
    database = pathlib.Path(directory) / "cache.db"
    if database.exists():
        return os.access(database, os.W_OK) and os.access(directory, os.W_OK)
    path = pathlib.Path(directory).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return os.access(path, os.W_OK)


def render_stats(directory):
    """Describe the cache at `directory`: entries, size and the last batch run.

    Parameters
    ----------
    directory : str or pathlib.Path
        The cache directory; a missing one is described as empty, not created.

    Returns
    -------
    str
        One ``name: value`` line each for the directory, entries (group
        certificates and whole analyses), size and last run (``analyze`` or
        ``batch``: files, hits and lookups of reports and of groups, hit rate).
    """
    directory = pathlib.Path(directory)
    entries, reports, size, run = 0, 0, 0, None
    if directory.is_dir():
        with GroupCache(directory) as cache:
            entries, reports = cache.entries(), cache.reports()
            size, run = cache.volume(), cache.last_run()
    lines = [
        f"cache: {directory}",
        f"entries: {entries} group certificates, {reports} reports",
        f"size: {_human_size(size)}",
        f"last run: {_describe_run(run)}",
    ]
    return "\n".join(lines)


def clear_cache(directory):
    """Remove every entry of the cache at `directory`; return how many there were."""
    if not pathlib.Path(directory).is_dir():
        return 0
    with GroupCache(directory) as cache:
        return cache.clear()


def _human_size(size):
    for unit in ("bytes", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def _describe_run(run):
    """Say what a recorded run did, tolerating a record of another version.

    The hit rate counts the lookups of whole analyses (reports) and of groups.
    """
    try:
        files = run["files"]
        reports = (run.get("report_hits", 0), run.get("report_misses", 0))
        groups = (run["cache_hits"], run["cache_misses"])
        text = (
            f"{run.get('command', 'batch')} of {files} file{'s' * (files != 1)} "
            f"({run['failed']} failed) in {run['seconds']} s; "
            f"reports {reports[0]} hits / {sum(reports)} lookups, "
            f"groups {groups[0]} hits / {sum(groups)} lookups"
        )
        lookups = sum(reports) + sum(groups)
        if lookups:
            text += f", hit rate {100 * (reports[0] + groups[0]) / lookups:.1f} %"
        return f"{text}; finished {run['finished']}"
    except (TypeError, KeyError, AttributeError):
        return "none recorded"
