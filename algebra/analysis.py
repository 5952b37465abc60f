"""Analyse a model block by block: the engine behind ``algebra-cli analyze``.

Each block's phi is split into groups over disjoint variables; identical groups
(equal up to renaming) are certified once and shared. A group is certified by the
exact engine (`algebra.certificate.certify`) when it is given by explicit
polynomials, or from its graph of products (`algebra.products.certify_products`)
when it is stored as products.

Examples
--------
>>> report = analyze({"custom": {"parameters": {"x": [3]}, "phi": ["x_0*x_1*x_2"]}})
>>> report.laws, report.status
(2, 'certified')
"""

import hashlib
import itertools
import logging
import math
import time

import sympy

from algebra.bilinear import certify_bilinear
from algebra.certificate import Certificate, certify
from algebra.compiled import FieldSet
from algebra.products import certify_products
from algebra.report import BlockReport, Report, joint_law_count
from algebra.sampled import certify_sampled
from blocks.block import BilinearGroup, Parametrization, ProductGroup
from blocks.custom import custom_parametrization
from blocks.graph import build_graph, parameter_count
from blocks.model_file import load_model
from blocks.parametrize import parametrize
from blocks.spec import ModelSpec
from blocks.split import input_constraint, split_into_blocks, unblocked_parameters

__all__ = ["analyze", "analyze_block", "ENGINE_VERSION", "group_key"]

ENGINE_VERSION = "3"
FULL_SEARCH = 1500
logger = logging.getLogger(__name__)


def analyze(source, degree=2, seed=0, cache=None, progress=None):
    """Find and certify the conservation laws of a model, block by block.

    Parameters
    ----------
    source : str, pathlib.Path, dict or ModelSpec
        A model file (DESIGN.md section 4), the same content as a dict, or the
        model `blocks.model_file.load_model` read from either.
    degree : int
        The largest degree of the polynomial law search.
    seed : int
        Seed of every random point, so that results repeat.
    cache : mapping-like, optional
        Where certified groups are kept between runs (``get(key, default)`` and
        ``set(key, value)``); see `algebra.cache`. None keeps them for this call.
    progress : callable, optional
        Called with (index, count, block name) before each block.

    Returns
    -------
    Report

    Raises
    ------
    ModelFileError
        When the file is malformed.
    ArchitectureError
        When the shapes of the layers do not fit together.
    """
    spec = source if isinstance(source, ModelSpec) else load_model(source)
    memo = _GroupMemo(cache, degree, seed)
    if spec.custom is not None:
        block, param = custom_parametrization(spec.custom)
        reports = [analyze_block(block, param, memo)]
        return Report(spec.name, block.dimension, reports, {}, joint_law_count(reports))

    graph = build_graph(spec)
    blocks = split_into_blocks(graph)
    reports = []
    for k, block in enumerate(blocks):
        if progress is not None:
            progress(k, len(blocks), block.name)
        report = analyze_block(block, _safe_parametrize(block, graph), memo)
        report.constraint = input_constraint(graph, block)
        reports.append(report)
    unblocked = unblocked_parameters(graph, blocks)
    total = parameter_count(graph)
    return Report(spec.name, total, reports, unblocked, joint_law_count(reports))


def _safe_parametrize(block, graph):
    """Build phi, or an empty one carrying the reason it cannot be built."""
    try:
        return parametrize(block, graph)
    except NotImplementedError as err:
        return Parametrization((), note=str(err))


def analyze_block(block, param, memo):
    """Certify every group of one block and assemble its report.

    Parameters
    ----------
    block : Block
        The block.
    param : Parametrization
        Its phi, split into groups.
    memo : _GroupMemo
        Shared memo of certified groups (and the disk cache behind it).

    Returns
    -------
    BlockReport
    """
    start = time.perf_counter()
    instances = [
        (memo.certify(group, _layout(block, group)), group.variables)
        for group in param.groups
    ]
    if param.symbolic:
        variables = tuple(range(block.dimension))
        instances.append((memo.certify(_SymbolicGroup(param.symbolic)), variables))
    elapsed = time.perf_counter() - start
    logger.debug("block %s: %d groups in %.2fs", block.name, len(instances), elapsed)
    return BlockReport(
        block, instances, param.free, param.note, elapsed, memo.hits, memo.misses
    )


