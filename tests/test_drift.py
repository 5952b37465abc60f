import json
import math

import numpy as np
import pytest
import sympy

from algebra.analysis import analyze
from algebra.drift import (
    CompiledLaws,
    DataError,
    fit_exponent,
    load_data,
    measure_drift,
)
from algebra.numeric import NumericModel, ParameterLayout
from blocks.graph import build_graph
from blocks.model_file import load_model
from cli import main

SMALL_MODELS = {
    "leaky-mlp": {
        "input": [4],
        "layers": [
            {"type": "linear", "name": "a", "out": 5, "bias": True},
            {"type": "leaky_relu", "slope": 0.2},
            {"type": "linear", "name": "b", "out": 3, "bias": True},
        ],
    },
    "conv2d-batchnorm": {
        "input": [2, 6, 5],
        "layers": [
            {
                "type": "conv2d",
                "name": "c",
                "out": 3,
                "kernel": 3,
                "stride": 2,
                "padding": 1,
                "bias": True,
            },
            {"type": "tanh"},
            {"type": "conv2d", "name": "d", "out": 2, "kernel": [2, 1]},
            {"type": "batchnorm", "affine": True},
            {"type": "flatten"},
            {"type": "linear", "name": "h", "out": 2},
        ],
    },
    "conv1d-pool": {
        "input": [2, 7],
        "layers": [
            {"type": "conv1d", "name": "c", "out": 3, "kernel": 3, "padding": 2},
            {"type": "silu"},
            {"type": "global_avg_pool"},
            {"type": "linear", "name": "h", "out": 2},
            {"type": "sigmoid"},
        ],
    },
    "residual-conv": {
        "input": [3, 4, 4],
        "layers": [
            {"type": "conv2d", "name": "s", "out": 2, "kernel": 1},
            {"type": "relu"},
            {
                "type": "residual",
                "name": "r",
                "body": [
                    {
                        "type": "conv2d",
                        "name": "c1",
                        "out": 2,
                        "kernel": 3,
                        "padding": 1,
                    },
                    {"type": "relu"},
                    {
                        "type": "conv2d",
                        "name": "c2",
                        "out": 2,
                        "kernel": 3,
                        "padding": 1,
                    },
                ],
            },
            {"type": "global_avg_pool"},
            {"type": "linear", "name": "h", "out": 3},
            {"type": "softmax"},
        ],
    },
    "attention-layernorm": {
        "input": [5, 4],
        "layers": [
            {"type": "layernorm", "affine": True},
            {
                "type": "residual",
                "name": "r",
                "body": [
                    {
                        "type": "attention",
                        "name": "att",
                        "heads": 2,
                        "head_dim": 3,
                        "value_dim": 2,
                        "bias": True,
                    }
                ],
            },
            {"type": "relu_power", "k": 2},
            {"type": "linear", "name": "o", "out": 2},
            {"type": "square"},
        ],
    },
}

MLP = {
    "input": [4],
    "layers": [
        {"type": "linear", "name": "fc1", "out": 5, "bias": True},
        {"type": "relu"},
        {"type": "linear", "name": "fc2", "out": 3},
    ],
}


def _model(source):
    return NumericModel(build_graph(load_model(source)))


