"""Certify blocks whose phi is all entries of ``U V^T``, inside gl(N), never gl(D).

A `BilinearGroup` has U with n rows and V with m rows, both with r columns (the
inner index: a head dimension, the hidden width of a linear pair), and phi holds
every ``phi_aj = sum_k U[a, k] V[j, k]``. Stack ``W = [U; V]`` (N = n + m rows,
D = N r variables). Conventions: ``E_xy`` is the N x N matrix unit; a matrix A
acts on W by left multiplication, the same on every column.

- Fields. ``d phi_aj / d U[a, k] = V[j, k]`` and ``d phi_aj / d V[j, k] = U[a, k]``,
  so the field of component (a, j) is ``X_aj(W) = B_aj W`` with
  ``B_aj = E_{a, n+j} + E_{n+j, a}``. For linear fields ``X_A(W) = A W``, the
  bracket ``[X_A, X_B](W) = DX_B(W) X_A(W) - DX_A(W) X_B(W) = (B A - A B) W`` is
  again linear, given by a commutator: Lie(V) is ``{X_A : A in h}`` with h the Lie
  algebra the ``B_aj`` generate in gl(N), and its value at W is ``h W``.
- Upper end (rank). Take ``W0`` with rows ``0..s-1`` equal to ``c_t e_t``
  (``s = min(N, r)``, random nonzero ``c_t`` modulo PRIME) and zero rows
  elsewhere. Then ``(A W0)[x, t] = A[x, t] c_t``: the value of A is its first s
  columns, scaled. The elements used are generators ``B_aj`` and the commutators
  ``[B_a0, B_b0]`` (two rows of U) and ``[B_0j, B_0k]`` (two rows of V), computed as
  products of sparse matrices; only those whose value at W0 is not identically
  zero are formed. Their values are sparse vectors of R^D; vectors in different
  connected components of the graph "two vectors meet when they share a
  coordinate" span independent subspaces, so the rank is the sum of the exact
  ranks (modulo PRIME) of the components. A rank modulo p at an integer point is
  at most the rank over Q there, which is at most the generic rank of Lie(V):
  ``N_laws <= D - rank``.
- Lower end (laws). For a constant N x N matrix C and ``R`` in Sym(r) (C
  symmetric) or Skew(r) (C skew), ``h(W) = tr(W^T C W R)`` has derivative
  ``2 tr(W^T C A W R)`` along ``X_A``, which vanishes for every W when
  ``C A + A^T C = 0``. The generators are permuted among themselves by any
  permutation of the rows within an orbit (see `BilinearGroup`), so C is sought
  among the matrices invariant under those permutations: on each orbit block a
  multiple of the identity plus a multiple of the all-ones matrix. The exact
  system on one generator of each orbit of generators (an orbit of U rows times an
  orbit of V rows) is solved in rationals; for an invariant C, ``C B + B^T C = 0``
  on one generator of an orbit holds on all of it. The laws are the entries
  ``(W^T C W)[k, l]``, ``k <= l`` (``k < l`` for a skew C).
- Independence. The gradient of ``(W^T C W)[k, l]`` is the N x r matrix whose
  columns l and k are ``(C W)[:, k]`` and ``(C W)[:, l]``. When the first s
  columns of ``C W`` are independent at one point (exact, modulo PRIME), the laws
  with ``k < s`` have independent gradients there (a relation among them is a
  symmetric or skew coefficient matrix killing first the columns ``l >= s``, then
  the rest), hence near a generic point.

Where the two ends meet the count is certified. With ``r <= N`` both ends give
``r (r + 1) / 2`` laws (the entries of ``U^T U - V^T V``); with ``r > N``,
``N r - N (N - 1) / 2``.

Examples
--------
>>> import numpy as np
>>> from blocks.block import BilinearGroup
>>> group = BilinearGroup((0, 1, 2, 3), (np.array([[0, 1]]),), (np.array([[2, 3]]),))
>>> result = certify_bilinear(group)
>>> result.status, result.lie_dim, [str(h) for h in result.laws]
('certified', 1, ['x0**2 - x2**2', 'x0*x1 - x2*x3', 'x1**2 - x3**2'])
"""

import collections.abc
from dataclasses import dataclass

import numpy as np
import sympy

