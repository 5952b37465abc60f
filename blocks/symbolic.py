"""The output of a small block as a sympy expression g(theta, x).

For blocks whose phi has no finite polynomial form (analytic activations,
normalization, softmax, gated units), the engine works from g itself: the gradients
``grad_theta g_k(theta, x)`` over inputs x span W(theta) (DESIGN.md section 2,
item 1). This module builds g by a symbolic forward pass over the block's layers.

Notes
-----
Only small blocks are built (at most `MAX_PARAMETERS` parameters); larger ones
raise NotImplementedError. Normalization uses training-mode statistics with no
epsilon: batchnorm normalizes each channel over a batch of `BATCH` samples,
layernorm over the last axis.

Examples
--------
>>> from blocks.model_file import load_model
>>> from blocks.graph import build_graph
>>> graph = build_graph(load_model({"input": [1], "layers": [
...     {"type": "linear", "name": "a", "out": 1}, {"type": "tanh"},
...     {"type": "linear", "name": "b", "out": 1}]}))
>>> model = block_model(graph, ("a", "tanh_0", "b"), ("a.weight", "b.weight"))
>>> model.outputs
[b_weight_0_0*tanh(a_weight_0_0*x_0_0)]
"""

import math
from dataclasses import dataclass

import sympy

from algebra.report import symbol_name

__all__ = ["BlockModel", "block_model", "MAX_PARAMETERS", "BATCH"]

MAX_PARAMETERS = 80
BATCH = 3


@dataclass
class BlockModel:
    """A block's output as sympy expressions.

    Attributes
    ----------
    parameters : list of sympy.Symbol
        theta, in block-variable order.
    inputs : list of sympy.Symbol
        x, flattened (a batch of samples for batchnorm).
    outputs : list of sympy.Expr
        g_k(theta, x), flattened.
    """

    parameters: list
    inputs: list
    outputs: list


def block_model(graph, nodes, parameters):
    """Build g(theta, x) for a chain of graph nodes.

    Parameters
    ----------
    graph : networkx.DiGraph
        The model graph.
    nodes : sequence of str
        The block's layers in data-flow order (a chain).
    parameters : sequence of str
        The parameter tensors of the block, in variable order. Every parameter
        of the listed layers must be among them.

    Returns
    -------
    BlockModel

    Raises
    ------
    NotImplementedError
        When the block has more than `MAX_PARAMETERS` parameters or a layer kind
        the symbolic forward pass does not know.
    """
    shapes = {}
    for node in nodes:
        shapes.update(graph.nodes[node]["params"])
    size = sum(math.prod(shapes[p]) for p in parameters)
    if size > MAX_PARAMETERS:
        raise NotImplementedError(
            f"{size} parameters is too many for the symbolic analysis of g "
            f"(at most {MAX_PARAMETERS}); make the block smaller"
        )

    tensors = {p: _tensor(p, shapes[p]) for p in parameters}
    batch = BATCH if any(graph.nodes[n]["kind"] == "batchnorm" for n in nodes) else 1
    in_shape = graph.nodes[nodes[0]]["in_shape"]
    x = [_tensor(f"x_{s}", in_shape) for s in range(batch)]
    values = x
    for node in nodes:
        values = _forward(graph.nodes[node], node, values, tensors)
    outputs = [e for sample in values for e in _flat(sample)]
    theta = [s for p in parameters for s in _flat(tensors[p])]
    inputs = [s for sample in x for s in _flat(sample)]
    return BlockModel(theta, inputs, outputs)


def _tensor(name, shape):
    """Return an array of symbols named like `symbol_name`."""
    import numpy as np

    array = np.empty(shape, dtype=object)
    for index in np.ndindex(*shape):
        array[index] = sympy.Symbol(symbol_name(name, index))
    return array


def _flat(array):
    return list(array.ravel()) if hasattr(array, "ravel") else [array]


def _forward(attrs, node, samples, tensors):
    kind = attrs["kind"]
    if kind not in _LAYERS:
        raise NotImplementedError(
            f"layer kind '{kind}' has no symbolic forward pass; "
            f"known kinds: {', '.join(sorted(_LAYERS))}"
        )
    if kind == "batchnorm":
        return [_channel_affine(out, node, tensors) for out in _batchnorm(samples)]
    return [_LAYERS[kind](attrs, node, z, tensors) for z in samples]


