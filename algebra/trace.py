"""The dimension of the trace Lie(V)(theta) at a random point, exactly.

The fields of V are pruned to a basis of their values at a random point theta, then
brackets of pairs of basis fields are added while they raise the rank, until a full
pass adds nothing (the span is then closed under brackets near theta) or the rank
reaches D. Ranks are taken modulo a prime, so the result is a lower bound for the
generic dimension of Lie(V)(theta): the upper bound ``N <= D - rank`` on the number
of conservation laws holds whatever happens.

Pruning by values is sound for the count: where the ranks are locally constant, a
field whose value lies in the span of the basis fields is a combination of them with
smooth coefficients, and so are its brackets.

Examples
--------
>>> from algebra.fields import gradient_field
>>> from algebra.polynomial import Polynomial
>>> phi = Polynomial.from_terms({((0, 1), (1, 1), (2, 1)): 1})  # x0 x1 x2
>>> trace_dimension([gradient_field(phi, 3)], seed=0).rank
1

References
----------
Marcotte, Gribonval, Peyre, arXiv 2307.00144, Theorem 3.3 (Frobenius) and the
stabilization criterion of section 3.
"""

from dataclasses import dataclass

import numpy as np

from algebra.brackets import BracketTable
from algebra.rank import PRIME, Echelon, mod_matmul, random_point

__all__ = ["TraceResult", "trace_dimension"]


@dataclass(frozen=True)
class TraceResult:
    """What `trace_dimension` found.

    Attributes
    ----------
    rank : int
        A lower bound (exact modulo PRIME) for dim Lie(V)(theta).
    depth : int
        The largest bracket depth that raised the rank (1: the fields alone).
    closed : bool
        True when a full pass of brackets added nothing, or the rank reached D.
    brackets : int
        The number of brackets expanded symbolically.
    """

    rank: int
    depth: int
    closed: bool
    brackets: int


def trace_dimension(fields, seed=0, max_pairs=200_000, table=None):
    """Compute dim Lie(V)(theta) at a random point, exactly modulo a prime.

    Parameters
    ----------
    fields : sequence of VectorField
        The generators V, all on the same space R^D.
    seed : int
        Seed of the random point, so that results repeat.
    max_pairs : int
        Stop (with ``closed=False``) after evaluating this many brackets.
    table : BracketTable, optional
        The bracket memo to use; a new one by default.

    Returns
    -------
    TraceResult
    """
    if not fields:
        return TraceResult(0, 0, True, 0)
    table = table or BracketTable()
    dimension = fields[0].dimension
    point = random_point(dimension, seed)

    echelon = Echelon(dimension)
    values = np.array([X.value_mod(point, PRIME) for X in fields])
    basis = [(fields[k], 1) for k in echelon.add_many(values)]
    return _close_under_brackets(basis, echelon, point, table, max_pairs)


def _close_under_brackets(basis, echelon, point, table, max_pairs):
    """Add brackets of basis pairs while they raise the rank at `point`."""
    dimension = echelon.width
    values = [X.value_mod(point, PRIME) for X, _ in basis]
    jacobians = [X.jacobian_mod(point, PRIME) for X, _ in basis]
    frontier, pairs, depth = range(len(basis)), 0, 1
    while len(frontier) and echelon.rank < dimension:
        start = len(basis)
        for a in frontier:
            for b in range(a):
                if pairs >= max_pairs:
                    return TraceResult(echelon.rank, depth, False, table.computed)
                pairs += 1
                value = _bracket_value(jacobians, values, a, b)
                if echelon.add(value):
                    bracket = table.bracket(basis[a][0], basis[b][0])
                    level = basis[a][1] + basis[b][1]
                    basis.append((bracket, level))
                    values.append(value)
                    jacobians.append(bracket.jacobian_mod(point, PRIME))
                    depth = max(depth, level)
        frontier = range(start, len(basis))
    return TraceResult(echelon.rank, depth, True, table.computed)


def _bracket_value(jacobians, values, a, b):
    """Return ``[X_a, X_b](point) = DX_b X_a - DX_a X_b`` modulo PRIME."""
    forward = mod_matmul(jacobians[b], values[a])
    backward = mod_matmul(jacobians[a], values[b])
    return np.mod(forward - backward, PRIME)
