"""Global analysis: the whole network as one block, compared with the blocks.

``algebra-cli analyze --global`` runs this. The block-by-block analysis can miss
laws that involve several blocks at once; analysing the whole network finds them,
when it is small enough.

Examples
--------
>>> result = analyze_whole({"input": [2], "layers": [
...     {"type": "linear", "name": "a", "out": 2}, {"type": "relu"},
...     {"type": "linear", "name": "b", "out": 1}]})
>>> result.block.count, len(result.missed)
(2, 0)
"""

from dataclasses import dataclass

import sympy

from algebra.analysis import _GroupMemo, analyze, analyze_block
from algebra.fields import gradient_field
from algebra.logarithmic import find_log_laws
from algebra.report import BlockReport, symbol_name
from blocks.graph import build_graph
from blocks.model_file import load_model
from blocks.network import network_parametrization

__all__ = ["analyze_whole", "WholeResult"]


@dataclass
class WholeResult:
    """The global analysis next to the block-by-block one.

    Attributes
    ----------
    report : Report
        The block-by-block analysis.
    block : BlockReport
        The whole network as one block.
    extra_laws : list of sympy.Expr
        Non-polynomial laws of the whole network (logarithmic ansatz).
    missed : list of sympy.Expr
        Laws of the whole network independent of every block's laws.
    """

    report: object
    block: BlockReport | None
    extra_laws: list
    missed: list
    unavailable: str = ""

    @property
    def count(self):
        """The number of laws of the whole network found (lower end)."""
        return self.block.count + len(self.extra_laws)

    @property
    def bounds(self):
        """(laws found, D - Lie dimension) for the whole network."""
        return (self.count, self.block.bounds[1])

    @property
    def status(self):
        """``certified`` when the bounds meet at a generic point."""
        if self.block is None:
            return "unavailable"
        if self.block.note.startswith("NOT GENERIC"):
            return "not generic"
        low, high = self.bounds
        return "certified" if low == high else "bounds"

    def to_dict(self):
        """Return the ``global`` section of the JSON report."""
        if self.block is None:
            return {"status": "unavailable", "note": self.unavailable}
        low, high = self.bounds
        return {
            "parameters": self.block.parameters,
            "laws": low,
            "lie_dim": self.block.lie_dim,
            "status": self.status,
            "bounds": [low, high],
            "note": self.block.note,
            "expressions": [str(e) for e in self.laws()],
            "missed_by_blocks": [str(e) for e in self.missed],
        }

    def laws(self):
        """Every law of the whole network found, as sympy expressions."""
        return self.block.laws() + self.extra_laws


def analyze_whole(source, degree=2, seed=0, positive=False, cache=None):
    """Analyse a small network as one block and compare with its blocks.

    Parameters
    ----------
    source : str, pathlib.Path or dict
        The model.
    degree : int
        Largest degree of the polynomial law search.
    seed : int
        Seed of the random point and inputs.
    positive : bool
        Take the point with every parameter positive.
    cache : mapping-like, optional
        The group cache.

    Returns
    -------
    WholeResult
    """
    spec = load_model(source)
    if spec.custom is not None:
        # A custom model is one block already: the whole network.
        report = analyze(source, degree=degree, seed=seed, cache=cache)
        return WholeResult(report, report.blocks[0], [], [])
    try:
        graph = build_graph(spec)
        block, param = network_parametrization(graph, seed=seed, positive=positive)
    except NotImplementedError as err:
        report = analyze(source, degree=degree, seed=seed, cache=cache)
        return WholeResult(report, None, [], [], str(err))
    report = analyze(source, degree=degree, seed=seed, cache=cache)
    memo = _GroupMemo(cache, degree, seed)
    whole = analyze_block(block, param, memo)

    extra = _logarithmic_laws(whole, param, block)
    block_laws = [e for b in report.blocks for e in b.laws()]
    missed = _independent_of(whole.laws() + extra, block_laws, seed)
    return WholeResult(report, whole, extra, missed)


def _logarithmic_laws(whole, param, block):
    """Search logarithmic laws in each group whose bounds do not meet."""
    found = []
    for (cert, variables), group in zip(whole.instances, param.groups, strict=True):
        if cert.status == "certified":
            continue
        t = sympy.symbols(f"t0:{cert.dimension}")
        known = [h.to_sympy(t) for h in cert.laws]
        fields = [gradient_field(p, cert.dimension) for p in group.components]
        names = [sympy.Symbol(symbol_name(*block.entry(v))) for v in variables]
        for h in find_log_laws(fields, cert.dimension, known):
            found.append(h.xreplace(dict(zip(t, names, strict=True))))
    return found


def _independent_of(candidates, base, seed):
    """Return the candidates that raise the gradient rank of `base`."""
    import numpy as np

    symbols = sorted(set().union(*(e.free_symbols for e in candidates + base)), key=str)
    rng = np.random.default_rng(seed + 13)
    point = {
        s: sympy.Rational(int(rng.integers(30, 90)), int(rng.integers(7, 29)))
        for s in symbols
    }

    def gradient(e):
        return [sympy.diff(e, s).subs(point) for s in symbols]

    rows = [gradient(e) for e in base]
    rank = sympy.Matrix(rows).rank() if rows else 0
    missed = []
    for e in candidates:
        trial = sympy.Matrix(rows + [gradient(e)]).rank()
        if trial > rank:
            rows.append(gradient(e))
            rank = trial
            missed.append(e)
    return missed
