"""Build the data-flow graph of a model: a networkx DiGraph of layers.

Nodes are layers (plus ``input``); edges carry data. Each node has the attributes
``kind`` (the layer type, or ``input`` / ``add``), ``layer`` (the `Layer`, or None),
``in_shape`` and ``out_shape`` (shapes of one sample), ``params`` (parameter name to
shape, in a fixed order) and ``path`` (the layer's place in the file, for messages).
Every edge has ``roles``: a tuple saying how the target reads the source
(``("input",)`` for most layers; ``("query", "key", "value")`` for attention;
``("body",)`` and ``("skip",)`` for the two paths into a residual ``add``).

``repeat`` is unrolled: the i-th copy of a layer named ``fc`` inside a repeat named
``blocks`` is the node ``blocks.i.fc``.

Examples
--------
>>> from blocks.model_file import load_model
>>> spec = load_model({"input": [3], "layers": [
...     {"type": "linear", "name": "fc1", "out": 2}, {"type": "relu"},
...     {"type": "linear", "name": "fc2", "out": 1}]})
>>> graph = build_graph(spec)
>>> list(graph.nodes)
['input', 'fc1', 'relu_0', 'fc2']
>>> graph.nodes["fc1"]["params"]
{'fc1.weight': (2, 3)}
"""

import math

import networkx as nx

from algebra.errors import ArchitectureError

__all__ = ["build_graph", "ELEMENTWISE", "parameter_count"]

ELEMENTWISE = frozenset(
    {
        "relu",
        "leaky_relu",
        "relu_power",
        "square",
        "identity",
        "tanh",
        "sigmoid",
        "gelu",
        "silu",
    }
)
MAX_PARAMETERS = 2_000_000_000


def build_graph(spec):
    """Build the layer graph of a validated model.

    Parameters
    ----------
    spec : ModelSpec
        The output of `blocks.model_file.load_model` (not a custom model).

    Returns
    -------
    networkx.DiGraph
        The graph, with ``graph.graph["output"]`` naming the last node.

    Raises
    ------
    ArchitectureError
        When shapes do not fit (a convolution on a vector, a kernel larger than
        its input, a residual body that changes the shape without a shortcut).
    """
    graph = nx.DiGraph(name=spec.name, source=spec.source)
    graph.add_node(
        "input",
        kind="input",
        layer=None,
        in_shape=(),
        out_shape=tuple(spec.input),
        params={},
        path="input",
    )
    builder = _Builder(graph, spec.source)
    last, _ = builder.add_sequence(
        spec.layers, "input", tuple(spec.input), "", "layers"
    )
    graph.graph["output"] = last

    total = parameter_count(graph)
    if total > MAX_PARAMETERS:
        raise ArchitectureError(
            f"{spec.source}: the model has {total} parameters; "
            f"expected at most {MAX_PARAMETERS}"
        )
    return graph


def parameter_count(graph):
    """Return D, the number of parameters of the whole graph."""
    return sum(
        math.prod(shape)
        for _, params in graph.nodes(data="params")
        for shape in params.values()
    )


class _Builder:
    """Adds layers to a graph one by one, inferring shapes."""

    def __init__(self, graph, source):
        self.graph = graph
        self.source = source

    def fail(self, layer, path, found, expected):
        """Raise an ArchitectureError that names the file, line and layer."""
        where = f"{self.source}:{layer.line}" if layer.line else self.source
        raise ArchitectureError(
            f"{where}: {path} ({layer.type} '{layer.name}'): got {found}; "
            f"expected {expected}"
        )

    def add_sequence(self, layers, previous, shape, prefix, path):
        """Add `layers` in order after node `previous`; return the last node."""
        for k, layer in enumerate(layers):
            previous, shape = self.add_layer(
                layer, previous, shape, prefix, f"{path}[{k}]"
            )
        return previous, shape

    def add_layer(self, layer, previous, shape, prefix, path):
        """Add one layer (unrolling containers); return (last node, shape)."""
        if layer.type == "repeat":
            for i in range(layer.option("times")):
                previous, shape = self.add_sequence(
                    layer.body,
                    previous,
                    shape,
                    f"{prefix}{layer.name}.{i}.",
                    f"{path}.body",
                )
            return previous, shape
        if layer.type == "residual":
            return self.add_residual(layer, previous, shape, prefix, path)

        params, out_shape = _SHAPES[layer.type](self, layer, shape, path)
        node = prefix + layer.name
        self.graph.add_node(
            node,
            kind=layer.type,
            layer=layer,
            in_shape=shape,
            out_shape=out_shape,
            params={f"{node}.{p}": s for p, s in params.items()},
            path=path,
        )
        roles = ("query", "key", "value") if layer.type == "attention" else ("input",)
        self.graph.add_edge(previous, node, roles=roles)
        return node, out_shape

    def add_residual(self, layer, previous, shape, prefix, path):
        """Add ``x + body(x)`` (or ``shortcut(x) + body(x)``) and its add node."""
        body_end, body_shape = self.add_sequence(
            layer.body, previous, shape, prefix, f"{path}.body"
        )
        skip_end, skip_shape = self.add_sequence(
            layer.shortcut, previous, shape, prefix, f"{path}.shortcut"
        )
        if body_shape != skip_shape:
            self.fail(
                layer,
                path,
                f"a body of output shape {list(body_shape)} and a skip "
                f"path of shape {list(skip_shape)}",
                "equal shapes (add a shortcut projection)",
            )

        node = prefix + layer.name
        self.graph.add_node(
            node,
            kind="add",
            layer=layer,
            in_shape=shape,
            out_shape=body_shape,
            params={},
            path=path,
        )
        self.graph.add_edge(body_end, node, roles=("body",))
        self.graph.add_edge(skip_end, node, roles=("skip",))
        return node, body_shape


