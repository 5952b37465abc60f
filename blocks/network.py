"""The whole network as one block: phi from the activation patterns it realizes.

For ``algebra-cli analyze --global``. Each piecewise activation unit u is written
``a_u * s_u`` (``a_u * s_u^k`` for relu_power) with an activity factor a_u. At a
random point theta_0, the patterns of activity that inputs actually realize are
found by evaluating the network on many random inputs; on each realized pattern g
is a polynomial in x, whose coefficients are components of phi. Unlike the pair
blocks, which take every pattern of one hidden layer as realizable, this sees the
constraints deep networks put on patterns (a unit that is active exactly when
another one is).

Notes
-----
Only small networks of linear and convolutional layers, element-wise polynomial or
piecewise-linear activations, reshapes, average pooling and residual additions are
handled; other layers raise NotImplementedError.

Examples
--------
>>> from blocks.model_file import load_model
>>> from blocks.graph import build_graph
>>> graph = build_graph(load_model({"input": [1], "layers": [
...     {"type": "linear", "name": "a", "out": 1}, {"type": "relu"},
...     {"type": "linear", "name": "b", "out": 1}]}))
>>> block, param = network_parametrization(graph, seed=0)
>>> block.dimension, [str(p) for g in param.groups for p in g.components]
(2, ['x0*x1'])
"""

import math

import networkx as nx
import numpy as np
import sympy

from algebra.polynomial import polynomial_from_sympy
from blocks.block import Block, Parametrization
from blocks.pairs import group_components
from blocks.symbolic import _conv, _flatten, _linear, _tensor

__all__ = ["network_parametrization", "MAX_NETWORK_PARAMETERS", "SAMPLES"]

MAX_NETWORK_PARAMETERS = 200
SAMPLES = 20000
PIECEWISE = {"relu": 0.0, "leaky_relu": None, "relu_power": 0.0}


def network_parametrization(
    graph, seed=0, positive=False, patterns="realized", max_parameters=None
):
    """Build phi of the whole network from its realized activation patterns.

    Parameters
    ----------
    graph : networkx.DiGraph
        The model graph.
    seed : int
        Seed of the point theta_0 and of the sampled inputs.
    positive : bool
        Draw theta_0 with every entry positive (a region of parameter space
        where the counts may differ from a random point's).
    max_parameters : int, optional
        Refuse larger networks (default `MAX_NETWORK_PARAMETERS`).
    patterns : {"realized", "generic"}
        ``realized``: the patterns random inputs realize at theta_0.
        ``generic``: every unit's activity varies on its own (the activity
        factors are kept as variables), as at a generic point of a network whose
        inputs realize every pattern; phi is then the set of path products.

    Returns
    -------
    tuple of (Block, Parametrization)

    Raises
    ------
    NotImplementedError
        For networks over `MAX_NETWORK_PARAMETERS` parameters or with layers the
        pattern analysis does not know.
    """
    params = tuple(
        (name, shape)
        for node in nx.topological_sort(graph)
        for name, shape in graph.nodes[node]["params"].items()
    )
    D = sum(math.prod(s) for _, s in params)
    limit = MAX_NETWORK_PARAMETERS if max_parameters is None else max_parameters
    if D > limit:
        raise NotImplementedError(
            f"the whole network has {D} parameters; --global handles at most "
            f"{limit}: analyse it block by block"
        )

    if patterns == "generic":
        polys = _path_components(graph, params)
        note = "every activation pattern taken as realizable (generic point)"
    else:
        forward = _Forward(graph, params)
        realized, tries = _generic_patterns(forward, seed, positive)
        polys = forward.components(realized)
        note = f"{len(realized)} activation pattern(s) realized at the point"
        if tries is None:
            note = (
                "NOT GENERIC: at every point tried, some unit is never or always "
                f"active on the inputs; {note}"
            )
        elif tries:
            note += f" (after {tries} point(s) with a dead or always-on unit)"
    block = Block("global", "global", tuple(graph.nodes), params)
    param = group_components(polys, D)
    return block, Parametrization(param.groups, param.free, note=note)


