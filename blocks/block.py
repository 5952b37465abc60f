"""Standalone building blocks and their parametrizations phi.

A `Block` is a set of parameters of the network together with the map through which
the network's output depends on them; its `Parametrization` lists the components of
phi, split into groups over disjoint variables. Variables of a block are numbered
0..D-1 in the order of ``Block.parameters`` (C order inside each tensor).

Two forms of a group's phi exist:

- `PolynomialGroup`: explicit polynomial components (any degree);
- `ProductGroup`: the components are all products ``theta_p * theta_q`` for the
  pairs of a union of rectangles ``left x right``, with coefficient 1. It stands for
  the same polynomials, stored without expanding them, for blocks too large to list
  phi one component at a time.
- `BilinearGroup`: the components are all entries of ``U V^T`` for two matrices of
  variables sharing their inner index (an attention head, a pair of linear layers
  without activation), stored as the two arrays of variables.

Examples
--------
>>> block = Block("w", "custom", ("w",), (("w", (2,)),))
>>> block.dimension, block.entry(1)
(2, ('w', (1,)))
"""

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np

from algebra.polynomial import Polynomial

__all__ = [
    "BilinearGroup",
    "Block",
    "Parametrization",
    "PolynomialGroup",
    "ProductGroup",
]


@dataclass(frozen=True)
class Block:
    """A standalone building block.

    Parameters
    ----------
    name : str
        A readable name, e.g. ``fc1+fc2`` or ``attn.head0.qk``.
    kind : str
        ``pair``, ``residual``, ``attention_qk``, ``attention_vo``, ``custom``.
    layers : tuple of str
        The graph nodes it is made of.
    parameters : tuple of (str, tuple of int)
        Parameter name and shape, in variable order. A ``slice`` entry in `views`
        may restrict a parameter to part of its tensor.
    activation : str
        The activation between the layers of a pair (``identity`` if none).
    options : tuple
        Extra (key, value) pairs: activation options, head index.
    views : tuple
        For each parameter, None (the whole tensor) or ``(axis, start, stop)``:
        the block holds only indices ``start <= i < stop`` along `axis`.
    """

    name: str
    kind: str
    layers: tuple
    parameters: tuple
    activation: str = "identity"
    options: tuple = ()
    views: tuple = ()

    def shapes(self):
        """Return the shape of the part of each parameter that the block holds."""
        views = self.views or (None,) * len(self.parameters)
        shapes = []
        for (_, shape), view in zip(self.parameters, views, strict=True):
            if view is not None:
                axis, start, stop = view
                shape = shape[:axis] + (stop - start,) + shape[axis + 1 :]
            shapes.append(tuple(shape))
        return tuple(shapes)

    @property
    def sizes(self):
        """The number of variables of each parameter."""
        return tuple(math.prod(shape) for shape in self.shapes())

    @property
    def dimension(self):
        """D, the number of variables of the block."""
        return sum(self.sizes)

    def entry(self, var):
        """Return (parameter name, index tuple) of block variable `var`."""
        views = self.views or (None,) * len(self.parameters)
        for (name, _), view, shape in zip(
            self.parameters, views, self.shapes(), strict=True
        ):
            size = math.prod(shape)
            if var < size:
                index = [int(i) for i in np.unravel_index(var, shape)]
                if view is not None:
                    index[view[0]] += view[1]
                return name, tuple(index)
            var -= size
        raise IndexError(f"variable {var} is beyond the block")


@dataclass(frozen=True)
class PolynomialGroup:
    """Explicit components of phi over the variables of one group.

    Parameters
    ----------
    variables : tuple of int
        Block variables of the group, sorted; local variable k is
        ``variables[k]``.
    components : tuple of Polynomial
        phi's components in local numbering.
    """

    variables: tuple
    components: tuple

    @property
    def signature(self):
        """A canonical key: identical groups (up to renaming) share it."""
        return (
            "poly",
            len(self.variables),
            tuple(sorted(tuple(sorted(p.terms.items())) for p in self.components)),
        )


