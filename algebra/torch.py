"""PyTorch path: the network of a graph as a torch module, and a law monitor.

Three things live here, all optional (``pip install -e '.[torch]'``):

- `build_module` turns a model graph into a `torch.nn.Module` that computes what
  `algebra.numeric.NumericModel` computes (same conventions, same parameter names:
  ``dict(module.named_parameters())`` has the graph's parameter names);
- `TorchTrainer` trains it for `algebra.drift.measure_drift` (``backend='torch'``),
  with torch.optim's SGD and Adam;
- `ConservationMonitor` traces a user's own module with torch.fx, finds its blocks,
  gets their laws from the engine and returns the value of every law, cheaply
  enough to call at every step.

Importing this module does not import torch; each function does, and raises
ImportError with the install command when torch is missing.

Examples
--------
>>> import pytest; torch = pytest.importorskip("torch")
>>> from torch import nn
>>> class Net(nn.Module):
...     def __init__(self):
...         super().__init__()
...         self.fc1, self.fc2 = nn.Linear(3, 2), nn.Linear(2, 1, bias=False)
...     def forward(self, x):
...         return self.fc2(torch.relu(self.fc1(x)))
>>> monitor = ConservationMonitor(Net())
>>> {name: tuple(values.shape) for name, values in monitor().items()}
{'fc1+fc2': (2,)}
>>> monitor.laws()["fc1+fc2"][0]
'fc2.weight[0,0]² − ‖fc1.weight[0,:]‖² − fc1.bias[0]²'

Notes
-----
The monitor recognizes Linear, Conv1d and Conv2d (groups 1, dilation 1, numeric
zero padding), ReLU, LeakyReLU, Tanh, Sigmoid, SiLU, GELU, Identity, BatchNorm1d
and BatchNorm2d, LayerNorm over the last axis, MultiheadAttention used as
self-attention with equal query, key and value widths, flatten, and additions of
two tensors (residual connections). Any other operation is kept as an opaque node:
no block is formed across it, so its neighbours' laws are not claimed. Separate
query, key, value and output projections written by hand are traced as plain
Linear layers, not as attention heads. Attention with biases (MultiheadAttention's
default) has no parametrization yet, so its heads report no law; use
``bias=False``. A module called more than once (shared weights) is opaque too.
"""

import importlib
import math
import operator

import networkx as nx
import numpy as np

from algebra.drift import CompiledLaws, Trajectory
from algebra.numeric import ParameterLayout
from blocks.spec import LAYER_OPTIONS, Layer

__all__ = ["build_module", "TorchTrainer", "ConservationMonitor", "trace_graph"]


def _torch():
    """Import torch, or raise ImportError saying how to install it."""
    try:
        return importlib.import_module("torch")
    except ImportError as err:
        raise ImportError(
            "this needs PyTorch: pip install -e '.[torch]' (torch 2.13.0)"
        ) from err


def build_module(graph, dtype=None):
    """Build the network of a model graph as a torch module.

    Parameters
    ----------
    graph : networkx.DiGraph
        The output of `blocks.graph.build_graph`.
    dtype : torch.dtype, optional
        The parameters' type (default float64).

    Returns
    -------
    torch.nn.Module
        Its parameters are named as in the graph (``fc1.weight``,
        ``blocks.0.attn.query``); calling it on a batch returns the output.

    Raises
    ------
    NotImplementedError
        When a layer has no torch counterpart here (the same ones as in
        `algebra.numeric`).
    """
    from algebra.numeric import NumericModel

    torch = _torch()
    NumericModel(graph)  # the same guard: unsupported layers raise here
    network = _network_class(torch)(graph)
    return network.to(dtype or torch.float64)


