"""A float64 numpy model built from the layer graph: forward pass and exact gradients.

`NumericModel` runs the network of a model file on a batch, and backpropagates
through it by hand-written vector-Jacobian products, one per layer type. All
parameters live in one flat vector ``theta`` (`ParameterLayout` says where each
tensor is), so that optimizers and conservation laws see a single array.

Conventions, shared with the torch module of `algebra.torch`:

- ``linear`` acts on the last axis: ``y = x W^T + b``;
- ``conv1d`` / ``conv2d`` are cross-correlations with zero padding (as in torch);
- ``attention`` computes, per head h, ``softmax(X Q_h K_h^T X^T / sqrt(k)) X V_h``,
  concatenates the heads (head h in columns ``h*v .. (h+1)*v``) and applies
  ``output``: ``y = concat O^T``; the softmax runs over keys, with no mask;
- ``layernorm`` normalizes the last axis and ``batchnorm`` every axis but the
  channels (axis 1 of a batch), with batch statistics and no epsilon;
- ``global_avg_pool`` averages the spatial axes, ``flatten`` keeps the batch axis.

Examples
--------
>>> from blocks.graph import build_graph
>>> from blocks.model_file import load_model
>>> graph = build_graph(load_model({"input": [3], "layers": [
...     {"type": "linear", "name": "fc1", "out": 2}, {"type": "relu"},
...     {"type": "linear", "name": "fc2", "out": 1}]}))
>>> model = NumericModel(graph)
>>> model.layout.size
8
>>> theta = model.init_parameters(seed=0)
>>> model.forward(theta, np.ones((4, 3)))[0].shape
(4, 1)
>>> NumericModel(build_graph(load_model({"input": [3], "layers": [
...     {"type": "gelu"}]})))  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
NotImplementedError: layer 'gelu_0' (gelu) has no numeric model; ...

Notes
-----
Supported layer types: linear, conv1d, conv2d, the element-wise activations relu,
leaky_relu, relu_power, square, identity, tanh, sigmoid and silu, softmax, flatten,
global_avg_pool, layernorm, batchnorm, attention (without rope or positional
encodings) and residual additions. gelu needs the error function, which numpy
lacks, and swiglu is not written yet: both raise NotImplementedError.
"""

import itertools
import math

import networkx as nx
import numpy as np

__all__ = [
    "NumericModel",
    "ParameterLayout",
    "SUPPORTED",
    "squared_loss",
    "cross_entropy_loss",
    "LOSSES",
]


class ParameterLayout:
    """Where each parameter tensor of a graph lives in the flat vector theta.

    Parameters
    ----------
    graph : networkx.DiGraph
        The output of `blocks.graph.build_graph`.

    Attributes
    ----------
    shapes : dict
        Parameter name to shape, in topological order of the nodes.
    offsets : dict
        Parameter name to the position of its first entry in theta.
    size : int
        D, the length of theta.
    """

    def __init__(self, graph):
        self.shapes = {}
        for node in nx.lexicographical_topological_sort(graph):
            self.shapes.update(graph.nodes[node]["params"])
        self.offsets = {}
        size = 0
        for name, shape in self.shapes.items():
            self.offsets[name] = size
            size += math.prod(shape)
        self.size = size

    def views(self, theta):
        """Return each parameter as a view of theta with its own shape."""
        return {
            name: theta[start : start + math.prod(shape)].reshape(shape)
            for (name, shape), start in zip(
                self.shapes.items(), self.offsets.values(), strict=True
            )
        }

    def flat_index(self, name, index):
        """Return the position in theta of entry `index` of parameter `name`."""
        return self.offsets[name] + int(np.ravel_multi_index(index, self.shapes[name]))