@dataclass(frozen=True)
class ProductGroup:
    """All products ``theta_p theta_q`` over a union of rectangles.

    Parameters
    ----------
    variables : sequence of int
        Block variables of the group, sorted.
    rectangles : tuple of (ndarray, ndarray)
        Pairs of local-variable arrays (left, right); every product of a left and
        a right variable is a component of phi.
    """

    variables: tuple
    rectangles: tuple = field(compare=False)

    @property
    def signature(self):
        """A canonical key built from the local rectangles."""
        parts = sorted(
            (np.asarray(left).tobytes(), np.asarray(right).tobytes())
            for left, right in self.rectangles
        )
        return ("product", len(self.variables), tuple(parts))

    def expand(self):
        """Return the same phi as a `PolynomialGroup` (small groups only)."""
        products = set()
        for left, right in self.rectangles:
            for p in left:
                for q in right:
                    products.add((int(min(p, q)), int(max(p, q))))
        components = tuple(
            Polynomial({((p, 1), (q, 1)) if p != q else ((p, 2),): 1})
            for p, q in sorted(products)
        )
        return PolynomialGroup(self.variables, components)


@dataclass(frozen=True)
class BilinearGroup:
    """All entries of ``U V^T``: ``phi_aj = sum_k U[a, k] V[j, k]``.

    The rows of U (and of V) are split into orbits: sets of rows that play the
    same role, such as the weight rows and the bias row of a layer. Every row of U
    meets every row of V, so the components are the same whatever the split; the
    orbits only say which rows the certificate may treat alike (see
    `algebra.bilinear`).

    Parameters
    ----------
    variables : tuple of int
        Block variables of the group, sorted; local variable k is
        ``variables[k]``.
    left : tuple of ndarray
        The orbits of rows of U, each an integer array (rows, inner) of local
        variables.
    right : tuple of ndarray
        The orbits of rows of V, likewise, with the same inner size.
    """

    variables: tuple
    left: tuple = field(compare=False)
    right: tuple = field(compare=False)

    @property
    def inner(self):
        """r, the size of the shared inner index."""
        return int(self.left[0].shape[1])

    @property
    def signature(self):
        """A canonical key: orbit shapes and a digest of the local arrays."""
        digest = hashlib.sha256()
        for orbit in self.left + (None,) + self.right:
            if orbit is None:
                digest.update(b"|")
            else:
                digest.update(np.ascontiguousarray(orbit, dtype=np.int64).tobytes())
                digest.update(repr(orbit.shape).encode())
        shapes = tuple(o.shape for o in self.left), tuple(o.shape for o in self.right)
        return ("bilinear", len(self.variables), shapes, digest.hexdigest())

    def expand(self):
        """Return the same phi as a `PolynomialGroup` (small groups only)."""
        left = np.concatenate(self.left)
        right = np.concatenate(self.right)
        components = []
        for a in left:
            for j in right:
                terms = {}
                for p, q in zip(a.tolist(), j.tolist(), strict=True):
                    mono = ((min(p, q), 1), (max(p, q), 1)) if p != q else ((p, 2),)
                    terms[mono] = terms.get(mono, 0) + 1
                components.append(Polynomial(terms))
        return PolynomialGroup(self.variables, tuple(components))


@dataclass(frozen=True)
class Parametrization:
    """phi of a block, as groups over disjoint variables.

    Parameters
    ----------
    groups : tuple
        `PolynomialGroup`, `ProductGroup` or `BilinearGroup` objects.
    free : tuple of int
        Block variables on which phi does not depend (each one is conserved).
    note : str
        What the builder could not do (empty when phi is complete).
    symbolic : tuple
        For a non-polynomial custom phi: (symbols, sympy expressions).
    """

    groups: tuple
    free: tuple = ()
    note: str = ""
    symbolic: tuple = ()