def _elementwise(builder, layer, shape, path):
    return {}, shape


def _linear(builder, layer, shape, path):
    if not shape:
        builder.fail(layer, path, "no input", "an input shape")
    params = {"weight": (layer.option("out"), shape[-1])}
    if layer.option("bias"):
        params["bias"] = (layer.option("out"),)
    return params, shape[:-1] + (layer.option("out"),)


def _conv(builder, layer, shape, path):
    axes = 1 if layer.type == "conv1d" else 2
    if len(shape) != axes + 1:
        builder.fail(
            layer,
            path,
            f"input shape {list(shape)}",
            f"[channels, {'length' if axes == 1 else 'height, width'}]",
        )
    kernel, stride, padding = (layer.option(k) for k in ("kernel", "stride", "padding"))
    sizes = []
    for n, k, s, p in zip(shape[1:], kernel, stride, padding, strict=True):
        if p >= k:
            builder.fail(
                layer,
                path,
                f"padding {p} with kernel {k}",
                "a padding smaller than the kernel",
            )
        size = (n + 2 * p - k) // s + 1
        if size < 1:
            builder.fail(
                layer,
                path,
                f"kernel {k} on an input of size {n} with padding {p}",
                "a kernel no larger than the padded input",
            )
        sizes.append(size)

    params = {"weight": (layer.option("out"), shape[0]) + tuple(kernel)}
    if layer.option("bias"):
        params["bias"] = (layer.option("out"),)
    return params, (layer.option("out"),) + tuple(sizes)


def _flatten(builder, layer, shape, path):
    return {}, (math.prod(shape),)


def _pool(builder, layer, shape, path):
    if len(shape) < 2:
        builder.fail(layer, path, f"input shape {list(shape)}", "[channels, ...]")
    return {}, shape[:1]


def _norm(builder, layer, shape, path):
    width = shape[-1] if layer.type == "layernorm" else shape[0]
    if layer.option("affine"):
        return {"weight": (width,), "bias": (width,)}, shape
    return {}, shape


def _attention(builder, layer, shape, path):
    if len(shape) != 2:
        builder.fail(layer, path, f"input shape {list(shape)}", "[tokens, width]")
    width = shape[1]
    heads, key_dim = layer.option("heads"), layer.option("head_dim")
    value_dim = layer.option("value_dim") or key_dim
    out = layer.option("out") or width
    params = {
        "query": (heads, width, key_dim),
        "key": (heads, width, key_dim),
        "value": (heads, width, value_dim),
        "output": (out, heads * value_dim),
    }
    if layer.option("bias"):
        params.update(
            query_bias=(heads, key_dim),
            key_bias=(heads, key_dim),
            value_bias=(heads, value_dim),
            output_bias=(out,),
        )
    return params, (shape[0], out)


def _swiglu(builder, layer, shape, path):
    hidden, out = layer.option("hidden"), layer.option("out")
    params = {
        "gate": (hidden, shape[-1]),
        "value": (hidden, shape[-1]),
        "output": (out, hidden),
    }
    if layer.option("bias"):
        params.update(gate_bias=(hidden,), value_bias=(hidden,), output_bias=(out,))
    return params, shape[:-1] + (out,)


_SHAPES = {
    **{kind: _elementwise for kind in ELEMENTWISE | {"softmax"}},
    "linear": _linear,
    "conv1d": _conv,
    "conv2d": _conv,
    "flatten": _flatten,
    "global_avg_pool": _pool,
    "layernorm": _norm,
    "batchnorm": _norm,
    "attention": _attention,
    "swiglu": _swiglu,
}