class NumericModel:
    """The network of a layer graph, in float64 numpy, with exact gradients.

    Parameters
    ----------
    graph : networkx.DiGraph
        The output of `blocks.graph.build_graph`.

    Raises
    ------
    NotImplementedError
        When a layer has no numeric model; the message names the layer.
    """

    def __init__(self, graph):
        _check_supported(graph)
        self.graph = graph
        self.order = [
            n for n in nx.lexicographical_topological_sort(graph) if n != "input"
        ]
        self.layout = ParameterLayout(graph)
        self.output = graph.graph["output"]

    def init_parameters(self, seed):
        """Draw theta: weights with variance 1/fan-in, norm scales near 1."""
        rng = np.random.default_rng(seed)
        theta = np.empty(self.layout.size)
        views = self.layout.views(theta)
        for name, view in views.items():
            view[...] = _initial_values(rng, name, view.shape)
        return theta

    def forward(self, theta, X):
        """Run the network on a batch.

        Parameters
        ----------
        theta : ndarray
            The flat parameter vector.
        X : ndarray
            A batch, of shape ``(batch, *input)``.

        Returns
        -------
        output : ndarray
            Of shape ``(batch, *output)``.
        tape : dict
            What `backward` needs: each node's saved context.
        """
        views = self.layout.views(theta)
        values, tape = {"input": X}, {}
        for node in self.order:
            attrs = self.graph.nodes[node]
            inputs = [values[p] for p in self.graph.predecessors(node)]
            values[node], tape[node] = _forward_node(attrs, views, inputs)
        return values[self.output], tape

    def backward(self, theta, tape, grad_output):
        """Return the gradient (flat, like theta) given the output's gradient."""
        views = self.layout.views(theta)
        gradient = np.zeros_like(theta)
        grads = self.layout.views(gradient)
        upstream = {self.output: grad_output}
        for node in reversed(self.order):
            if node not in upstream:
                continue
            attrs = self.graph.nodes[node]
            dx = _backward_node(attrs, views, tape[node], upstream.pop(node), grads)
            for pred in self.graph.predecessors(node):
                upstream[pred] = upstream.get(pred, 0) + dx
        return gradient

    def loss_and_gradient(self, theta, X, y, loss="squared"):
        """Return the loss on a batch and its gradient with respect to theta."""
        output, tape = self.forward(theta, X)
        value, grad_output = LOSSES[loss](output, y)
        return value, self.backward(theta, tape, grad_output)


def squared_loss(output, target):
    """Return ``sum((output - target)^2) / (2 batch)`` and its gradient."""
    residual = output - target
    batch = output.shape[0]
    return 0.5 * float(np.sum(residual**2)) / batch, residual / batch


def cross_entropy_loss(output, labels):
    """Return the mean cross-entropy of logits (classes on the last axis).

    `labels` holds integer classes, of the output's shape without its last axis;
    the mean runs over every labelled position (samples, and tokens if any).
    """
    shifted = output - output.max(axis=-1, keepdims=True)
    log_prob = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    labels = np.asarray(labels, dtype=np.int64)[..., None]
    count = labels.size
    value = -float(np.take_along_axis(log_prob, labels, axis=-1).sum()) / count
    grad = np.exp(log_prob)
    np.put_along_axis(grad, labels, np.take_along_axis(grad, labels, -1) - 1, -1)
    return value, grad / count


LOSSES = {"squared": squared_loss, "cross_entropy": cross_entropy_loss}


def _initial_values(rng, name, shape):
    """Draw one parameter tensor; its name and shape say how."""
    suffix = name.rsplit(".", 1)[-1]
    if len(shape) == 1 and suffix == "weight":
        return 1.0 + 0.1 * rng.standard_normal(shape)
    if len(shape) == 1 or suffix.endswith("_bias"):
        return 0.5 * rng.standard_normal(shape)
    fan_in = shape[1] if suffix in {"query", "key", "value"} else math.prod(shape[1:])
    return rng.standard_normal(shape) / math.sqrt(fan_in)


# Element-wise activations: (f, f') given the layer's options.
_ACTIVATIONS = {
    "identity": lambda layer: (lambda s: s, lambda s: np.ones_like(s)),
    "relu": lambda layer: (lambda s: np.maximum(s, 0), lambda s: (s > 0) * 1.0),
    "leaky_relu": lambda layer: _leaky(layer.option("slope")),
    "relu_power": lambda layer: _relu_power(layer.option("k")),
    "square": lambda layer: (lambda s: s**2, lambda s: 2 * s),
    "tanh": lambda layer: (np.tanh, lambda s: 1 - np.tanh(s) ** 2),
    "sigmoid": lambda layer: (_sigmoid, lambda s: _sigmoid(s) * (1 - _sigmoid(s))),
    "silu": lambda layer: (
        lambda s: s * _sigmoid(s),
        lambda s: _sigmoid(s) * (1 + s * (1 - _sigmoid(s))),
    ),
}


def _leaky(slope):
    return (
        lambda s: np.where(s > 0, s, slope * s),
        lambda s: np.where(s > 0, 1.0, slope),
    )


def _relu_power(k):
    return (
        lambda s: np.maximum(s, 0) ** k,
        lambda s: k * np.maximum(s, 0) ** (k - 1) if k > 1 else (s > 0) * 1.0,
    )


def _sigmoid(s):
    return 0.5 * (1 + np.tanh(0.5 * s))


