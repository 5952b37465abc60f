"""The validated, normalized form of a model file.

`blocks.model_file.load_model` turns YAML (or a dict) into a `ModelSpec`; the graph
builder trusts it. Every option has its default filled in, so later code never looks
a key up with a fallback.
"""

from dataclasses import dataclass, field

__all__ = ["Layer", "CustomModel", "ModelSpec", "LAYER_OPTIONS", "PARAMETERIZED"]

# Allowed options per layer type, with their defaults.  `None` marks a required
# option, except attention's `value_dim` and `out`, which default to `head_dim`
# and the input width.  Containers (residual, repeat) carry their lists in
# `Layer.body` and `Layer.shortcut`, not in `options`.
LAYER_OPTIONS = {
    "linear": {"out": None, "bias": False},
    "conv1d": {"out": None, "kernel": None, "stride": 1, "padding": 0, "bias": False},
    "conv2d": {"out": None, "kernel": None, "stride": 1, "padding": 0, "bias": False},
    "relu": {},
    "leaky_relu": {"slope": 0.01},
    "relu_power": {"k": None},
    "square": {},
    "identity": {},
    "tanh": {},
    "sigmoid": {},
    "gelu": {},
    "silu": {},
    "softmax": {},
    "flatten": {},
    "global_avg_pool": {},
    "layernorm": {"affine": False},
    "batchnorm": {"affine": False},
    "attention": {
        "heads": None,
        "head_dim": None,
        "value_dim": None,
        "out": None,
        "bias": False,
        "rope": False,
        "positional": "none",
    },
    "swiglu": {"hidden": None, "out": None, "bias": False},
    "residual": {},
    "repeat": {"times": None},
}

# Layer types that own parameters (always, or when `affine` is true).
PARAMETERIZED = frozenset(
    {"linear", "conv1d", "conv2d", "attention", "swiglu", "layernorm", "batchnorm"}
)


@dataclass(frozen=True)
class Layer:
    """One layer of a model file, with every option filled in.

    Parameters
    ----------
    type : str
        The layer type, a key of `LAYER_OPTIONS`.
    name : str
        A unique identifier. Unnamed layers get stable names from their type and
        their position among layers of that type (``linear_0``, ``relu_1``, ...).
    options : tuple of (str, object)
        The options of `LAYER_OPTIONS[type]`, sorted by key, defaults filled in.
        ``kernel``, ``stride`` and ``padding`` of convolutions are tuples with one
        entry per spatial axis. ``value_dim`` and ``out`` of attention are ``None``
        when not given (the graph fills them from ``head_dim`` and the width).
    body : tuple of Layer
        The layers of a ``residual`` or ``repeat``; empty otherwise.
    shortcut : tuple of Layer
        The projection of a ``residual`` skip path (empty for the identity).
    line : int
        The line of the model file where the layer starts (0 for dicts).
    """

    type: str
    name: str
    options: tuple = ()
    body: tuple = ()
    shortcut: tuple = ()
    line: int = 0

    def option(self, key):
        """Return the value of one option."""
        return dict(self.options)[key]


@dataclass(frozen=True)
class CustomModel:
    """A model given by its parameters and its parametrization phi.

    Parameters
    ----------
    parameters : tuple of (str, tuple of int)
        Parameter names and shapes, in file order.
    phi : tuple of str
        The components of phi, as written in the file. Symbols are the entries
        of the parameters: ``x_0`` for ``x`` of shape ``[3]``, ``W_1_2`` for
        ``W`` of shape ``[2, 3]``.
    """

    parameters: tuple
    phi: tuple


@dataclass(frozen=True)
class ModelSpec:
    """A validated model file.

    Parameters
    ----------
    name : str
        The model's name (the file's stem when the file gives none).
    source : str
        Where it came from: a path, or ``<dict>``.
    input : tuple of int
        The shape of one sample; empty for a custom model.
    layers : tuple of Layer
        The layers, in order; empty for a custom model.
    custom : CustomModel or None
        The custom parametrization, when the file gives one.
    """

    name: str
    source: str
    input: tuple = ()
    layers: tuple = ()
    custom: CustomModel | None = None
    extra: dict = field(default_factory=dict, compare=False)
