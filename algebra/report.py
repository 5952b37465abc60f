"""The analysis report: per-block results, JSON, text and LaTeX.

The JSON form is the output contract of DESIGN.md section 5. Laws are kept in each
group's local variables and only turned into expressions on output, so that a block
with millions of parameters costs one law per distinct group in memory.

Examples
--------
>>> from algebra.analysis import analyze
>>> report = analyze({"custom": {"parameters": {"x": [2]}, "phi": ["x_0*x_1"]}})
>>> report.to_dict()["blocks"][0]["expressions"]
['-x_0**2 + x_1**2']
"""

import bisect
import json
import math
import re

import numpy as np
import sympy

from algebra.rank import PRIME, Echelon, random_point

__all__ = [
    "BlockReport",
    "Report",
    "joint_law_count",
    "symbol_name",
    "EXPRESSION_LIMIT",
]

# Blocks whose laws have more terms than this get compact notation only in JSON.
EXPRESSION_LIMIT = 20_000


def symbol_name(parameter, index):
    """Return the symbol of one parameter entry, e.g. ``fc1_weight_2_3``.

    Examples
    --------
    >>> symbol_name("blocks.0.fc1.weight", (2, 3))
    'blocks_0_fc1_weight_2_3'
    """
    base = re.sub(r"\W", "_", parameter)
    return "_".join([base] + [str(i) for i in index])


class BlockReport:
    """The result of one block: counts, status, and laws on demand.

    Parameters
    ----------
    block : Block
        The block.
    instances : list of (Certificate, tuple of int)
        One certificate per group, with the group's block variables.
    free : tuple of int
        Block variables phi does not depend on (each is a law by itself).
    note : str
        Why phi could not be built, when it could not.
    seconds : float
        Time spent certifying.
    """

    def __init__(self, block, instances, free, note="", seconds=0.0, hits=0, misses=0):
        self.block = block
        self.instances = instances
        self.free = tuple(free)
        self.note = note
        self.seconds = seconds
        self.cache_hits = hits
        self.cache_misses = misses
        # Why the block's input lies in a subspace (`blocks.split.input_constraint`):
        # then phi misses laws, and the upper end is only D.
        self.constraint = ""

    @property
    def name(self):
        """The block's name."""
        return self.block.name

    @property
    def parameters(self):
        """D of the block."""
        return self.block.dimension

    @property
    def complete(self):
        """Whether phi was built (else the bounds are the trivial ``[0, D]``)."""
        return not self.note or bool(self.instances)

    @property
    def lie_dim(self):
        """Dim Lie(V)(theta) at a random point: the sum over groups."""
        return sum(cert.lie_dim for cert, _ in self.instances)

    @property
    def bounds(self):
        """(verified independent laws, D - lie_dim)."""
        if not self.complete:
            return (0, self.parameters)
        low = sum(cert.bounds[0] for cert, _ in self.instances) + len(self.free)
        if self.constraint:
            return (low, self.parameters)
        return (low, self.parameters - self.lie_dim)

    @property
    def count(self):
        """The number of laws found (the lower end of the bounds)."""
        return self.bounds[0]

    @property
    def status(self):
        """``certified`` when the bounds meet, else ``bounds``."""
        low, high = self.bounds
        return "certified" if self.complete and low == high else "bounds"

    def law_polynomials(self):
        """Yield each law as (Polynomial in block variables)."""
        from algebra.polynomial import Polynomial

        for v in self.free:
            yield Polynomial.variable(v)
        for cert, variables in self.instances:
            mapping = dict(enumerate(variables))
            for law in cert.laws:
                yield law.rename(mapping)

    def law_terms(self):
        """Return the total number of terms of the laws."""
        terms = sum(_terms(cert.laws) for cert, _ in self.instances)
        return terms + len(self.free)

    def symbols(self):
        """Symbol name -> [parameter, index...] for the variables the laws use."""
        used = sorted({v for law in self.law_polynomials() for v in law.variables()})
        table = {}
        for v in used:
            name, index = self.block.entry(v)
            table[symbol_name(name, index)] = [name, *index]
        return table

    def laws(self):
        """Return the laws as sympy expressions in the block's symbols."""
        cache = {}

        def symbol(v):
            if v not in cache:
                cache[v] = sympy.Symbol(symbol_name(*self.block.entry(v)))
            return cache[v]

        return [law.to_sympy(_LazySymbols(symbol)) for law in self.law_polynomials()]

    def compact(self):
        """Return each law in compact matrix notation, for people.

        A family of laws (`algebra.bilinear.LawFamily`) is one line.
        """
        return [text for text, _ in self.compact_entries()]

    def compact_entries(self):
        """Yield (compact text, number of laws it stands for), lazily."""
        from algebra.notation import compact_law
        from algebra.polynomial import Polynomial

        table = _EntryTable(self.block)
        for v in self.free:
            yield compact_law(Polynomial.variable(v), table), 1
        for cert, variables in self.instances:
            if hasattr(cert.laws, "compact"):
                yield cert.laws.compact(self.block, variables), len(cert.laws)
                continue
            mapping = dict(enumerate(variables))
            for law in cert.laws:
                yield compact_law(law.rename(mapping), table), 1

    def to_dict(self, expressions=True):
        """Return the block's JSON object (DESIGN.md section 5)."""
        low, high = self.bounds
        result = {
            "name": self.name,
            "kind": self.block.kind,
            "activation": self.block.activation,
            "parameters": self.parameters,
            "laws": low,
            "lie_dim": self.lie_dim if self.complete and not self.constraint else None,
            "status": self.status,
            "bounds": [low, high],
            "groups": len(self.instances),
            "distinct_groups": len({id(cert) for cert, _ in self.instances}),
            "seconds": round(self.seconds, 4),
            "note": self.constraint or self.note or _notes(self.instances),
        }
        small = self.law_terms() <= EXPRESSION_LIMIT
        if expressions and small:
            result["symbols"] = self.symbols()
            result["expressions"] = [str(e) for e in self.laws()]
        else:
            result["symbols"] = {}
            result["expressions"] = []
            result["expressions_omitted"] = (
                f"{self.law_terms()} terms in all; see 'compact'"
            )
        result["compact"] = self.compact()
        return result


