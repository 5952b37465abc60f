import pytest
import sympy

from algebra.analysis import analyze


def _norm2(symbols):
    return sum(sympy.Symbol(s) ** 2 for s in symbols)


def _block_expressions(block_dict):
    names = {n: sympy.Symbol(n) for n in block_dict["symbols"]}
    return [sympy.sympify(e, locals=names) for e in block_dict["expressions"]]


def _equal_up_to_sign(got, expected):
    return sympy.expand(got - expected) == 0 or sympy.expand(got + expected) == 0


EXPECTED_COUNTS = [
    ("mlp.yaml", 5, 40),
    ("deep_relu.yaml", 8, 12 + 16 + 8),
    ("two_linear.yaml", 3, 12),
    ("conv_relu.yaml", 3, 18 + 6),
    ("attention.yaml", 12, 3 * 2 * 4 * 2 + 4 * 4),
    ("residual_mlp.yaml", 5, 45),
    ("custom.yaml", 2, 3),
]


@pytest.mark.parametrize(
    "name, laws, parameters", EXPECTED_COUNTS, ids=[c[0] for c in EXPECTED_COUNTS]
)
def test_example_counts_are_certified(examples, name, laws, parameters):
    report = analyze(examples / name)

    assert report.laws == laws
    assert report.parameters == parameters
    assert report.status == "certified"
    assert all(b.status == "certified" for b in report.blocks)


def test_mlp_laws_are_one_per_hidden_neuron(examples):
    block = analyze(examples / "mlp.yaml").to_dict()["blocks"][0]
    got = _block_expressions(block)

    for j, law in enumerate(got):
        u = _norm2(f"fc2_weight_{o}_{j}" for o in range(3))
        v = _norm2(f"fc1_weight_{j}_{i}" for i in range(4))
        b = sympy.Symbol(f"fc1_bias_{j}") ** 2
        assert _equal_up_to_sign(law, u - v - b)
    assert block["lie_dim"] == 35
    assert block["bounds"] == [5, 5]


def test_two_linear_laws_span_gram_difference(examples):
    block = analyze(examples / "two_linear.yaml").to_dict()["blocks"][0]
    got = _block_expressions(block)
    U = sympy.Matrix(3, 2, lambda i, j: sympy.Symbol(f"fc2_weight_{i}_{j}"))
    V = sympy.Matrix(2, 3, lambda i, j: sympy.Symbol(f"fc1_weight_{i}_{j}"))
    G = U.T * U - V * V.T
    expected = [G[0, 0], G[0, 1], G[1, 1]]

    # Each law lies in the span of the three entries, and the laws are independent.
    coeffs = sympy.symbols("c0:3")
    for law in got:
        combo = sympy.expand(
            law - sum(c * e for c, e in zip(coeffs, expected, strict=True))
        )
        poly = sympy.Poly(combo, *sorted(combo.free_symbols - set(coeffs), key=str))
        assert sympy.solve(poly.coeffs(), coeffs)
    assert block["lie_dim"] == 9


def test_deep_relu_blocks_overlap_but_laws_are_independent(examples):
    report = analyze(examples / "deep_relu.yaml")

    assert [b.count for b in report.blocks] == [4, 4]
    assert [b.block.name for b in report.blocks] == ["fc1+fc2", "fc2+fc3"]
    assert report.laws == 8


def test_conv_relu_laws_are_per_channel_slices(examples):
    block = analyze(examples / "conv_relu.yaml").to_dict()["blocks"][0]
    got = _block_expressions(block)

    for c, law in enumerate(got):
        u = _norm2(f"conv2_weight_0_{c}_{k}" for k in range(2))
        v = _norm2(f"conv1_weight_{c}_{i}_{k}" for i in range(2) for k in range(3))
        assert _equal_up_to_sign(law, u - v)