from algebra.certificate import Certificate
from algebra.polynomial import Polynomial
from algebra.rank import PRIME, Echelon

__all__ = [
    "LawFamily",
    "bilinear_layout",
    "certify_bilinear",
    "invariant_forms",
    "verify_form",
]

# Forms are verified on every generator, not only one per orbit, below this N.
VERIFY_ALL_BELOW = 64


@dataclass(frozen=True)
class BilinearLayout:
    """Rows of ``W = [U; V]`` and their orbits.

    Attributes
    ----------
    rows : ndarray, shape (N, r)
        Local variable of each entry of W.
    orbit : ndarray, shape (N,)
        Orbit number of each row; orbits of U come first.
    left : int
        n, the number of rows of U.
    orbits : int
        The number of orbits.
    left_orbits : int
        The number of orbits of U.
    """

    rows: np.ndarray
    orbit: np.ndarray
    left: int
    orbits: int
    left_orbits: int

    @property
    def size(self):
        """N, the number of rows of W."""
        return int(self.rows.shape[0])

    @property
    def inner(self):
        """r, the number of columns of W."""
        return int(self.rows.shape[1])

    def starts(self):
        """Return the first row of each orbit."""
        return [int(np.flatnonzero(self.orbit == o)[0]) for o in range(self.orbits)]


def bilinear_layout(group):
    """Return the `BilinearLayout` of a `BilinearGroup`.

    Raises
    ------
    NotImplementedError
        When the orbits do not hold every variable of the group exactly once;
        expand the group and use `algebra.certificate.certify` instead.
    """
    orbits = tuple(group.left) + tuple(group.right)
    rows = np.concatenate([np.asarray(o, dtype=np.int64) for o in orbits])
    d = len(group.variables)
    if rows.size != d or not np.array_equal(np.sort(rows.ravel()), np.arange(d)):
        raise NotImplementedError(
            "a bilinear group whose orbits do not hold each variable once; expand "
            "the group and certify it with algebra.certificate.certify"
        )
    orbit = np.repeat(np.arange(len(orbits)), [len(o) for o in orbits])
    left = sum(len(o) for o in group.left)
    return BilinearLayout(rows, orbit, left, len(orbits), len(group.left))


def certify_bilinear(group, degree=2, seed=0):
    """Certify the number of laws of a `BilinearGroup` (see the module notes).

    Parameters
    ----------
    group : BilinearGroup
        phi = all entries of U V^T, in local variables 0..D-1.
    degree : int
        The largest degree of the laws sought; the laws found are quadratic.
    seed : int
        Seed of the random points, so that results repeat.

    Returns
    -------
    Certificate
        Its `laws` are a `LawFamily`, producing polynomials on demand.
    """
    layout = bilinear_layout(group)
    d = layout.size * layout.inner
    family = _law_family(layout, seed) if degree >= 2 else None
    if family is None:
        family = LawFamily(_orbit_rows(layout), layout.left_orbits, (), True, 0)

    rank = lie_rank(layout, seed, target=d - len(family))
    lower, upper = len(family), d - rank
    status = "certified" if lower == upper else "bounds"
    note = (
        "rank from generators and brackets at a sparse point (exact modulo a "
        "prime); laws tr(W^T C W R) with C verified on every orbit of generators"
    )
    return Certificate(d, rank, family, status, (lower, upper), 2, False, note)


def _orbit_rows(layout):
    return tuple(layout.rows[layout.orbit == o] for o in range(layout.orbits))


def _law_family(layout, seed):
    """Return the laws of the first invariant form, or None when there is none."""
    forms = invariant_forms(layout)
    if not forms:
        return None
    form, symmetric = forms[0]
    if not verify_form(layout, form, every=layout.size < VERIFY_ALL_BELOW):
        raise AssertionError("an invariant form failed its verification")
    limit = _independent_columns(layout, form, seed)
    return LawFamily(_orbit_rows(layout), layout.left_orbits, form, symmetric, limit)


# ----------------------------------------------------------------------------
# Invariant forms C with C B + B^T C = 0.


def _form_basis(layout):
    """Invariant matrices: identity and all-ones blocks, as (kind, P, Q)."""
    sizes = np.bincount(layout.orbit, minlength=layout.orbits)
    basis = []
    for p in range(layout.orbits):
        basis.append(("I", p, p))
        for q in range(layout.orbits):
            if q != p or sizes[p] > 1:
                basis.append(("J", p, q))
    return basis


