"""phi of a pair of linear or convolutional layers joined through an activation.

The pair computes ``g(x) = B sigma(A x + a)`` (the second layer's bias is not part of
the block: it is a parameter of its own). phi is read off g itself: the components of
phi are the coefficients of g as a polynomial in the input x, so that the gradients
of phi span W(theta) = span over x of grad g(theta, x) (DESIGN.md section 2, item 1).

- A positively k-homogeneous activation (relu, leaky_relu: k = 1; relu_power: k)
  acts on hidden unit h as ``s -> a_h s^k`` where the factor a_h depends on the
  input; crossing the unit's switching surface changes a_h alone, so the
  coefficients of each unit are components of phi on their own.
- A polynomial activation (identity, square) has no such factor: coefficients are
  summed over the hidden units.

Units of one channel share weights (convolutions, tokens); phi's components
then coincide and are kept once.

Notes
-----
Only the activations above are handled: analytic activations such as tanh make g
non-polynomial in x, so phi has no finite list of components;
`pair_parametrization` raises NotImplementedError for them.
"""

import math

import numpy as np

from algebra.polynomial import Polynomial
from blocks._maps import bias_entries, channel_of_units, weight_entries
from blocks.block import Parametrization, PolynomialGroup, ProductGroup

__all__ = ["pair_parametrization", "ACTIVATION_DEGREE", "EXPAND_LIMIT"]

# Activation to (degree k, whether each unit has its own input-dependent factor).
ACTIVATION_DEGREE = {
    "identity": (1, False),
    "relu": (1, True),
    "leaky_relu": (1, True),
    "square": (2, False),
}
EXPAND_LIMIT = 5_000
MAX_POWER = 12


def activation_degree(block):
    """Return (k, per_unit) for the block's activation."""
    options = dict(block.options)
    if block.activation == "relu_power":
        if options["k"] > MAX_POWER:
            raise NotImplementedError(
                f"relu_power with k = {options['k']}: phi has too many terms; "
                f"use k <= {MAX_POWER}"
            )
        return options["k"], True
    if block.activation == "leaky_relu" and options["slope"] == 1:
        return 1, False  # slope 1 is the identity map
    if block.activation not in ACTIVATION_DEGREE:
        raise NotImplementedError(
            f"activation '{block.activation}' is not polynomial on any region, so "
            "phi has no finite list of components; use relu, leaky_relu, "
            "relu_power, square or identity"
        )
    return ACTIVATION_DEGREE[block.activation]


def pair_parametrization(block, graph, expand_limit=EXPAND_LIMIT):
    """Build phi for a pair block, split into groups over disjoint variables.

    Parameters
    ----------
    block : Block
        A block of kind ``pair`` or ``residual``: two layers, first then second.
    graph : networkx.DiGraph
        The model graph.
    expand_limit : int
        Blocks whose phi has more terms than this are not expanded one component
        at a time: with a 1-homogeneous activation phi is stored as products
        (`ProductGroup`); otherwise the block is reported as too large.

    Returns
    -------
    Parametrization
    """
    degree, per_unit = activation_degree(block)
    first, second = (graph.nodes[n] for n in (block.layers[0], block.layers[-1]))
    hidden = math.prod(first["out_shape"])
    terms = hidden * first["in_shape"][-1] ** degree * second["out_shape"][-1]
    if terms <= expand_limit:
        return _expanded(block, first, second, degree, per_unit)
    if degree == 1 and per_unit and _channels_align(first, second):
        return _products(block, first, second)
    if degree == 1 and _plain_linear(first, second):
        return _bilinear_pair(block)
    return Parametrization((), note=f"phi has about {terms} terms; too large to expand")


def _plain_linear(first, second):
    """Whether the pair is two linear layers, the second reading the first as is."""
    kinds = first["kind"] == second["kind"] == "linear"
    return kinds and first["out_shape"] == second["in_shape"]


def _bilinear_pair(block):
    """Store ``B (A x + a)`` as a `BilinearGroup`: U = B, V = [A^T; a^T]."""
    from blocks.attention import bilinear_parametrization

    starts = _offsets(block)
    shapes = block.shapes()
    first = np.arange(starts[0], starts[0] + block.sizes[0]).reshape(shapes[0])
    second = np.arange(starts[-1], starts[-1] + block.sizes[-1]).reshape(shapes[-1])
    right = [first.T]
    if len(block.parameters) == 3:
        right.append(np.arange(starts[1], starts[1] + block.sizes[1])[None, :])
    return bilinear_parametrization([second], right, block.dimension)


def _offsets(block):
    """Return the first variable of each parameter of the block."""
    return np.concatenate([[0], np.cumsum(block.sizes)])[:-1]


def _expanded(block, first, second, degree, per_unit):
    """List phi's components explicitly as polynomials in block variables."""
    names = (name for name, _ in block.parameters)
    starts = dict(zip(names, _offsets(block), strict=True))
    units = _unit_inputs(first, starts, block.layers[0])
    out_flat, hid_flat, var = weight_entries(second)
    var = var + starts[f"{block.layers[-1]}.weight"]

    components = {}
    powers = {}
    for o, h, v in zip(out_flat, hid_flat, var, strict=True):
        if h not in powers:
            powers[h] = _power(units.get(int(h), {}), degree)
        weight = Polynomial.variable(int(v))
        for xmono, coeff in powers[h].items():
            key = (int(o), xmono, int(h) if per_unit else None)
            components[key] = components.get(key, Polynomial()) + weight * coeff
    polys = {p for p in components.values() if p}
    return group_components(sorted(polys, key=str), block.dimension)


