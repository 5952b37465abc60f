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

import array
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
# Weight entries listed at once when a large pair is stored as products.
PRODUCT_BATCH = 2_000_000
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
    terms = hidden * _fan(first, "in") ** degree * _fan(second, "out")
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


def _fan(attrs, side):
    """Entries of a layer's weight that meet one unit: inputs or outputs per unit.

    A convolution's unit meets channels x kernel entries (the last axis of its
    shape is a spatial size); a linear unit meets the last axis.
    """
    shape = attrs["in_shape"] if side == "in" else attrs["out_shape"]
    if attrs["kind"] == "linear":
        return shape[-1]
    return shape[0] * math.prod(attrs["layer"].option("kernel"))


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
    """Store phi of a 1-homogeneous pair as products, one group per channel.

    Each hidden unit u gives the rectangle (outgoing weights of u) x (incoming
    weights and bias of u). A unit's weights are indexed affinely in its channel,
    so the units of two channels at the same position have rectangles that are
    translates of each other, and the positions whose units share a rectangle are
    the same in every channel: they are found once (`_position_classes`) and only
    one position per class is listed. Two linear layers on tokens use the same
    weights for every token, so only the first token is listed.
    """
    starts = _offsets(block)
    tokens = first["kind"] == second["kind"] == "linear" and len(
        second["in_shape"]
    ) == len(first["out_shape"])
    count = int(channel_of_units(first).max()) + 1
    positions = _position_classes(block, first, second, starts, tokens, count)
    per_channel = block.sizes[0] // count * (1 if positions is None else len(positions))
    step = max(1, PRODUCT_BATCH // max(per_channel, 1))
    groups, used = [], np.zeros(block.dimension, dtype=bool)
    for low in range(0, count, step):
        batch = list(range(low, min(low + step, count)))
        units = _Units(block, first, second, batch, starts, tokens, positions)
        for rectangles in units.rectangles():
            variables = np.sort(np.concatenate([np.concatenate(r) for r in rectangles]))
            if len(rectangles) > 1:
                variables = np.unique(variables)
            local = tuple(
                (np.searchsorted(variables, left), np.searchsorted(variables, right))
                for left, right in rectangles
            )
            # An int64 array, not a tuple of Python ints: GPT-2 has 36 864 groups of
            # 1537 variables, about 2 GB as tuples.
            groups.append(ProductGroup(array.array("q", variables.tolist()), local))
            used[variables] = True
    groups.sort(key=lambda g: g.variables)
    return Parametrization(tuple(groups), tuple(np.flatnonzero(~used).tolist()))


def _position_classes(block, first, second, starts, tokens, count):
    """One position per class of positions whose units share their rectangle.

    Found on the first channel and checked on the last; None when there is one
    position.
    """
    labels = []
    for c in sorted({0, count - 1}):
        units = _Units(block, first, second, [c], starts, tokens, None)
        _, first_unit, label = np.unique(
            units.keys, axis=0, return_index=True, return_inverse=True
        )
        # Label classes by their first position, so that channels compare.
        order = np.argsort(first_unit)
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        labels.append(
            (units.positions, rank[label.ravel()], units.positions[first_unit])
        )
    positions, label, representatives = labels[0]
    if len(positions) <= 1:
        return None
    for other_positions, other_label, _ in labels[1:]:
        if not (
            np.array_equal(other_positions, positions)
            and np.array_equal(other_label, label)
        ):
            raise RuntimeError("channels of a layer do not share their positions")
    return np.sort(representatives)


class _Units:
    """The hidden units of some channels, their rectangles and their keys."""

    def __init__(self, block, first, second, channels, starts, tokens, positions):
        h_in, _, v_in = weight_entries(
            first, out_features=channels, first_row=tokens, out_positions=positions
        )
        v_in = v_in + starts[0]
        if len(block.parameters) == 3:
            h_bias, feature = bias_entries(
                first, out_features=channels, first_row=tokens, out_positions=positions
            )
            h_in = np.concatenate([h_in, h_bias])
            v_in = np.concatenate([v_in, feature + starts[1]])
        if len(second["in_shape"]) < len(first["out_shape"]):
            # The second layer reads the flattened units: its features are units.
            features = np.flatnonzero(np.isin(channel_of_units(first), channels))
        else:
            features = channels
        _, h_out, v_out = weight_entries(
            second, in_features=features, first_row=tokens, in_positions=positions
        )
        self.incoming = _Segments(h_in, v_in)
        self.outgoing = _Segments(h_out, v_out + starts[-1])
        self.units = np.intersect1d(self.incoming.units, self.outgoing.units)
        self.channel = channel_of_units(first)[self.units]
        if first["kind"] == "linear":
            self.positions = self.units // first["out_shape"][-1]
        else:
            self.positions = self.units % math.prod(first["out_shape"][1:])
        self.keys = np.column_stack(
            [
                self.channel,
                *self.incoming.keys(self.units),
                *self.outgoing.keys(self.units),
            ]
        )

    def rectangles(self):
        """For each channel, its distinct (outgoing, incoming) rectangles."""
        _, first_unit, kind = np.unique(
            self.keys, axis=0, return_index=True, return_inverse=True
        )
        units = self.units
        representative = units[first_unit][kind.ravel()]
        if not (
            self.incoming.same(units, representative)
            and self.outgoing.same(units, representative)
        ):
            raise RuntimeError("two different rectangles share a hash; please report")
        distinct = units[first_unit]
        order = np.argsort(self.channel[first_unit], kind="stable")
        bounds = np.flatnonzero(np.diff(self.channel[first_unit][order])) + 1
        for members in np.split(distinct[order], bounds):
            found = [(self.outgoing.of(u), self.incoming.of(u)) for u in members]
            yield sorted(found, key=lambda r: (r[0].tobytes(), r[1].tobytes()))


class _Segments:
    """Variables listed per unit, sorted: one segment of one array per unit."""

    def __init__(self, units, variables):
        # Layers list their entries unit-sorted within runs: a stable sort by unit
        # usually leaves each unit's variables sorted; check, else sort both keys.
        order = np.argsort(units, kind="stable")
        step = np.diff(variables[order])
        same_unit = np.diff(units[order]) == 0
        if np.any(step[same_unit] <= 0):
            order = np.lexsort((variables, units))
        self.variables = variables[order]
        self.units, self.start, self.count = np.unique(
            units[order], return_index=True, return_counts=True
        )
        weights = np.random.default_rng(7).integers(1, 2**62, size=2, dtype=np.int64)
        with np.errstate(over="ignore"):
            mixed = (
                self.variables * weights[0]
                + (self.variables * self.variables) * weights[1]
            )
            self.hash = np.add.reduceat(mixed, self.start) if len(mixed) else mixed

    def _index(self, units):
        return np.searchsorted(self.units, units)

    def keys(self, units):
        """Length and hash of each unit's segment."""
        k = self._index(units)
        return self.count[k], self.hash[k]

    def of(self, unit):
        """Return the sorted variables of one unit."""
        k = int(self._index(unit))
        return self.variables[self.start[k] : self.start[k] + self.count[k]]

    def same(self, units, others):
        """Whether each unit's segment equals the other's, entry by entry."""
        a, b = self._index(units), self._index(others)
        if not np.array_equal(self.count[a], self.count[b]):
            return False
        total = int(self.count[a].sum())
        offsets = np.arange(total) - np.repeat(
            np.cumsum(self.count[a]) - self.count[a], self.count[a]
        )
        left = np.repeat(self.start[a], self.count[a]) + offsets
        right = np.repeat(self.start[b], self.count[b]) + offsets
        return bool(np.array_equal(self.variables[left], self.variables[right]))


def _channels_align(first, second):
    """Whether the second layer reads the first one's channels as its features."""
    if second["kind"] != "linear" or first["kind"] == "linear":
        return second["kind"] == first["kind"] or len(second["in_shape"]) == 1
    return len(second["in_shape"]) == 1
