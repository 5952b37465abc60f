"""The on-disk cache of certified groups (diskcache).

Keys are canonical group signatures plus the engine version
(`algebra.analysis.group_key`), never file or layer names, so renaming layers or
moving a block to another file still hits. Values are `Certificate` objects. An
entry that cannot be read, or that is not a certificate, is dropped with a warning
and recomputed: the cache is never trusted blindly and never crashes a run.

diskcache writes each entry in one SQLite transaction, so an interrupted run
leaves either the whole entry or none of it.
"""

import os
import pathlib
import warnings

from algebra.certificate import Certificate
from algebra.errors import CacheError

__all__ = ["GroupCache", "default_cache_dir", "StaleCacheWarning"]


class StaleCacheWarning(UserWarning):
    """A cache entry was unreadable or of the wrong type and will be recomputed."""


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


class GroupCache:
    """A diskcache-backed store of certificates.

    Parameters
    ----------
    directory : str or pathlib.Path
        Where the cache lives; created when missing.

    Raises
    ------
    CacheError
        When the directory cannot be created or opened.
    """

    def __init__(self, directory):
        import diskcache

        self.directory = pathlib.Path(directory)
        try:
            self.store = diskcache.Cache(str(self.directory), timeout=60)
        except (OSError, diskcache.Timeout) as err:
            raise CacheError(
                f"cannot open the cache at {self.directory}: {err}"
            ) from err
        self.hits = 0
        self.misses = 0

    def get(self, key):
        """Return the certificate stored under `key`, or None."""
        try:
            value = self.store.get(key, default=None, retry=True)
        except Exception as err:  # an unreadable entry: pickle, sqlite, OS errors
            warnings.warn(
                f"cache entry {key[:12]} unreadable ({type(err).__name__}); "
                "recomputing it",
                StaleCacheWarning,
                stacklevel=2,
            )
            self._discard(key)
            return None
        if value is not None and not isinstance(value, Certificate):
            warnings.warn(
                f"cache entry {key[:12]} holds a {type(value).__name__}, not a "
                "certificate; recomputing it",
                StaleCacheWarning,
                stacklevel=2,
            )
            self._discard(key)
            value = None
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def set(self, key, value):
        """Store a certificate under `key`."""
        self.store.set(key, value, retry=True)

    def _discard(self, key):
        try:
            self.store.delete(key, retry=True)
        except Exception:  # noqa: BLE001 -- a broken entry must not stop the run
            pass

    def close(self):
        """Close the underlying store."""
        self.store.close()
