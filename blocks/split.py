"""Split a model graph into standalone blocks, on the graph itself.

A law that depends only on the parameters of one block is a law of the whole network
exactly when it is a law of the block analysed alone (DESIGN.md section 2, item 4).
The blocks found here are:

- pairs: a linear or convolutional layer A whose output flows only, through
  element-wise activations (at most one that is not the identity) and reshapes,
  into a single linear or convolutional layer B that reads nothing else. The block
  holds A's weight and bias and B's weight. A pair that is the whole body of a
  residual connection is of kind ``residual`` (a skip connection does not change
  the laws, DESIGN.md section 2, item 5);
- attention heads: per head, the query-key pair and the value-output pair.

Parameters in no block (a last bias, a layer between two residual additions) are
listed by `unblocked_parameters`.

Examples
--------
>>> from blocks.model_file import load_model
>>> from blocks.graph import build_graph
>>> graph = build_graph(load_model({"input": [3], "layers": [
...     {"type": "linear", "name": "fc1", "out": 2, "bias": True}, {"type": "relu"},
...     {"type": "linear", "name": "fc2", "out": 1, "bias": True}]}))
>>> [(b.name, b.kind, b.activation) for b in split_into_blocks(graph)]
[('fc1+fc2', 'pair', 'relu')]
>>> unblocked_parameters(graph, split_into_blocks(graph))
{'fc2.bias': (1,)}
"""

import networkx as nx

from blocks.block import Block
from blocks.graph import ELEMENTWISE

__all__ = ["split_into_blocks", "unblocked_parameters"]

AFFINE = frozenset({"linear", "conv1d", "conv2d"})
RESHAPES = frozenset({"flatten"})


NORMALIZATIONS = frozenset({"layernorm", "batchnorm"})


def split_into_blocks(graph):
    """Find the standalone blocks of a model graph.

    Parameters
    ----------
    graph : networkx.DiGraph
        The output of `blocks.graph.build_graph`.

    Returns
    -------
    list of Block
        In topological order of their first layer.
    """
    blocks = []
    for node in nx.topological_sort(graph):
        kind = graph.nodes[node]["kind"]
        if kind in AFFINE:
            block = _feeding_block(graph, node) or _pair_from(graph, node)
        elif kind in NORMALIZATIONS:
            block = _pair_from(graph, node) if _params(graph, node) else None
        elif kind == "swiglu":
            block = Block(node, "swiglu", (node,), _params(graph, node))
        elif kind == "attention":
            blocks.extend(_attention_heads(graph, node))
            continue
        else:
            continue
        if block is not None:
            blocks.append(block)
    return blocks


def _params(graph, node):
    return tuple(graph.nodes[node]["params"].items())


def _feeding_block(graph, node):
    """Return the block of a layer feeding a normalization or softmax output."""
    successors = list(graph.successors(node))
    if len(successors) != 1 or graph.in_degree(successors[0]) != 1:
        return None
    (after,) = successors
    kind = graph.nodes[after]["kind"]
    if kind in NORMALIZATIONS:
        name = "normalization"
    elif kind == "softmax" and graph.out_degree(after) == 0:
        name = "softmax"
    else:
        return None
    return Block(f"{node}+{after}", name, (node, after), _params(graph, node))


def unblocked_parameters(graph, blocks):
    """Return the parameters (name to shape) that belong to no block."""
    covered = {name for block in blocks for name, _ in block.parameters}
    return {
        name: shape
        for _, params in graph.nodes(data="params")
        for name, shape in params.items()
        if name not in covered
    }


def _pair_from(graph, first):
    """Return the pair block that starts at `first`, or None.

    `first` is a linear or convolutional layer, or a normalization with affine
    parameters (its scale and shift pair with the next layer).
    """
    node, activations, chain = first, [], [first]
    while True:
        successors = list(graph.successors(node))
        if len(successors) != 1 or graph.in_degree(successors[0]) != 1:
            return None
        node = successors[0]
        chain.append(node)
        kind = graph.nodes[node]["kind"]
        if kind in AFFINE:
            break
        if kind not in ELEMENTWISE | RESHAPES:
            return None
        if kind in ELEMENTWISE and kind != "identity":
            activations.append(node)
    if len(activations) > 1:
        return None

    return _make_pair(graph, tuple(chain), activations)