def _forward_node(attrs, views, inputs):
    """Apply one node to its inputs; return (output, saved context)."""
    kind = attrs["kind"]
    if kind == "add":
        return inputs[0] + inputs[1], None
    (x,) = inputs
    if kind in _ACTIVATIONS:
        return _ACTIVATIONS[kind](attrs["layer"])[0](x), x
    return _LAYERS[kind][0](_own(attrs, views), x, attrs)


def _backward_node(attrs, views, ctx, dy, grads):
    """Backpropagate through one node; add parameter gradients into `grads`."""
    kind = attrs["kind"]
    if kind == "add":
        return dy
    if kind in _ACTIVATIONS:
        return dy * _ACTIVATIONS[kind](attrs["layer"])[1](ctx)
    dx, dparams = _LAYERS[kind][1](_own(attrs, views), ctx, dy, attrs)
    node_grads = _own(attrs, grads)
    for suffix, value in dparams.items():
        node_grads[suffix] += value
    return dx


def _own(attrs, views):
    """Return the node's parameters, keyed by suffix (``weight``, ``query``...)."""
    return {name.rsplit(".", 1)[-1]: views[name] for name in attrs["params"]}


def _linear_forward(p, x, attrs):
    y = x @ p["weight"].T
    if "bias" in p:
        y = y + p["bias"]
    return y, x


def _linear_backward(p, x, dy, attrs):
    lead = tuple(range(dy.ndim - 1))
    grads = {"weight": np.tensordot(dy, x, axes=(lead, lead))}
    if "bias" in p:
        grads["bias"] = dy.sum(axis=lead)
    return dy @ p["weight"], grads


def _conv_windows(attrs):
    """Yield (kernel offset, slices of the padded input read at that offset)."""
    layer = attrs["layer"]
    kernel, stride = layer.option("kernel"), layer.option("stride")
    sizes = attrs["out_shape"][1:]
    for offset in itertools.product(*(range(k) for k in kernel)):
        spatial = tuple(
            slice(o, o + s * (n - 1) + 1, s)
            for o, s, n in zip(offset, stride, sizes, strict=True)
        )
        yield offset, (slice(None), slice(None)) + spatial


def _conv_forward(p, x, attrs):
    padding = attrs["layer"].option("padding")
    xp = np.pad(x, [(0, 0), (0, 0)] + [(q, q) for q in padding])
    y = np.zeros((x.shape[0],) + tuple(attrs["out_shape"]))
    for offset, window in _conv_windows(attrs):
        kernel = p["weight"][(slice(None), slice(None)) + offset]
        y += np.einsum("bc...,oc->bo...", xp[window], kernel)
    if "bias" in p:
        y += p["bias"].reshape((-1,) + (1,) * len(padding))
    return y, xp


def _conv_backward(p, xp, dy, attrs):
    padding = attrs["layer"].option("padding")
    dxp = np.zeros_like(xp)
    dweight = np.zeros_like(p["weight"])
    axes = (0,) + tuple(range(2, dy.ndim))
    for offset, window in _conv_windows(attrs):
        index = (slice(None), slice(None)) + offset
        dweight[index] = np.tensordot(dy, xp[window], axes=(axes, axes))
        dxp[window] += np.einsum("bo...,oc->bc...", dy, p["weight"][index])
    grads = {"weight": dweight}
    if "bias" in p:
        grads["bias"] = dy.sum(axis=axes)
    inner = tuple(
        slice(q, q + n) for q, n in zip(padding, attrs["in_shape"][1:], strict=True)
    )
    return dxp[(slice(None), slice(None)) + inner], grads


def _flatten_forward(p, x, attrs):
    return x.reshape(x.shape[0], -1), x.shape


def _flatten_backward(p, shape, dy, attrs):
    return dy.reshape(shape), {}


def _pool_forward(p, x, attrs):
    axes = tuple(range(2, x.ndim))
    return x.mean(axis=axes), x.shape


def _pool_backward(p, shape, dy, attrs):
    count = math.prod(shape[2:])
    expanded = dy.reshape(dy.shape + (1,) * (len(shape) - 2))
    return np.broadcast_to(expanded / count, shape).copy(), {}


def _softmax(s):
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _softmax_forward(p, x, attrs):
    y = _softmax(x)
    return y, y


def _softmax_backward(p, y, dy, attrs):
    return y * (dy - (dy * y).sum(axis=-1, keepdims=True)), {}


def _norm_axes(attrs, ndim):
    """Axes a normalization averages over, and the shape its parameters take."""
    if attrs["kind"] == "layernorm":
        return (ndim - 1,), (-1,)
    return (0,) + tuple(range(2, ndim)), (-1,) + (1,) * (ndim - 2)


