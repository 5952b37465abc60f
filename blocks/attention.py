"""phi of an attention head: the query-key and value-output products.

A head computes ``softmax((X Q + 1 b_q^T)(X K + 1 b_k^T)^T) (X V + 1 b_v^T) O^T``.
Softmax normalizes each row of scores, so terms constant along a row vanish: the
key bias drops out, and the scores depend on the query-key parameters through
``Q K^T`` and ``K b_q``. Rows of softmax sum to one, so the output depends on the
value-output parameters through ``V O^T`` and ``O b_v``. These are phi.

With rotary position encoding (``rope: true``) the scores between tokens m and n
are ``sum_f q_f^T R(w_f (n - m)) k_f`` over the 2 x 2 frequency blocks f of the
head. As the offset n - m varies, the rotations span the identity and the quarter
turn J, so phi holds ``Q_f K_f^T`` and ``Q_f J K_f^T`` (and ``K_f b_f``,
``K_f J^T b_f``) for every f.

Examples
--------
>>> from blocks.model_file import load_model
>>> from blocks.graph import build_graph
>>> from blocks.split import split_into_blocks
>>> graph = build_graph(load_model({"input": [2, 2], "layers": [
...     {"type": "attention", "name": "at", "heads": 1, "head_dim": 1}]}))
>>> qk = split_into_blocks(graph)[0]
>>> [str(p) for g in head_parametrization(qk, graph).groups for p in g.components]
['x0*x2', 'x0*x3', 'x1*x2', 'x1*x3']
"""

import numpy as np

from algebra.errors import ArchitectureError
from algebra.polynomial import Polynomial
from blocks.block import BilinearGroup, Parametrization
from blocks.pairs import group_components

__all__ = ["bilinear_parametrization", "head_parametrization", "HEAD_EXPAND_LIMIT"]

HEAD_EXPAND_LIMIT = 200_000


def head_parametrization(block, graph, expand_limit=HEAD_EXPAND_LIMIT):
    """Build phi of an ``attention_qk`` or ``attention_vo`` block.

    Parameters
    ----------
    block : Block
        The head's block (see `blocks.split`).
    graph : networkx.DiGraph
        The model graph.
    expand_limit : int
        Larger products are stored as a `BilinearGroup` (or, with rope,
        reported as too large to expand).

    Returns
    -------
    Parametrization

    Raises
    ------
    ArchitectureError
        With ``rope: true`` and an odd head dimension.
    """
    (node,) = block.layers
    layer = graph.nodes[node]["layer"]
    rope = layer.option("rope") and block.kind == "attention_qk"
    if block.kind == "attention_qk" and graph.nodes[node]["in_shape"][0] == 1:
        # One token: softmax of one score is 1, whatever Q and K are.
        return Parametrization((), free=tuple(range(block.dimension)))
    left, right = _matrices(block)
    inner = left.shape[1]
    if rope and len(block.parameters) > 2:
        # Rotated biases meet the keys' bias too (b_q R b_k and x Q R b_k change
        # with the offset), so the key bias is not free: not handled yet.
        return Parametrization(
            (), note="rope with biases is not handled; the count is not searched"
        )
    if rope and inner % 2:
        raise ArchitectureError(f"{node}: rope needs an even head_dim; got {inner}")
    terms = left.shape[0] * right.shape[0] * inner * (2 if rope else 1)
    if terms > expand_limit and not rope:
        return _bilinear_head(block, left, right)
    if terms > expand_limit:
        return Parametrization((), note=f"phi has {terms} terms; too large to expand")

    forms = _rotations(inner) if rope else [np.eye(inner, dtype=int)]
    polys = [_bilinear(a, M, b) for M in forms for a in left for b in right]
    bias = _bias(block)
    if bias is not None:
        # The query bias meets the keys; the value bias meets the output rows.
        partners = right if block.kind == "attention_qk" else left
        polys += [_bilinear(bias, M, b) for M in forms for b in partners]
    return group_components([p for p in polys if p], block.dimension)


def _bilinear_head(block, left, right):
    """Store phi of a large head as a `BilinearGroup`, without expanding it.

    The query bias is one more row beside the query rows (it meets the keys);
    the value bias one more row beside the value rows (it meets the output rows).
    """
    bias = _bias(block)
    left_orbits, right_orbits = [left], [right]
    if bias is not None:
        side = left_orbits if block.kind == "attention_qk" else right_orbits
        side.append(bias[None, :])
    return bilinear_parametrization(left_orbits, right_orbits, block.dimension)


def _matrices(block):
    """Variable numbers of the two factors, as (rows, inner) integer arrays."""
    starts = np.concatenate([[0], np.cumsum(block.sizes)])
    shapes = block.shapes()
    first = np.arange(starts[0], starts[1]).reshape(shapes[0][1:])
    second = np.arange(starts[1], starts[2]).reshape(shapes[1][-2:])
    if block.kind == "attention_vo":
        first, second = second, first
    return first, second


def _bias(block):
    """Variables of the bias that multiplies the second factor, if any."""
    names = [name.rsplit(".", 1)[1] for name, _ in block.parameters]
    wanted = "query_bias" if block.kind == "attention_qk" else "value_bias"
    if wanted not in names:
        return None
    k = names.index(wanted)
    start = int(np.sum(block.sizes[:k]))
    return np.arange(start, start + block.sizes[k])


def bilinear_parametrization(left, right, dimension):
    """Build a one-group phi from the orbits of rows of U and V (block variables).

    Parameters
    ----------
    left, right : list of ndarray
        Orbits of rows of U and of V, arrays (rows, inner) of block variables.
    dimension : int
        D of the block; variables in no orbit are free.

    Returns
    -------
    Parametrization
        One `BilinearGroup` in local variables.
    """
    used = np.zeros(dimension, dtype=bool)
    for orbit in left + right:
        used[orbit] = True
    position = np.cumsum(used) - 1  # local number of each used block variable
    local = tuple(
        tuple(position[o].astype(np.int64) for o in side) for side in (left, right)
    )
    variables = tuple(np.flatnonzero(used).tolist())
    group = BilinearGroup(variables, local[0], local[1])
    return Parametrization((group,), tuple(np.flatnonzero(~used).tolist()))


def _rotations(inner):
    """Block-diagonal identity and quarter turn, over the 2 x 2 frequency blocks."""
    forms = []
    for f in range(inner // 2):
        for turn in (np.array([[1, 0], [0, 1]]), np.array([[0, -1], [1, 0]])):
            M = np.zeros((inner, inner), dtype=int)
            M[2 * f : 2 * f + 2, 2 * f : 2 * f + 2] = turn
            forms.append(M)
    return forms


def _bilinear(a, M, b):
    """Return the polynomial ``a^T M b`` in the variables of a and b."""
    terms = {}
    for i, j in zip(*np.nonzero(M), strict=True):
        p, q = int(a[i]), int(b[j])
        mono = ((min(p, q), 1), (max(p, q), 1)) if p != q else ((p, 2),)
        terms[mono] = terms.get(mono, 0) + int(M[i, j])
    return Polynomial(terms)
