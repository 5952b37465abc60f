"""Search for polynomial conservation laws, and their exact verification.

A polynomial h is a conservation law of the fields V when ``grad h . X_j`` is the
zero polynomial for every X_j of V. Writing h as a combination of the monomials of
degree 1 to K with unknown coefficients makes this a linear system, and its
equations are the coefficients of ``grad m . X_j`` (one per field j and monomial of
the product): exact, sparse, and built for all unknowns at once with term arrays
(`algebra.compiled`). Unknowns that share no equation are independent, so the system
splits into connected components, usually of a few unknowns each, and each one's
null space is taken modulo a prime. Each basis vector is lifted to rationals and
then verified exactly, so that a returned law never rests on a modular computation.

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

from algebra.compiled import (
    FieldSet,
    TermArray,
    conservation_residuals,
)
from algebra.polynomial import Polynomial
from algebra.rank import MAX_DOT, PRIME, modular_nullspace, rational_reconstruction

__all__ = [
    "find_polynomial_laws",
    "is_conserved",
    "monomials_up_to",
]

MAX_UNKNOWNS = 20_000
# Above this many fields per unknown, the search first uses a subset of fields.
SUBSET_FACTOR = 4


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
    fields : sequence of VectorField, or FieldSet
        The generators V on R^D.
    dimension : int
        D.
    degree : int
        The largest total degree searched (K).
    seed : int
        Kept for the signature; the system is exact, not sampled.
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
    if not isinstance(fields, FieldSet):
        fields = FieldSet.from_fields(fields, dimension)
    if fields.count > SUBSET_FACTOR * len(monomials):
        # Many more fields than unknowns (a deep ReLU network's path products): solve
        # with a random subset of the fields. Its solutions include every law; when
        # each of them is conserved by all the fields, they are exactly the laws.
        subset = fields.modular.select(
            _field_subset(fields, SUBSET_FACTOR * len(monomials), seed), dimension
        )
        laws = [_lift(row, monomials) for row in _kernel(subset, monomials)]
        if all(h is not None and _verified(h, fields) for h in laws):
            return laws
    laws = [_lift(row, monomials) for row in _kernel(fields.modular, monomials)]
    return [h for h in laws if h is not None and _verified(h, fields)]


def _field_subset(fields, size, seed, cover=8):
    """Random fields: `size` of them, plus `cover` among those moving each variable."""
    d = fields.dimension
    rng = np.random.default_rng(seed + 5)
    rank = rng.permutation(fields.count)
    owner = fields.modular.slot // d
    moved = fields.modular.slot % d
    order = np.lexsort((rank[owner], moved))
    moved, owner = moved[order], owner[order]
    first = np.searchsorted(moved, moved, "left")
    covering = owner[np.arange(len(moved)) - first < cover]
    sample = rng.choice(fields.count, min(size, fields.count), replace=False)
    return np.union1d(covering, sample)


def _verified(h, fields):
    """`is_conserved`, on the compiled fields when their coefficients allow it."""
    if fields.exact is not None:
        d = fields.dimension
        scaled = h.primitive()  # integer coefficients; a multiple of h
        gradient = {k: scaled.diff(k) for k in scaled.variables()}
        try:
            grad = TermArray.from_polynomials(
                list(gradient.values()), list(gradient), d, modulus=None
            )
            return len(conservation_residuals(grad, fields.exact)) == 0
        except OverflowError:
            pass
    return is_conserved(h, fields.fields)


def _kernel(fields, monomials):
    """Basis of the laws' coefficient vectors modulo PRIME, one component at a time."""
    n = len(monomials)
    rows, cols, coef = _equations(fields, monomials)
    labels = _components(n, rows, cols)
    kernel = []
    # An unknown in no equation is a law by itself (a monomial no field moves).
    touched = np.zeros(n, dtype=bool)
    touched[cols] = True
    for u in np.flatnonzero(~touched):
        vector = np.zeros(n)
        vector[u] = 1
        kernel.append(vector)
    # Components of one unknown with a nonzero equation hold no law: skip them.
    size = np.bincount(labels, minlength=n)
    wide = size[labels[cols]] > 1
    rows, cols, coef = rows[wide], cols[wide], coef[wide]
    order = np.argsort(labels[cols], kind="stable")
    rows, cols, coef = rows[order], cols[order], coef[order]
    bounds = np.flatnonzero(np.diff(labels[cols])) + 1
    for r, c, v in zip(
        np.split(rows, bounds),
        np.split(cols, bounds),
        np.split(coef, bounds),
        strict=True,
    ):
        if not len(c):
            continue
        local_cols, c = np.unique(c, return_inverse=True)
        if len(local_cols) == 1:
            continue  # one unknown with a nonzero equation: no law
        _, r = np.unique(r, return_inverse=True)
        for basis_row in modular_nullspace(_compressed(r, c, v, len(local_cols))):
            vector = np.zeros(n)
            vector[local_cols] = basis_row
            kernel.append(vector)
    return kernel


