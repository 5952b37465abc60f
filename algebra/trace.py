"""The dimension of the trace Lie(V)(theta) at a random point, exactly.

The fields of V are pruned to a basis of their values at a random point theta, then
brackets of pairs of basis fields are added while they raise the rank, until a full
pass adds nothing (the span is then closed under brackets near theta), the rank
reaches D, or it reaches a target given by the caller (D minus the number of
verified laws: the rank cannot go higher, so the closure is complete there).

A bracket's value at theta comes from the Jacobians of its two fields, and the
Jacobian of a bracket that joins the basis from their first and second derivatives
(`algebra.compiled.bracket_jacobian`). A bracket is expanded symbolically over
GF(p) only when it becomes a parent: the Jacobian of its own brackets needs its
second derivatives.

Ranks are taken modulo a prime, so the result is a lower bound for the generic
dimension of Lie(V)(theta): the upper bound ``N <= D - rank`` on the number of
conservation laws holds whatever happens.

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

from algebra.compiled import FieldSet, bracket, bracket_jacobian
from algebra.rank import PRIME, Echelon, mod_matmul, random_point

__all__ = ["TraceResult", "trace_dimension"]

STACK_LIMIT = 2**25


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
        True when a full pass of brackets added nothing, or the rank reached D or
        the target.
    brackets : int
        The number of brackets expanded symbolically.
    """

    rank: int
    depth: int
    closed: bool
    brackets: int


def trace_dimension(fields, seed=0, max_pairs=200_000, target=None):
    """Compute dim Lie(V)(theta) at a random point, exactly modulo a prime.

    Parameters
    ----------
    fields : sequence of VectorField, or FieldSet
        The generators V, all on the same space R^D.
    seed : int
        Seed of the random point, so that results repeat.
    max_pairs : int
        Stop (with ``closed=False``) after evaluating this many brackets.
    target : int, optional
        Stop as soon as the rank reaches it (default D). Pass D minus the number
        of verified independent laws: the generic rank cannot exceed it.

    Returns
    -------
    TraceResult
    """
    if not isinstance(fields, FieldSet):
        if not fields:
            return TraceResult(0, 0, True, 0)
        fields = FieldSet.from_fields(fields, fields[0].dimension)
    if not fields.count:
        return TraceResult(0, 0, True, 0)
    dimension = fields.dimension
    target = dimension if target is None else min(target, dimension)
    point = random_point(dimension, seed)

    echelon = Echelon(dimension)
    every = fields.modular
    values = every.values_by_slot(point, fields.count * dimension)
    values = values.reshape(fields.count, dimension)
    kept = echelon.add_many(values)
    if echelon.rank >= target:
        return TraceResult(echelon.rank, 1, True, 0)
    closure = _Closure(point, echelon, target)
    for k, field in zip(kept, every.split(kept, dimension), strict=True):
        closure.append(field, None, 1, values[k])
    return closure.run(max_pairs)


class _Closure:
    """The basis fields, their values and Jacobians at the point, and the pass.

    A basis field is held expanded (a TermArray) or as the pair of basis indices it
    is the bracket of, expanded when first needed.
    """

    def __init__(self, point, echelon, target):
        self.point = point
        self.echelon = echelon
        self.target = target
        self.fields, self.parents, self.levels = [], [], []
        self.values, self.jacobians = [], []
        self.expanded = 0
        d = echelon.width
        # At most d fields join the basis (each raises the rank).
        self.stack = np.zeros((d, d, d)) if d**3 <= STACK_LIMIT else None

    def append(self, field, parents, level, value):
        if field is None:
            a, b = parents
            jacobian = bracket_jacobian(
                self.field(a),
                self.field(b),
                self.point,
                self.jacobians[a],
                self.jacobians[b],
            )
        else:
            jacobian = field.jacobian_mod(self.point)
        self.fields.append(field)
        self.parents.append(parents)
        self.levels.append(level)
        self.values.append(value)
        self.jacobians.append(jacobian)
        if self.stack is not None:
            self.stack[len(self.jacobians) - 1] = jacobian

    def field(self, k):
        """Basis field k, expanded."""
        if self.fields[k] is None:
            a, b = self.parents[k]
            self.fields[k] = bracket(self.field(a), self.field(b))
            self.expanded += 1
        return self.fields[k]

    def run(self, max_pairs):
        frontier, pairs, depth = range(len(self.fields)), 0, 1
        while len(frontier) and self.echelon.rank < self.target:
            start = len(self.fields)
            for a in frontier:
                if pairs + a > max_pairs:
                    return TraceResult(self.echelon.rank, depth, False, self.expanded)
                pairs += a
                candidates = self._bracket_values(a)
                for b in self.echelon.add_many(candidates):
                    level = self.levels[a] + self.levels[b]
                    depth = max(depth, level)
                    if self.echelon.rank >= self.target:
                        return TraceResult(
                            self.echelon.rank, depth, True, self.expanded
                        )
                    self.append(None, (a, b), level, candidates[b])
            frontier = range(start, len(self.fields))
        return TraceResult(self.echelon.rank, depth, True, self.expanded)

    def _bracket_values(self, a):
        """Rows ``[X_a, X_b](point)`` for b < a, modulo PRIME."""
        if a == 0:
            return np.zeros((0, self.echelon.width))
        value = self.values[a]
        if self.stack is not None:
            forward = np.mod(self.stack[:a] @ value, PRIME)
        else:
            forward = np.array([mod_matmul(J, value) for J in self.jacobians[:a]])
        backward = mod_matmul(np.array(self.values[:a]), self.jacobians[a].T)
        return np.mod(forward - backward, PRIME)