PATH_KINDS = frozenset(
    {
        "input",
        "linear",
        "conv1d",
        "conv2d",
        "flatten",
        "identity",
        "relu",
        "leaky_relu",
        "add",
    }
)


def _path_components(graph, params):
    """Phi as path products, by a forward pass on sparse polynomials.

    Each unit's value is a map from (input index or None for a bias, the set of
    activity factors on the path) to a polynomial in theta; phi is the set of
    these polynomials at the outputs.
    """
    from algebra.polynomial import Polynomial

    kinds = {graph.nodes[n]["kind"] for n in graph}
    if not kinds <= PATH_KINDS:
        forward = _Forward(graph, params)
        return forward.components(None)
    starts, offset = {}, 0
    for name, shape in params:
        starts[name] = offset
        offset += math.prod(shape)

    values = {}
    for node in nx.topological_sort(graph):
        attrs = graph.nodes[node]
        kind = attrs["kind"]
        if kind == "input":
            size = math.prod(attrs["out_shape"])
            values[node] = [{(i, ()): Polynomial.constant(1)} for i in range(size)]
            continue
        inputs = [values[p] for p in graph.predecessors(node)]
        if kind == "add":
            values[node] = [_merge(a, b) for a, b in zip(*inputs, strict=True)]
        elif kind in ("flatten", "identity"):
            values[node] = inputs[0]
        elif kind in ("relu", "leaky_relu"):
            values[node] = [
                {(x, path + ((node, u),)): p for (x, path), p in unit.items()}
                for u, unit in enumerate(inputs[0])
            ]
        else:
            values[node] = _affine_paths(attrs, node, inputs[0], starts)
    found = {p for unit in values[graph.graph["output"]] for p in unit.values()}
    return sorted((p for p in found if p.variables()), key=str)


def _merge(a, b):
    merged = dict(a)
    for key, p in b.items():
        merged[key] = merged[key] + p if key in merged else p
    return merged


def _affine_paths(attrs, node, inputs, starts):
    from algebra.polynomial import Polynomial
    from blocks._maps import bias_entries, weight_entries

    size = math.prod(attrs["out_shape"])
    out = [{} for _ in range(size)]
    start = starts[f"{node}.weight"]
    for o, i, v in zip(*weight_entries(attrs), strict=True):
        w = Polynomial.variable(int(v + start))
        target = out[o]
        for key, p in inputs[i].items():
            term = p * w
            target[key] = target[key] + term if key in target else term
    if f"{node}.bias" in starts:
        for o, v in zip(*bias_entries(attrs), strict=True):
            key = (None, ())
            b = Polynomial.variable(int(v + starts[f"{node}.bias"]))
            out[o][key] = out[o][key] + b if key in out[o] else b
    return out


def _generic_patterns(forward, seed, positive, attempts=20):
    """Realized patterns at the first point where every unit switches.

    Returns the patterns and the number of points rejected before it, or None
    in place of that number when no point tried was generic (DESIGN.md 2.3: a
    dead or always-on unit adds laws on an open set, so such a point is not
    reported as the generic answer).
    """
    first = None
    for k in range(attempts):
        patterns, switching = forward.realized_patterns(seed + k, positive)
        if switching:
            return patterns, k
        first = first or patterns
    return first, None


