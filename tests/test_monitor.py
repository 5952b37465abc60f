import sys

import numpy as np
import pytest
import sympy

from algebra.analysis import analyze
from algebra.drift import (
    CompiledLaws,
    NumpyTrainer,
    TrainingSetup,
    batch_schedule,
    synthetic_data,
)
from algebra.numeric import NumericModel, ParameterLayout
from blocks.graph import build_graph
from blocks.model_file import load_model
from tests.test_drift import SMALL_MODELS


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def _expected(report, tensors):
    """Evaluate the analysis laws (sympy) at parameter arrays named as the graph."""
    values = {}
    for block in report.blocks:
        point = {
            sympy.Symbol(symbol): tensors[entry[0]][tuple(entry[1:])]
            for symbol, entry in block.symbols().items()
        }
        values[block.name] = [float(law.subs(point)) for law in block.laws()]
    return values


def _numpy_params(module):
    return {k: v.detach().double().numpy() for k, v in module.named_parameters()}


def test_without_torch_the_module_imports_and_says_how_to_install(monkeypatch):
    from algebra import torch as torch_path

    monkeypatch.setitem(sys.modules, "torch", None)

    with pytest.raises(ImportError, match=r"pip install -e '\.\[torch\]'"):
        torch_path.build_module(build_graph(load_model(SMALL_MODELS["leaky-mlp"])))


@pytest.mark.parametrize("name", sorted(SMALL_MODELS))
def test_torch_module_matches_the_numpy_model(torch, name):
    from algebra.torch import build_module

    graph = build_graph(load_model(SMALL_MODELS[name]))
    model = NumericModel(graph)
    module = build_module(graph)
    theta = model.init_parameters(seed=4)
    views = model.layout.views(theta)
    with torch.no_grad():
        for key, param in module.named_parameters():
            param.copy_(torch.as_tensor(views[key]))
    X = np.random.default_rng(5).standard_normal(
        (6, *graph.nodes["input"]["out_shape"])
    )

    output, tape = model.forward(theta, X)
    got = module(torch.as_tensor(X))
    got.backward(torch.ones_like(got))
    gradient = model.backward(theta, tape, np.ones_like(output))

    assert np.allclose(got.detach().numpy(), output, rtol=1e-10, atol=1e-12)
    grads = model.layout.views(gradient)
    for key, param in module.named_parameters():
        assert np.allclose(param.grad.numpy(), grads[key], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "example, optimizer, decay",
    [("mlp", "sgd", 0.0), ("attention", "adam", 0.1), ("conv_relu", "momentum", 0.01)],
)
def test_torch_and_numpy_paths_agree(torch, examples, example, optimizer, decay):
    from algebra.torch import TorchTrainer

    source = examples / f"{example}.yaml"
    graph = build_graph(load_model(source))
    laws = CompiledLaws(analyze(source), ParameterLayout(graph).shapes)
    setup = TrainingSetup(optimizer, steps=20, batch=8, weight_decay=decay)
    shapes = (
        graph.nodes["input"]["out_shape"],
        graph.nodes[graph.graph["output"]]["out_shape"],
    )
    data = synthetic_data(1, 32, *shapes, "squared")
    schedule = batch_schedule(2, 32, setup)
    numpy_path, torch_path = NumpyTrainer(graph, laws), TorchTrainer(graph, laws)
    theta0 = numpy_path.init_parameters(0)

    ours = numpy_path.run(theta0, data, schedule, 1e-2, setup)
    theirs = torch_path.run(theta0, data, schedule, 1e-2, setup)

    assert np.allclose(ours.values, theirs.values, rtol=1e-10, atol=1e-10)
    assert ours.loss_end == pytest.approx(theirs.loss_end, rel=1e-10)


def _mlp_module(torch):
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = torch.nn.Linear(4, 5)
            self.fc2 = torch.nn.Linear(5, 3, bias=False)

        def forward(self, x):
            return self.fc2(torch.relu(self.fc1(x)))

    return Net()


