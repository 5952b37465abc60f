"""Certify blocks whose phi is a set of products theta_p theta_q, without expanding.

For a component ``phi = theta_p theta_q`` the field is
``X_pq = theta_q e_p + theta_p e_q``. Two facts make large families cheap:

- Rank. Take the graph whose edges are the products. Along a spanning forest,
  ordered from the leaves, each edge's field has a nonzero entry (theta of its
  parent end, nonzero at a point with no zero coordinate) in the column of its
  leaf end, where no later edge has one: the values are triangular, so the rank
  at that point is at least the number of forest edges, ``d - components``.
- Laws. For ``h = sum s_v theta_v^2``, ``grad h . X_pq = 2 (s_p + s_q) theta_p
  theta_q``. When every product joins a left and a right variable, ``s = +1`` on
  the left and ``-1`` on the right of each component gives a law, verified by
  checking ``s_p + s_q = 0`` on every edge.

Both ends come from the fields themselves; where they meet the count is certified
without a single bracket.

Examples
--------
>>> import numpy as np
>>> from blocks.block import ProductGroup
>>> group = ProductGroup((0, 1, 2), ((np.array([0]), np.array([1, 2])),))
>>> result = certify_products(group)
>>> result.status, result.lie_dim, [str(h) for h in result.laws]
('certified', 2, ['x0**2 - x1**2 - x2**2'])
"""

import numpy as np

from algebra.certificate import Certificate
from algebra.polynomial import Polynomial

__all__ = ["certify_products"]


def certify_products(group):
    """Certify the number of laws of a `ProductGroup` from its graph of products.

    Parameters
    ----------
    group : ProductGroup
        Products over a union of rectangles, in local variables 0..d-1.

    Returns
    -------
    Certificate
        Laws in local variables.

    Raises
    ------
    NotImplementedError
        When a variable is a left end of one product and a right end of another;
        expand the group and use `algebra.certificate.certify` instead.
    """
    d = len(group.variables)
    side = np.zeros(d, dtype=np.int8)
    for left, right in group.rectangles:
        side[left] |= 1
        side[right] |= 2
    if np.any(side == 3) or np.any(side == 0):
        raise NotImplementedError(
            "products that are not between two disjoint sides of variables; "
            "expand the group and certify it with algebra.certificate.certify"
        )

    labels = _components(d, group.rectangles)
    sign = np.where(side == 1, 1, -1)
    for left, right in group.rectangles:
        if np.any(sign[left][:, None] + sign[right][None, :] != 0):
            raise AssertionError("a product joins two variables of one side")
    laws = tuple(_law(labels == k, sign) for k in range(labels.max() + 1))
    rank = d - len(laws)
    return Certificate(
        d,
        rank,
        laws,
        "certified",
        (len(laws), d - rank),
        1,
        True,
        "rank from a triangular spanning forest of the products; laws verified "
        "on every product",
    )


def _components(d, rectangles):
    """Label the connected components of the product graph (union-find)."""
    parent = np.arange(d)

    def root(v):
        while parent[v] != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    for left, right in rectangles:
        members = np.concatenate([left, right])
        r0 = root(int(members[0]))
        for v in members[1:]:
            rv = root(int(v))
            if rv != r0:
                parent[rv] = r0
    roots = np.array([root(v) for v in range(d)])
    _, labels = np.unique(roots, return_inverse=True)
    return labels


def _law(mask, sign):
    """Return the law sum(s_v theta_v^2) over one component."""
    return Polynomial({((int(v), 2),): int(sign[v]) for v in np.flatnonzero(mask)})