def _batch(model, loss, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((6, *model.graph.nodes["input"]["out_shape"]))
    output_shape = model.graph.nodes[model.output]["out_shape"]
    if loss == "squared":
        return X, rng.standard_normal((6, *output_shape))
    return X, rng.integers(0, output_shape[-1], size=(6, *output_shape[:-1]))


@pytest.mark.parametrize("loss", ["squared", "cross_entropy"])
@pytest.mark.parametrize("name", sorted(SMALL_MODELS))
def test_gradient_matches_finite_differences(name, loss):
    model = _model(SMALL_MODELS[name])
    theta = model.init_parameters(seed=1)
    X, y = _batch(model, loss)

    _, gradient = model.loss_and_gradient(theta, X, y, loss)
    step = 1e-6
    for i in np.random.default_rng(2).choice(theta.size, size=12, replace=False):
        e = np.zeros_like(theta)
        e[i] = step
        plus = model.loss_and_gradient(theta + e, X, y, loss)[0]
        minus = model.loss_and_gradient(theta - e, X, y, loss)[0]
        expected = (plus - minus) / (2 * step)
        assert gradient[i] == pytest.approx(expected, rel=1e-5, abs=1e-8)


def test_one_gd_step_changes_a_relu_law_by_tau_squared_terms():
    # DESIGN.md 2.6: h = ‖u‖² − ‖v‖² − b² changes by
    # τ²(‖∇u E‖² − ‖∇v E‖² − ∂b E²).
    model = _model(MLP)
    theta = model.init_parameters(seed=0)
    X, y = _batch(model, "squared")
    _, gradient = model.loss_and_gradient(theta, X, y)
    tau = 0.05

    def law(vector):
        p = model.layout.views(vector)
        return (
            np.sum(p["fc2.weight"][:, 0] ** 2)
            - np.sum(p["fc1.weight"][0] ** 2)
            - p["fc1.bias"][0] ** 2
        )

    change = law(theta - tau * gradient) - law(theta)
    assert change == pytest.approx(tau**2 * law(gradient), rel=1e-9)


def test_compiled_laws_equal_the_analysis_expressions():
    source = SMALL_MODELS["leaky-mlp"]
    report = analyze(source)
    graph = build_graph(load_model(source))
    layout = ParameterLayout(graph)
    theta = np.random.default_rng(3).standard_normal(layout.size)
    laws = CompiledLaws(report, layout.shapes)

    values = laws.evaluate(layout.views(theta))

    expected = []
    for block in report.blocks:
        point = {
            sympy.Symbol(name): theta[layout.flat_index(entry[0], tuple(entry[1:]))]
            for name, entry in block.symbols().items()
        }
        expected.extend(float(law.subs(point)) for law in block.laws())
    assert values == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_sgd_drift_on_the_mlp_scales_as_tau_squared(examples):
    report = measure_drift(examples / "mlp.yaml", optimizer="sgd", backend="numpy")

    assert 1.8 <= report.exponent("final") <= 2.2
    assert 1.8 <= report.exponent("maximum") <= 2.2


def test_gd_with_the_smallest_step_keeps_every_law(examples):
    report = measure_drift(examples / "mlp.yaml", optimizer="gd", backend="numpy")
    smallest = min(report.rows, key=lambda row: row.lr)

    assert smallest.maximum < 1e-6
    assert np.all(smallest.per_law < 1e-6)


def test_weight_decay_correction_is_conserved_to_second_order(examples):
    # exp(2λt)·h is conserved by the flow with decay; raw h decays like exp(-2λt).
    report = measure_drift(
        examples / "mlp.yaml",
        optimizer="gd",
        weight_decay=0.5,
        seeds=1,
        backend="numpy",
    )

    for row in report.rows:
        decay = 1 - math.exp(-2 * 0.5 * row.lr * 50)
        assert row.final == pytest.approx(decay, rel=0.05)
        assert row.corrected["maximum"] < 1e-3 * row.maximum
    assert 1.8 <= report.exponent("final", corrected=True) <= 2.2
    assert report.exponent("final") < 1.2


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_momentum_and_adam_are_measured(optimizer):
    report = measure_drift(
        MLP, optimizer=optimizer, steps=10, seeds=1, samples=64, backend="numpy"
    )

    assert math.isfinite(report.exponent("final"))
    assert all(row.final > 0 for row in report.rows)


def test_cross_entropy_on_an_attention_model(examples):
    report = measure_drift(
        examples / "attention.yaml",
        optimizer="sgd",
        loss="cross_entropy",
        steps=5,
        seeds=1,
        samples=16,
        batch=4,
        backend="numpy",
    )

    assert len(report.law_names) == 12
    assert all(row.loss_end < row.loss_start for row in report.rows)


def test_a_diverging_run_is_reported_and_left_out_of_the_fit():
    report = measure_drift(
        MLP,
        optimizer="gd",
        learning_rates=(1e-4, 1e-3, 1e6),
        steps=20,
        seeds=1,
        samples=32,
        backend="numpy",
    )

    assert [row.diverged for row in report.rows] == [False, False, True]
    assert report.exponent("final") is not None
    assert "diverged" in report.to_text()


def test_fit_exponent_needs_two_learning_rates():
    assert fit_exponent([1e-3], [1e-6]) is None
    assert fit_exponent([1e-3, 1e-2], [1e-6, 1e-4]) == pytest.approx(2.0)


def test_layers_without_a_numeric_model_are_named():
    source = {"input": [3], "layers": [{"type": "gelu", "name": "act"}]}

    with pytest.raises(NotImplementedError, match="'act' \\(gelu\\)"):
        _model(source)


def test_custom_models_have_nothing_to_train(examples):
    with pytest.raises(NotImplementedError, match="custom model"):
        measure_drift(examples / "custom.yaml", backend="numpy")


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="learning_rates"):
        measure_drift(MLP, learning_rates=(0.0,), backend="numpy")


