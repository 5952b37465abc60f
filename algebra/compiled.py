"""Polynomial vector fields as numpy term arrays: values, Jacobians and brackets fast.

`Polynomial` keeps exact rational coefficients in Python dicts, which is right for
laws and far too slow for the brackets of a deep network, where one bracket has
tens of thousands of terms. A `TermArray` stores the same terms in arrays:

- ``slot[t]``: the component (or, for several fields at once, field * D +
  component) that term t belongs to;
- ``var[t, :]``, ``exp[t, :]``: the variables of the monomial, sorted, and their
  exponents, padded with the variable D (exponent 0);
- ``coef[t]``: the coefficient, modulo `PRIME` (``modulus=PRIME``) or as an exact
  int64 (``modulus=None``, used to verify laws; an operation that could overflow
  raises `OverflowError` so that the caller falls back to exact Python integers).

Products of terms are formed for every pair at once, canonicalized row by row,
and like terms are combined with `numpy.unique`, so a bracket is expanded
symbolically, exactly over GF(p) (or Z), with no Python loop over terms.

Only values modulo p of brackets enter the rank, which is then a rank modulo p:
the same lower bound for the generic rank as before (`algebra.rank`).

Examples
--------
>>> from algebra.fields import gradient_field
>>> from algebra.polynomial import Polynomial
>>> phi = Polynomial.from_terms({((0, 1), (1, 1), (2, 1)): 1})  # x0 x1 x2
>>> X = TermArray.from_field(gradient_field(phi, 3))
>>> X.value_mod([2, 3, 5]).tolist()
[15.0, 10.0, 6.0]
>>> B = bracket(X, X)
>>> len(B)
0
"""

import numpy as np

from algebra.polynomial import Polynomial, coefficient_mod
from algebra.rank import PRIME

__all__ = [
    "TermArray",
    "bracket",
    "bracket_jacobian",
    "compile_fields",
    "conservation_residuals",
    "FieldSet",
]

EXACT_LIMIT = 2**62