def _terms(laws):
    """Count the terms of a group's laws, without expanding a family."""
    if hasattr(laws, "terms"):
        return laws.terms
    return sum(len(law.terms) for law in laws)


class _EntryTable:
    """A block's variable-to-entry map with its offsets and strides computed once.

    `algebra.notation.compact_law` asks for the entry of every term of every law;
    `Block.entry` recomputes the shapes on each call, which dominates the JSON
    output of large blocks. Gives the same (name, index) as `Block.entry`.
    """

    def __init__(self, block):
        self.parameters = block.parameters
        views = block.views or (None,) * len(block.parameters)
        self._tensors = []
        start = 0
        for (name, _), view, shape in zip(
            block.parameters, views, block.shapes(), strict=True
        ):
            strides = [math.prod(shape[k + 1 :]) for k in range(len(shape))]
            self._tensors.append((start, name, tuple(strides), view))
            start += math.prod(shape)
        self._starts = [tensor[0] for tensor in self._tensors]
        self.dimension = start

    def entry(self, var):
        """Return (parameter name, index tuple) of block variable `var`."""
        if not 0 <= var < self.dimension:
            raise IndexError(f"variable {var} is beyond the block")
        start, name, strides, view = self._tensors[
            bisect.bisect_right(self._starts, var) - 1
        ]
        rest, index = var - start, []
        for stride in strides:
            position, rest = divmod(rest, stride)
            index.append(position)
        if view is not None:
            index[view[0]] += view[1]
        return name, tuple(index)


class _LazySymbols:
    """Index-to-symbol lookup for `Polynomial.to_sympy`."""

    def __init__(self, make):
        self.make = make

    def __getitem__(self, v):
        return self.make(v)


def _notes(instances):
    notes = {cert.note for cert, _ in instances if cert.note}
    return "; ".join(sorted(notes))


class Report:
    """The analysis of a whole model.

    Parameters
    ----------
    model : str
        The model's name.
    parameters : int
        D of the whole model.
    blocks : list of BlockReport
        One per block.
    unblocked : dict
        Parameters in no block: name to shape.
    laws : int
        Independent laws in the union of all blocks.
    """

    def __init__(self, model, parameters, blocks, unblocked, laws):
        self.model = model
        self.parameters = parameters
        self.blocks = blocks
        self.unblocked = unblocked
        self.laws = laws

    @property
    def status(self):
        """Return ``certified`` when every block is and no parameter is left out.

        Laws that involve a parameter of no block are not searched.
        """
        ok = all(b.status == "certified" for b in self.blocks)
        return "certified" if ok and not self.unblocked else "bounds"

    def to_dict(self):
        """Return the report as the JSON object of DESIGN.md section 5."""
        return {
            "model": self.model,
            "parameters": self.parameters,
            "laws": self.laws,
            "status": self.status,
            "blocks": [b.to_dict() for b in self.blocks],
            "unblocked": {k: list(v) for k, v in self.unblocked.items()},
            "generic": "counts hold at a generic point; for piecewise-linear "
            "activations, one where every hidden unit switches on some inputs",
        }

    def to_json(self, indent=2):
        """Return the JSON text of `to_dict`."""
        return json.dumps(self.to_dict(), indent=indent)


