"""Issue 3: laws that no ReLU template knows, found from each block's own fields."""

import numpy as np
import pytest
import sympy

from algebra.analysis import analyze


def _sym(name):
    return sympy.Symbol(name)


def _law_rank(laws, seed=3):
    """Rank of the gradients of sympy laws at a random rational point."""
    symbols = sorted(set().union(*(law.free_symbols for law in laws)), key=str)
    rng = np.random.default_rng(seed)
    point = {
        s: sympy.Rational(int(rng.integers(1, 50)), int(rng.integers(1, 50)))
        for s in symbols
    }
    rows = [[sympy.diff(law, s).subs(point) for s in symbols] for law in laws]
    return sympy.Matrix(rows).rank()


def _spans(found, expected):
    """The expected laws are functions of the found ones (same gradient span)."""
    return _law_rank(found) == _law_rank(found + expected) == len(found)


def test_square_activation_law_weights_outgoing_by_two(examples):
    block = analyze(examples / "mlp_square.yaml").blocks[0]
    laws = block.laws()

    assert (block.count, block.status) == (2, "certified")
    for j, law in enumerate(laws):
        v = sum(_sym(f"fc1_weight_{j}_{i}") ** 2 for i in range(3))
        u = sum(_sym(f"fc2_weight_{o}_{j}") ** 2 for o in range(2))
        expected = v + _sym(f"fc1_bias_{j}") ** 2 - 2 * u
        assert sympy.expand(law - expected) == 0 or sympy.expand(law + expected) == 0


def test_relu_power_law_weights_outgoing_by_k(examples):
    block = analyze(examples / "mlp_relu_power.yaml").blocks[0]
    law = block.laws()[0]
    v = sum(_sym(f"fc1_weight_0_{i}") ** 2 for i in range(2))
    u = sum(_sym(f"fc2_weight_{o}_0") ** 2 for o in range(2))
    expected = v + _sym("fc1_bias_0") ** 2 - 3 * u

    assert block.status == "certified" and block.count == 2
    assert sympy.expand(law - expected) == 0 or sympy.expand(law + expected) == 0


@pytest.mark.parametrize("name", ["tanh_pair.yaml", "gelu_pair.yaml"])
def test_analytic_pair_has_no_law(examples, name):
    block = analyze(examples / name).blocks[0]

    assert (block.count, block.status) == (0, "certified")
    assert block.lie_dim == block.parameters


def test_batchnorm_block_has_row_norms_and_biases(examples):
    block = analyze(examples / "batchnorm.yaml").blocks[0]
    expected = [
        _sym("fc_weight_0_0") ** 2 + _sym("fc_weight_0_1") ** 2,
        _sym("fc_weight_1_0") ** 2 + _sym("fc_weight_1_1") ** 2,
        _sym("fc_bias_0"),
        _sym("fc_bias_1"),
    ]

    assert (block.block.kind, block.count, block.status) == (
        "normalization",
        4,
        "certified",
    )
    assert _spans(block.laws(), expected)


def test_layernorm_block_has_scale_and_mean_laws(examples):
    block = analyze(examples / "layernorm.yaml").blocks[0]
    W = [[_sym(f"fc_weight_{i}_{j}") for j in range(2)] for i in range(3)]
    b = [_sym(f"fc_bias_{i}") for i in range(3)]
    expected = [
        sum(w**2 for row in W for w in row) + sum(c**2 for c in b),
        sum(W[i][0] for i in range(3)),
        sum(W[i][1] for i in range(3)),
        sum(b),
    ]

    assert (block.count, block.status) == (4, "certified")
    assert _spans(block.laws(), expected)


def test_softmax_head_has_column_sums(examples):
    report = analyze(examples / "softmax_head.yaml")
    (block,) = report.blocks
    W = [[_sym(f"head_weight_{i}_{j}") for j in range(3)] for i in range(4)]
    expected = [sum(W[i][j] for i in range(4)) for j in range(3)]
    expected.append(sum(_sym(f"head_bias_{i}") for i in range(4)))

    assert (report.laws, block.status) == (4, "certified")
    assert _spans(block.laws(), expected)


def test_swiglu_laws_pair_value_rows_with_output_columns(examples):
    block = analyze(examples / "swiglu.yaml").blocks[0]
    laws = block.laws()

    assert (block.count, block.status) == (2, "certified")
    for law in laws:
        names = {s.name for s in law.free_symbols}
        assert not any(n.startswith("ffn_gate") for n in names)
        assert any(n.startswith("ffn_value") for n in names)
        assert any(n.startswith("ffn_output") for n in names)


