"""Search for polynomial conservation laws, and their exact verification.

A polynomial h is a conservation law of the fields V when ``grad h . X_j`` is the
zero polynomial for every X_j of V. Writing h as a combination of the monomials of
degree 1 to K with unknown coefficients makes this a linear system. Its null space
is found modulo a prime from the values of ``grad m . X_j`` at random points; each
basis vector is lifted to rationals and then verified exactly, so that a returned law
never rests on a floating-point or modular computation.

Examples
--------
>>> from algebra.fields import gradient_field
>>> from algebra.polynomial import Polynomial
>>> phi = Polynomial.from_terms({((0, 1), (1, 1)): 1})  # phi = x0 * x1
>>> [str(h) for h in find_polynomial_laws([gradient_field(phi, 2)], 2)]
['-x0**2 + x1**2']
"""

import itertools

import numpy as np

from algebra.polynomial import Polynomial
from algebra.rank import (
    PRIME,
    Echelon,
    mod_matmul,
    modular_nullspace,
    random_point,
    rational_reconstruction,
)

__all__ = [
    "find_polynomial_laws",
    "is_conserved",
    "monomials_up_to",
]

MAX_UNKNOWNS = 4000
FLOAT_SEARCH = 300


def monomials_up_to(variables, degree):
    """Return the monomials of degree 1 to `degree` in `variables`, low first."""
    monomials = []
    for total in range(1, degree + 1):
        for combo in itertools.combinations_with_replacement(variables, total):
            exps = {}
            for v in combo:
                exps[v] = exps.get(v, 0) + 1
            monomials.append(tuple(sorted(exps.items())))
    return monomials


def is_conserved(h, fields):
    """Return True when ``grad h . X`` is exactly zero for every field X."""
    gradient = {k: h.diff(k) for k in h.variables()}
    for X in fields:
        total = Polynomial()
        for k in gradient.keys() & X.components.keys():
            total = total + gradient[k] * X.components[k]
        if total:
            return False
    return True


def find_polynomial_laws(fields, dimension, degree=2, seed=0, monomials=None):
    """Find the polynomial conservation laws of `fields` up to a degree.

    Parameters
    ----------
    fields : sequence of VectorField
        The generators V on R^D.
    dimension : int
        D.
    degree : int
        The largest total degree searched (K).
    seed : int
        Seed of the random points.
    monomials : list, optional
        The monomials to search over; by default all those of degree 1 to
        `degree`.

    Returns
    -------
    list of Polynomial
        Laws verified exactly, independent as polynomials, in reduced form.

    Raises
    ------
    NotImplementedError
        When the number of unknown coefficients exceeds `MAX_UNKNOWNS`; search a
        lower degree or split the block.
    """
    if monomials is None:
        monomials = monomials_up_to(range(dimension), degree)
    if len(monomials) > MAX_UNKNOWNS:
        raise NotImplementedError(
            f"a degree-{degree} law search on {dimension} parameters has "
            f"{len(monomials)} unknowns (at most {MAX_UNKNOWNS}); "
            "search a lower degree or split the block"
        )

    if len(monomials) > FLOAT_SEARCH:
        laws = _float_candidates(fields, dimension, monomials, seed)
    else:
        kernel = _modular_kernel(fields, dimension, monomials, seed)
        laws = [_lift(row, monomials) for row in kernel]
    return [h for h in laws if h is not None and is_conserved(h, fields)]


def _float_candidates(fields, dimension, monomials, seed):
    """Candidate laws from a floating-point null space (fast path).

    Used for large searches: the null space comes from LAPACK, the candidates are
    rounded to small rationals, and the caller keeps only those verified exactly,
    so no returned law rests on floating point.
    """
    from algebra.sampled import _lift as lift_float
    from algebra.sampled import _monomial_gradients, _reduced_basis

    rng = np.random.default_rng(seed + 2)
    per_point = min(len(fields), dimension)
    rows = []
    for _ in range(2 * len(monomials) // max(per_point, 1) + 3):
        point = rng.normal(size=dimension)
        values = np.zeros((len(fields), dimension))
        for j, X in enumerate(fields):
            for i, p in X.components.items():
                values[j, i] = p.evaluate(point)
        mixing = rng.normal(size=(per_point + 2, len(fields)))
        rows.append((mixing @ values) @ _monomial_gradients(monomials, point).T)
    M = np.vstack(rows)
    scale = np.linalg.norm(M, axis=0) + 1e-300
    # A random compression to a few more rows than unknowns keeps the null space
    # (almost surely) and makes the SVD square.
    M = M / scale
    if len(M) > len(monomials) + 50:
        M = rng.normal(size=(len(monomials) + 50, len(M))) @ M
    _, sigma, vt = np.linalg.svd(M, full_matrices=False)
    tail = vt[np.sum(sigma > 1e-9 * sigma[0]) :] / scale
    return [lift_float(row, monomials) for row in _reduced_basis(tail)]


def _modular_kernel(fields, dimension, monomials, seed):
    """Return the null space, modulo PRIME, of the sampled linear system."""
    rng = np.random.default_rng(seed + 1)
    echelon = Echelon(len(monomials))
    stalled = 0
    while stalled < 3 and echelon.rank < len(monomials):
        point = random_point(dimension, int(rng.integers(2**31)))
        rows = _sampled_rows(fields, monomials, point, rng)
        before = echelon.rank
        echelon.add_many(rows)
        stalled = stalled + 1 if echelon.rank == before else 0
    return modular_nullspace(echelon.rows) if echelon.rank else np.eye(len(monomials))


def _sampled_rows(fields, monomials, point, rng):
    """Rows ``grad m(point) . X(point)`` for random combinations X of the fields."""
    if not fields:
        return np.zeros((0, len(monomials)))
    values = np.array([X.value_mod(point, PRIME) for X in fields])
    count = min(len(fields), values.shape[1] + 2)
    mixing = rng.integers(0, PRIME, size=(count, len(fields))).astype(float)
    combined = mod_matmul(mixing, values) if len(fields) > count else values
    return mod_matmul(
        combined, _monomial_gradients_mod(monomials, point, values.shape[1]).T
    )


def _monomial_gradients_mod(monomials, point, dimension):
    """Rows: the gradient of each monomial at `point`, modulo PRIME."""
    gradients = np.zeros((len(monomials), dimension))
    for k, mono in enumerate(monomials):
        for pos, (v, e) in enumerate(mono):
            value = e * pow(int(point[v]), e - 1, PRIME) % PRIME
            for w, f in mono[:pos] + mono[pos + 1 :]:
                value = value * pow(int(point[w]), f, PRIME) % PRIME
            gradients[k, v] = value
    return gradients


def _lift(row, monomials):
    """Lift a modular kernel vector to a polynomial with rational coefficients."""
    terms = {}
    for value, mono in zip(row, monomials, strict=True):
        if value:
            c = rational_reconstruction(int(value))
            if c is None:
                return None
            terms[mono] = c.numerator if c.denominator == 1 else c
    return Polynomial(terms)