def _network_class(torch):
    """Define the module class (torch is imported only when it is needed)."""
    nn = torch.nn

    class GraphNetwork(nn.Module):
        """The network of a model graph, node by node in topological order."""

        def __init__(self, graph):
            super().__init__()
            self.graph = graph
            self.order = [
                n for n in nx.lexicographical_topological_sort(graph) if n != "input"
            ]
            for node in self.order:
                params = graph.nodes[node]["params"]
                if params:
                    _register(torch, self, node, _parameter_holder(torch, params))

        def forward(self, x):
            values = {"input": x}
            for node in self.order:
                attrs = self.graph.nodes[node]
                inputs = [values[p] for p in self.graph.predecessors(node)]
                own = {}
                if attrs["params"]:
                    holder = self.get_submodule(node)
                    own = {k: getattr(holder, k) for k in holder.suffixes}
                values[node] = _apply(torch, attrs, own, inputs)
            return values[self.graph.graph["output"]]

    return GraphNetwork


def _parameter_holder(torch, params):
    """Return a module holding one node's parameters under their suffixes."""
    holder = torch.nn.Module()
    holder.suffixes = []
    for name, shape in params.items():
        suffix = name.rsplit(".", 1)[-1]
        value = torch.zeros(shape, dtype=torch.float64)
        holder.register_parameter(suffix, torch.nn.Parameter(value))
        holder.suffixes.append(suffix)
    return holder


def _register(torch, root, node, module):
    """Register `module` at the dotted path `node`, creating containers."""
    *path, last = node.split(".")
    parent = root
    for part in path:
        if not hasattr(parent, part):
            parent.add_module(part, torch.nn.Module())
        parent = getattr(parent, part)
    parent.add_module(last, module)


def _apply(torch, attrs, own, inputs):
    """Apply one node (same conventions as `algebra.numeric`)."""
    F = torch.nn.functional
    kind, layer = attrs["kind"], attrs["layer"]
    if kind == "add":
        return inputs[0] + inputs[1]
    (x,) = inputs
    if kind in _ELEMENTWISE:
        return _ELEMENTWISE[kind](torch, x, layer)
    if kind == "linear":
        return F.linear(x, own["weight"], own.get("bias"))
    if kind in ("conv1d", "conv2d"):
        conv = F.conv1d if kind == "conv1d" else F.conv2d
        options = {k: layer.option(k) for k in ("stride", "padding")}
        return conv(x, own["weight"], own.get("bias"), **options)
    return _OTHERS[kind](torch, x, own, attrs)


_ELEMENTWISE = {
    "identity": lambda torch, x, layer: x,
    "relu": lambda torch, x, layer: torch.relu(x),
    "leaky_relu": lambda torch, x, layer: torch.nn.functional.leaky_relu(
        x, layer.option("slope")
    ),
    "relu_power": lambda torch, x, layer: torch.relu(x) ** layer.option("k"),
    "square": lambda torch, x, layer: x * x,
    "tanh": lambda torch, x, layer: torch.tanh(x),
    "sigmoid": lambda torch, x, layer: torch.sigmoid(x),
    "silu": lambda torch, x, layer: torch.nn.functional.silu(x),
}


def _norm(torch, x, own, attrs):
    """Normalize with batch or token statistics and no epsilon (torch refuses 0)."""
    if attrs["kind"] == "layernorm":
        axes, shape = (-1,), (-1,)
    else:
        axes = (0,) + tuple(range(2, x.dim()))
        shape = (-1,) + (1,) * (x.dim() - 2)
    centered = x - x.mean(dim=axes, keepdim=True)
    y = centered / (centered**2).mean(dim=axes, keepdim=True).sqrt()
    if "weight" in own:
        y = y * own["weight"].reshape(shape) + own["bias"].reshape(shape)
    return y


def _attention(torch, x, own, attrs):
    def project(role):
        y = torch.einsum("btd,hdk->bhtk", x, own[role])
        bias = own.get(f"{role}_bias")
        return y if bias is None else y + bias[None, :, None, :]

    q, k, v = project("query"), project("key"), project("value")
    scores = torch.einsum("bhtk,bhsk->bhts", q, k) / math.sqrt(q.shape[-1])
    heads = torch.einsum("bhts,bhsv->bhtv", scores.softmax(dim=-1), v)
    batch, count, tokens, value_dim = heads.shape
    concat = heads.transpose(1, 2).reshape(batch, tokens, count * value_dim)
    return torch.nn.functional.linear(concat, own["output"], own.get("output_bias"))


