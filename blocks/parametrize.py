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
from blocks.pairs import pair_parametrization

__all__ = ["parametrize"]

_BUILDERS = {
    "pair": pair_parametrization,
    "residual": pair_parametrization,
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
