"""Certify blocks from sampled gradients of their output, for non-polynomial phi.

When g(theta, x) is not polynomial in x (analytic activations, normalization,
softmax), W(theta) is still the span over inputs x of ``grad_theta g_k(theta, x)``
(DESIGN.md section 2, item 1). At a random point theta:

- upper end: the rank r of gradients sampled over random inputs, N <= D - r. The
  rank is taken in floating point and trusted only with a margin: the r-th
  singular value must exceed ``MARGIN`` times the largest one, a million times
  above the rounding error of the evaluation (Weyl's inequality then keeps the
  true rank at least r); the next one must be at rounding level;
- lower end: polynomial laws found from the null space of sampled equations
  ``grad h(theta_t) . grad_theta g_k(theta_t, x_s) = 0``, lifted to small rationals
  and then verified symbolically: ``grad h . grad_theta g_k`` simplifies to 0.

Brackets are not taken on this path, so the bounds meet only when the laws reach
``D - r``.

Examples
--------
>>> import sympy
>>> from blocks.symbolic import BlockModel
>>> a, b, x = sympy.symbols("a b x")
>>> cert = certify_sampled(BlockModel([a, b], [x], [b * sympy.tanh(a * x)]))
>>> cert.status, cert.lie_dim, len(cert.laws)
('certified', 2, 0)
"""

import math
from fractions import Fraction

import numpy as np
import sympy

from algebra.certificate import Certificate, select_independent
from algebra.laws import monomials_up_to
from algebra.polynomial import Polynomial

__all__ = ["certify_sampled", "MARGIN"]

MARGIN = 1e-7
# Mixed-degree law search only up to this many monomials.
MIXED_SEARCH = 1500
# Sampled gradients whose largest singular value is below this (per entry) are noise.
NOISE = 1e-9
ROUNDING = 1e-11


def certify_sampled(model, degree=2, seed=0):
    """Bound and certify the laws of a block from its sampled gradients.

    Parameters
    ----------
    model : BlockModel
        g(theta, x) as sympy expressions.
    degree : int
        Largest degree of the polynomial law search.
    seed : int
        Seed of the random points and inputs.

    Returns
    -------
    Certificate
        Laws as polynomials in the block's variables (the order of
        ``model.parameters``).
    """
    D = len(model.parameters)
    try:
        gradient = _compiled_gradient(model)
    except Exception as err:  # noqa: BLE001 -- sympy printers raise many types
        note = (
            f"g cannot be compiled to numpy ({type(err).__name__}); nothing certified"
        )
        return Certificate(D, 0, (), "bounds", (0, D), 0, False, note)
    try:
        rng = np.random.default_rng(seed)
        # A positive point keeps sqrt and log of parameters defined.
        theta = np.abs(rng.normal(size=D)) + 0.1
        count = max(3 * D, 24)
        with np.errstate(all="ignore"):
            rows = _sampled_gradients(gradient, theta, len(model.inputs), count, rng)
        if not np.all(np.isfinite(rows)):
            raise FloatingPointError("gradients are not finite at the point")
        rank, clear = _rank_with_margin(rows)
    except (
        FloatingPointError,
        np.linalg.LinAlgError,
        TypeError,
        ValueError,
        NameError,
    ) as err:
        note = f"sampled gradients unavailable ({err}); nothing certified"
        return Certificate(D, 0, (), "bounds", (0, D), 0, False, note)

    laws = ()
    if rank < D:
        with np.errstate(all="ignore"):
            try:
                found = _search_laws(model, gradient, degree, D - rank, rng, seed)
            except np.linalg.LinAlgError:
                found = []
        laws = tuple(found)
    status = "certified" if clear and len(laws) == D - rank else "bounds"
    note = "floating rank of sampled gradients, trusted with a margin of "
    note += f"{MARGIN:g}" if clear else "NO clear margin (not certified)"
    if clear and len(laws) < D - rank:
        note += (
            f"; no polynomial law of degree <= {degree} beyond the {len(laws)} found"
        )
    return Certificate(D, rank, laws, status, (len(laws), D - rank), 1, True, note)


def _compiled_gradient(model):
    """Return f(theta, x) -> Jacobian of the outputs w.r.t. theta (numpy)."""
    jacobian = sympy.Matrix(model.outputs).jacobian(model.parameters)
    modules = [{"erf": np.vectorize(math.erf), "Max": np.maximum}, "numpy"]
    function = sympy.lambdify(
        (model.parameters, model.inputs), jacobian, modules=modules, cse=True
    )
    return lambda theta, x: np.asarray(function(theta, x), dtype=float)


def _sampled_gradients(gradient, theta, inputs, count, rng):
    """Stack grad_theta g_k(theta, x_s) over random inputs x_s."""
    blocks = [gradient(theta, rng.normal(size=inputs)) for _ in range(count)]
    return np.vstack(blocks)