class _Forward:
    """A symbolic forward pass with one activity symbol per piecewise unit."""

    def __init__(self, graph, params):
        self.graph = graph
        self.tensors = {name: _tensor(name, shape) for name, shape in params}
        self.theta = [s for name, _ in params for s in self.tensors[name].ravel()]
        self.x = _tensor("x", graph.nodes["input"]["out_shape"])
        self.units = []
        values = {}
        for node in nx.topological_sort(graph):
            values[node] = self._node(node, values)
        output = values[graph.graph["output"]]
        self.outputs = [sympy.expand(e) for e in np.asarray(output).ravel()]

    def _node(self, node, values):
        attrs = self.graph.nodes[node]
        kind = attrs["kind"]
        if kind == "input":
            return self.x
        inputs = [values[p] for p in self.graph.predecessors(node)]
        if kind == "add":
            return inputs[0] + inputs[1]
        (z,) = inputs
        if kind in ("linear",):
            return _linear(attrs, node, z, self.tensors)
        if kind in ("conv1d", "conv2d"):
            return _conv(attrs, node, z, self.tensors)
        if kind == "flatten":
            return _flatten(attrs, node, z, self.tensors)
        if kind == "global_avg_pool":
            return z.reshape(z.shape[0], -1).sum(axis=1) / math.prod(z.shape[1:])
        if kind == "identity":
            return z
        if kind == "square":
            return z * z
        if kind in PIECEWISE:
            return self._piecewise(attrs, node, z)
        raise NotImplementedError(
            f"layer kind '{kind}' is not handled by --global; use relu, "
            "leaky_relu, relu_power, square, identity, linear, conv, flatten, "
            "global_avg_pool or residual"
        )

    def _piecewise(self, attrs, node, z):
        layer = attrs["layer"]
        k = layer.option("k") if layer.type == "relu_power" else 1
        low = layer.option("slope") if layer.type == "leaky_relu" else 0.0
        out = np.empty(z.shape, dtype=object)
        for index in np.ndindex(*z.shape):
            a = sympy.Symbol(f"a{len(self.units)}")
            self.units.append((a, z[index], low))
            out[index] = a * z[index] ** k
        return out

    def realized_patterns(self, seed, positive):
        """Return the patterns random inputs realize, and whether every unit switches.

        A unit switches when it is active on some inputs and inactive on others.
        """
        rng = np.random.default_rng(seed)
        theta = rng.normal(size=len(self.theta))
        if positive:
            theta = np.abs(theta)
        # Directions at scales from 10^-2 to 10^4: with biases, the patterns of large
        # inputs differ from those near the origin, and N(0, 1) alone misses them.
        xs = rng.normal(size=(SAMPLES,) + self.x.shape).reshape(SAMPLES, -1)
        xs = (xs * 10.0 ** rng.uniform(-2, 4, size=(SAMPLES, 1))).T
        actives = []
        symbols = [self.theta, list(self.x.ravel())]
        known = {}
        for a, s, low in self.units:
            function = sympy.lambdify(symbols + [list(known)], s, "numpy")
            values = function(theta, list(xs), list(known.values()))
            values = np.broadcast_to(np.asarray(values, dtype=float), (SAMPLES,))
            known[a] = np.where(values > 0, 1.0, low)
            actives.append(known[a])
        if not actives:
            return [()], True
        table = np.array(actives)
        switching = bool(np.all(table.min(axis=1) != table.max(axis=1)))
        rows = np.unique(table.T, axis=0)
        return [tuple(row) for row in rows], switching

    def components(self, patterns):
        """Return the coefficients in x of g on each pattern (polynomials)."""
        index = {s: k for k, s in enumerate(self.theta)}
        x = list(self.x.ravel())
        found = set()
        if patterns is None:
            generators = x + [a for a, _, _ in self.units]
            for g in self.outputs:
                for coeff in sympy.Poly(g, *generators).coeffs():
                    p = polynomial_from_sympy(coeff, index)
                    if p is not None and p.variables():
                        found.add(p)
            return sorted(found, key=str)
        for pattern in patterns:
            values = {
                a: sympy.nsimplify(v)
                for (a, _, _), v in zip(self.units, pattern, strict=True)
            }
            for g in self.outputs:
                poly = sympy.Poly(sympy.expand(g.xreplace(values)), *x)
                for coeff in poly.coeffs():
                    p = polynomial_from_sympy(coeff, index)
                    if p is not None and p.variables():
                        found.add(p)
        return sorted(found, key=str)