_OTHERS = {
    "flatten": lambda torch, x, own, attrs: x.flatten(1),
    "global_avg_pool": lambda torch, x, own, attrs: x.mean(
        dim=tuple(range(2, x.dim()))
    ),
    "softmax": lambda torch, x, own, attrs: x.softmax(dim=-1),
    "layernorm": _norm,
    "batchnorm": _norm,
    "attention": _attention,
}


class TorchTrainer:
    """Train the torch module of a graph and record the laws at every step.

    It has the interface of `algebra.drift.NumpyTrainer`, and starts from the same
    theta_0, so that both paths give the same numbers (float64 throughout).

    Parameters
    ----------
    graph : networkx.DiGraph
        The model graph.
    laws : CompiledLaws
        The laws to evaluate.
    """

    name = "torch"

    def __init__(self, graph, laws):
        from algebra.numeric import NumericModel

        self.torch = _torch()
        self.numeric = NumericModel(graph)
        self.module = build_module(graph)
        self.laws = laws
        params = dict(self.module.named_parameters())
        self.evaluator = _LawEvaluator(
            self.torch, laws, params, _identity_sources(graph)
        )

    def init_parameters(self, seed):
        """Draw theta_0 exactly as the numpy path does."""
        return self.numeric.init_parameters(seed)

    def run(self, theta0, data, schedule, lr, setup):
        """Train from theta_0 along `schedule`; return the `Trajectory`."""
        torch = self.torch
        self._load(theta0)
        optimizer = _optimizer(torch, setup, self.module.parameters(), lr)
        X, y = (torch.as_tensor(a) for a in data)
        values = np.full((setup.steps + 1, len(self.laws)), np.nan)
        values[0] = self.evaluator.values().numpy()
        loss_start = self._loss(X, y, setup.loss)
        for k, indices in enumerate(schedule, start=1):
            batch = (X, y) if indices is None else (X[indices], y[indices])
            optimizer.zero_grad()
            _loss(torch, self.module(batch[0]), batch[1], setup.loss).backward()
            optimizer.step()
            if not all(torch.isfinite(p).all() for p in self.module.parameters()):
                break
            values[k] = self.evaluator.values().numpy()
        magnitude = self.laws.magnitude(self.numeric.layout.views(theta0))
        return Trajectory(values, loss_start, self._loss(X, y, setup.loss), magnitude)

    def _load(self, theta):
        """Copy a flat theta into the module's parameters."""
        views = self.numeric.layout.views(theta)
        with self.torch.no_grad():
            for name, param in self.module.named_parameters():
                param.copy_(self.torch.as_tensor(views[name]))

    def _loss(self, X, y, loss):
        with self.torch.no_grad():
            return float(_loss(self.torch, self.module(X), y, loss))


def _loss(torch, output, target, loss):
    """Return the loss of `algebra.numeric` on a batch, in torch."""
    if loss == "squared":
        return 0.5 * ((output - target) ** 2).sum() / output.shape[0]
    classes = output.shape[-1]
    return torch.nn.functional.cross_entropy(
        output.reshape(-1, classes), target.reshape(-1)
    )


def _optimizer(torch, setup, params, lr):
    """torch.optim's optimizer for `setup` (the rules of `algebra.drift`)."""
    from algebra.drift import ADAM_EPS, BETAS, MOMENTUM

    decay = setup.weight_decay
    if setup.optimizer in ("gd", "sgd"):
        return torch.optim.SGD(params, lr=lr, weight_decay=decay)
    if setup.optimizer == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=MOMENTUM, weight_decay=decay)
    return torch.optim.Adam(
        params, lr=lr, betas=BETAS, eps=ADAM_EPS, weight_decay=decay
    )


def _identity_sources(graph):
    """Map each graph parameter to itself: (name, flat index of each entry)."""
    shapes = ParameterLayout(graph).shapes
    return {
        name: (name, np.arange(math.prod(shape)).reshape(shape))
        for name, shape in shapes.items()
    }