def _rank_with_margin(rows):
    """Return (rank, whether the gap between kept and dropped values is clear)."""
    sigma = np.linalg.svd(rows, compute_uv=False)
    if sigma.size == 0 or sigma[0] == 0:
        return 0, True
    if sigma[0] < NOISE * math.sqrt(rows.size):
        # Gradients at the level of rounding (a width-2 layernorm, a phi that is 0
        # in disguise): no relative margin can tell their rank; never certify.
        return 0, False
    relative = sigma / sigma[0]
    rank = int(np.sum(relative > math.sqrt(MARGIN * ROUNDING)))
    clear = relative[rank - 1] >= MARGIN and (
        rank == len(relative) or relative[rank] <= ROUNDING
    )
    return rank, bool(clear)


def _search_laws(model, gradient, degree, wanted, rng, seed):
    """Find verified, independent polynomial laws, lowest degree first.

    Each homogeneous degree is searched on its own, so that a law of low degree is
    not mixed with products of others, then (if laws are still missing) all
    degrees together; candidates are kept when they raise the rank of the laws'
    gradients, and only then verified symbolically.
    """
    D = len(model.parameters)
    mixed = monomials_up_to(range(D), degree)
    searches = [
        [m for m in mixed if sum(e for _, e in m) == total]
        for total in range(1, degree + 1)
    ]
    # A law may mix degrees (b^2 - 2a for phi = exp(a) b).
    if degree > 1 and len(mixed) <= MIXED_SEARCH:
        searches.append(mixed)
    laws = []
    shape = (D, len(model.inputs))
    for monomials in searches:
        for h in _homogeneous_candidates(gradient, monomials, shape, rng):
            kept = select_independent(laws + [h], D, seed)
            if len(kept) == len(laws) + 1 and _verify(h, model):
                laws.append(h)
            if len(laws) == wanted:
                return laws
    return laws


def _homogeneous_candidates(gradient, monomials, shape, rng):
    """Lift the null space of sampled equations on `monomials` to rationals."""
    dimension, inputs = shape
    equations, count = [], 0
    while count < 2 * len(monomials) + 20:
        theta = np.abs(rng.normal(size=dimension)) + 0.1
        J = gradient(theta, rng.normal(size=inputs))
        equations.append(J @ _monomial_gradients(monomials, theta).T)
        count += len(equations[-1])
    M = np.vstack(equations)
    scale = np.linalg.norm(M, axis=0) + 1e-300

    # Columns are scaled to unit norm for the SVD, and scaled back after.
    _, sigma, vt = np.linalg.svd(M / scale)
    null = vt[np.sum(sigma > 1e-9 * sigma[0]) :] / scale
    lifted = (_lift(row, monomials) for row in _reduced_basis(null))
    return [h.primitive() for h in lifted if h is not None]


def _monomial_gradients(monomials, theta):
    """Rows: the gradient of each monomial at theta."""
    G = np.zeros((len(monomials), len(theta)))
    for k, mono in enumerate(monomials):
        for pos, (v, e) in enumerate(mono):
            value = e * theta[v] ** (e - 1)
            for w, f in mono[:pos] + mono[pos + 1 :]:
                value *= theta[w] ** f
            G[k, v] = value
    return G


def _reduced_basis(null):
    """Row-reduce a basis of the null space so that entries become small rationals."""
    if not len(null):
        return []
    A = null.copy()
    rows, pivot_row = A.shape[0], 0
    for col in range(A.shape[1]):
        if pivot_row == rows:
            break
        best = pivot_row + int(np.argmax(np.abs(A[pivot_row:, col])))
        if abs(A[best, col]) < 1e-8:
            continue
        A[[pivot_row, best]] = A[[best, pivot_row]]
        A[pivot_row] /= A[pivot_row, col]
        others = np.arange(rows) != pivot_row
        A[others] -= np.outer(A[others, col], A[pivot_row])
        pivot_row += 1
    return A[:pivot_row]


def _lift(row, monomials):
    """Round a reduced null vector to rationals (None if it does not round)."""
    terms = {}
    for value, mono in zip(row, monomials, strict=True):
        if abs(value) < 1e-8:
            continue
        c = Fraction(value).limit_denominator(64)
        if abs(float(c) - value) > 1e-6:
            return None
        terms[mono] = c.numerator if c.denominator == 1 else c
    return Polynomial(terms) if terms else None


def _verify(h, model):
    """Check symbolically that grad h . grad_theta g_k is 0 for every output k."""
    expr = h.to_sympy(model.parameters)
    grad = [sympy.diff(expr, p) for p in model.parameters]
    for g in model.outputs:
        total = sum(
            (
                a * sympy.diff(g, p)
                for a, p in zip(grad, model.parameters, strict=True)
                if a != 0
            ),
            sympy.Integer(0),
        )
        if sympy.simplify(total) != 0:
            return False
    return True