def test_attention_heads_have_query_key_and_value_output_laws(examples):
    report = analyze(examples / "attention.yaml")
    kinds = [(b.block.kind, b.count, b.lie_dim) for b in report.blocks]

    assert kinds == [("attention_qk", 3, 13), ("attention_vo", 3, 13)] * 2
    qk = report.to_dict()["blocks"][0]
    Q = sympy.Matrix(4, 2, lambda i, j: sympy.Symbol(f"attn_query_0_{i}_{j}"))
    K = sympy.Matrix(4, 2, lambda i, j: sympy.Symbol(f"attn_key_0_{i}_{j}"))
    G = Q.T * Q - K.T * K
    span = [G[0, 0], G[0, 1], G[1, 1]]
    for law in _block_expressions(qk):
        c = sympy.symbols("c0:3")
        residue = sympy.expand(law - sum(a * e for a, e in zip(c, span, strict=True)))
        poly = sympy.Poly(residue, *sorted(residue.free_symbols - set(c), key=str))
        assert sympy.solve(poly.coeffs(), c)


def test_residual_mlp_has_the_same_laws_as_without_skip(examples, tmp_path):
    with_skip = analyze(examples / "residual_mlp.yaml")
    plain = analyze(
        {
            "input": [4],
            "layers": [
                {"type": "linear", "name": "fc1", "out": 5, "bias": True},
                {"type": "relu"},
                {"type": "linear", "name": "fc2", "out": 4},
            ],
        }
    )

    assert with_skip.blocks[0].block.kind == "residual"
    assert (
        with_skip.to_dict()["blocks"][0]["expressions"]
        == (plain.to_dict()["blocks"][0]["expressions"])
    )


def test_custom_triple_product_laws(examples):
    block = analyze(examples / "custom.yaml").to_dict()["blocks"][0]
    x0, x1, x2 = sympy.symbols("x_0 x_1 x_2")
    got = _block_expressions(block)

    assert len(got) == 2
    for law in got:
        c = sympy.symbols("a b")
        residue = sympy.expand(law - c[0] * (x0**2 - x1**2) - c[1] * (x0**2 - x2**2))
        assert sympy.solve(sympy.Poly(residue, x0, x1, x2).coeffs(), c)


def test_linear_pair_wider_than_input_plus_output_has_fewer_laws():
    # n = m = 1, r = 3: r(r+1)/2 = 6 would be wrong; the count is 5.
    report = analyze(
        {
            "input": [1],
            "layers": [
                {"type": "linear", "name": "a", "out": 3},
                {"type": "linear", "name": "b", "out": 1},
            ],
        }
    )

    assert report.laws == 5
    assert report.status == "certified"


def test_last_bias_is_listed_as_in_no_block(examples):
    report = analyze(
        {
            "input": [2],
            "layers": [
                {"type": "linear", "name": "a", "out": 2, "bias": True},
                {"type": "relu"},
                {"type": "linear", "name": "b", "out": 1, "bias": True},
            ],
        }
    )

    assert report.unblocked == {"b.bias": (1,)}
    assert report.laws == 2


def test_custom_phi_with_no_law_is_certified_zero():
    report = analyze({"custom": {"parameters": {"x": [2]}, "phi": ["x_0", "x_1**2"]}})

    assert report.laws == 0
    assert report.status == "certified"


def test_non_polynomial_custom_phi_is_certified_from_sampled_gradients():
    report = analyze({"custom": {"parameters": {"x": [2]}, "phi": ["exp(x_0*x_1)"]}})
    (law,) = report.blocks[0].laws()
    x0, x1 = sympy.symbols("x_0 x_1")

    assert report.status == "certified"
    assert _equal_up_to_sign(law, x0**2 - x1**2)


def test_leaky_relu_with_slope_one_is_a_linear_pair():
    report = analyze(
        {
            "input": [1],
            "layers": [
                {"type": "linear", "name": "a", "out": 3},
                {"type": "leaky_relu", "slope": 1},
                {"type": "linear", "name": "b", "out": 1},
            ],
        }
    )

    assert (report.laws, report.status) == (5, "certified")