class _LawEvaluator:
    """Evaluate compiled laws on torch tensors, in float64, without gradients.

    `sources` maps each graph parameter to (torch parameter name, array of the
    graph parameter's shape holding flat indices into that torch parameter).
    """

    def __init__(self, torch, laws, params, sources):
        self.torch = torch
        self.gathers = []
        for name, flats in laws.gathers:
            torch_name, index = sources[name]
            param = params[torch_name]
            position = torch.as_tensor(index.reshape(-1)[flats], device=param.device)
            self.gathers.append((param, position))
        device = self.gathers[0][0].device if self.gathers else "cpu"
        self.factors = torch.as_tensor(laws.factors, device=device)
        self.coeffs = torch.as_tensor(laws.coeffs, device=device)
        self.law_of_term = torch.as_tensor(laws.law_of_term, device=device)
        self.count = len(laws)
        self.device = device

    def values(self):
        """Return every law's value as one float64 tensor."""
        torch = self.torch
        with torch.no_grad():
            parts = [p.reshape(-1)[i].double() for p, i in self.gathers]
            one = torch.ones(1, dtype=torch.float64, device=self.device)
            z = torch.cat(parts + [one])
            terms = self.coeffs * z[self.factors].prod(dim=1)
            result = torch.zeros(self.count, dtype=torch.float64, device=self.device)
            return result.index_add_(0, self.law_of_term, terms)


class ConservationMonitor:
    """Watch the conservation laws of a torch module during training.

    The module is traced with torch.fx; its layers and residual additions become
    a layer graph, split into blocks as for a model file; the engine finds each
    block's laws once, and calling the monitor evaluates them all at the
    module's current parameters.

    Parameters
    ----------
    module : torch.nn.Module
        The user's network (see the module Notes for the layers it recognizes).
    example_input : torch.Tensor, optional
        A batch, to read the shapes off; by default one is made from the first
        layer (a Linear, Conv1d, Conv2d, MultiheadAttention or norm).
    degree, seed : int
        Passed to the law search (see `algebra.analysis.analyze`).
    cache : mapping-like, optional
        The analysis cache.

    Attributes
    ----------
    report : Report
        The engine's analysis of the traced blocks.
    graph : networkx.DiGraph
        The traced layer graph.

    Examples
    --------
    >>> import pytest; torch = pytest.importorskip("torch")
    >>> net = torch.nn.Sequential(
    ...     torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    >>> values = ConservationMonitor(net)()
    >>> list(values), values["0+2"].shape
    (['0+2'], torch.Size([3]))
    """

    def __init__(self, module, example_input=None, degree=2, seed=0, cache=None):
        torch = _torch()
        self.graph, sources = trace_graph(module, example_input)
        self.report = _analyze_graph(self.graph, degree, seed, cache)
        self.compiled = CompiledLaws(self.report, ParameterLayout(self.graph).shapes)
        params = dict(module.named_parameters())
        self.evaluator = _LawEvaluator(torch, self.compiled, params, sources)

    def __call__(self):
        """Return the current value of every law: block name to a float64 tensor."""
        values = self.evaluator.values()
        return {name: values[part] for name, part in self.compiled.blocks.items()}

    def laws(self):
        """Return each block's laws in compact notation, in the order of the values."""
        return {
            name: [text.split(": ", 1)[1] for text in self.compiled.names[part]]
            for name, part in self.compiled.blocks.items()
        }


def _analyze_graph(graph, degree, seed, cache):
    """Analyse the blocks of a traced graph, as `analyze` does for a file."""
    from algebra.analysis import _GroupMemo, analyze_block
    from algebra.report import Report, joint_law_count
    from blocks.block import Parametrization
    from blocks.graph import parameter_count
    from blocks.parametrize import parametrize
    from blocks.split import split_into_blocks, unblocked_parameters

    memo = _GroupMemo(cache, degree, seed)
    blocks = split_into_blocks(graph)
    reports = []
    for block in blocks:
        try:
            param = parametrize(block, graph)
        except NotImplementedError as err:
            param = Parametrization((), note=str(err))
        reports.append(analyze_block(block, param, memo))
    unblocked = unblocked_parameters(graph, blocks)
    count = joint_law_count(reports)
    return Report(graph.name, parameter_count(graph), reports, unblocked, count)