def joint_law_count(reports, seed=0):
    """Count the independent laws in the union of all blocks.

    Laws of one block are independent (each block selects them so), and blocks
    that share no parameter entry add their counts. Within a set of overlapping
    blocks, a law with an entry that no other law uses is independent of all the
    others (its gradient has the only nonzero in that column, at a point with no
    zero coordinate); the remaining laws are ranked together modulo a prime.
    """
    total, overlapping = 0, _overlapping(reports)
    laws = []
    for k, report in enumerate(reports):
        if k not in overlapping:
            total += report.count
            continue
        counted, polynomials = _split_families(report, reports, overlapping, seed)
        total += counted
        for law in polynomials:
            entries = {v: report.block.entry(v) for v in law.variables()}
            laws.append((law, entries))
    owners = {}
    for k, (_, entries) in enumerate(laws):
        for entry in entries.values():
            owners.setdefault(entry, set()).add(k)
    private = {k for k, (_, e) in enumerate(laws) if _has_private(e, owners, k)}
    rest = [laws[k] for k in range(len(laws)) if k not in private]
    return total + len(private) + _dense_rank(rest, seed)


def _overlapping(reports):
    """Return the blocks that share a parameter slice with another block."""
    seen, overlapping = {}, set()
    for k, report in enumerate(reports):
        block = report.block
        views = block.views or (None,) * len(block.parameters)
        for (name, _), view in zip(block.parameters, views, strict=True):
            for other, other_view in seen.get(name, []):
                if view is None or other_view is None or view == other_view:
                    overlapping.update((k, other))
            seen.setdefault(name, []).append((k, view))
    return overlapping


def _split_families(report, reports, overlapping, seed):
    """Count the law families independent of every other block's laws.

    A family whose rows of entries held by no other block carry independent
    gradients (`LawFamily.independent_of_others`) adds its size; the laws of the
    other groups are returned as polynomials in block variables.
    """
    from algebra.polynomial import Polynomial

    shared = _shared_names(report, reports, overlapping)
    names = [name for name, _ in report.block.parameters]
    starts = np.cumsum([0, *report.block.sizes])
    counted, polynomials = 0, [Polynomial.variable(v) for v in report.free]
    for cert, variables in report.instances:
        if hasattr(cert.laws, "independent_of_others"):
            owner = np.searchsorted(starts, np.asarray(variables), side="right") - 1
            private = np.array([names[p] not in shared for p in owner], dtype=bool)
            if cert.laws.independent_of_others(private, seed):
                counted += len(cert.laws)
                continue
        mapping = dict(enumerate(variables))
        polynomials.extend(law.rename(mapping) for law in cert.laws)
    return counted, polynomials


def _shared_names(report, reports, overlapping):
    """Parameter names of `report` that another overlapping block also holds."""
    own = {name for name, _ in report.block.parameters}
    return {
        name
        for k in overlapping
        if reports[k] is not report
        for name, _ in reports[k].block.parameters
        if name in own
    }


def _has_private(entries, owners, k):
    return any(owners[entry] == {k} for entry in entries.values())


def _dense_rank(laws, seed):
    """Rank of the gradients of laws over their union of entries, modulo PRIME."""
    if not laws:
        return 0
    columns = sorted({e for _, entries in laws for e in entries.values()})
    position = {e: k for k, e in enumerate(columns)}
    point = random_point(len(columns), seed + 11)
    echelon = Echelon(len(columns))
    for law, entries in laws:
        local = {v: position[e] for v, e in entries.items()}
        renamed = law.rename(local)
        gradient = np.zeros(len(columns))
        for c in renamed.variables():
            gradient[c] = renamed.diff(c).evaluate_mod(point, PRIME)
        echelon.add(gradient)
    return echelon.rank