def _column(element, layout, z):
    """Column z of a basis matrix, as an integer vector of length N."""
    kind, p, q = element
    column = np.zeros(layout.size, dtype=np.int64)
    if kind == "I" and layout.orbit[z] == p:
        column[z] = 1
    elif kind == "J" and layout.orbit[z] == q:
        column[layout.orbit == p] = 1
    return column


def _row(element, layout, x):
    """Row x of a basis matrix: column x of its transpose."""
    kind, p, q = element
    return _column((kind, q, p), layout, x)


def _generator(a, j, layout):
    """Return the entries (row, column, value) of B_aj, the matrix of field (a, j)."""
    b = layout.left + j
    return ((a, b, 1), (b, a, 1))


def _residual(element, layout, generator):
    """Return the entries of ``C B + B^T C`` that B can make nonzero, flattened.

    ``C B`` lives in the columns of B's entries and ``B^T C`` in the rows named by
    their columns; every other entry is zero whatever C is.
    """
    columns = sorted({y for _, y, _ in generator})
    rows = sorted({x for _, x, _ in generator})
    left = np.zeros((layout.size, len(columns)), dtype=np.int64)
    right = np.zeros((len(rows), layout.size), dtype=np.int64)
    for z, y, v in generator:
        left[:, columns.index(y)] += v * _column(element, layout, z)
        right[rows.index(y), :] += v * _row(element, layout, z)
    for i, x in enumerate(rows):
        for k, y in enumerate(columns):
            left[x, k] += right[i, y]
            right[i, y] = 0
    return np.concatenate([left.ravel(), right.ravel()])


def _representatives(layout, every=False):
    """One generator (a, j) per orbit of generators, or every one."""
    starts = layout.starts()
    if every:
        m = layout.size - layout.left
        return [(a, j) for a in range(layout.left) for j in range(m)]
    return [
        (starts[p], starts[q] - layout.left)
        for p in range(layout.left_orbits)
        for q in range(layout.left_orbits, layout.orbits)
    ]


def _system(layout, basis, every=False):
    """Return the integer matrix of ``C -> C B + B^T C`` on the representatives."""
    blocks = []
    for a, j in _representatives(layout, every):
        generator = _generator(a, j, layout)
        columns = [_residual(e, layout, generator) for e in basis]
        blocks.append(np.stack(columns, axis=1))
    return np.concatenate(blocks)


def invariant_forms(layout):
    """Find the invariant matrices C with ``C B + B^T C = 0`` on every generator.

    Parameters
    ----------
    layout : BilinearLayout
        The group's rows and orbits.

    Returns
    -------
    list of (tuple, bool)
        Each form as ``((kind, P, Q, coefficient), ...)`` with primitive integer
        coefficients, and whether it is symmetric; symmetric forms first.
    """
    basis = _form_basis(layout)
    system = np.unique(_system(layout, basis), axis=0)
    kernel = sympy.Matrix(system.tolist()).nullspace()

    swap = [basis.index(("I" if k == "I" else "J", q, p)) for k, p, q in basis]
    forms = []
    for symmetric, sign in ((True, 1), (False, -1)):
        parts = [v + sign * sympy.Matrix([v[i] for i in swap]) for v in kernel]
        parts = [p for p in parts if any(x != 0 for x in p)]
        span = sympy.Matrix.hstack(*parts).columnspace() if parts else []
        for vector in span:
            forms.append((_primitive(vector, basis), symmetric))
    return forms