def trace_graph(module, example_input=None):
    """Trace a torch module into a layer graph like `blocks.graph.build_graph`'s.

    Parameters
    ----------
    module : torch.nn.Module
        The network.
    example_input : torch.Tensor, optional
        A batch for shape propagation (see `ConservationMonitor`).

    Returns
    -------
    graph : networkx.DiGraph
        Nodes named after the modules (``layer1.0.conv1``) or the traced
        operations; operations it does not know are nodes of kind ``opaque``.
    sources : dict
        Graph parameter name to (torch parameter name, array of the graph
        parameter's shape holding flat indices into the torch parameter).
    """
    torch = _torch()
    from torch.fx import symbolic_trace
    from torch.fx.passes.shape_prop import ShapeProp

    traced = symbolic_trace(module)
    if example_input is None:
        example_input = _example_input(torch, module)
    ShapeProp(traced).propagate(example_input)
    tracer = _FxGraph(torch, traced, type(module).__name__)
    for node in traced.graph.nodes:
        tracer.add(node)
    return tracer.graph, tracer.sources


def _example_input(torch, module):
    """Make a batch of two samples that the first parameterized layer accepts."""
    nn = torch.nn
    dtype = next(module.parameters()).dtype
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            shape = (2, layer.in_features)
        elif isinstance(layer, nn.Conv1d | nn.Conv2d):
            shape = (2, layer.in_channels) + (16,) * (layer.weight.dim() - 2)
        elif isinstance(layer, nn.MultiheadAttention):
            shape = (
                (2, 8, layer.embed_dim)
                if layer.batch_first
                else (8, 2, layer.embed_dim)
            )
        elif isinstance(layer, nn.LayerNorm):
            shape = (2, 8) + tuple(layer.normalized_shape)
        else:
            continue
        return torch.randn(shape, dtype=dtype)
    raise ValueError(
        f"{type(module).__name__}: cannot guess the input shape; "
        "pass example_input, a batch the module accepts"
    )


def _layer(kind, name, **options):
    """Return a `Layer` with the model file's defaults filled in."""
    filled = {**LAYER_OPTIONS.get(kind, {}), **options}
    return Layer(kind, name, tuple(sorted(filled.items())))


class _FxGraph:
    """Build a layer graph from a traced module, node by node."""

    def __init__(self, torch, traced, name):
        self.torch = torch
        self.traced = traced
        self.graph = nx.DiGraph(name=name, source=f"<torch module {name}>")
        self.sources = {}
        self.alias = {}
        calls = [n.target for n in traced.graph.nodes if n.op == "call_module"]
        self.shared = {t for t in calls if calls.count(t) > 1}

    def add(self, node):
        """Add one fx node (placeholders, operations, the output)."""
        if node.op == "output":
            (result,) = node.args
            first = result[0] if isinstance(result, tuple | list) else result
            self.graph.graph["output"] = self.alias[first]
            return
        if node.op == "placeholder" and "input" not in self.graph:
            self._add_node("input", node, "input", None, {}, [])
            return
        kind, layer, params = self._classify(node)
        inputs = [self.alias[a] for a in node.all_input_nodes if a in self.alias]
        if kind == "alias":
            self.alias[node] = inputs[0]
            return
        if kind == "add" and len(inputs) != 2:
            kind, layer = "opaque", None
        name = self._name(node, kind)
        self._add_node(name, node, kind, layer, params, inputs)

    def _name(self, node, kind):
        if node.op == "call_module" and kind != "opaque":
            return node.target
        name = node.name
        while name in self.graph:
            name += "_"
        return name

    def _add_node(self, name, node, kind, layer, params, inputs):
        """Add a graph node with its shapes and its edges from `inputs`."""
        in_shape = self.graph.nodes[inputs[0]]["out_shape"] if inputs else ()
        self.graph.add_node(
            name,
            kind=kind,
            layer=layer,
            in_shape=in_shape,
            out_shape=_sample_shape(node),
            params={k: v[0] for k, v in params.items()},
            path=str(node.target),
        )
        self.sources.update({key: source for key, (_, source) in params.items()})
        self.alias[node] = name
        for role, source in zip(_roles(self.graph, kind, inputs), inputs, strict=True):
            self.graph.add_edge(source, name, roles=role)

    def _classify(self, node):
        """Return (kind, Layer or None, params) of an fx node."""
        if node.op == "call_module" and node.target not in self.shared:
            module = self.traced.get_submodule(node.target)
            return _classify_module(self.torch, module, node)
        if node.op == "call_function":
            return _classify_function(self.torch, node)
        if node.op == "call_method":
            return _classify_method(node)
        return "opaque", None, {}


