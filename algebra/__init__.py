"""Conservation laws of gradient flows: fields, brackets, ranks, laws, reports.

Examples
--------
>>> import algebra
>>> report = algebra.analyze({"custom": {"parameters": {"x": [2]}, "phi": ["x_0*x_1"]}})
>>> report.laws, report.status
(1, 'certified')
"""

from algebra.errors import ArchitectureError, ModelFileError, ProjectError
from algebra.report import BlockReport, Report

__all__ = [
    "analyze",
    "Report",
    "BlockReport",
    "ProjectError",
    "ModelFileError",
    "ArchitectureError",
]


def __getattr__(name):
    # `analyze` is imported on first use: blocks/ imports algebra.errors, and an
    # eager import of algebra.analysis here would close an import cycle.
    if name == "analyze":
        from algebra.analysis import analyze

        return analyze
    raise AttributeError(f"module 'algebra' has no attribute {name!r}")
