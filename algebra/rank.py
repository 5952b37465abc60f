"""Exact ranks modulo a prime, and the floating-point fast path.

Exact ranks are taken over the prime field GF(p) with ``p = PRIME``. For an integer
matrix, the rank modulo p never exceeds the rank over the rationals, so a rank found
here is a valid lower bound for the rank over Q: this is the inequality a certificate
rests on.

Arithmetic is done in float64 arrays, which is exact here: entries lie in
``range(PRIME)`` with ``PRIME < 2**20``, so a product is below ``2**40`` and a sum of
up to ``MAX_DOT`` products stays below ``2**53``.

Examples
--------
>>> basis = Echelon(3)
>>> basis.add([1, 2, 3]), basis.add([2, 4, 6]), basis.add([0, 1, 0])
(True, False, True)
>>> basis.rank
2
>>> modular_rank([[1, 1], [1, 1]])
1
"""

import numpy as np

__all__ = [
    "PRIME",
    "Echelon",
    "modular_rank",
    "modular_nullspace",
    "numerical_rank",
    "random_point",
    "rational_reconstruction",
]

PRIME = 1048573
MAX_DOT = 8192


def mod_matmul(a, b):
    """Multiply two arrays with entries in ``range(PRIME)``, modulo PRIME."""
    inner = a.shape[-1]
    if inner <= MAX_DOT:
        return np.mod(a @ b, PRIME)
    total = np.zeros((a.shape[0], b.shape[-1]) if b.ndim > 1 else a.shape[0])
    for start in range(0, inner, MAX_DOT):
        part = a[..., start : start + MAX_DOT] @ b[start : start + MAX_DOT]
        total = np.mod(total + np.mod(part, PRIME), PRIME)
    return total


class Echelon:
    """A row space over GF(PRIME), kept in reduced row echelon form.

    Rows are added one at a time; `add` says whether the row was new. Each stored
    row has a 1 at its pivot and 0 at every other pivot, so reducing a vector is one
    matrix product.

    Parameters
    ----------
    width : int
        The length of every row.
    """

    batch = 256

    def __init__(self, width):
        self.width = width
        self._store = np.zeros((min(width, 64), width))
        self.pivots = []

    @property
    def rows(self):
        """The stored rows, one per pivot."""
        return self._store[: len(self.pivots)]

    @property
    def rank(self):
        """The number of independent rows added so far."""
        return len(self.pivots)

    def reduce(self, vectors):
        """Return `vectors` (a 2-D array) reduced against the stored rows."""
        vectors = np.mod(np.asarray(vectors, dtype=float), PRIME)
        if not self.pivots:
            return vectors
        coefficients = vectors[:, self.pivots]
        return np.mod(vectors - mod_matmul(coefficients, self.rows), PRIME)

    def add(self, vector):
        """Add one row; return True when it raised the rank."""
        residual = self.reduce(np.atleast_2d(vector))[0]
        nonzero = np.flatnonzero(residual)
        if nonzero.size == 0:
            return False
        self._insert(residual, int(nonzero[0]))
        return True

    def add_many(self, vectors):
        """Add rows in order; return the indices of those that raised the rank.

        Each batch is reduced against the stored rows in one product; then every
        row kept from the batch is eliminated from the later rows of the batch,
        which are thus reduced against all rows stored before them. Once the rank
        passes half the width, a batch is first tested against the null space of
        the stored rows (a row lies in their span exactly when it is orthogonal to
        that null space), which is narrow, so that rows already in the span cost
        ``width - rank`` products each.
        """
        vectors = np.atleast_2d(vectors)
        kept = []
        for start in range(0, len(vectors), self.batch):
            chunk = vectors[start : start + self.batch]
            index = np.arange(len(chunk))
            if 2 * self.rank > self.width:
                test = mod_matmul(np.mod(chunk, PRIME), self.kernel().T)
                index = np.flatnonzero(test.any(axis=1))
                if not index.size:
                    continue
            residual = self.reduce(chunk[index])
            live = np.flatnonzero(residual.any(axis=1))
            while live.size:
                first, live = live[0], live[1:]
                row = residual[first]
                pivot = int(np.flatnonzero(row)[0])
                self._insert(row, pivot)
                kept.append(start + int(index[first]))
                if live.size:
                    stored = self._store[len(self.pivots) - 1]
                    rest = residual[live]
                    rest = np.mod(rest - np.outer(rest[:, pivot], stored), PRIME)
                    residual[live] = rest
                    live = live[rest.any(axis=1)]
        return kept

    def kernel(self):
        """Return a basis of the vectors k with ``row . k = 0`` for every stored row."""
        free = np.setdiff1d(np.arange(self.width), self.pivots)
        basis = np.zeros((len(free), self.width))
        basis[np.arange(len(free)), free] = 1
        if self.pivots:
            basis[:, self.pivots] = np.mod(-self.rows[:, free].T, PRIME)
        return basis

    def _insert(self, row, pivot):
        row = np.mod(row * pow(int(row[pivot]), -1, PRIME), PRIME)
        rank = len(self.pivots)
        if rank:
            rows = self._store[:rank]
            column = rows[:, pivot].copy()
            nonzero = np.flatnonzero(column)
            if nonzero.size:
                rows[nonzero] = np.mod(
                    rows[nonzero] - np.outer(column[nonzero], row), PRIME
                )
        if rank == len(self._store):
            grown = np.zeros((min(2 * rank, self.width), self.width))
            grown[:rank] = self._store
            self._store = grown
        self._store[rank] = row
        self.pivots.append(pivot)


