import numpy as np
import pytest

from algebra.analysis import _certify_group
from algebra.certificate import certify
from algebra.fields import gradient_field
from algebra.laws import is_conserved
from algebra.products import certify_products
from blocks.block import ProductGroup
from blocks.graph import build_graph
from blocks.model_file import load_model
from blocks.pairs import pair_parametrization
from blocks.split import split_into_blocks

SMALL_PAIRS = {
    "linear-relu-bias": {
        "input": [3],
        "layers": [
            {"type": "linear", "name": "a", "out": 3, "bias": True},
            {"type": "relu"},
            {"type": "linear", "name": "b", "out": 2},
        ],
    },
    "conv1d-padding-stride": {
        "input": [2, 7],
        "layers": [
            {
                "type": "conv1d",
                "name": "a",
                "out": 2,
                "kernel": 3,
                "padding": 1,
                "stride": 2,
                "bias": True,
            },
            {"type": "leaky_relu", "slope": 0.1},
            {"type": "conv1d", "name": "b", "out": 2, "kernel": 2},
        ],
    },
    "conv2d-flatten-linear": {
        "input": [1, 3, 3],
        "layers": [
            {"type": "conv2d", "name": "a", "out": 2, "kernel": 2},
            {"type": "relu"},
            {"type": "flatten"},
            {"type": "linear", "name": "b", "out": 2},
        ],
    },
    "tokens-flatten-linear": {
        "input": [2, 3],
        "layers": [
            {"type": "linear", "name": "a", "out": 2, "bias": True},
            {"type": "relu"},
            {"type": "flatten"},
            {"type": "linear", "name": "b", "out": 2},
        ],
    },
    "tokens-linear": {
        "input": [3, 2],
        "layers": [
            {"type": "linear", "name": "a", "out": 2},
            {"type": "relu"},
            {"type": "linear", "name": "b", "out": 2},
        ],
    },
}


@pytest.mark.parametrize("model", SMALL_PAIRS.values(), ids=SMALL_PAIRS.keys())
def test_product_path_agrees_with_the_exact_engine(model):
    graph = build_graph(load_model(model))
    (block,) = split_into_blocks(graph)
    expanded = pair_parametrization(block, graph)
    products = pair_parametrization(block, graph, expand_limit=0)

    assert products.groups and all(isinstance(g, ProductGroup) for g in products.groups)
    assert products.free == expanded.free
    exact = [_certify_group(g, 2, 0) for g in expanded.groups]
    fast = [certify_products(g) for g in products.groups]
    assert sum(c.lie_dim for c in fast) == sum(c.lie_dim for c in exact)
    assert [len(c.laws) for c in fast] == [len(c.laws) for c in exact]
    assert all(c.status == "certified" for c in exact + fast)
    for group, cert in zip(products.groups, fast, strict=True):
        fields = [
            gradient_field(p, len(group.variables)) for p in group.expand().components
        ]
        assert all(is_conserved(h, fields) for h in cert.laws)


def test_products_sharing_a_side_are_refused():
    group = ProductGroup(
        (0, 1, 2), ((np.array([0]), np.array([1])), (np.array([1]), np.array([2])))
    )

    with pytest.raises(NotImplementedError, match="disjoint sides"):
        certify_products(group)


def test_exact_engine_on_an_odd_cycle_finds_no_law():
    # phi = (x0 x1, x1 x2, x2 x0): the product graph is not bipartite.
    group = ProductGroup(
        (0, 1, 2),
        (
            (np.array([0]), np.array([1])),
            (np.array([1]), np.array([2])),
            (np.array([2]), np.array([0])),
        ),
    ).expand()
    fields = [gradient_field(p, 3) for p in group.components]
    cert = certify(fields, 3)

    assert (cert.lie_dim, len(cert.laws), cert.status) == (3, 0, "certified")


def test_a_pointwise_convolution_pair_is_stored_as_products():
    # A 1x1 convolution on a 1x1 map: the last axis of the input shape is a spatial
    # size (1), so the size of phi must count channels x kernel, or this pair of
    # 8192 + 2048 weights is expanded one component at a time.
    graph = build_graph(
        load_model(
            {
                "input": [64, 1, 1],
                "layers": [
                    {"type": "conv2d", "name": "a", "out": 128, "kernel": 1},
                    {"type": "relu"},
                    {"type": "conv2d", "name": "b", "out": 16, "kernel": 1},
                ],
            }
        )
    )
    (block,) = split_into_blocks(graph)
    param = pair_parametrization(block, graph)
    assert all(isinstance(g, ProductGroup) for g in param.groups)
    assert len(param.groups) == 128