def test_monitor_values_equal_the_analysis_laws_on_an_mlp(torch, examples):
    from algebra.torch import ConservationMonitor

    torch.manual_seed(0)
    module = _mlp_module(torch)

    values = ConservationMonitor(module)()

    expected = _expected(analyze(examples / "mlp.yaml"), _numpy_params(module))
    assert list(values) == list(expected) == ["fc1+fc2"]
    assert values["fc1+fc2"].numpy() == pytest.approx(expected["fc1+fc2"], rel=1e-6)


def test_monitor_values_follow_the_parameters(torch):
    from algebra.torch import ConservationMonitor

    torch.manual_seed(1)
    module = _mlp_module(torch)
    monitor = ConservationMonitor(module)
    before = monitor()["fc1+fc2"].clone()

    with torch.no_grad():
        module.fc2.weight.mul_(2)

    assert not torch.allclose(monitor()["fc1+fc2"], before)


def test_monitor_finds_the_heads_of_multihead_attention(torch):
    from algebra.torch import ConservationMonitor

    torch.manual_seed(2)

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = torch.nn.MultiheadAttention(4, 2, bias=False, batch_first=True)

        def forward(self, x):
            return x + self.attn(x, x, x, need_weights=False)[0]

    module = Block()
    monitor = ConservationMonitor(module, example_input=torch.randn(3, 5, 4))
    values = monitor()

    source = {
        "input": [5, 4],
        "layers": [{"type": "attention", "name": "attn", "heads": 2, "head_dim": 2}],
    }
    weight = module.attn.in_proj_weight.detach().numpy()
    layout = {
        f"attn.{role}": weight[4 * k : 4 * (k + 1)].reshape(2, 2, 4).transpose(0, 2, 1)
        for k, role in enumerate(("query", "key", "value"))
    }
    layout["attn.output"] = module.attn.out_proj.weight.detach().numpy()
    expected = _expected(analyze(source), layout)
    assert list(values) == list(expected)
    for name, laws in expected.items():
        assert values[name].numpy() == pytest.approx(laws, rel=1e-5, abs=1e-6)


def test_monitor_on_a_residual_conv_net(torch):
    from algebra.torch import ConservationMonitor

    torch.manual_seed(3)
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 4, 3, padding=1)
            self.c1 = nn.Conv2d(4, 4, 1)
            self.c2 = nn.Conv2d(4, 4, 1, bias=False)
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            x = torch.relu(self.stem(x))
            x = torch.relu(x + self.c2(torch.relu(self.c1(x))))
            return self.head(x.mean(dim=(2, 3)))

    module = Net()
    values = ConservationMonitor(module, example_input=torch.randn(2, 3, 4, 4))()

    source = {
        "input": [3, 4, 4],
        "layers": [
            {
                "type": "conv2d",
                "name": "stem",
                "out": 4,
                "kernel": 3,
                "padding": 1,
                "bias": True,
            },
            {"type": "relu"},
            {
                "type": "residual",
                "name": "res",
                "body": [
                    {
                        "type": "conv2d",
                        "name": "c1",
                        "out": 4,
                        "kernel": 1,
                        "bias": True,
                    },
                    {"type": "relu"},
                    {"type": "conv2d", "name": "c2", "out": 4, "kernel": 1},
                ],
            },
            {"type": "relu"},
            {"type": "global_avg_pool"},
            {"type": "linear", "name": "head", "out": 2, "bias": True},
        ],
    }
    expected = _expected(analyze(source), _numpy_params(module))
    assert values["c1+c2"].numpy() == pytest.approx(expected["c1+c2"], rel=1e-5)
    assert list(values) == ["c1+c2"]


def test_monitor_claims_no_law_across_an_unknown_operation(torch):
    from algebra.torch import ConservationMonitor

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = torch.nn.Linear(3, 4), torch.nn.Linear(4, 2)

        def forward(self, x):
            return self.fc2(torch.sin(self.fc1(x)))

    assert ConservationMonitor(Net())() == {}