def modular_rank(matrix):
    """Return the rank over GF(PRIME) of an integer matrix."""
    matrix = np.atleast_2d(np.asarray(matrix, dtype=float))
    basis = Echelon(matrix.shape[1])
    basis.add_many(matrix)
    return basis.rank


def modular_nullspace(matrix):
    """Return a basis of the right null space over GF(PRIME).

    Parameters
    ----------
    matrix : array of int, shape (m, n)
        Entries in ``range(PRIME)``.

    Returns
    -------
    ndarray, shape (k, n)
        One row per free column, with a 1 at that column: the reduced basis.
    """
    matrix = np.atleast_2d(np.asarray(matrix, dtype=float))
    basis = Echelon(matrix.shape[1])
    basis.add_many(matrix)
    return basis.kernel()


def rational_reconstruction(value, prime=PRIME):
    """Return the fraction ``a/b`` with small ``|a|, b`` congruent to `value`.

    Notes
    -----
    Wang's algorithm: the result is correct whenever the true fraction has
    ``|a|, b < sqrt(prime / 2)``; it is a candidate to be verified exactly.
    """
    from fractions import Fraction

    bound = int((prime / 2) ** 0.5)
    r0, r1, s0, s1 = prime, int(value) % prime, 0, 1
    while r1 > bound:
        q = r0 // r1
        r0, r1, s0, s1 = r1, r0 - q * r1, s1, s0 - q * s1
    if s1 == 0 or abs(s1) > bound:
        return None
    return Fraction(r1, s1)


def random_point(size, seed):
    """Return a random point of GF(PRIME)^size, reproducible from `seed`."""
    rng = np.random.default_rng(seed)
    return rng.integers(1, PRIME, size=size)


def numerical_rank(matrix, tol=None):
    """Return the floating-point rank of a matrix (fast path, never a certificate).

    Parameters
    ----------
    matrix : array_like
        A real matrix.
    tol : float, optional
        Singular values at or below `tol` count as zero. By default
        ``max(shape) * eps * largest singular value``.
    """
    matrix = np.atleast_2d(np.asarray(matrix, dtype=float))
    if matrix.size == 0:
        return 0
    return int(np.linalg.matrix_rank(matrix, tol=tol))
