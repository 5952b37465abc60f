import numpy as np
import pytest
import sympy

from algebra.analysis import analyze
from algebra.bilinear import (
    LawFamily,
    bilinear_layout,
    certify_bilinear,
    invariant_forms,
    verify_form,
)
from algebra.cache import decode_certificate, encode_certificate
from algebra.certificate import certify
from algebra.fields import gradient_field
from algebra.laws import find_polynomial_laws
from algebra.rank import PRIME, Echelon, random_point
from blocks.attention import head_parametrization
from blocks.block import BilinearGroup
from blocks.graph import build_graph
from blocks.model_file import load_model
from blocks.pairs import pair_parametrization
from blocks.split import split_into_blocks


def bilinear(n, m, r, bias=0, seed=0):
    """U (n x r), an optional bias row beside U, V (m x r), variables shuffled."""
    rng = np.random.default_rng(seed)
    d = (n + bias + m) * r
    order = rng.permutation(d)
    left = (order[: n * r].reshape(n, r),)
    if bias:
        left += (order[n * r : (n + 1) * r].reshape(1, r),)
    right = (order[(n + bias) * r :].reshape(m, r),)
    return BilinearGroup(tuple(range(d)), left, right)


def exact(group):
    """The exact engine on the expanded polynomials."""
    expanded = group.expand()
    d = len(expanded.variables)
    fields = [gradient_field(p, d) for p in expanded.components]
    return certify(fields, d), find_polynomial_laws(fields, d, 2, 0, None)


def coefficients(laws):
    """Rows of coefficients over the union of monomials, as a sympy matrix."""
    laws = list(laws)
    monomials = sorted({m for h in laws for m in h.terms})
    return sympy.Matrix([[h.terms.get(m, 0) for m in monomials] for h in laws])


def span_contains(big, small):
    rank = coefficients(big).rank()
    return coefficients(list(big) + list(small)).rank() == rank


SHAPES = [
    (1, 1, 1, 0),
    (1, 1, 3, 0),
    (2, 3, 2, 0),
    (3, 2, 4, 0),
    (1, 2, 4, 0),
    (2, 2, 5, 1),
    (3, 1, 2, 1),
    (4, 3, 2, 1),
]


@pytest.mark.parametrize(
    "n, m, r, bias", SHAPES, ids=[f"n{n}-m{m}-r{r}-b{b}" for n, m, r, b in SHAPES]
)
def test_agrees_with_the_exact_engine(n, m, r, bias):
    group = bilinear(n, m, r, bias)
    fast = certify_bilinear(group)
    slow, every_law = exact(group)

    assert fast.status == slow.status == "certified"
    assert fast.lie_dim == slow.lie_dim
    assert len(fast.laws) == len(slow.laws)
    assert span_contains(every_law, fast.laws)
    if 3 <= n + bias + m and r <= n + bias + m:
        # No quadratic law beyond the entries of W^T C W (minors have degree N).
        assert coefficients(every_law).rank() == coefficients(fast.laws).rank()


def test_laws_are_u_gram_minus_v_gram():
    group = BilinearGroup((0, 1, 2, 3), (np.array([[0, 1]]),), (np.array([[2, 3]]),))
    laws = [str(h) for h in certify_bilinear(group).laws]
    assert laws == ["x0**2 - x2**2", "x0*x1 - x2*x3", "x1**2 - x3**2"]


def test_a_wrong_form_is_rejected():
    layout = bilinear_layout(bilinear(3, 2, 2, bias=1))
    (form, symmetric), *_ = invariant_forms(layout)
    assert symmetric and verify_form(layout, form, every=True)
    wrong = tuple((kind, p, q, abs(c)) for kind, p, q, c in form)  # U^T U + V^T V
    assert not verify_form(layout, wrong)
    assert not verify_form(layout, wrong, every=True)
    tilted = form + (("J", 0, 2, 1), ("J", 2, 0, 1))
    assert not verify_form(layout, tilted)


def test_lazy_laws_match_their_count_and_terms():
    family = certify_bilinear(bilinear(3, 2, 4, bias=1)).laws
    laws = list(family)
    assert len(laws) == len(family) == 10
    assert family.terms == sum(len(h.terms) for h in laws)
    assert family[-1] == laws[-1] and family[3] == laws[3]