def _compressed(rows, cols, values, width):
    """Return one component's dense system, or random combinations of its rows.

    A component with many more equations than unknowns is replaced by ``width + 16``
    random combinations of its equations over GF(p), formed by exact float64
    products a block of rows at a time. They have the same null space unless the
    random matrix is unlucky (probability about p**-16); a vector that is not a
    law then fails the exact verification, so no wrong law can come out.
    """
    height = int(rows.max()) + 1
    if height <= 2 * width + 64:
        matrix = np.zeros((height, width))
        matrix[rows, cols] = values
        return matrix
    rng = np.random.default_rng(height * 7919 + width)
    combined = np.zeros((width + 16, width))
    order = np.argsort(rows, kind="stable")
    rows, cols, values = rows[order], cols[order], values[order]
    for start in range(0, height, MAX_DOT):
        stop = min(start + MAX_DOT, height)
        lo, hi = np.searchsorted(rows, [start, stop])
        block = np.zeros((stop - start, width))
        block[rows[lo:hi] - start, cols[lo:hi]] = values[lo:hi]
        mixing = rng.integers(0, PRIME, size=(width + 16, stop - start)).astype(float)
        combined = np.mod(combined + np.mod(mixing @ block, PRIME), PRIME)
    return combined


def _equations(fields, monomials):
    """Return the exact system (row, unknown, coefficient mod p) of grad m_u . X_j.

    A row is one monomial of one field's product; like entries are added up and
    zeros dropped.
    """
    d = fields.dimension
    entries = [
        (u, v, e, mono[:pos] + (((v, e - 1),) if e > 1 else ()) + mono[pos + 1 :])
        for u, mono in enumerate(monomials)
        for pos, (v, e) in enumerate(mono)
    ]
    width = max((len(rest) for *_, rest in entries), default=0) or 1
    var = np.full((len(entries), width), d, dtype=np.int64)
    exp = np.zeros((len(entries), width), dtype=np.int64)
    for k, (*_, rest) in enumerate(entries):
        for c, (v, e) in enumerate(rest):
            var[k, c], exp[k, c] = v, e
    unknown = np.array([u for u, *_ in entries], dtype=np.int64)
    key = np.array([v for _, v, *_ in entries], dtype=np.int64)
    scale = np.array([e for _, _, e, _ in entries], dtype=np.int64)

    component = fields.slot % d
    order = np.argsort(component, kind="stable")
    start = np.searchsorted(component[order], key, "left")
    count = np.searchsorted(component[order], key, "right") - start
    left = np.repeat(np.arange(len(key)), count)
    offsets = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
    right = order[np.repeat(start, count) + offsets]
    # A row is (field j, monomial of the product). Monomials are keyed by a random
    # additive hash (sum of exponent * weight of the variable, wrapping int64), so
    # that a product's key is the sum of its factors' keys and no product is formed.
    # Two rows sharing a key by accident (probability about 2**-64 per pair) would
    # only be added up: a weaker system, whose extra solutions fail the exact
    # verification; no wrong law can come out of it.
    rng = np.random.default_rng(20231)
    weight = np.append(rng.integers(1, 2**62, size=d, dtype=np.int64), 0)
    field_weight = np.int64(rng.integers(1, 2**62) | 1)
    with np.errstate(over="ignore"):
        rest_key = (exp * weight[var]).sum(axis=1)
        term_key = (fields.exp * weight[fields.var]).sum(axis=1)
        row_key = (
            rest_key[left] + term_key[right] + (fields.slot[right] // d) * field_weight
        )
    cols = unknown[left]
    values = scale[left] * fields.coef[right] % PRIME
    # One sort by (row, unknown) numbers the rows and adds up the entries with the
    # same (row, unknown); the result stays sorted, as `_components` needs.
    order = np.lexsort((cols, row_key))
    row_key, cols, values = row_key[order], cols[order], values[order]
    new_row = np.concatenate([[True], row_key[1:] != row_key[:-1]])
    new_pair = new_row | np.concatenate([[True], cols[1:] != cols[:-1]])
    starts = np.flatnonzero(new_pair)
    total = (
        np.add.reduceat(values.astype(float), starts) % PRIME if len(starts) else values
    )
    rows = (np.cumsum(new_row) - 1)[starts]
    keep = total != 0
    return rows[keep], cols[starts][keep], total[keep]


def _components(n, rows, cols):
    """Label the unknowns: two share a label when a chain of rows joins them.

    The entries come sorted by row (`_equations`).
    """
    labels = np.arange(n)
    r, c = rows, cols
    same = r[1:] == r[:-1]
    a, b = c[:-1][same], c[1:][same]
    while len(a):
        low = np.minimum(labels[a], labels[b])
        new = labels.copy()
        np.minimum.at(new, a, low)
        np.minimum.at(new, b, low)
        new = new[new]
        if np.array_equal(new, labels):
            break
        labels = new
    return labels


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