class TermArray:
    """Terms ``coef * prod x_v^e`` grouped into polynomials by slot.

    Parameters
    ----------
    slot, var, exp, coef : ndarray
        See the module docstring; rows are terms.
    dimension : int
        D, the number of variables (also the padding variable).
    modulus : int or None
        PRIME for arithmetic over GF(p); None for exact int64 arithmetic.
    """

    __slots__ = ("slot", "var", "exp", "coef", "dimension", "modulus")

    def __init__(self, slot, var, exp, coef, dimension, modulus=PRIME):
        self.slot = slot
        self.var = var
        self.exp = exp
        self.coef = coef
        self.dimension = dimension
        self.modulus = modulus

    def __len__(self):
        return len(self.slot)

    @classmethod
    def from_polynomials(cls, polys, slots, dimension, modulus=PRIME):
        """Build from `Polynomial` objects, ``polys[k]`` going to ``slots[k]``."""
        width = max((len(m) for p in polys for m in p.terms), default=0) or 1
        rows = [
            (s, m, c)
            for p, s in zip(polys, slots, strict=True)
            for m, c in p.terms.items()
        ]
        var = np.full((len(rows), width), dimension, dtype=np.int64)
        exp = np.zeros((len(rows), width), dtype=np.int64)
        coef = np.zeros(len(rows), dtype=np.int64)
        slot = np.zeros(len(rows), dtype=np.int64)
        for t, (s, mono, c) in enumerate(rows):
            slot[t] = s
            for k, (v, e) in enumerate(mono):
                var[t, k], exp[t, k] = v, e
            if modulus is not None:
                coef[t] = coefficient_mod(c, modulus)
            elif getattr(c, "denominator", 1) != 1 or abs(c) >= EXACT_LIMIT:
                raise OverflowError("coefficients are not small integers")
            else:
                coef[t] = int(c)
        return cls(slot, var, exp, coef, dimension, modulus)

    @classmethod
    def from_field(cls, field, modulus=PRIME):
        """Build from a `VectorField` (slot = component)."""
        items = sorted(field.components.items())
        return cls.from_polynomials(
            [p for _, p in items], [i for i, _ in items], field.dimension, modulus
        )

    def to_polynomials(self):
        """Return {slot: Polynomial} (coefficients as stored)."""
        result = {}
        for s, var, exp, c in zip(
            self.slot, self.var, self.exp, self.coef, strict=True
        ):
            mono = tuple((int(v), int(e)) for v, e in zip(var, exp, strict=True) if e)
            result.setdefault(int(s), {})[mono] = int(c)
        return {s: Polynomial(terms) for s, terms in result.items()}

    def _powers(self, point):
        """``x_v^e`` for every entry, modulo p; padding entries give 1."""
        p = self.modulus
        base = np.append(np.asarray(point, dtype=np.int64) % p, 1)[self.var]
        result = np.ones_like(base)
        exp = self.exp.copy()
        while exp.any():
            odd = (exp & 1).astype(bool)
            result[odd] = result[odd] * base[odd] % p
            base = base * base % p
            exp >>= 1
        return result

    def value_mod(self, point):
        """Return the values of the slots 0..D-1 at an integer point, modulo p."""
        return self.values_by_slot(point, self.dimension)

    def values_by_slot(self, point, slots):
        """Return the values of slots 0..slots-1 at an integer point, modulo p."""
        p = self.modulus
        powers = self._powers(point)
        term = self.coef % p
        for k in range(powers.shape[1]):
            term = term * powers[:, k] % p
        return np.mod(
            np.bincount(self.slot, weights=term.astype(float), minlength=slots), p
        )

    def select(self, indices, dimension):
        """Return the terms of fields ``indices`` (sorted), slots unchanged."""
        return self._subset(np.isin(self.slot // dimension, indices))

    def _subset(self, mask):
        return TermArray(
            self.slot[mask],
            self.var[mask],
            self.exp[mask],
            self.coef[mask],
            self.dimension,
            self.modulus,
        )

    def split(self, indices, dimension):
        """Return field k (terms with slot in ``k * D .. k * D + D - 1``) for each k."""
        owner = self.slot // dimension
        order = np.argsort(owner, kind="stable")
        start = np.searchsorted(owner[order], indices, "left")
        stop = np.searchsorted(owner[order], indices, "right")
        return [
            TermArray(
                self.slot[rows] % dimension,
                self.var[rows],
                self.exp[rows],
                self.coef[rows],
                dimension,
                self.modulus,
            )
            for rows in (order[a:b] for a, b in zip(start, stop, strict=True))
        ]

    def jacobian_mod(self, point):
        """Return the Jacobian of slots 0..D-1 at an integer point, modulo p."""
        p, d = self.modulus, self.dimension
        powers = self._powers(point)
        width = powers.shape[1]
        prefix = np.ones((len(self), width + 1), dtype=np.int64)
        suffix = np.ones((len(self), width + 1), dtype=np.int64)
        for k in range(width):
            prefix[:, k + 1] = prefix[:, k] * powers[:, k] % p
            suffix[:, width - 1 - k] = (
                suffix[:, width - k] * powers[:, width - 1 - k] % p
            )
        lower = TermArray(
            self.slot, self.var, np.maximum(self.exp - 1, 0), self.coef, d, p
        )
        reduced = lower._powers(point)
        flat = np.zeros(d * (d + 1))
        for k in range(width):
            live = self.exp[:, k] > 0
            value = self.coef[live] % p * self.exp[live, k] % p
            value = value * reduced[live, k] % p * prefix[live, k] % p
            value = value * suffix[live, k + 1] % p
            index = self.slot[live] * (d + 1) + self.var[live, k]
            flat += np.bincount(
                index, weights=value.astype(float), minlength=d * (d + 1)
            )
        return np.mod(flat.reshape(d, d + 1)[:, :d], p)

    def evaluate(self, points):
        """Float values of slots 0..D-1 at each row of `points` (shape P x D)."""
        points = np.atleast_2d(np.asarray(points, dtype=float))
        padded = np.hstack([points, np.ones((len(points), 1))])
        coef = self.coef.astype(float)
        if self.modulus is not None:
            coef = np.where(coef > self.modulus // 2, coef - self.modulus, coef)
        out = np.zeros((len(points), self.dimension))
        for row, x in enumerate(padded):
            term = coef * np.prod(x[self.var] ** self.exp, axis=1)
            out[row] = np.bincount(self.slot, weights=term, minlength=self.dimension)
        return out


def bracket(X, Y):
    """Return ``[X, Y] = DY X - DX Y``, expanded over GF(p) (or exactly).

    Both arguments are fields (slot = component) on the same space.
    """
    forward = _apply(X, Y)
    backward = _apply(Y, X)
    backward.coef = _negate(backward.coef, backward.modulus)
    return _combine(_concat([forward, backward]))


def bracket_jacobian(X, Y, point, jacobian_x=None, jacobian_y=None):
    """Return the Jacobian of ``[X, Y]`` at an integer point, without expanding it.

    ``D[X, Y] = D(DY X) - D(DX Y) = D^2Y[X] + DY DX - D^2X[Y] - DX DY``, where
    ``D^2Y[X](point)`` is the Jacobian of the field ``DY v`` with the vector
    ``v = X(point)`` held constant: one derivative of Y, no product of fields.
    """
    p = X.modulus
    jx = X.jacobian_mod(point) if jacobian_x is None else jacobian_x
    jy = Y.jacobian_mod(point) if jacobian_y is None else jacobian_y
    second_y = _directional(Y, X.value_mod(point)).jacobian_mod(point)
    second_x = _directional(X, Y.value_mod(point)).jacobian_mod(point)
    products = np.mod(_mod_product(jy, jx, p) - _mod_product(jx, jy, p), p)
    return np.mod(second_y - second_x + products, p)


def _mod_product(a, b, p):
    """Return ``a @ b`` modulo p for matrices with entries in range(p), exactly."""
    step = 8192
    total = np.zeros((a.shape[0], b.shape[1]))
    for start in range(0, a.shape[1], step):
        total = np.mod(total + a[:, start : start + step] @ b[start : start + step], p)
    return total


def _directional(Y, vector):
    """Return the field ``DY v`` for a constant vector v (values modulo p)."""
    t, j = np.nonzero(Y.exp > 0)
    direction = np.asarray(vector, dtype=np.int64) % Y.modulus
    coef = _multiply(Y.coef[t], Y.exp[t, j], Y.modulus)
    coef = _multiply(coef, direction[Y.var[t, j]], Y.modulus)
    exp = Y.exp[t].copy()
    exp[np.arange(len(t)), j] -= 1
    var, exp = _canonical(Y.var[t].copy(), exp, Y.dimension)
    return _combine(TermArray(Y.slot[t], var, exp, coef, Y.dimension, Y.modulus))


def compile_fields(fields, dimension, modulus=PRIME):
    """All fields as one `TermArray`, term slot ``j * D + i`` for X_j's component i."""
    polys, slots = [], []
    for j, X in enumerate(fields):
        for i, p in X.components.items():
            polys.append(p)
            slots.append(j * dimension + i)
    return TermArray.from_polynomials(polys, slots, dimension, modulus)


class FieldSet:
    """The fields of a parametrization, compiled once for every use.

    Parameters
    ----------
    modular : TermArray
        Every field, slot ``j * D + i``, coefficients modulo PRIME.
    exact : TermArray or None
        The same with exact int64 coefficients (None when they do not fit).
    count : int
        The number of fields.
    fields : list of VectorField, optional
        The fields as exact polynomials; built from phi when first asked for.
    phi : list of Polynomial, optional
        The components whose gradients the fields are.
    """

    def __init__(self, modular, exact, count, fields=None, phi=None):
        self.modular = modular
        self.exact = exact
        self.count = count
        self.dimension = modular.dimension
        self._fields = fields
        self._phi = phi

    @classmethod
    def from_fields(cls, fields, dimension):
        """Compile a list of `VectorField` objects."""
        modular = compile_fields(fields, dimension, PRIME)
        try:
            exact = compile_fields(fields, dimension, None)
        except OverflowError:
            exact = None
        return cls(modular, exact, len(fields), fields=list(fields))

    @classmethod
    def from_phi(cls, phi, dimension):
        """Compile the gradients of the components of phi, as arrays."""
        # Scaling a component changes no law: integer coefficients with no common
        # factor, so that no coefficient is a fraction or a multiple of PRIME.
        phi = [p.primitive() for p in phi]
        try:
            exact = _gradients(
                TermArray.from_polynomials(phi, range(len(phi)), dimension, None)
            )
            modular = TermArray(
                exact.slot, exact.var, exact.exp, exact.coef % PRIME, dimension, PRIME
            )
        except OverflowError:
            exact = None
            modular = _gradients(
                TermArray.from_polynomials(phi, range(len(phi)), dimension, PRIME)
            )
        return cls(modular, exact, len(phi), phi=list(phi))

    @property
    def fields(self):
        """The fields as `VectorField` objects (exact rational coefficients)."""
        if self._fields is None:
            from algebra.fields import gradient_field

            self._fields = [gradient_field(p, self.dimension) for p in self._phi]
        return self._fields


def _gradients(phi):
    """All gradients of the polynomials of `phi` (slot j), slot ``j * D + v``."""
    d = phi.dimension
    t, j = np.nonzero(phi.exp > 0)
    exp = phi.exp[t].copy()
    exp[np.arange(len(t)), j] -= 1
    var, exp = _canonical(phi.var[t].copy(), exp, d)
    slot = phi.slot[t] * d + phi.var[t, j]
    coef = _multiply(phi.coef[t], phi.exp[t, j], phi.modulus)
    return _combine(TermArray(slot, var, exp, coef, d, phi.modulus))


def conservation_residuals(gradient, fields):
    """Return ``grad h . X_j`` for every field, as one TermArray (slot = j).

    Parameters
    ----------
    gradient : TermArray
        The components of grad h (slot = component).
    fields : TermArray
        All fields at once, slot = j * D + component.

    Returns
    -------
    TermArray
        Zero (no terms) exactly when h is conserved by every field.
    """
    d = gradient.dimension
    return _combine(
        _join(gradient, fields, gradient.slot, fields.slot % d, fields.slot // d)
    )


def _apply(X, Y):
    """Terms of ``sum_k X_k d_k Y`` (slot = component of Y)."""
    t, j = np.nonzero(Y.exp > 0)
    derivative = TermArray(
        Y.slot[t],
        Y.var[t].copy(),
        Y.exp[t].copy(),
        _multiply(Y.coef[t], Y.exp[t, j], Y.modulus),
        Y.dimension,
        Y.modulus,
    )
    derivative.exp[np.arange(len(t)), j] -= 1
    keys = Y.var[t, j]
    return _join(derivative, X, keys, X.slot, derivative.slot, left_slots=True)


def _join(A, B, keys_a, keys_b, slots, left_slots=False):
    """Products of every term of A with every term of B whose key is equal.

    The product's slot is ``slots`` of its A term (``left_slots``) or of its B term.
    """
    order = np.argsort(keys_b, kind="stable")
    sorted_keys = keys_b[order]
    start = np.searchsorted(sorted_keys, keys_a, "left")
    count = np.searchsorted(sorted_keys, keys_a, "right") - start
    total = int(count.sum())
    left = np.repeat(np.arange(len(keys_a)), count)
    offsets = np.arange(total) - np.repeat(np.cumsum(count) - count, count)
    right = order[np.repeat(start, count) + offsets]
    var = np.concatenate([A.var[left], B.var[right]], axis=1)
    exp = np.concatenate([A.exp[left], B.exp[right]], axis=1)
    coef = _multiply(A.coef[left], B.coef[right], A.modulus)
    slot = slots[left] if left_slots else slots[right]
    var, exp = _canonical(var, exp, A.dimension)
    return TermArray(slot, var, exp, coef, A.dimension, A.modulus)


def _multiply(a, b, modulus):
    if modulus is not None:
        return a % modulus * (b % modulus) % modulus
    if len(a) and int(np.abs(a).max()) * int(np.abs(b).max()) >= EXACT_LIMIT:
        raise OverflowError("coefficients too large for exact int64 arithmetic")
    return a * b


def _negate(coef, modulus):
    return (modulus - coef) % modulus if modulus is not None else -coef


def _concat(parts):
    first = parts[0]
    width = max(p.var.shape[1] for p in parts)

    def padded(array, fill, p):
        extra = width - array.shape[1]
        return np.pad(array, ((0, 0), (0, extra)), constant_values=fill)

    return TermArray(
        np.concatenate([p.slot for p in parts]),
        np.concatenate([padded(p.var, first.dimension, p) for p in parts]),
        np.concatenate([padded(p.exp, 0, p) for p in parts]),
        np.concatenate([p.coef for p in parts]),
        first.dimension,
        first.modulus,
    )


def _group_rows(key):
    """Group equal rows of an integer matrix.

    Returns the index of each group's first row and the group of every row. Rows
    are hashed to one int64 (a random linear form with wrap-around) and grouped
    by hash; then every row is compared with its group's first row, and only if two
    different rows share a hash is the exact (slower) grouping of whole rows used.
    """
    key = np.ascontiguousarray(key, dtype=np.int64)
    weights = (
        np.random.default_rng(12345).integers(
            1, 2**62, size=key.shape[1], dtype=np.int64
        )
        | 1
    )
    with np.errstate(over="ignore"):
        hashed = (key * weights).sum(axis=1)
    _, first, inverse = np.unique(hashed, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    if np.array_equal(key[first[inverse]], key):
        return first, inverse
    rows = key.view(np.dtype((np.void, key.dtype.itemsize * key.shape[1]))).ravel()
    _, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
    return first, inverse.ravel()


def _canonical(var, exp, pad):
    """Sort each monomial by variable, merge repeated variables, trim padding."""
    var = np.where(exp > 0, var, pad)
    for _ in range(2):
        order = np.argsort(var, axis=1, kind="stable")
        var = np.take_along_axis(var, order, axis=1)
        exp = np.take_along_axis(exp, order, axis=1)
        same = (var[:, 1:] == var[:, :-1]) & (var[:, 1:] != pad)
        if not same.any():
            break
        rows, cols = np.nonzero(same)
        exp[rows, cols] += exp[rows, cols + 1]
        var[rows, cols + 1] = pad
        exp[rows, cols + 1] = 0
    used = (var != pad).any(axis=0)
    width = max(int(used.sum()), 1)
    return var[:, :width].copy(), exp[:, :width].copy()


def _combine(terms):
    """Add up like terms and drop zeros."""
    if not len(terms):
        return terms
    key = np.concatenate([terms.slot[:, None], terms.var, terms.exp], axis=1)
    first, inverse = _group_rows(key)
    if terms.modulus is not None:
        total = np.bincount(inverse, weights=terms.coef.astype(float)) % terms.modulus
        total = total.astype(np.int64)
    else:
        if len(terms) * int(np.abs(terms.coef).max()) >= EXACT_LIMIT:
            raise OverflowError("coefficients too large for exact int64 arithmetic")
        total = np.zeros(len(first), dtype=np.int64)
        np.add.at(total, inverse, terms.coef)
    keep = total != 0
    rows = first[keep]
    var, exp = _canonical(terms.var[rows], terms.exp[rows], terms.dimension)
    return TermArray(
        terms.slot[rows], var, exp, total[keep], terms.dimension, terms.modulus
    )