def _norm_forward(p, x, attrs):
    axes, shape = _norm_axes(attrs, x.ndim)
    centered = x - x.mean(axis=axes, keepdims=True)
    inv_std = 1 / np.sqrt((centered**2).mean(axis=axes, keepdims=True))
    xhat = centered * inv_std
    y = xhat
    if "weight" in p:
        y = xhat * p["weight"].reshape(shape) + p["bias"].reshape(shape)
    return y, (xhat, inv_std)


def _norm_backward(p, ctx, dy, attrs):
    xhat, inv_std = ctx
    axes, shape = _norm_axes(attrs, dy.ndim)
    grads = {}
    if "weight" in p:
        others = tuple(range(dy.ndim - 1)) if attrs["kind"] == "layernorm" else axes
        grads = {"weight": (dy * xhat).sum(axis=others), "bias": dy.sum(axis=others)}
        dy = dy * p["weight"].reshape(shape)
    mean_dy = dy.mean(axis=axes, keepdims=True)
    mean_dy_xhat = (dy * xhat).mean(axis=axes, keepdims=True)
    return inv_std * (dy - mean_dy - xhat * mean_dy_xhat), grads


def _project(x, p, role):
    """Per-head projection ``x W_role (+ b_role)``: (B, T, d) -> (B, h, T, k)."""
    y = np.einsum("btd,hdk->bhtk", x, p[role])
    if f"{role}_bias" in p:
        y = y + p[f"{role}_bias"][None, :, None, :]
    return y


def _attention_forward(p, x, attrs):
    q, k, v = (_project(x, p, role) for role in ("query", "key", "value"))
    scale = 1 / math.sqrt(q.shape[-1])
    weights = _softmax(np.einsum("bhtk,bhsk->bhts", q, k) * scale)
    heads = np.einsum("bhts,bhsv->bhtv", weights, v)
    batch, count, tokens, value_dim = heads.shape
    concat = heads.transpose(0, 2, 1, 3).reshape(batch, tokens, count * value_dim)
    y = concat @ p["output"].T
    if "output_bias" in p:
        y = y + p["output_bias"]
    return y, (x, q, k, v, weights, concat, scale)


def _attention_backward(p, ctx, dy, attrs):
    x, q, k, v, weights, concat, scale = ctx
    grads = {"output": np.einsum("bto,btc->oc", dy, concat)}
    if "output_bias" in p:
        grads["output_bias"] = dy.sum(axis=(0, 1))
    dheads = (dy @ p["output"]).reshape(v.shape[0], v.shape[2], v.shape[1], -1)
    dheads = dheads.transpose(0, 2, 1, 3)

    dv = np.einsum("bhts,bhtv->bhsv", weights, dheads)
    dweights = np.einsum("bhtv,bhsv->bhts", dheads, v)
    dscores = weights * (dweights - (dweights * weights).sum(-1, keepdims=True))
    dscores *= scale
    dq = np.einsum("bhts,bhsk->bhtk", dscores, k)
    dk = np.einsum("bhts,bhtk->bhsk", dscores, q)

    dx = np.zeros_like(x)
    for role, d in (("query", dq), ("key", dk), ("value", dv)):
        grads[role] = np.einsum("btd,bhtk->hdk", x, d)
        if f"{role}_bias" in p:
            grads[f"{role}_bias"] = d.sum(axis=(0, 2))
        dx += np.einsum("bhtk,hdk->btd", d, p[role])
    return dx, grads


_LAYERS = {
    "linear": (_linear_forward, _linear_backward),
    "conv1d": (_conv_forward, _conv_backward),
    "conv2d": (_conv_forward, _conv_backward),
    "flatten": (_flatten_forward, _flatten_backward),
    "global_avg_pool": (_pool_forward, _pool_backward),
    "softmax": (_softmax_forward, _softmax_backward),
    "layernorm": (_norm_forward, _norm_backward),
    "batchnorm": (_norm_forward, _norm_backward),
    "attention": (_attention_forward, _attention_backward),
}
SUPPORTED = frozenset(_LAYERS) | frozenset(_ACTIVATIONS) | {"add", "input"}


def _check_supported(graph):
    """Raise NotImplementedError for the first layer with no numeric model."""
    for node, attrs in graph.nodes(data=True):
        kind, layer = attrs["kind"], attrs["layer"]
        if kind not in SUPPORTED:
            raise NotImplementedError(
                f"layer '{node}' ({kind}) has no numeric model; supported: "
                f"{', '.join(sorted(SUPPORTED - {'add', 'input'}))}"
            )
        if kind == "attention" and (
            layer.option("rope") or layer.option("positional") != "none"
        ):
            raise NotImplementedError(
                f"layer '{node}' (attention): rope and positional encodings have "
                "no numeric model; set rope: false and positional: none"
            )