def _sample_shape(node):
    """Return the shape of one sample of the node's (first) output."""
    meta = node.meta.get("tensor_meta")
    if not hasattr(meta, "shape") and isinstance(meta, tuple | list):
        meta = meta[0] if meta else None
    shape = getattr(meta, "shape", None)
    return tuple(shape[1:]) if shape is not None else ()


def _roles(graph, kind, inputs):
    """Return the edge roles of a node's inputs (for an add: body, skip)."""
    if kind == "attention":
        return [("query", "key", "value")]
    if kind != "add":
        return [("input",)] * len(inputs)
    first, second = inputs
    if nx.has_path(graph, second, first):
        return [("body",), ("skip",)]
    if nx.has_path(graph, first, second):
        return [("skip",), ("body",)]
    return [("body",), ("skip",)]


def _classify_module(torch, module, node):
    """Return (kind, layer, params) of a call to a leaf module."""
    nn, name = torch.nn, node.target
    simple = {
        nn.ReLU: "relu",
        nn.Tanh: "tanh",
        nn.Sigmoid: "sigmoid",
        nn.SiLU: "silu",
        nn.GELU: "gelu",
        nn.Identity: "identity",
    }
    for cls, kind in simple.items():
        if type(module) is cls:
            return kind, _layer(kind, name), {}
    if isinstance(module, nn.LeakyReLU):
        slope = module.negative_slope
        return "leaky_relu", _layer("leaky_relu", name, slope=slope), {}
    if isinstance(module, nn.Flatten) and _flattens(module.start_dim, module.end_dim):
        return "flatten", _layer("flatten", name), {}
    for cls, classify in _MODULES:
        if isinstance(module, getattr(nn, cls)):
            return classify(torch, module, node)
    return "opaque", None, {}


def _flattens(start, end):
    return start == 1 and end == -1


def _own_params(module, name, suffixes):
    """Graph params that are the module's own tensors, entry for entry."""
    params = {}
    for suffix in suffixes:
        tensor = getattr(module, suffix, None)
        if tensor is not None:
            shape = tuple(tensor.shape)
            index = np.arange(math.prod(shape)).reshape(shape)
            params[f"{name}.{suffix}"] = (shape, (f"{name}.{suffix}", index))
    return params


def _linear_module(torch, module, node):
    name = node.target
    params = _own_params(module, name, ("weight", "bias"))
    has_bias = module.bias is not None
    layer = _layer("linear", name, out=module.out_features, bias=has_bias)
    return "linear", layer, params


def _conv_module(torch, module, node):
    name = node.target
    kind = "conv1d" if isinstance(module, torch.nn.Conv1d) else "conv2d"
    plain = (
        module.groups == 1
        and set(module.dilation) == {1}
        and not isinstance(module.padding, str)
        and module.padding_mode == "zeros"
    )
    if not plain:
        return "opaque", None, {}
    layer = _layer(
        kind,
        name,
        out=module.out_channels,
        kernel=tuple(module.kernel_size),
        stride=tuple(module.stride),
        padding=tuple(module.padding),
        bias=module.bias is not None,
    )
    return kind, layer, _own_params(module, name, ("weight", "bias"))


def _norm_module(torch, module, node):
    name = node.target
    if isinstance(module, torch.nn.LayerNorm):
        kind, affine = "layernorm", module.elementwise_affine
        if len(module.normalized_shape) != 1:
            return "opaque", None, {}
    else:
        kind, affine = "batchnorm", module.affine
    if affine and (module.weight is None or module.bias is None):
        return "opaque", None, {}
    params = _own_params(module, name, ("weight", "bias")) if affine else {}
    return kind, _layer(kind, name, affine=bool(affine)), params


