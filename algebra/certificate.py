"""Certify the number of conservation laws of a family of polynomial fields.

Two bounds meet in a certificate (DESIGN.md section 2, item 3):

- the rank r of Lie(V) at a random point, exact modulo a prime, gives
  ``N <= D - r``;
- m laws verified exactly and independent at a point give ``N >= m``.

When ``m == D - r`` the count is certified; otherwise the interval ``[m, D - r]``
is reported.

Examples
--------
>>> from algebra.fields import gradient_field
>>> from algebra.polynomial import Polynomial
>>> phi = Polynomial.from_terms({((0, 1), (1, 1), (2, 1)): 1})  # x0 x1 x2
>>> result = certify([gradient_field(phi, 3)], 3)
>>> result.status, result.bounds, len(result.laws)
('certified', (2, 2), 2)
"""

from dataclasses import dataclass

import numpy as np

from algebra.compiled import FieldSet
from algebra.laws import find_polynomial_laws
from algebra.rank import PRIME, Echelon, random_point
from algebra.trace import trace_dimension

__all__ = ["Certificate", "certify", "select_independent"]


@dataclass(frozen=True)
class Certificate:
    """The analysis of one family of fields on R^D.

    Attributes
    ----------
    dimension : int
        D.
    lie_dim : int
        The rank r of Lie(V) at a random point (exact modulo a prime).
    laws : tuple of Polynomial
        Independent laws, each verified exactly.
    status : str
        ``certified`` when ``len(laws) == D - lie_dim``, else ``bounds``.
    bounds : tuple of int
        ``(len(laws), D - lie_dim)``.
    depth : int
        The deepest bracket that raised the rank.
    closed : bool
        Whether the bracket closure finished.
    note : str
        How the ends were obtained, for the report.
    """

    dimension: int
    lie_dim: int
    laws: tuple
    status: str
    bounds: tuple
    depth: int
    closed: bool
    note: str = ""


def certify(fields, dimension, degree=2, seed=0, monomials=None):
    """Bound and, where the bounds meet, certify the number of laws.

    Parameters
    ----------
    fields : sequence of VectorField, or FieldSet
        The generators V on R^D (the gradients of phi).
    dimension : int
        D.
    degree : int
        The largest degree of the polynomial law search.
    seed : int
        Seed of every random point, so that results repeat.
    monomials : list, optional
        Restrict the law search to these monomials (a large block's support).

    Returns
    -------
    Certificate
    """
    if not isinstance(fields, FieldSet):
        fields = FieldSet.from_fields(fields, dimension)
    laws, note = (), "exact rank modulo a prime; laws verified exactly"
    try:
        found = find_polynomial_laws(fields, dimension, degree, seed, monomials)
        found = [h.primitive() for h in found]
        laws = tuple(select_independent(found, dimension, seed))
    except NotImplementedError as err:
        note = f"law search skipped: {err}"
    # The rank cannot exceed D - len(laws): the closure stops there.
    trace = trace_dimension(fields, seed=seed, target=dimension - len(laws))
    upper = dimension - trace.rank
    lower = len(laws)
    status = "certified" if lower == upper else "bounds"
    if status == "bounds" and not note.startswith("law search skipped"):
        note = (
            f"no polynomial law of degree <= {degree} beyond those found; the "
            "upper end comes from the exact rank"
        )
    return Certificate(
        dimension,
        trace.rank,
        laws,
        status,
        (lower, upper),
        trace.depth,
        trace.closed,
        note,
    )


def select_independent(laws, dimension, seed=0):
    """Keep, in order, the laws whose gradients raise the rank at a random point.

    The kept laws are independent near a generic point: their gradients have full
    rank at one point modulo a prime, hence over Q, hence generically.
    """
    point = random_point(dimension, seed + 7)
    echelon = Echelon(dimension)
    kept = []
    for h in laws:
        gradient = np.zeros(dimension)
        for v in h.variables():
            gradient[v] = h.diff(v).evaluate_mod(point, PRIME)
        if echelon.add(gradient):
            kept.append(h)
    return kept
