"""Search for conservation laws with logarithms of sums and differences.

Not every law is a polynomial: in a scalar two-block residual network one law is
``log((u + v) / (u - v)) / 2 + (u^2 + v^2) / 4 - (same in s, t)``. This search
widens the ansatz to combinations of the monomials of degree 1 and 2 and of
``log|theta_a|``, ``log|theta_a + theta_b|`` and ``log|theta_a - theta_b|``. As for
polynomial laws, coefficients come from the null space of sampled equations, are
lifted to small rationals, and each law is verified symbolically: ``grad h . X_j``
is a rational function that must cancel to 0.

Notes
-----
The ansatz grows as D^2, so the search runs only for families of at most
`MAX_DIMENSION` variables.

Examples
--------
>>> from algebra.fields import gradient_field
>>> from algebra.polynomial import Polynomial
>>> phi = Polynomial({((0, 2),): 1, ((1, 3),): 1})   # phi = x0^2 + x1^3
>>> [str(h) for h in find_log_laws([gradient_field(phi, 2)], 2, [])]
[]
"""

import itertools
from fractions import Fraction

import numpy as np
import sympy

__all__ = ["find_log_laws", "MAX_DIMENSION"]

MAX_DIMENSION = 8


def find_log_laws(fields, dimension, known, seed=0):
    """Find laws with logarithmic terms, independent of the `known` ones.

    Parameters
    ----------
    fields : sequence of VectorField
        The generators V (polynomial fields).
    dimension : int
        D.
    known : sequence of sympy.Expr
        Laws already found, in the symbols ``t0..t{D-1}``.
    seed : int
        Seed of the sampled points.

    Returns
    -------
    list of sympy.Expr
        New laws in the symbols ``t0..t{D-1}``, each verified symbolically.
    """
    if dimension > MAX_DIMENSION or not fields:
        return []
    t = sympy.symbols(f"t0:{dimension}")
    basis = _ansatz(t)
    rng = np.random.default_rng(seed + 5)
    rows = []
    while len(rows) < 3 * len(basis):
        point = rng.uniform(0.2, 3.0, size=dimension) * rng.choice([1, 1, 1], dimension)
        rows.extend(_equations(fields, basis, t, point))
    null = _null_space(np.array(rows))
    laws = list(known)
    for vector in null:
        h = _lift(vector, basis)
        if h is None or not h.has(sympy.log) or not _verify(h, fields, t):
            continue
        if _rank(laws + [h], t, rng) == len(laws) + 1:
            laws.append(h)
    return laws[len(known) :]


def _ansatz(t):
    terms = [m for m in _monomials(t)]
    terms += [sympy.log(s) for s in t]
    for a, b in itertools.combinations(t, 2):
        terms += [sympy.log(a + b), sympy.log(a - b)]
    return terms


def _monomials(t):
    yield from t
    for a, b in itertools.combinations_with_replacement(t, 2):
        yield a * b


def _equations(fields, basis, t, point):
    """Rows grad f(point) . X_j(point) over the basis functions f."""
    values = {s: float(p) for s, p in zip(t, point, strict=True)}
    gradients = np.array(
        [[float(sympy.diff(f, s).subs(values)) for s in t] for f in basis]
    )
    rows = []
    for X in fields:
        x = np.zeros(len(t))
        for i, p in X.components.items():
            x[i] = p.evaluate(point)
        rows.append(gradients @ x)
    return rows


def _null_space(M):
    scale = np.linalg.norm(M, axis=0) + 1e-300
    _, sigma, vt = np.linalg.svd(M / scale)
    null = vt[np.sum(sigma > 1e-9 * sigma[0]) :] / scale
    return _reduce(null)


def _reduce(null):
    A = null.copy()
    pivot = 0
    for col in reversed(range(A.shape[1])):
        if pivot == len(A):
            break
        best = pivot + int(np.argmax(np.abs(A[pivot:, col])))
        if abs(A[best, col]) < 1e-8:
            continue
        A[[pivot, best]] = A[[best, pivot]]
        A[pivot] /= A[pivot, col]
        others = np.arange(len(A)) != pivot
        A[others] -= np.outer(A[others, col], A[pivot])
        pivot += 1
    return A[:pivot]


def _lift(vector, basis):
    total = sympy.Integer(0)
    for value, f in zip(vector, basis, strict=True):
        if abs(value) < 1e-8:
            continue
        c = Fraction(value).limit_denominator(64)
        if abs(float(c) - value) > 1e-6:
            return None
        total += sympy.Rational(c.numerator, c.denominator) * f
    return total if total != 0 else None


def _verify(h, fields, t):
    for X in fields:
        total = sum(
            (sympy.diff(h, t[i]) * p.to_sympy(t) for i, p in X.components.items()),
            sympy.Integer(0),
        )
        if sympy.cancel(sympy.together(total)) != 0:
            return False
    return True


def _rank(laws, t, rng):
    point = {
        s: sympy.Rational(int(rng.integers(30, 90)), int(rng.integers(7, 29)))
        for s in t
    }
    rows = [[sympy.diff(h, s).subs(point) for s in t] for h in laws]
    return sympy.Matrix(rows).rank()
