"""Conservation laws of gradient flows: fields, brackets, ranks, laws, reports.

Examples
--------
>>> import algebra
>>> report = algebra.analyze({"custom": {"parameters": {"x": [2]}, "phi": ["x_0*x_1"]}})
>>> report.laws, report.status
(1, 'certified')
"""

import os

# The engine's matrix products are many and small (a few hundred rows): BLAS
# threads cost more to wake than they save, and on a busy machine they make such a
# product up to 70 times slower (measured on our 2-core machine). Use one thread
# unless the user chose otherwise; this acts only if numpy is not yet imported.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

from algebra.errors import ArchitectureError  # noqa: E402, ModelFileError, ProjectError
from algebra.report import BlockReport, Report  # noqa: E402

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