@pytest.fixture
def npz(tmp_path):
    def write(**arrays):
        path = tmp_path / "data.npz"
        np.savez(path, **arrays)
        return path

    return write


def test_data_files_are_read(npz):
    X, y = np.ones((10, 4)), np.zeros((10, 3))

    got_X, got_y = load_data(npz(X=X, y=y), (4,), (3,), "squared")

    assert got_X.shape == (10, 4) and got_y.shape == (10, 3)


@pytest.mark.parametrize(
    "arrays, loss, match",
    [
        ({"X": np.ones((10, 4))}, "squared", "no array 'y'"),
        ({"X": np.ones((10, 5)), "y": np.ones((10, 3))}, "squared", "X: got shape"),
        ({"X": np.ones((10, 4)), "y": np.ones((9, 3))}, "squared", "y: got shape"),
        ({"X": np.ones((10, 4)), "y": np.full(10, 3)}, "cross_entropy", "classes 0..2"),
        ({"X": np.ones((10, 4)), "y": np.full(10, 0.5)}, "cross_entropy", "fraction"),
    ],
    ids=["missing-y", "wrong-width", "wrong-count", "label-range", "fractional"],
)
def test_bad_data_files_are_refused(npz, arrays, loss, match):
    with pytest.raises(DataError, match=match):
        load_data(npz(**arrays), (4,), (3,), loss)


def test_cli_prints_the_drift_table(runner, examples, cache_dir):
    result = runner.invoke(
        main,
        [
            "drift",
            str(examples / "mlp.yaml"),
            "--lr",
            "1e-3",
            "3e-3",
            "--steps",
            "10",
            "--seeds",
            "1",
            "--backend",
            "numpy",
        ],
    )

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("drift of mlp: 5 laws, sgd, 10 steps")
    assert any(line.startswith("0.001 ") for line in lines)
    assert any(line.startswith("0.003 ") for line in lines)
    assert "exponent p in drift ~ lr^p" in result.output


def test_cli_json_and_plot(runner, examples, cache_dir, tmp_path):
    pytest.importorskip("matplotlib")
    plot = tmp_path / "drift.png"
    args = ["drift", str(examples / "mlp.yaml"), "--steps", "5", "--seeds", "1"]
    args += ["--format", "json", "--plot", str(plot), "--weight-decay", "0.1"]

    result = runner.invoke(main, args + ["--backend", "numpy"])

    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert [row["lr"] for row in report["rows"]] == [1e-4, 3e-4, 1e-3]
    assert "corrected" in report["rows"][0]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_refuses_a_bad_data_file_in_one_line(runner, examples, npz, cache_dir):
    path = npz(X=np.ones((10, 7)), y=np.ones((10, 3)))

    result = runner.invoke(
        main, ["drift", str(examples / "mlp.yaml"), "--data", str(path)]
    )

    assert result.exit_code == 2
    assert result.output.count("\n") == 1
    assert "X: got shape [10, 7]; expected shape [n, 4]" in result.output


def test_compiled_laws_of_a_law_family(monkeypatch):
    # Heads above the expansion limit are certified as bilinear blocks whose laws
    # are one family (one line of notation for many laws); force that path on a
    # small head and check every law of the family is compiled, in order.
    import blocks.attention

    monkeypatch.setattr(blocks.attention.head_parametrization, "__defaults__", (10,))
    source = {
        "input": [3, 4],
        "layers": [{"type": "attention", "name": "at", "heads": 1, "head_dim": 3}],
    }
    report = analyze(source)
    assert [len(b.compact()) for b in report.blocks] == [1, 1]
    graph = build_graph(load_model(source))
    layout = ParameterLayout(graph)
    theta = np.random.default_rng(5).standard_normal(layout.size)
    laws = CompiledLaws(report, layout.shapes)
    assert len(laws) == 12 and laws.names[0].endswith("#1")

    expected = []
    for block in report.blocks:
        point = {
            sympy.Symbol(name): theta[layout.flat_index(entry[0], tuple(entry[1:]))]
            for name, entry in block.symbols().items()
        }
        expected.extend(float(law.subs(point)) for law in block.laws())
    assert laws.evaluate(layout.views(theta)) == pytest.approx(expected, rel=1e-12)