def test_single_token_attention_conserves_every_query_key_parameter():
    report = analyze(
        {
            "input": [1, 2],
            "layers": [{"type": "attention", "name": "at", "heads": 1, "head_dim": 1}],
        }
    )
    qk = report.blocks[0]

    assert (qk.count, qk.status) == (qk.parameters, "certified")


def test_constant_components_of_phi_are_ignored():
    report = analyze({"custom": {"parameters": {"x": [3]}, "phi": ["1", "x_0*x_1"]}})

    assert (report.laws, report.status) == (2, "certified")


def test_parameters_in_no_block_make_the_model_status_bounds():
    report = analyze(
        {
            "input": [3],
            "layers": [
                {"type": "linear", "name": "a", "out": 3},
                {"type": "softmax"},
                {"type": "linear", "name": "b", "out": 2},
            ],
        }
    )

    assert report.unblocked and report.status == "bounds"


@pytest.mark.parametrize("affine", [False, True])
def test_a_pair_after_a_layernorm_is_not_certified_complete(affine):
    # Without affine parameters the layernorm's output has mean zero, so the row
    # sums of fc1.weight are conserved too: laws the pair's phi (coefficients in an
    # unconstrained input) cannot see. The count is then only a lower end.
    model = {
        "input": [3],
        "layers": [
            {"type": "layernorm", "name": "ln", "affine": affine},
            {"type": "linear", "name": "fc1", "out": 2},
            {"type": "relu"},
            {"type": "linear", "name": "fc2", "out": 1},
        ],
    }
    report = analyze(model)
    pair = report.blocks[-1]
    assert pair.name == "fc1+fc2"
    if affine:
        assert not pair.constraint
    else:
        assert pair.status == "bounds" and pair.bounds == (2, 8)
        assert "layernorm" in pair.to_dict()["note"]
        assert pair.to_dict()["lie_dim"] is None


def test_a_law_of_mixed_degree_for_a_non_polynomial_phi():
    # phi = exp(a) b: h = b^2 - 2a has grad h . grad phi = -2 e^a b + 2 b e^a = 0,
    # a law with terms of degrees 1 and 2 (the homogeneous passes miss it).
    report = analyze(
        {"custom": {"parameters": {"a": [1], "b": [1]}, "phi": ["exp(a_0)*b_0"]}}
    )
    (block,) = report.blocks
    assert block.status == "certified" and block.bounds == (1, 1)
    (law,) = block.law_polynomials()
    assert law.primitive().terms in (
        {((0, 1),): 2, ((1, 2),): -1},
        {((0, 1),): -2, ((1, 2),): 1},
    )


@pytest.mark.parametrize("phi", ["x_0*x_1/1048573", "1048573*x_0*x_1"])
def test_a_coefficient_divisible_by_the_prime_changes_nothing(phi):
    # 1048573 is the engine's prime; scaling a component of phi changes no law.
    report = analyze({"custom": {"parameters": {"x": [2]}, "phi": [phi]}})
    assert report.status == "certified" and report.laws == 1


def test_rope_with_biases_is_not_certified():
    # With rope, rotated biases meet the key bias (b_q R b_k changes with the
    # offset), so the key bias is not conserved; that phi is not built yet.
    model = {
        "input": [3, 2],
        "layers": [
            {
                "type": "attention",
                "name": "at",
                "heads": 1,
                "head_dim": 2,
                "rope": True,
                "bias": True,
            }
        ],
    }
    qk = analyze(model).blocks[0]
    assert qk.name == "at.head0.qk" and qk.status == "bounds"
    assert qk.bounds == (0, qk.parameters)


def test_gradients_at_rounding_level_are_never_certified():
    # A width-2 layernorm outputs +-(1, -1): the gradient is rounding noise.
    model = {
        "input": [3],
        "layers": [
            {"type": "linear", "name": "a", "out": 2},
            {"type": "layernorm", "name": "ln"},
        ],
    }
    (block,) = analyze(model).blocks
    assert block.status == "bounds"