def _attention_module(torch, module, node):
    """Classify a MultiheadAttention used as self-attention."""
    name = node.target
    tensors = [a for a in node.args[:3] if isinstance(a, torch.fx.Node)]
    if not module._qkv_same_embed_dim or len(set(tensors)) != 1 or len(tensors) != 3:
        return "opaque", None, {}
    width, heads = module.embed_dim, module.num_heads
    head_dim = width // heads
    has_bias = module.in_proj_bias is not None
    layer = _layer(
        "attention", name, heads=heads, head_dim=head_dim, out=width, bias=has_bias
    )
    return "attention", layer, _attention_params(module, name, heads, has_bias)


def _attention_params(module, name, heads, has_bias):
    """Map query, key, value and output to MultiheadAttention's tensors."""
    width = module.embed_dim
    head_dim = width // heads
    rows = np.arange(3 * width * width).reshape(3 * width, width)
    params = {}
    for k, role in enumerate(("query", "key", "value")):
        block = rows[k * width : (k + 1) * width].reshape(heads, head_dim, width)
        index = block.transpose(0, 2, 1)
        source = (f"{name}.in_proj_weight", index)
        params[f"{name}.{role}"] = (index.shape, source)
        if has_bias:
            bias = np.arange(k * width, (k + 1) * width).reshape(heads, head_dim)
            params[f"{name}.{role}_bias"] = (bias.shape, (f"{name}.in_proj_bias", bias))
    output = np.arange(width * width).reshape(width, width)
    params[f"{name}.output"] = (output.shape, (f"{name}.out_proj.weight", output))
    if module.out_proj.bias is not None:
        bias = np.arange(width)
        params[f"{name}.output_bias"] = (bias.shape, (f"{name}.out_proj.bias", bias))
    return params


_MODULES = (
    ("Linear", _linear_module),
    ("Conv1d", _conv_module),
    ("Conv2d", _conv_module),
    ("LayerNorm", _norm_module),
    ("BatchNorm1d", _norm_module),
    ("BatchNorm2d", _norm_module),
    ("MultiheadAttention", _attention_module),
)


def _classify_function(torch, node):
    """Return (kind, layer, params) of a call to a torch function or operator."""
    F, target, name = torch.nn.functional, node.target, node.name
    if target in (operator.add, torch.add) and not node.kwargs:
        return "add", None, {}
    if target is operator.getitem and _first_of_attention(node):
        return "alias", None, {}
    simple = {
        torch.relu: "relu",
        F.relu: "relu",
        torch.tanh: "tanh",
        torch.sigmoid: "sigmoid",
        F.silu: "silu",
        F.gelu: "gelu",
    }
    if target in simple:
        return simple[target], _layer(simple[target], name), {}
    if target is F.leaky_relu:
        slope = (
            node.args[1]
            if len(node.args) > 1
            else node.kwargs.get("negative_slope", 0.01)
        )
        return "leaky_relu", _layer("leaky_relu", name, slope=slope), {}
    if target is torch.flatten and _flattens(*_flatten_args(node)):
        return "flatten", _layer("flatten", name), {}
    return "opaque", None, {}


def _classify_method(node):
    """Return (kind, layer, params) of a tensor method call (``x.relu()``)."""
    if node.target == "relu":
        return "relu", _layer("relu", node.name), {}
    if node.target == "flatten" and _flattens(*_flatten_args(node)):
        return "flatten", _layer("flatten", node.name), {}
    if node.target == "add" and not node.kwargs:
        return "add", None, {}
    return "opaque", None, {}


def _flatten_args(node):
    """(start_dim, end_dim) of a flatten call, the argument after the tensor."""
    args = list(node.args[1:])
    start = args[0] if args else node.kwargs.get("start_dim", 0)
    end = args[1] if len(args) > 1 else node.kwargs.get("end_dim", -1)
    return start, end


def _first_of_attention(node):
    """Whether ``node`` is ``attention_output[0]`` of a MultiheadAttention."""
    source, index = node.args
    outputs = getattr(source, "meta", {}).get("tensor_meta")
    several = isinstance(outputs, tuple) and not hasattr(outputs, "shape")
    return index == 0 and source.op == "call_module" and several