def _unit_inputs(first, starts, name):
    """Map each hidden unit to its affine form: input index (or None) -> poly."""
    units = {}
    out_flat, in_flat, var = weight_entries(first)
    for h, x, v in zip(out_flat, in_flat, var + starts[f"{name}.weight"], strict=True):
        units.setdefault(int(h), {})[int(x)] = Polynomial.variable(int(v))
    if f"{name}.bias" in starts:
        b_out, b_var = bias_entries(first)
        for h, v in zip(b_out, b_var + starts[f"{name}.bias"], strict=True):
            units.setdefault(int(h), {})[None] = Polynomial.variable(int(v))
    return units


def _power(form, degree):
    """Expand (affine form)^degree: multiset of inputs -> polynomial coefficient."""
    result = {(): Polynomial.constant(1)}
    for _ in range(degree):
        step = {}
        for mono, coeff in result.items():
            for x, poly in form.items():
                key = tuple(sorted(mono + (x,), key=lambda z: (z is None, z or 0)))
                step[key] = step.get(key, Polynomial()) + coeff * poly
        result = step
    return result


def group_components(polys, dimension):
    """Split phi's components into groups over disjoint variables.

    Two variables are in one group when some component involves both. Variables
    that no component involves are returned as free.
    """
    parent = list(range(dimension))

    def root(v):
        while parent[v] != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    polys = [(p, sorted(p.variables())) for p in polys]
    polys = [(p, variables) for p, variables in polys if variables]
    for _, variables in polys:
        first = root(variables[0])
        for v in variables[1:]:
            parent[root(v)] = first

    members = {}
    for p, variables in polys:
        members.setdefault(root(variables[0]), []).append((p, variables))
    groups = []
    for comps in members.values():
        variables = tuple(sorted({v for _, vs in comps for v in vs}))
        local = {v: k for k, v in enumerate(variables)}
        groups.append(
            PolynomialGroup(variables, tuple(p.rename(local) for p, _ in comps))
        )
    used = {v for g in groups for v in g.variables}
    free = tuple(v for v in range(dimension) if v not in used)
    return Parametrization(tuple(sorted(groups, key=lambda g: g.variables)), free)


def _products(block, first, second):
    """Store phi of a 1-homogeneous pair as products, one group per channel."""
    starts = _offsets(block)
    channels = channel_of_units(first)
    has_bias = len(block.parameters) == 3
    groups, used = [], np.zeros(block.dimension, dtype=bool)
    for c in range(int(channels.max()) + 1):
        rectangles = _channel_rectangles(block, first, second, c, starts, has_bias)
        variables = np.unique(np.concatenate([np.concatenate(r) for r in rectangles]))
        local = tuple(
            (np.searchsorted(variables, left), np.searchsorted(variables, right))
            for left, right in rectangles
        )
        groups.append(ProductGroup(tuple(variables.tolist()), local))
        used[variables] = True
    return Parametrization(tuple(groups), tuple(np.flatnonzero(~used).tolist()))


def _by_unit(units, variables):
    """Map each unit to the sorted array of variables listed with it."""
    order = np.lexsort((variables, units))
    units, variables = units[order], variables[order]
    keys, first = np.unique(units, return_index=True)
    return dict(zip(keys.tolist(), np.split(variables, first[1:]), strict=True))


def _channel_rectangles(block, first, second, c, starts, has_bias):
    """Return the (outgoing, incoming) variable rectangles of hidden channel c."""
    h_a, _, v_a = weight_entries(first, out_features=[c])
    if has_bias:
        h_bias, _ = bias_entries(first, out_features=[c])
        h_a = np.concatenate([h_a, h_bias])
        v_a = np.concatenate([v_a, np.full(len(h_bias), starts[1] + c)])
    incoming = _by_unit(h_a, v_a)

    _, h_b, v_b = weight_entries(second, in_features=_features(first, second, c))
    outgoing = _by_unit(h_b, v_b + starts[-1])

    rectangles = {}
    for h, right in incoming.items():
        if h in outgoing:
            left = outgoing[h]
            rectangles.setdefault((left.tobytes(), right.tobytes()), (left, right))
    return [rectangles[key] for key in sorted(rectangles)]


def _channels_align(first, second):
    """Whether the second layer reads the first one's channels as its features."""
    if second["kind"] != "linear" or first["kind"] == "linear":
        return second["kind"] == first["kind"] or len(second["in_shape"]) == 1
    return len(second["in_shape"]) == 1


def _features(first, second, c):
    """Return the input features of the second layer that read channel c."""
    if second["kind"] != "linear" or len(second["in_shape"]) == len(first["out_shape"]):
        return [c]
    positions = math.prod(first["out_shape"][1:])
    if first["kind"] == "linear":
        width = first["out_shape"][-1]
        return list(range(c, math.prod(first["out_shape"]), width))
    return list(range(c * positions, (c + 1) * positions))