def test_cache_round_trip_and_tampering():
    cert = certify_bilinear(bilinear(2, 3, 3, bias=1))
    assert decode_certificate(encode_certificate(cert)) == cert
    content = cert.laws.to_json()
    content["orbits"][0][0][0] = 10_000
    with pytest.raises(ValueError, match="outside"):
        LawFamily.from_json(content).check(cert.dimension)


ATTENTION = {
    "input": [3, 4],
    "layers": [
        {
            "type": "attention",
            "name": "at",
            "heads": 2,
            "head_dim": 2,
            "value_dim": 3,
            "out": 4,
            "bias": True,
        }
    ],
}


def small_model(spec):
    graph = build_graph(load_model(spec))
    return graph, split_into_blocks(graph)


def global_components(param):
    return {
        frozenset(p.rename(dict(enumerate(g.variables))).terms.items())
        for g in param.groups
        for p in (g.expand() if isinstance(g, BilinearGroup) else g).components
    }


@pytest.mark.parametrize("kind", ["attention_qk", "attention_vo"])
def test_attention_head_agrees_with_expanded_head(kind):
    graph, blocks = small_model(ATTENTION)
    block = next(b for b in blocks if b.kind == kind)
    structured = head_parametrization(block, graph, expand_limit=0)
    expanded = head_parametrization(block, graph)

    (group,) = structured.groups
    assert isinstance(group, BilinearGroup)
    assert structured.free == expanded.free
    assert global_components(structured) == global_components(expanded)
    fast = certify_bilinear(group)
    (poly_group,) = expanded.groups
    d = len(poly_group.variables)
    slow = certify([gradient_field(p, d) for p in poly_group.components], d)
    assert (fast.lie_dim, len(fast.laws)) == (slow.lie_dim, len(slow.laws))


def test_linear_pair_agrees_with_expanded_pair():
    graph, (block,) = small_model(
        {
            "input": [3],
            "layers": [
                {"type": "linear", "name": "a", "out": 4, "bias": True},
                {"type": "linear", "name": "b", "out": 2},
            ],
        }
    )
    structured = pair_parametrization(block, graph, expand_limit=0)
    expanded = pair_parametrization(block, graph)
    assert isinstance(structured.groups[0], BilinearGroup)
    assert global_components(structured) == global_components(expanded)
    assert certify_bilinear(structured.groups[0]).bounds == (10, 10)


def test_large_linear_chain_counts_overlapping_laws_jointly():
    spec = {
        "input": [2],
        "layers": [
            {"type": "linear", "name": "l0", "out": 6},
            {"type": "linear", "name": "l1", "out": 10},
            {"type": "linear", "name": "l2", "out": 90},
        ],
    }
    report = analyze(spec)
    first, second = report.blocks
    assert isinstance(second.instances[0][0].laws, LawFamily)
    assert (second.count, second.status) == (55, "certified")
    assert len(second.compact()) == 1
    assert "l2.weightᵀ·l2.weight" in second.compact()[0]

    # The joint count against a dense exact rank of every law's gradient.
    entries, gradients = {}, []
    for block in report.blocks:
        for law in block.law_polynomials():
            for v in law.variables():
                entries.setdefault(block.block.entry(v), len(entries))
    point = random_point(len(entries), 5)
    for block in report.blocks:
        for law in block.law_polynomials():
            local = {v: entries[block.block.entry(v)] for v in law.variables()}
            row = np.zeros(len(entries))
            for c, value in law.rename(local).gradient_mod(point, PRIME).items():
                row[c] = value
            gradients.append(row)
    echelon = Echelon(len(entries))
    echelon.add_many(np.array(gradients))
    assert report.laws == echelon.rank == first.count + second.count


def test_gpt2_sized_head_is_certified_quickly():
    spec = {
        "input": [4, 768],
        "layers": [
            {
                "type": "attention",
                "name": "at",
                "heads": 1,
                "head_dim": 64,
                "value_dim": 64,
                "out": 768,
            },
        ],
    }
    report = analyze(spec)
    assert [b.status for b in report.blocks] == ["certified", "certified"]
    assert [b.count for b in report.blocks] == [2080, 2080]
    assert report.blocks[0].lie_dim == 768 * 2 * 64 - 2080
    assert report.blocks[0].to_dict()["expressions_omitted"]