def _primitive(vector, basis):
    """Scale a rational vector to coprime integers, first nonzero positive."""
    values = list(vector)
    lcm = sympy.ilcm(*[sympy.fraction(v)[1] for v in values])
    integers = [int(v * lcm) for v in values]
    gcd = int(np.gcd.reduce([abs(i) for i in integers if i]))
    sign = 1 if next(i for i in integers if i) > 0 else -1
    return tuple(
        (*element, sign * i // gcd)
        for element, i in zip(basis, integers, strict=True)
        if i
    )


def verify_form(layout, form, every=False):
    """Check ``C B + B^T C = 0`` exactly for an invariant form C.

    Parameters
    ----------
    layout : BilinearLayout
        The group's rows and orbits.
    form : tuple of (kind, P, Q, coefficient)
        C as a combination of identity (``I``) and all-ones (``J``) blocks.
    every : bool
        Check every generator, not one per orbit of generators.

    Returns
    -------
    bool
    """
    basis = [(kind, p, q) for kind, p, q, _ in form]
    coefficients = np.array([c for *_, c in form], dtype=np.int64)
    if not basis:
        return True
    residual = _system(layout, basis, every) @ coefficients
    return not np.any(residual)


def form_matrix(form, layout):
    """Return C as a dense integer N x N matrix (small groups only)."""
    matrix = np.zeros((layout.size, layout.size), dtype=np.int64)
    for kind, p, q, c in form:
        mask_p, mask_q = layout.orbit == p, layout.orbit == q
        if kind == "I":
            matrix[np.flatnonzero(mask_p), np.flatnonzero(mask_p)] += c
        else:
            matrix[np.ix_(mask_p, mask_q)] += c
    return matrix


def _independent_columns(layout, form, seed, rows=None):
    """Count the leading columns of C W independent at a random point.

    With `rows` (a boolean mask), only those rows of C W are kept.
    """
    rng = np.random.default_rng(seed + 7)
    point = rng.integers(1, PRIME, size=layout.rows.shape).astype(float)
    image = np.zeros_like(point)
    for kind, p, q, c in form:
        rows_p = np.flatnonzero(layout.orbit == p)
        if kind == "I":
            image[rows_p] += c * point[rows_p]
        else:
            total = np.mod(point[layout.orbit == q].sum(axis=0), PRIME)
            image[rows_p] += c * total
    image = np.mod(image, PRIME)
    if rows is not None:
        image = image[rows]
    echelon = Echelon(image.shape[0])
    for k in range(layout.inner):
        if not echelon.add(image[:, k]):
            return k
    return layout.inner


# ----------------------------------------------------------------------------
# The rank of Lie(V) at a sparse point.


def lie_rank(layout, seed=0, target=None):
    """Return an exact lower bound on dim Lie(V)(W), modulo PRIME.

    Parameters
    ----------
    layout : BilinearLayout
        The group's rows and orbits.
    seed : int
        Seed of the scales of the sparse point.
    target : int, optional
        Stop counting once the rank reaches it.

    Returns
    -------
    int
    """
    support = min(layout.size, layout.inner)
    scale = np.random.default_rng(seed).integers(1, PRIME, size=support)
    element, row, column, value = _elements(layout, support)
    keep = column < support
    element, row, column = element[keep], row[keep], column[keep]
    value = np.mod(value[keep] * scale[column], PRIME)
    coordinate = row * layout.inner + column
    return sparse_rank(element, coordinate, value, target)


def _elements(layout, support):
    """List generators and brackets whose value at the sparse point may be nonzero.

    Returns flat arrays (element, row, column, value) of their entries.
    """
    n, m = layout.left, layout.size - layout.left
    u_support = min(n, support)
    v_support = max(0, support - n)

    # Every row of U is in the support when some row of V is.
    a, j = np.meshgrid(np.arange(u_support), np.arange(m), indexing="ij")
    generators = _generator_batch(a.ravel(), j.ravel(), n)
    a, b = _pairs(u_support, n)
    zeros = np.zeros(len(a), dtype=np.int64)
    left = _commutator(_generator_batch(a, zeros, n), _generator_batch(b, zeros, n))
    j, k = _pairs(v_support, m)
    zeros = np.zeros(len(j), dtype=np.int64)
    right = _commutator(_generator_batch(zeros, j, n), _generator_batch(zeros, k, n))
    return _concatenate([generators, left, right])


def _pairs(support, count):
    """All pairs a < b of range(count) with a < support."""
    firsts = np.arange(min(support, count))
    a = np.repeat(firsts, count - 1 - firsts)
    b = np.concatenate([np.arange(x + 1, count) for x in firsts] or [a])
    return a, b


def _generator_batch(a, j, n):
    """B_aj for arrays a, j, as (rows, columns, values) arrays of shape (E, 2)."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(j, dtype=np.int64) + n
    rows = np.stack([a, b], axis=1)
    columns = np.stack([b, a], axis=1)
    return rows, columns, np.ones_like(rows)


def _product(x, y):
    """Entries of the products x_e y_e of two batches of sparse matrices."""
    x_rows, x_columns, x_values = x
    y_rows, y_columns, y_values = y
    e, u, w = np.nonzero(x_columns[:, :, None] == y_rows[:, None, :])
    return e, x_rows[e, u], y_columns[e, w], x_values[e, u] * y_values[e, w]


def _commutator(x, y):
    """Entries (element, row, column, value) of ``x_e y_e - y_e x_e``."""
    e1, r1, c1, v1 = _product(x, y)
    e2, r2, c2, v2 = _product(y, x)
    return (
        np.concatenate([e1, e2]),
        np.concatenate([r1, r2]),
        np.concatenate([c1, c2]),
        np.concatenate([v1, -v2]),
    )


def _concatenate(parts):
    """Join batches, numbering the elements consecutively."""
    first = parts[0]
    count = len(first[0])
    element = np.repeat(np.arange(count), first[0].shape[1])
    joined = [[element], [first[0].ravel()], [first[1].ravel()], [first[2].ravel()]]
    for e, r, c, v in parts[1:]:
        joined[0].append(e + count)
        count += int(e.max()) + 1 if len(e) else 0
        joined[1].append(r)
        joined[2].append(c)
        joined[3].append(v)
    return tuple(np.concatenate(j).astype(np.int64) for j in joined)


def sparse_rank(element, coordinate, value, target=None):
    """Return the rank modulo PRIME of sparse vectors, component by component.

    Parameters
    ----------
    element, coordinate, value : ndarray of int
        The entries: vector number, coordinate, value in ``range(PRIME)``.
        Repeated (element, coordinate) entries are added.
    target : int, optional
        Stop once the rank reaches it.

    Returns
    -------
    int
    """
    element, coordinate, value = _merge(element, coordinate, value)
    if element.size == 0:
        return 0
    labels = _components(element, coordinate)
    per_component = np.bincount(labels[np.unique(element)])
    rank = int(np.count_nonzero(per_component == 1))
    for label in np.flatnonzero(per_component > 1):
        if target is not None and rank >= target:
            break
        rank += _component_rank(element, coordinate, value, labels, label)
    return rank


def _merge(element, coordinate, value):
    """Add repeated entries and drop the zero ones."""
    key = element.astype(np.int64) * (int(coordinate.max(initial=0)) + 1) + coordinate
    unique, inverse = np.unique(key, return_inverse=True)
    total = np.zeros(len(unique), dtype=np.int64)
    np.add.at(total, inverse, np.mod(value, PRIME))
    total = np.mod(total, PRIME)
    first = np.zeros(len(unique), dtype=np.int64)
    first[inverse] = np.arange(len(key))
    keep = total != 0
    return element[first][keep], coordinate[first][keep], total[keep]


def _components(element, coordinate):
    """Label each element by its component (elements meet on shared coordinates)."""
    labels = np.arange(int(element.max()) + 1)
    _, coordinate = np.unique(coordinate, return_inverse=True)
    while True:
        low = np.full(int(coordinate.max()) + 1, labels.size)
        np.minimum.at(low, coordinate, labels[element])
        updated = labels.copy()
        np.minimum.at(updated, element, low[coordinate])
        updated = updated[updated]
        if np.array_equal(updated, labels):
            return labels
        labels = updated


def _component_rank(element, coordinate, value, labels, label):
    """Exact rank modulo PRIME of the vectors of one component."""
    mask = labels[element] == label
    rows, row = np.unique(element[mask], return_inverse=True)
    columns, column = np.unique(coordinate[mask], return_inverse=True)
    matrix = np.zeros((len(rows), len(columns)))
    matrix[row, column] = value[mask]
    echelon = Echelon(len(columns))
    echelon.add_many(matrix)
    return echelon.rank


# ----------------------------------------------------------------------------
# The laws, produced on demand.


class LawFamily(collections.abc.Sequence):
    """The laws ``(W^T C W)[k, l]`` of a bilinear group, as a lazy sequence.

    Parameters
    ----------
    orbits : tuple of ndarray
        The orbits of rows of W (U first), arrays (rows, r) of local variables.
    left : int
        How many of the orbits are rows of U.
    form : tuple of (kind, P, Q, coefficient)
        C as identity (``I``) and all-ones (``J``) blocks on orbit pairs.
    symmetric : bool
        Whether C (and so R) is symmetric; entries ``k <= l``, else ``k < l``.
    limit : int
        Only entries with ``k < limit`` are laws (independent ones).
    """

    def __init__(self, orbits, left, form, symmetric, limit):
        self.orbits = tuple(np.asarray(o, dtype=np.int64) for o in orbits)
        self.left = int(left)
        self.form = tuple(tuple(entry) for entry in form)
        self.symmetric = bool(symmetric)
        self.limit = int(limit) if self.form else 0
        self.inner = int(self.orbits[0].shape[1]) if self.orbits else 0
        counts = [self.inner - k - (0 if self.symmetric else 1) for k in range(limit)]
        self._offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def __len__(self):
        return int(self._offsets[-1]) if self.limit else 0

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("law index out of range")
        k = int(np.searchsorted(self._offsets, index, side="right")) - 1
        second = k + int(index - self._offsets[k]) + (0 if self.symmetric else 1)
        return self.entry(k, second)

    def __eq__(self, other):
        return isinstance(other, LawFamily) and self.to_json() == other.to_json()

    def __hash__(self):
        return hash((self.form, self.symmetric, self.limit, self.inner))

    def entry(self, k, second):
        """Return the polynomial ``(W^T C W)[k, second]``."""
        terms = {}
        for kind, p, q, c in self.form:
            if kind == "I":
                pairs = zip(
                    self.orbits[p][:, k], self.orbits[p][:, second], strict=True
                )
            else:
                rows_p, rows_q = self.orbits[p][:, k], self.orbits[q][:, second]
                pairs = ((x, y) for x in rows_p for y in rows_q)
            for x, y in pairs:
                x, y = int(x), int(y)
                mono = ((min(x, y), 1), (max(x, y), 1)) if x != y else ((x, 2),)
                terms[mono] = terms.get(mono, 0) + c
        return Polynomial(terms)

    @property
    def terms(self):
        """The total number of terms of the laws."""
        if all(kind == "I" for kind, *_ in self.form):
            rows = sum(len(self.orbits[p]) for _, p, _, _ in self.form)
            return len(self) * rows
        return sum(len(law.terms) for law in self)

    def check(self, dimension):
        """Raise ValueError unless the family is well formed on `dimension` vars."""
        variables = np.concatenate([o.ravel() for o in self.orbits])
        shapes = {o.shape[1] for o in self.orbits if o.ndim == 2}
        if len(shapes) != 1 or any(o.ndim != 2 for o in self.orbits):
            raise ValueError("orbits of a law family are not rows of one width")
        if variables.size and (variables.min() < 0 or variables.max() >= dimension):
            raise ValueError("a law family uses variables outside the group")
        for kind, p, q, c in self.form:
            ok = kind in ("I", "J") and all(
                type(i) is int and 0 <= i < len(self.orbits) for i in (p, q)
            )
            if not ok or type(c) is not int or c == 0:
                raise ValueError("a law family has a malformed form entry")
        if not 0 <= self.limit <= self.inner or not 0 <= self.left <= len(self.orbits):
            raise ValueError("a law family has a malformed limit")

    def layout(self):
        """Return the `BilinearLayout` of the family's rows."""
        rows = np.concatenate(self.orbits)
        orbit = np.repeat(np.arange(len(self.orbits)), [len(o) for o in self.orbits])
        left = sum(len(o) for o in self.orbits[: self.left])
        return BilinearLayout(rows, orbit, left, len(self.orbits), self.left)

    def independent_of_others(self, private, seed=0):
        """Whether the laws are independent of every law that avoids `private`.

        Parameters
        ----------
        private : ndarray of bool
            For each local variable, whether no law outside this family uses it.

        Notes
        -----
        Restricted to the rows of W whose entries are all private, the gradients
        are ``(C W)[rows] R``; when the first `limit` columns of ``(C W)[rows]``
        are independent at a point, so are the restricted gradients (module
        notes), and other laws have no component there.
        """
        if not len(self):
            return True
        layout = self.layout()
        rows = np.all(np.asarray(private)[layout.rows], axis=1)
        return _independent_columns(layout, self.form, seed, rows) >= self.limit

    def to_json(self):
        """Return a JSON-ready dict (see `from_json`)."""
        return {
            "family": "bilinear",
            "orbits": [o.tolist() for o in self.orbits],
            "left": self.left,
            "form": [list(entry) for entry in self.form],
            "symmetric": self.symmetric,
            "limit": self.limit,
        }

    @classmethod
    def from_json(cls, content):
        """Build a family from `to_json` output, raising ValueError when malformed."""
        keys = {"family", "orbits", "left", "form", "symmetric", "limit"}
        if not isinstance(content, dict) or set(content) != keys:
            raise ValueError("a law family has other fields")
        if content["family"] != "bilinear" or type(content["symmetric"]) is not bool:
            raise ValueError("not a bilinear law family")
        try:
            orbits = [np.array(o, dtype=np.int64) for o in content["orbits"]]
            form = [tuple(entry) for entry in content["form"]]
            if any(len(entry) != 4 for entry in form):
                raise ValueError("form entries have four fields")
            family = cls(
                orbits, content["left"], form, content["symmetric"], content["limit"]
            )
        except (TypeError, OverflowError) as err:
            raise ValueError(f"a law family does not decode: {err}") from err
        if type(content["limit"]) is not int or type(content["left"]) is not int:
            raise ValueError("a law family has a malformed limit")
        return family

    def compact(self, block, variables):
        """Write the family in matrix notation, e.g. ``(Qᵀ·Q − Kᵀ·K)[k,l]``.

        Parameters
        ----------
        block : Block
            The block, for parameter names and shapes.
        variables : tuple of int
            The group's block variables (local variable k is ``variables[k]``).
        """
        parts = []
        for kind, p, q, c in self.form:
            first = _orbit_text(self.orbits[p], block, variables)
            if kind == "I":
                parts.append((first, c))
            else:
                second = _orbit_text(self.orbits[q], block, variables)
                parts.append((f"(1ᵀ{first[1]})ᵀ(1ᵀ{second[1]})", c))
        text = ""
        for body, c in parts:
            body = body if isinstance(body, str) else body[0]
            magnitude = "" if abs(c) == 1 else f"{abs(c)}·"
            if text:
                sign = " − " if c < 0 else " + "
            else:
                sign = "−" if c < 0 else ""
            text += f"{sign}{magnitude}{body}"
        relation = "≤" if self.symmetric else "<"
        scope = f"k {relation} l"
        if self.limit < self.inner:
            scope += f", k < {self.limit}"
        return f"({text or '0'})[k,l] for {scope} ({len(self)} laws)"


def _orbit_text(orbit, block, variables):
    """Return (Gram notation, slice) of one orbit of rows, from its corners."""
    first = block.entry(variables[orbit[0, 0]])
    last = block.entry(variables[orbit[-1, -1]])
    shapes = dict(block.parameters)
    name = first[0]
    axes = []
    for lo, hi, size in zip(first[1], last[1], shapes[name], strict=True):
        lo, hi = min(lo, hi), max(lo, hi)
        if (lo, hi) == (0, size - 1):
            axes.append(":")
        else:
            axes.append(f"{lo}" if lo == hi else f"{lo}:{hi + 1}")
    while axes and axes[-1] == ":":
        axes.pop()
    text = f"{name}[{','.join(axes)}]" if axes else name
    if orbit.shape[0] == 1 or orbit.shape[1] == 1:
        # A vector, read as a column: one row of W gives b·bᵀ, one column bᵀ·b.
        product = f"{text}·{text}ᵀ" if orbit.shape[0] == 1 else f"{text}ᵀ·{text}"
        return product, text
    inner_axis = _varying_axis(block, variables, orbit[0, 0], orbit[0, 1])
    row_axis = _varying_axis(block, variables, orbit[0, 0], orbit[1, 0])
    gram = f"{text}ᵀ·{text}" if inner_axis > row_axis else f"{text}·{text}ᵀ"
    return gram, text


def _varying_axis(block, variables, v, w):
    a, b = block.entry(variables[v])[1], block.entry(variables[w])[1]
    return next((k for k, (x, y) in enumerate(zip(a, b, strict=True)) if x != y), 0)