def test_leaky_relu_counts_like_relu():
    report = analyze(
        {
            "input": [3],
            "layers": [
                {"type": "linear", "name": "a", "out": 4, "bias": True},
                {"type": "leaky_relu", "slope": 0.2},
                {"type": "linear", "name": "b", "out": 2},
            ],
        }
    )

    assert (report.laws, report.status) == (4, "certified")


def test_custom_four_product_has_three_quadratic_laws():
    report = analyze({"custom": {"parameters": {"x": [4]}, "phi": ["x_0*x_1*x_2*x_3"]}})

    assert (report.laws, report.status) == (3, "certified")
    assert all(sympy.Poly(law).total_degree() == 2 for law in report.blocks[0].laws())


def test_custom_without_polynomial_law_up_to_degree_reports_the_bound():
    # The one law of phi = x0**2 + x1**3 is log(x0) / 2 + 1 / (3 x1): not polynomial.
    report = analyze(
        {"custom": {"parameters": {"x": [2]}, "phi": ["x_0**2 + x_1**3"]}}, degree=2
    )
    block = report.blocks[0]

    assert block.bounds == (0, 1)
    assert block.status == "bounds"
    assert "no polynomial law" in block.to_dict()["note"]


def test_rope_attention_has_one_law_per_frequency_block(examples):
    report = analyze(examples / "rope_attention.yaml")
    counts = [(b.block.kind, b.count) for b in report.blocks]

    assert counts == [("attention_qk", 2), ("attention_vo", 3)] * 2
    assert report.status == "certified"
    law = report.blocks[0].laws()[0]
    Q = sum(_sym(f"attn_query_0_{i}_{j}") ** 2 for i in range(4) for j in (0, 1))
    K = sum(_sym(f"attn_key_0_{i}_{j}") ** 2 for i in range(4) for j in (0, 1))
    assert sympy.expand(law - (K - Q)) == 0 or sympy.expand(law + (K - Q)) == 0


def test_sinusoidal_positions_keep_the_plain_head_laws(examples):
    model = {
        "input": [5, 4],
        "layers": [
            {
                "type": "attention",
                "name": "attn",
                "heads": 2,
                "head_dim": 2,
                "value_dim": 2,
                "positional": "sinusoidal",
            }
        ],
    }

    assert analyze(model).laws == analyze(examples / "attention.yaml").laws == 12


def test_attention_biases_are_placed_in_their_blocks():
    model = {
        "input": [5, 3],
        "layers": [
            {"type": "attention", "name": "at", "heads": 1, "head_dim": 2, "bias": True}
        ],
    }
    report = analyze(model)
    qk, vo = report.blocks

    # The key bias drops out of softmax: each entry is conserved on its own.
    assert {"at_key_bias_0_0", "at_key_bias_0_1"} <= {str(law) for law in qk.laws()}
    assert qk.status == vo.status == "certified"
    assert report.unblocked == {"at.output_bias": (3,)}
    assert any("at_value_bias" in str(law) for law in vo.laws())


def test_value_bias_sits_with_the_value_columns_in_the_law():
    model = {"input": [5, 3], "layers": [
        {"type": "attention", "name": "sa", "heads": 1, "head_dim": 2,
         "value_dim": 2, "out": 4, "bias": True}]}
    vo = analyze(model).blocks[1]
    law = next(e for e in vo.laws() if _sym("sa_value_bias_0_0") in e.free_symbols)
    coefficients = sympy.Poly(law).as_dict()
    poly = sympy.Poly(law)
    bias = poly.coeff_monomial(_sym("sa_value_bias_0_0") ** 2)
    value = poly.coeff_monomial(_sym("sa_value_0_0_0") ** 2)
    output = poly.coeff_monomial(_sym("sa_output_0_0") ** 2)

    assert coefficients
    assert bias == value == -output != 0


def test_compact_notation_never_pairs_misaligned_slices(examples):
    (law,) = [c for c in analyze(examples / "layernorm.yaml").blocks[0].compact()
              if "fc.weight[:,0]" in c]

    assert "⟨" not in law
    assert "fc.weight[0,1]·fc.weight[2,1]" in law