def group_key(group, degree, seed):
    """Return a group's cache key: canonical signature and engine version."""
    text = repr((ENGINE_VERSION, degree, seed, group.signature))
    return hashlib.sha256(text.encode()).hexdigest()


class _GroupMemo:
    """Certify groups once per signature, in memory and in an optional cache."""

    def __init__(self, cache, degree, seed):
        self.cache = cache
        self.degree = degree
        self.seed = seed
        self.memory = {}
        self.hits = 0
        self.misses = 0

    def certify(self, group, layout=None):
        key = group_key(group, self.degree, self.seed)
        if layout is not None:
            key += hashlib.sha256(repr(layout).encode()).hexdigest()[:16]
        if key in self.memory:
            return self.memory[key]
        result = self.cache.get(key) if self.cache is not None else None
        if isinstance(result, Certificate):
            self.hits += 1
        else:
            self.misses += 1
            result = _certify_group(group, self.degree, self.seed, layout)
            if self.cache is not None:
                self.cache.set(key, result)
        self.memory[key] = result
        return result


class _SymbolicGroup:
    """A block given by g(theta, x), keyed by the canonical form of g."""

    def __init__(self, model):
        self.model = model

    @property
    def signature(self):
        names = {p: f"t{k}" for k, p in enumerate(self.model.parameters)}
        names.update({x: f"x{k}" for k, x in enumerate(self.model.inputs)})
        renamed = [
            e.xreplace({s: sympy.Symbol(n) for s, n in names.items()})
            for e in self.model.outputs
        ]
        return ("sampled", len(self.model.parameters), sympy.srepr(renamed))


def _layout(block, group):
    """Tensor positions of a large group's variables, for a restricted law search.

    Returns None for groups small enough to search every monomial.
    """
    if not hasattr(group, "components"):
        return None
    d = len(group.variables)
    if math.comb(d + 2, 2) - 1 <= FULL_SEARCH:
        return None
    entries = [block.entry(v) for v in group.variables]
    lowest = {}
    for name, index in entries:
        low = lowest.setdefault(name, index)
        lowest[name] = tuple(min(a, b) for a, b in zip(low, index, strict=True))
    # Indices relative to each tensor's lowest corner, so that groups that are
    # translates of each other (one per neuron or channel) share one layout.
    names = {}
    return tuple(
        (
            names.setdefault(name, len(names)),
            tuple(i - o for i, o in zip(index, lowest[name], strict=True)),
        )
        for name, index in entries
    )


def tensor_support(layout):
    """Return the monomials searched for a large group's laws.

    Degree 1, squares, and products of two entries of one tensor whose indices
    differ on one axis only.
    """
    d = len(layout)
    monomials = [((v, 1),) for v in range(d)] + [((v, 2),) for v in range(d)]
    by_line = {}
    for v, (tensor, index) in enumerate(layout):
        for axis in range(len(index)):
            line = (tensor, axis, index[:axis] + index[axis + 1 :])
            by_line.setdefault(line, []).append(v)
    pairs = set()
    for members in by_line.values():
        pairs.update(itertools.combinations(members, 2))
    return monomials + [((a, 1), (b, 1)) for a, b in sorted(pairs)]


def _certify_group(group, degree, seed, layout=None):
    """Certify one group in its local variables."""
    if isinstance(group, _SymbolicGroup):
        return certify_sampled(group.model, degree, seed)
    if isinstance(group, BilinearGroup):
        return certify_bilinear(group, degree, seed)
    if isinstance(group, ProductGroup):
        try:
            return certify_products(group)
        except NotImplementedError:
            group = group.expand()
    d = len(group.variables)
    fields = FieldSet.from_phi(list(group.components), d)
    support = tensor_support(layout) if layout is not None and degree == 2 else None
    return certify(fields, d, degree, seed, support)