def _linear(attrs, node, z, tensors):
    import numpy as np

    W = tensors.get(f"{node}.weight")
    out = np.tensordot(z, W.T, axes=1)
    if f"{node}.bias" in tensors:
        out = out + tensors[f"{node}.bias"]
    return out


def _conv(attrs, node, z, tensors):
    import numpy as np

    from blocks._maps import weight_entries

    W = tensors[f"{node}.weight"].ravel()
    out = np.zeros(math.prod(attrs["out_shape"]), dtype=object)
    flat = z.ravel()
    for o, i, v in zip(*weight_entries(attrs), strict=True):
        out[o] = out[o] + W[v] * flat[i]
    out = out.reshape(attrs["out_shape"])
    if f"{node}.bias" in tensors:
        bias = tensors[f"{node}.bias"]
        out = out + bias.reshape((-1,) + (1,) * (out.ndim - 1))
    return out


def _elementwise(function):
    def apply(attrs, node, z, tensors):
        import numpy as np

        return np.vectorize(lambda s: function(s, attrs), otypes=[object])(z)

    return apply


def _gelu(s, attrs):
    return s * (1 + sympy.erf(s / sympy.sqrt(2))) / 2


def _layernorm(attrs, node, z, tensors):
    import numpy as np

    n = z.shape[-1]
    mean = z.sum(axis=-1, keepdims=True) / n
    centred = z - mean
    var = (centred * centred).sum(axis=-1, keepdims=True) / n
    out = centred / np.vectorize(sympy.sqrt, otypes=[object])(var)
    return _affine(out, node, tensors, axis=-1)


def _batchnorm(samples):
    import numpy as np

    stacked = np.stack(samples)
    mean = stacked.sum(axis=0) / len(samples)
    centred = stacked - mean
    var = (centred * centred).sum(axis=0) / len(samples)
    out = centred / np.vectorize(sympy.sqrt, otypes=[object])(var)
    return list(out)


def _channel_affine(out, node, tensors):
    """Apply batchnorm's per-channel scale and shift, when it has them."""
    if f"{node}.weight" not in tensors:
        return out
    shape = (-1,) + (1,) * (out.ndim - 1)
    weight = tensors[f"{node}.weight"].reshape(shape)
    return out * weight + tensors[f"{node}.bias"].reshape(shape)


def _affine(out, node, tensors, axis):
    if f"{node}.weight" in tensors:
        out = out * tensors[f"{node}.weight"] + tensors[f"{node}.bias"]
    return out


def _softmax(attrs, node, z, tensors):
    import numpy as np

    e = np.vectorize(sympy.exp, otypes=[object])(z)
    return e / e.sum(axis=-1, keepdims=True)


def _swiglu(attrs, node, z, tensors):
    import numpy as np

    gate = np.tensordot(z, tensors[f"{node}.gate"].T, axes=1)
    value = np.tensordot(z, tensors[f"{node}.value"].T, axes=1)
    if f"{node}.gate_bias" in tensors:
        gate = gate + tensors[f"{node}.gate_bias"]
        value = value + tensors[f"{node}.value_bias"]
    silu = np.vectorize(lambda s: s / (1 + sympy.exp(-s)), otypes=[object])(gate)
    out = np.tensordot(silu * value, tensors[f"{node}.output"].T, axes=1)
    if f"{node}.output_bias" in tensors:
        out = out + tensors[f"{node}.output_bias"]
    return out


def _flatten(attrs, node, z, tensors):
    return z.reshape(-1)


_ACTIVATIONS = {
    "relu": lambda s, a: sympy.Max(s, 0),
    "leaky_relu": lambda s, a: sympy.Max(s, a["layer"].option("slope") * s),
    "relu_power": lambda s, a: sympy.Max(s, 0) ** a["layer"].option("k"),
    "identity": lambda s, a: s,
    "tanh": lambda s, a: sympy.tanh(s),
    "sigmoid": lambda s, a: 1 / (1 + sympy.exp(-s)),
    "gelu": _gelu,
    "silu": lambda s, a: s / (1 + sympy.exp(-s)),
    "square": lambda s, a: s**2,
}
_LAYERS = {
    "linear": _linear,
    "conv1d": _conv,
    "conv2d": _conv,
    "layernorm": _layernorm,
    "batchnorm": None,
    "softmax": _softmax,
    "swiglu": _swiglu,
    "flatten": _flatten,
    **{kind: _elementwise(f) for kind, f in _ACTIVATIONS.items()},
}
