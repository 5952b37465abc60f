import json

import sympy

from algebra.whole import analyze_whole
from cli import main


def test_global_finds_the_third_law_of_the_two_block_scalar_network(examples):
    result = analyze_whole(examples / "two_block_scalar.yaml", positive=True)

    assert result.report.laws == 2
    assert result.bounds == (3, 3) and result.status == "certified"
    (missed,) = result.missed
    assert missed.has(sympy.log)


def test_third_law_is_conserved_by_the_field_of_phi():
    u, v, s, t = sympy.symbols("u v s t", positive=True)
    phi = (1 + u * v) * (1 + s * t)
    result = analyze_whole("examples/two_block_scalar.yaml", positive=True)
    (law,) = result.missed
    names = {"u_weight_0_0": u, "v_weight_0_0": v, "s_weight_0_0": s, "t_weight_0_0": t}
    h = law.xreplace({sym: names[sym.name] for sym in law.free_symbols})

    flow = sum(sympy.diff(h, p) * sympy.diff(phi, p) for p in (u, v, s, t))
    assert sympy.simplify(flow) == 0


def test_global_on_a_single_pair_agrees_with_the_block():
    model = {
        "input": [2],
        "layers": [
            {"type": "linear", "name": "a", "out": 2, "bias": True},
            {"type": "relu"},
            {"type": "linear", "name": "b", "out": 1},
        ],
    }
    result = analyze_whole(model)

    assert result.report.laws == 2
    assert result.count == 2 and result.missed == []


def test_cli_global_json_has_a_global_section(runner, examples):
    out = runner.invoke(
        main,
        [
            "analyze",
            str(examples / "two_block_scalar.yaml"),
            "--global",
            "--positive",
            "--format",
            "json",
            "--no-cache",
        ],
    )
    data = json.loads(out.output)

    assert data["laws"] == 2
    assert data["global"]["laws"] == 3
    assert len(data["global"]["missed_by_blocks"]) == 1


def test_global_declines_large_networks_and_keeps_the_blocks(runner):
    model = {"input": [20], "layers": [
        {"type": "linear", "name": "a", "out": 10}, {"type": "relu"},
        {"type": "linear", "name": "b", "out": 5}]}
    result = analyze_whole(model)

    assert result.status == "unavailable" and "block by block" in result.unavailable
    assert result.report.laws == 10


def test_global_count_does_not_depend_on_the_seed(examples):
    counts = {analyze_whole(examples / "deep_relu.yaml", seed=s).bounds
              for s in range(3)}

    assert counts == {(8, 8)}


def test_global_on_a_custom_model_is_the_model_itself(examples):
    result = analyze_whole(examples / "custom.yaml")

    assert (result.count, result.status, result.missed) == (2, "certified", [])


def test_global_reports_unsupported_layers_without_failing(examples):
    result = analyze_whole(examples / "tanh_pair.yaml")

    assert result.status == "unavailable" and "tanh" in result.unavailable
    assert result.report.status == "certified"