def _make_pair(graph, chain, activations):
    """Build the Block of a pair of layers joined through `activations`."""
    first, second = chain[0], chain[-1]
    activation, options = "identity", ()
    if activations:
        layer = graph.nodes[activations[0]]["layer"]
        activation, options = layer.type, layer.options
    params = list(graph.nodes[first]["params"].items())
    params.append(
        (f"{second}.weight", graph.nodes[second]["params"][f"{second}.weight"])
    )
    kind = "residual" if _is_residual_body(graph, first, second) else "pair"
    if graph.nodes[first]["kind"] in NORMALIZATIONS:
        kind = "affine_pair"
    return Block(f"{first}+{second}", kind, chain, tuple(params), activation, options)


def _is_residual_body(graph, first, second):
    """Whether the pair is the whole body of a residual connection."""
    (source,) = graph.predecessors(first)
    successors = list(graph.successors(second))
    if len(successors) != 1:
        return False
    add = successors[0]
    if graph.nodes[add]["kind"] != "add" or graph.edges[second, add]["roles"] != (
        "body",
    ):
        return False
    (skip,) = (n for n in graph.predecessors(add) if n != second)
    return skip == source or (
        source in nx.ancestors(graph, skip) and first not in nx.ancestors(graph, skip)
    )


def _attention_heads(graph, node):
    """Return the query-key and value-output blocks of each head.

    The query-key block holds the query and key slices of the head and, with
    biases, the query and key biases (softmax removes the key bias, which is then
    conserved); the value-output block holds the value slice, the head's columns
    of the output matrix and the value bias.
    """
    params = graph.nodes[node]["params"]
    heads = params[f"{node}.query"][0]
    value_dim = params[f"{node}.value"][2]
    blocks = []
    for h in range(heads):
        head = (0, h, h + 1)
        columns = (1, h * value_dim, (h + 1) * value_dim)
        for kind, names, views in (
            ("qk", ("query", "key", "query_bias", "key_bias"), (head,) * 4),
            ("vo", ("value", "output", "value_bias"), (head, columns, head)),
        ):
            present = [
                (f"{node}.{n}", v)
                for n, v in zip(names, views, strict=True)
                if f"{node}.{n}" in params
            ]
            blocks.append(
                Block(
                    f"{node}.head{h}.{kind}",
                    f"attention_{kind}",
                    (node,),
                    tuple((name, params[name]) for name, _ in present),
                    options=(("head", h),),
                    views=tuple(view for _, view in present),
                )
            )
    return blocks


def input_constraint(graph, block):
    """Say why a block's input is confined to a subspace, or return "".

    The blocks' phi are coefficients in an input x that ranges over all of R^n. The
    output of a layernorm without affine parameters has mean zero, and a softmax's
    sums to one, so a layer reading it sees only a subspace, and directions of its
    weight that only meet the missing ones are conserved too (the row sums of a
    linear layer after a layernorm). Those laws are not searched.
    """
    for source in graph.predecessors(block.layers[0]):
        while graph.nodes[source]["kind"] in ("identity", "flatten"):
            (source,) = graph.predecessors(source)
        attrs = graph.nodes[source]
        layer = attrs.get("layer")
        if attrs["kind"] == "layernorm" and not layer.option("affine"):
            what = "a layernorm without affine parameters, whose output has mean zero"
        elif attrs["kind"] == "softmax":
            what = "a softmax, whose output sums to one"
        else:
            continue
        return (
            f"its input comes from {source}, {what}: the laws this adds (such as "
            "sums of the first weight along the input) are not searched, so the "
            "count is a lower end"
        )
    return ""

