"""Lie brackets of polynomial vector fields, expanded exactly and memoized.

Convention: ``[X, Y](theta) = DY(theta) X(theta) - DX(theta) Y(theta)``, so that
``[X, Y]_i = sum_k X_k d_k Y_i - Y_k d_k X_i`` (DESIGN.md section 2, item 2). The
bracket is antisymmetric and bilinear and satisfies the Jacobi identity.

Examples
--------
>>> from algebra.fields import VectorField
>>> from algebra.polynomial import Polynomial
>>> x0, x1 = Polynomial.variable(0), Polynomial.variable(1)
>>> X = VectorField({0: x1}, 2)          # x1 d/dx0
>>> Y = VectorField({1: x0}, 2)          # x0 d/dx1
>>> lie_bracket(X, Y).components
{0: -x0, 1: x1}
>>> lie_bracket(X, "x0")
Traceback (most recent call last):
...
TypeError: lie_bracket takes two VectorField objects; got str

References
----------
Marcotte, Gribonval, Peyre, "Abide by the law and follow the flow", NeurIPS 2023,
arXiv 2307.00144, section 3.
"""

from algebra.fields import VectorField
from algebra.polynomial import Polynomial

__all__ = ["lie_bracket", "BracketTable"]


def lie_bracket(X, Y):
    """Compute the Lie bracket ``[X, Y] = DY X - DX Y`` of two vector fields.

    Parameters
    ----------
    X, Y : VectorField
        Fields on the same space.

    Returns
    -------
    VectorField
        The bracket, expanded exactly.

    Raises
    ------
    TypeError
        When an argument is not a `VectorField`.
    """
    for field in (X, Y):
        if not isinstance(field, VectorField):
            raise TypeError(
                f"lie_bracket takes two VectorField objects; got {type(field).__name__}"
            )

    components = {}
    for i in set(X.components) | set(Y.components):
        Yi = Y.components.get(i, Polynomial())
        Xi = X.components.get(i, Polynomial())
        components[i] = X.apply(Yi) - Y.apply(Xi)
    return VectorField(components, max(X.dimension, Y.dimension))


class BracketTable:
    """A memo of Lie brackets, keyed by the canonical form of both fields.

    Brackets are computed once per unordered pair; ``[Y, X]`` is read as
    ``-[X, Y]``. Values are immutable `VectorField` objects.

    Examples
    --------
    >>> from algebra.polynomial import Polynomial
    >>> table = BracketTable()
    >>> X = VectorField({0: Polynomial.variable(1)}, 2)
    >>> Y = VectorField({1: Polynomial.variable(0)}, 2)
    >>> table.bracket(X, Y) == table.bracket(X, Y), table.computed
    (True, 1)
    """

    def __init__(self):
        self._memo = {}
        self.computed = 0

    def bracket(self, X, Y):
        """Return ``[X, Y]``, from the memo when it holds it."""
        if (Y.key, X.key) in self._memo:
            negated = self._memo[(Y.key, X.key)]
            return VectorField(
                {i: -p for i, p in negated.components.items()}, negated.dimension
            )

        value = self._memo.get((X.key, Y.key))
        if value is None:
            value = lie_bracket(X, Y)
            self._memo[(X.key, Y.key)] = value
            self.computed += 1
        return value
