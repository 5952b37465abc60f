"""The term-array fast path against the exact symbolic path, on random fields."""

import random

import numpy as np
import pytest

from algebra.brackets import lie_bracket
from algebra.certificate import certify
from algebra.compiled import FieldSet, TermArray, bracket, bracket_jacobian
from algebra.fields import VectorField, gradient_field
from algebra.laws import find_polynomial_laws, is_conserved, monomials_up_to
from algebra.polynomial import Polynomial
from algebra.rank import PRIME, random_point
from algebra.trace import trace_dimension


def _random_field(rng, d):
    def poly():
        terms = {}
        for _ in range(rng.randint(1, 4)):
            chosen = rng.sample(range(d), rng.randint(0, min(3, d)))
            mono = tuple(sorted((v, rng.randint(1, 3)) for v in chosen))
            terms[mono] = rng.randint(-5, 5)
        return Polynomial(terms)

    return VectorField({i: poly() for i in range(d) if rng.random() < 0.8}, d)


@pytest.mark.parametrize("trial", range(60))
def test_bracket_matches_exact(trial):
    rng = random.Random(trial)
    d = rng.randint(1, 5)
    X, Y = _random_field(rng, d), _random_field(rng, d)
    exact = lie_bracket(X, Y)
    fast = bracket(TermArray.from_field(X), TermArray.from_field(Y))
    point = random_point(d, trial)
    assert fast.to_polynomials() == TermArray.from_field(exact).to_polynomials()
    assert np.array_equal(fast.value_mod(point), exact.value_mod(point, PRIME))
    assert np.array_equal(fast.jacobian_mod(point), exact.jacobian_mod(point, PRIME))
    assert np.array_equal(
        bracket_jacobian(TermArray.from_field(X), TermArray.from_field(Y), point),
        exact.jacobian_mod(point, PRIME),
    )
    integer = bracket(TermArray.from_field(X, None), TermArray.from_field(Y, None))
    assert integer.to_polynomials() == exact.components


def test_float_evaluation_matches():
    rng = random.Random(3)
    X = _random_field(rng, 4)
    points = np.random.default_rng(0).normal(size=(3, 4))
    values = TermArray.from_field(X).evaluate(points)
    for row, x in zip(values, points, strict=True):
        expected = [
            X.components[i].evaluate(x) if i in X.components else 0.0 for i in range(4)
        ]
        assert np.allclose(row, expected)


def _linear_pair_fields():
    # phi = V U with U, V 2 x 2: U[h, i] is variable 2h + i, V[o, h] is 4 + 2o + h.
    U = [[Polynomial.variable(2 * h + i) for i in range(2)] for h in range(2)]
    V = [[Polynomial.variable(4 + 2 * o + h) for h in range(2)] for o in range(2)]
    phis = [V[o][0] * U[0][i] + V[o][1] * U[1][i] for o in range(2) for i in range(2)]
    return [gradient_field(phi, 8) for phi in phis]


def test_trace_stops_at_target_and_agrees():
    fields = _linear_pair_fields()
    full = trace_dimension(fields, seed=0)
    assert (full.rank, full.depth, full.closed) == (5, 2, True)
    early = trace_dimension(fields, seed=0, target=4)
    assert early.rank == 4 and early.closed


def test_exact_law_system_finds_the_balance_laws():
    fields = _linear_pair_fields()
    cert = certify(fields, 8)
    assert cert.status == "certified" and cert.bounds == (3, 3)
    assert all(is_conserved(h, fields) for h in cert.laws)
    # The entries of U U^T - V^T V, up to sign and order.
    expected = {
        frozenset({((0, 2),): 1, ((1, 2),): 1, ((4, 2),): -1, ((6, 2),): -1}.items()),
        frozenset({((2, 2),): 1, ((3, 2),): 1, ((5, 2),): -1, ((7, 2),): -1}.items()),
        frozenset(
            {
                ((0, 1), (2, 1)): 1,
                ((1, 1), (3, 1)): 1,
                ((4, 1), (5, 1)): -1,
                ((6, 1), (7, 1)): -1,
            }.items()
        ),
    }
    found = set()
    for h in cert.laws:
        sign = (
            1
            if h.terms[min(h.terms)] * (1 if min(h.terms)[0][0] < 4 else -1) > 0
            else -1
        )
        found.add(frozenset({m: sign * c for m, c in h.terms.items()}.items()))
    assert found == expected


def test_law_search_rejects_nothing_it_should_keep():
    # phi = x0 x1 x2 x3: three quadratic laws x_i^2 - x_j^2, none of degree 1.
    phi = Polynomial({tuple((k, 1) for k in range(4)): 1})
    laws = find_polynomial_laws([gradient_field(phi, 4)], 4, 2)
    assert len(laws) == 3
    assert not find_polynomial_laws(
        [gradient_field(phi, 4)], 4, 2, monomials=monomials_up_to(range(4), 1)
    )


def _relu_network():
    """A 4-5-5-4 ReLU network as one block: 400 path products, D = 65."""
    from blocks.graph import build_graph
    from blocks.model_file import load_model
    from blocks.network import network_parametrization

    layers = []
    for k, out in enumerate([5, 5, 4]):
        layers.append({"type": "linear", "name": f"l{k}", "out": out})
        if k < 2:
            layers.append({"type": "relu"})
    graph = build_graph(load_model({"input": [4], "layers": layers}))
    return network_parametrization(graph, patterns="generic")


def test_deep_relu_network_as_one_block():
    # One law per hidden neuron. The squares' component of the law system has one
    # equation per path (400), more than 2 D + 64, so it goes through the random
    # row compression.
    from algebra.analysis import _GroupMemo, analyze_block

    block, param = _relu_network()
    report = analyze_block(block, param, _GroupMemo(None, 2, 0))
    assert report.status == "certified" and report.bounds == (10, 10)
    for law in report.law_polynomials():
        assert all(len(mono) == 1 and mono[0][1] == 2 for mono in law.terms)
        assert sorted(set(law.terms.values())) == [-1, 1]


def _relu_path_fields():
    _, param = _relu_network()
    (group,) = param.groups
    d = len(group.variables)
    return FieldSet.from_phi(list(group.components), d), d


@pytest.mark.parametrize("subset", ["random", "one field"])
def test_law_search_on_a_subset_of_fields_agrees(monkeypatch, subset):
    # 400 path-product fields, 65 square monomials: more than SUBSET_FACTOR fields
    # per unknown, so the search first solves with a subset of the fields. With one
    # field, its candidates fail the exact check and the search falls back.
    import algebra.laws

    fields, d = _relu_path_fields()
    squares = [((v, 2),) for v in range(d)]
    assert fields.count > algebra.laws.SUBSET_FACTOR * len(squares)
    if subset == "one field":
        monkeypatch.setattr(algebra.laws, "_field_subset", lambda *a: np.array([0]))
    found = {str(h) for h in find_polynomial_laws(fields, d, monomials=squares)}
    monkeypatch.setattr(algebra.laws, "SUBSET_FACTOR", 10**6)
    full = {str(h) for h in find_polynomial_laws(fields, d, monomials=squares)}
    assert found == full and len(full) == 10
