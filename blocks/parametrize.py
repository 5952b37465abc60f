"""Dispatch a block to the builder of its parametrization phi.

Examples
--------
>>> from blocks.model_file import load_model
>>> from blocks.graph import build_graph
>>> from blocks.split import split_into_blocks
>>> graph = build_graph(load_model({"input": [2], "layers": [
...     {"type": "linear", "name": "a", "out": 1}, {"type": "relu"},
...     {"type": "linear", "name": "b", "out": 1}]}))
>>> (block,) = split_into_blocks(graph)
>>> [str(p) for g in parametrize(block, graph).groups for p in g.components]
['x0*x2', 'x1*x2']
"""

from blocks.attention import head_parametrization
from blocks.block import Parametrization
from blocks.pairs import ACTIVATION_DEGREE, pair_parametrization
from blocks.symbolic import block_model

__all__ = ["parametrize", "symbolic_parametrization"]


def symbolic_parametrization(block, graph):
    """Describe a block by its output g(theta, x), for the sampled-gradient path."""
    names = [name for name, _ in block.parameters]
    model = block_model(graph, block.layers, names)
    return Parametrization((), note="", symbolic=model)


def _pair(block, graph):
    polynomial = block.activation in ACTIVATION_DEGREE or block.activation in (
        "relu_power",
        "leaky_relu",
    )
    if polynomial:
        return pair_parametrization(block, graph)
    return symbolic_parametrization(block, graph)


_BUILDERS = {
    "pair": _pair,
    "residual": _pair,
    "affine_pair": symbolic_parametrization,
    "normalization": symbolic_parametrization,
    "softmax": symbolic_parametrization,
    "swiglu": symbolic_parametrization,
    "attention_qk": head_parametrization,
    "attention_vo": head_parametrization,
}


def parametrize(block, graph):
    """Build phi of a block of the model graph.

    Parameters
    ----------
    block : Block
        A block from `blocks.split.split_into_blocks`.
    graph : networkx.DiGraph
        The graph it came from.

    Returns
    -------
    Parametrization

    Raises
    ------
    NotImplementedError
        When the block's kind or activation has no builder; the message names it.
    """
    if block.kind not in _BUILDERS:
        raise NotImplementedError(
            f"no parametrization for blocks of kind '{block.kind}'; "
            f"known kinds: {', '.join(sorted(_BUILDERS))}"
        )
    return _BUILDERS[block.kind](block, graph)
