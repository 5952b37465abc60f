"""Exceptions raised by the engine and the model-file reader.

Every exception also subclasses the matching builtin, so that callers may catch
either ours or the builtin.
"""

__all__ = [
    "ProjectError",
    "ModelFileError",
    "ArchitectureError",
    "CacheError",
    "ReadOnlyCacheError",
]


class ProjectError(Exception):
    """Base class of every error this project raises on purpose."""


class ModelFileError(ProjectError, ValueError):
    """A model file (or dict) is malformed: syntax, keys, types or sizes."""


class ArchitectureError(ProjectError, ValueError):
    """A well-formed model describes a network the engine cannot build."""


class CacheError(ProjectError, OSError):
    """The on-disk cache cannot be opened or written."""


class ReadOnlyCacheError(CacheError):
    """The cache directory cannot be written; a run may go on without the cache."""
