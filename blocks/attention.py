"""phi of an attention head: the query-key and value-output products.

A head computes ``softmax(X Q K^T X^T) X V O^T``. Its output depends on Q and K only
through the d x d matrix ``Q K^T``, and on V and O only through ``V O^T``; these
products are phi for the head's two blocks.

Notes
-----
Biases of the projections are not handled yet: `head_parametrization` raises
NotImplementedError for an attention layer with ``bias: true``.
"""

from algebra.polynomial import Polynomial
from blocks.block import Parametrization
from blocks.pairs import group_components

__all__ = ["head_parametrization", "HEAD_EXPAND_LIMIT"]

HEAD_EXPAND_LIMIT = 200_000


def head_parametrization(block, graph, expand_limit=HEAD_EXPAND_LIMIT):
    """Build phi of an ``attention_qk`` or ``attention_vo`` block.

    Parameters
    ----------
    block : Block
        The head's block; its two parameters are the head's slices, first factor
        then second factor, each of shape (rows, inner) after the slice.
    graph : networkx.DiGraph
        The model graph.
    expand_limit : int
        Larger products are reported as too large to expand.

    Returns
    -------
    Parametrization
    """
    (layer,) = block.layers
    if graph.nodes[layer]["layer"].option("bias"):
        raise NotImplementedError(
            "attention with bias: true is not handled yet; set bias: false"
        )
    left, right = (_matrix_shape(block, k) for k in (0, 1))
    inner = left[1]
    terms = left[0] * right[0] * inner
    if terms > expand_limit:
        return Parametrization((), note=f"phi has {terms} terms; too large to expand")

    offset = left[0] * left[1]
    polys = []
    for i in range(left[0]):
        for o in range(right[0]):
            poly = Polynomial(
                {
                    ((i * inner + j, 1), (offset + _right_var(block, o, j), 1)): 1
                    for j in range(inner)
                }
            )
            polys.append(poly)
    return group_components(polys, block.dimension)


def _matrix_shape(block, k):
    """The (rows, inner) shape of factor k of the product."""
    shape = block.shapes()[k]
    if block.kind == "attention_vo" and k == 1:
        return shape
    return shape[1:]


def _right_var(block, row, j):
    """The local variable of entry (row, j) of the second factor."""
    if block.kind == "attention_vo":
        return row * block.shapes()[1][1] + j
    return row * block.shapes()[1][2] + j
