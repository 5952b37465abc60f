"""Measure how far discrete training moves the conservation laws.

Gradient flow keeps every law h found by `algebra.analysis.analyze` constant; a
finite step does not. `measure_drift` trains the network of a model file with
gd, sgd, momentum or adam at several learning rates, evaluates every law at every
step, and reports the relative drift ``|h(theta_k) - h(theta_0)| / |h(theta_0)|``
(the worst law, at the end and at its largest) and the exponent p of a fit
``drift ~ lr^p`` (DESIGN.md section 2, item 6).

Laws are compiled once (`CompiledLaws`) into index arrays and coefficients, so that
evaluating all of them costs one gather, one product and one sum per step.

Examples
--------
>>> report = measure_drift(
...     {"input": [2], "layers": [
...         {"type": "linear", "name": "a", "out": 2}, {"type": "relu"},
...         {"type": "linear", "name": "b", "out": 1}]},
...     optimizer="gd", learning_rates=(1e-3, 1e-2), steps=5, seeds=1,
...     samples=8, backend="numpy")
>>> len(report.law_names), [row.lr for row in report.rows]
(2, [0.001, 0.01])
>>> 1.5 < report.exponent("final") < 2.5
True
>>> measure_drift({"input": [2], "layers": []}, optimizer="rmsprop")
Traceback (most recent call last):
...
ValueError: optimizer: got 'rmsprop'; expected one of gd, sgd, momentum, adam

Notes
-----
Weight decay. With decay lambda, training follows ``theta' = -grad E - lambda
theta``. For a law h that is a homogeneous polynomial of degree p, grad h is
orthogonal to grad E, and Euler's identity gives ``grad h . theta = p h``, so
``dh/dt = -lambda p h``: the quantity ``exp(p lambda t) h(theta(t))`` is conserved
(``exp(2 lambda t) h`` for the quadratic laws). A step of size tau stands for
``t = tau``. The report gives the drift of this corrected quantity beside the raw
one; laws that are not homogeneous have no such correction and are left out of
it. Decay is added to the gradient (``g + lambda theta``) for every optimizer, as
torch's ``weight_decay`` does (for adam this is not AdamW).

Momentum is the heavy ball ``b <- 0.9 b + g``, ``theta <- theta - tau b``; adam
uses betas (0.9, 0.999) and eps 1e-8. gd uses every sample at each step; sgd,
momentum and adam draw a batch without replacement at each step. Synthetic data
are standard normal inputs with standard normal targets (squared loss) or
uniform labels (cross-entropy).

The exponent is 2 in the limit of small ``steps * tau``. Over a finite run the
trajectory itself moves, and the sum of the per-step changes ``tau^2 q(theta_k)``
follows it: on the mlp example with 50 sgd steps the fit gives about 1.95 over
1e-4 .. 1e-3 (the default learning rates) and about 1.65 over 1e-3 .. 1e-2.

A law whose initial value is tiny compared with its terms would make the ratio
meaningless: the denominator is ``max(|h(theta_0)|, 1e-3 m)``, where m is the sum
of the absolute values of the law's terms at theta_0.
"""

import math
from dataclasses import dataclass, field

import numpy as np

from algebra.errors import ProjectError

__all__ = [
    "measure_drift",
    "CompiledLaws",
    "DriftReport",
    "DriftRow",
    "DataError",
    "NumpyTrainer",
    "fit_exponent",
    "plot_drift",
    "load_data",
    "OPTIMIZERS",
    "DEFAULT_LEARNING_RATES",
]

OPTIMIZERS = ("gd", "sgd", "momentum", "adam")
DEFAULT_LEARNING_RATES = (1e-4, 3e-4, 1e-3)
MOMENTUM = 0.9
BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
FLOOR = 1e-3
NUMPY_PARAMETER_LIMIT = 200_000


class DataError(ProjectError, ValueError):
    """A data file does not fit the model: missing arrays, wrong shapes or labels."""


@dataclass(frozen=True)
class TrainingSetup:
    """How to train: optimizer, steps, batch, loss and weight decay."""

    optimizer: str = "sgd"
    steps: int = 50
    batch: int = 32
    loss: str = "squared"
    weight_decay: float = 0.0


class CompiledLaws:
    """Every law of a report, compiled for vectorized evaluation.

    The entries the laws use are gathered into one vector z (one slice per
    parameter tensor, then a trailing 1); each term is ``coeff * prod z[factors]``
    and each law the sum of its terms.

    Parameters
    ----------
    report : Report
        The analysis, from `algebra.analysis.analyze`.
    shapes : dict
        Full shape of each parameter tensor, by name.

    Attributes
    ----------
    names : list of str
        Each law in compact notation, prefixed by its block.
    blocks : dict
        Block name to the slice of its laws.
    degrees : ndarray
        The degree of each law when it is homogeneous, else -1.
    gathers : tuple of (str, ndarray)
        Parameter name and flat indices of the entries read from it.
    """

    def __init__(self, report, shapes):
        self.names, self.blocks, degrees, terms = [], {}, [], []
        for block_report in report.blocks:
            start = len(self.names)
            entry = _entry_lookup(block_report.block, shapes)
            polynomials = block_report.law_polynomials()
            # A family of laws (an attention head's) is one line of notation.
            for text, count in block_report.compact_entries():
                for k in range(count):
                    law = next(polynomials)
                    degrees.append(_homogeneous_degree(law))
                    for mono, coeff in law.terms.items():
                        keys = [entry(v) for v, e in mono for _ in range(e)]
                        terms.append((len(self.names), float(coeff), keys))
                    label = text if count == 1 else f"{text} #{k + 1}"
                    self.names.append(f"{block_report.name}: {label}")
            self.blocks[block_report.name] = slice(start, len(self.names))
        self.degrees = np.array(degrees, dtype=np.int64)
        self._pack(terms)

    def _pack(self, terms):
        """Store the terms as index arrays into z, padded with the trailing 1."""
        keys = sorted({key for _, _, factors in terms for key in factors})
        position = {key: k for k, key in enumerate(keys)}
        by_name = {}
        for name, flat in keys:
            by_name.setdefault(name, []).append(flat)
        self.gathers = tuple(
            (name, np.array(flats, dtype=np.int64)) for name, flats in by_name.items()
        )
        width = max((len(f) for _, _, f in terms), default=1)
        self.factors = np.full((len(terms), width), len(keys), dtype=np.int64)
        for k, (_, _, factors) in enumerate(terms):
            self.factors[k, : len(factors)] = [position[key] for key in factors]
        self.coeffs = np.array([c for _, c, _ in terms], dtype=np.float64)
        self.law_of_term = np.array([law for law, _, _ in terms], dtype=np.int64)

    def __len__(self):
        return len(self.names)

    def gather(self, tensors):
        """Return z: the used entries of `tensors` (name to ndarray), then 1."""
        parts = [tensors[name].reshape(-1)[index] for name, index in self.gathers]
        return np.concatenate(parts + [np.ones(1)])

    def evaluate(self, tensors):
        """Return the value of every law at the parameters `tensors`."""
        terms = self.coeffs * np.prod(self.gather(tensors)[self.factors], axis=1)
        return np.bincount(self.law_of_term, terms, minlength=len(self))

    def magnitude(self, tensors):
        """Return, per law, the sum of the absolute values of its terms."""
        terms = self.coeffs * np.prod(self.gather(tensors)[self.factors], axis=1)
        return np.bincount(self.law_of_term, np.abs(terms), minlength=len(self))


def _entry_lookup(block, shapes):
    """Map block variables to (parameter name, flat index), memoized."""
    memo = {}

    def entry(v):
        if v not in memo:
            name, index = block.entry(v)
            memo[v] = (name, int(np.ravel_multi_index(index, shapes[name])))
        return memo[v]

    return entry


def _homogeneous_degree(law):
    """Return the common degree of the law's monomials, or -1 when they differ."""
    degrees = {sum(e for _, e in mono) for mono in law.terms}
    return degrees.pop() if len(degrees) == 1 else -1


def synthetic_data(seed, samples, input_shape, output_shape, loss):
    """Draw standard normal inputs and targets (or uniform labels).

    Returns
    -------
    X, y : ndarray
        ``X`` of shape ``(samples, *input_shape)``; ``y`` of shape
        ``(samples, *output_shape)`` for the squared loss, or integer labels of
        shape ``(samples, *output_shape[:-1])`` for the cross-entropy.
    """
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((samples, *input_shape))
    if loss == "cross_entropy":
        labels = (samples, *output_shape[:-1])
        return X, rng.integers(0, output_shape[-1], size=labels)
    return X, rng.standard_normal((samples, *output_shape))


def load_data(path, input_shape, output_shape, loss):
    """Read arrays ``X`` and ``y`` from an ``.npz`` file and check their shapes.

    Parameters
    ----------
    path : str or pathlib.Path
        The file.
    input_shape, output_shape : tuple of int
        The shapes of one sample and of the network's output for it.
    loss : str
        ``squared`` (``y`` like the output) or ``cross_entropy`` (integer labels).

    Returns
    -------
    X, y : ndarray
        float64 inputs, and float64 targets or int64 labels.

    Raises
    ------
    DataError
        When the file cannot be read, or an array is missing or does not fit.
    """
    try:
        with np.load(path, allow_pickle=False) as arrays:
            found = {key: arrays[key] for key in arrays.files}
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: cannot read it as .npz ({err})") from err
    missing = [key for key in ("X", "y") if key not in found]
    if missing:
        raise DataError(
            f"{path}: no array {missing[0]!r}; expected arrays 'X' and 'y', "
            f"found {sorted(found) or 'none'}"
        )
    X, y = found["X"], found["y"]
    _check_array(path, "X", X, input_shape)
    if loss == "cross_entropy":
        return X.astype(np.float64), _labels(path, y, X.shape[0], output_shape)
    _check_array(path, "y", y, output_shape, X.shape[0])
    return X.astype(np.float64), y.astype(np.float64)


def _check_array(path, key, array, shape, samples=None):
    """Raise DataError unless `array` is numeric of shape (samples, *shape)."""
    rows = "n" if samples is None else str(samples)
    expected = f"shape [{', '.join([rows, *map(str, shape)])}]"
    if array.dtype.kind not in "biuf" or array.ndim == 0:
        raise DataError(f"{path}: {key}: got dtype {array.dtype}; expected numbers")
    if (
        tuple(array.shape[1:]) != tuple(shape)
        or array.shape[0] == 0
        or (samples is not None and array.shape[0] != samples)
    ):
        raise DataError(
            f"{path}: {key}: got shape {list(array.shape)}; expected {expected}"
        )
    if not np.all(np.isfinite(array)):
        raise DataError(
            f"{path}: {key}: got NaN or infinite values; expected finite numbers"
        )


def _labels(path, y, samples, output_shape):
    """Check integer labels for the cross-entropy and return them as int64."""
    classes = output_shape[-1]
    _check_array(path, "y", y, output_shape[:-1], samples)
    if y.dtype.kind == "f" and not np.all(y == np.round(y)):
        raise DataError(f"{path}: y: got fractional labels; expected integer classes")
    if y.min() < 0 or y.max() >= classes:
        raise DataError(
            f"{path}: y: got labels in [{y.min()}, {y.max()}]; "
            f"expected classes 0..{classes - 1}"
        )
    return y.astype(np.int64)


def batch_schedule(seed, samples, setup):
    """Return the sample indices of each step (None: every sample, for gd)."""
    if setup.optimizer == "gd":
        return [None] * setup.steps
    rng = np.random.default_rng(seed)
    size = min(setup.batch, samples)
    return [rng.choice(samples, size=size, replace=False) for _ in range(setup.steps)]


@dataclass
class Trajectory:
    """Law values along one training run.

    Parameters
    ----------
    values : ndarray
        Shape ``(steps + 1, laws)``: the laws at theta_0 .. theta_K (NaN after a
        divergence).
    loss_start, loss_end : float
        The loss on the whole data at theta_0 and theta_K.
    magnitude : ndarray
        Per law, the sum of the absolute values of its terms at theta_0.
    """

    values: np.ndarray
    loss_start: float
    loss_end: float
    magnitude: np.ndarray


class NumpyTrainer:
    """Train the numpy model of a graph and record the laws at every step.

    Parameters
    ----------
    graph : networkx.DiGraph
        The model graph.
    laws : CompiledLaws
        The laws to evaluate.
    """

    name = "numpy"

    def __init__(self, graph, laws):
        from algebra.numeric import NumericModel

        self.model = NumericModel(graph)
        if self.model.layout.size > NUMPY_PARAMETER_LIMIT:
            raise NotImplementedError(
                f"the numpy path handles up to {NUMPY_PARAMETER_LIMIT} parameters; "
                f"this model has {self.model.layout.size}: install the torch extra "
                "(pip install -e '.[torch]')"
            )
        self.laws = laws

    def init_parameters(self, seed):
        """Draw theta_0 (see `NumericModel.init_parameters`)."""
        return self.model.init_parameters(seed)

    def run(self, theta0, data, schedule, lr, setup):
        """Train from theta_0 along `schedule`; return the `Trajectory`."""
        X, y = data
        theta, state = theta0.copy(), {}
        layout = self.model.layout
        values = [self.laws.evaluate(layout.views(theta))]
        with np.errstate(all="ignore"):
            for indices in schedule:
                batch = (X, y) if indices is None else (X[indices], y[indices])
                _, grad = self.model.loss_and_gradient(theta, *batch, setup.loss)
                grad = grad + setup.weight_decay * theta
                theta = numpy_update(setup.optimizer, state, theta, grad, lr)
                if not np.all(np.isfinite(theta)):
                    break
                values.append(self.laws.evaluate(layout.views(theta)))
            loss_end = self.model.loss_and_gradient(theta, X, y, setup.loss)[0]
        return Trajectory(
            _pad(values, setup.steps + 1),
            self.model.loss_and_gradient(theta0, X, y, setup.loss)[0],
            loss_end,
            self.laws.magnitude(layout.views(theta0)),
        )


def _pad(values, length):
    """Stack law values, filling the steps after a divergence with NaN."""
    stacked = np.full((length, len(values[0])), np.nan)
    stacked[: len(values)] = values
    return stacked


def numpy_update(optimizer, state, theta, grad, lr):
    """Return theta after one step of `optimizer` (torch.optim's update rules)."""
    if optimizer in ("gd", "sgd"):
        return theta - lr * grad
    if optimizer == "momentum":
        state["buffer"] = MOMENTUM * state.get("buffer", 0.0) + grad
        return theta - lr * state["buffer"]
    beta1, beta2 = BETAS
    state["t"] = t = state.get("t", 0) + 1
    state["m"] = beta1 * state.get("m", 0.0) + (1 - beta1) * grad
    state["v"] = beta2 * state.get("v", 0.0) + (1 - beta2) * grad * grad
    denom = np.sqrt(state["v"]) / math.sqrt(1 - beta2**t) + ADAM_EPS
    return theta - (lr / (1 - beta1**t)) * state["m"] / denom


def measure_drift(
    source,
    optimizer="sgd",
    learning_rates=DEFAULT_LEARNING_RATES,
    steps=50,
    batch=32,
    seeds=3,
    samples=256,
    loss="squared",
    weight_decay=0.0,
    data=None,
    backend="auto",
    cache=None,
):
    """Train a model at several learning rates and measure the drift of its laws.

    Parameters
    ----------
    source : str, pathlib.Path or dict
        A model file (DESIGN.md section 4), or the same content as a dict.
    optimizer : {'gd', 'sgd', 'momentum', 'adam'}
        gd uses every sample at each step; the others draw a batch.
    learning_rates : sequence of float
        The step sizes tau, each positive.
    steps, batch, seeds, samples : int
        Steps per run, batch size, runs per learning rate (seed s draws theta_0,
        the data and the batches), and the number of synthetic samples.
    loss : {'squared', 'cross_entropy'}
        The training loss.
    weight_decay : float
        lambda >= 0, added to the gradient as ``lambda theta``.
    data : str or pathlib.Path, optional
        An ``.npz`` file with arrays ``X`` and ``y`` (see `load_data`).
    backend : {'auto', 'numpy', 'torch'}
        Where to train; ``auto`` takes torch when it is installed.
    cache : mapping-like, optional
        The analysis cache (see `algebra.analysis.analyze`).

    Returns
    -------
    DriftReport

    Raises
    ------
    ValueError
        When an argument is out of range.
    ModelFileError, ArchitectureError
        When the model file is malformed or its shapes do not fit.
    DataError
        When `data` does not fit the model.
    NotImplementedError
        For a custom model (it has no network to train) or a layer with no
        numeric model.
    """
    setup = _check_arguments(
        optimizer, learning_rates, steps, batch, seeds, samples, loss, weight_decay
    )
    graph, laws, name = _model_and_laws(source, cache)
    input_shape = graph.nodes["input"]["out_shape"]
    output_shape = graph.nodes[graph.graph["output"]]["out_shape"]
    loaded = None if data is None else load_data(data, input_shape, output_shape, loss)
    trainer = _make_trainer(backend, graph, laws)

    runs = {lr: [] for lr in learning_rates}
    for seed in range(seeds):
        theta0 = trainer.init_parameters(seed)
        arrays = loaded or synthetic_data(
            10_000 + seed, samples, input_shape, output_shape, loss
        )
        schedule = batch_schedule(20_000 + seed, len(arrays[0]), setup)
        for lr in learning_rates:
            runs[lr].append(trainer.run(theta0, arrays, schedule, lr, setup))
    rows = [_summarize(lr, runs[lr], laws, setup) for lr in learning_rates]
    samples = samples if loaded is None else len(loaded[0])
    return DriftReport(name, setup, seeds, samples, trainer.name, laws.names, rows)


def _check_arguments(optimizer, rates, steps, batch, seeds, samples, loss, decay):
    """Check the public arguments of `measure_drift`; return the setup."""
    from algebra.numeric import LOSSES

    if optimizer not in OPTIMIZERS:
        raise ValueError(
            f"optimizer: got {optimizer!r}; expected one of {', '.join(OPTIMIZERS)}"
        )
    if loss not in LOSSES:
        raise ValueError(f"loss: got {loss!r}; expected one of {', '.join(LOSSES)}")
    if not rates or not all(math.isfinite(r) and r > 0 for r in rates):
        raise ValueError(
            f"learning_rates: got {list(rates)}; expected positive numbers"
        )
    for key, value in (("steps", steps), ("batch", batch), ("seeds", seeds)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{key}: got {value!r}; expected a positive integer")
    if not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples: got {samples!r}; expected a positive integer")
    if not (math.isfinite(decay) and decay >= 0):
        raise ValueError(f"weight_decay: got {decay!r}; expected a number >= 0")
    return TrainingSetup(optimizer, steps, batch, loss, float(decay))


def _model_and_laws(source, cache):
    """Build the graph of a model file and compile the laws `analyze` finds."""
    from algebra.analysis import analyze
    from algebra.numeric import ParameterLayout
    from blocks.graph import build_graph
    from blocks.model_file import load_model

    spec = load_model(source)
    if spec.custom is not None:
        raise NotImplementedError(
            f"{spec.source}: a custom model gives phi, not a network, so there is "
            "nothing to train; describe the network with layers"
        )
    graph = build_graph(spec)
    report = analyze(source, cache=cache)
    laws = CompiledLaws(report, ParameterLayout(graph).shapes)
    return graph, laws, spec.name


def _make_trainer(backend, graph, laws):
    """Return the trainer of `backend` (``auto``: torch when installed)."""
    import importlib.util

    if backend not in ("auto", "numpy", "torch"):
        raise ValueError(f"backend: got {backend!r}; expected auto, numpy or torch")
    use_torch = backend == "torch" or (
        backend == "auto" and importlib.util.find_spec("torch") is not None
    )
    if use_torch:
        from algebra.torch import TorchTrainer

        return TorchTrainer(graph, laws)
    return NumpyTrainer(graph, laws)


@dataclass
class DriftRow:
    """The drift at one learning rate, over all seeds.

    Attributes
    ----------
    lr : float
        The step size tau.
    final, maximum : float
        Relative drift of the worst law at the last step and at its largest over
        the steps, each averaged over seeds (NaN when a run diverged).
    curve : ndarray
        Relative drift of the worst law at each step, averaged over seeds.
    per_law : ndarray
        Final relative drift of each law, averaged over seeds.
    worst : int
        Index of the law with the largest final drift.
    loss_start, loss_end : float
        Loss on the whole data at theta_0 and at the end, averaged over seeds.
    diverged : bool
        Whether some run stopped on a non-finite parameter.
    corrected : dict
        With weight decay: ``final``, ``maximum`` and ``curve`` of the corrected
        quantities ``exp(p lambda t) h``; empty otherwise.
    """

    lr: float
    final: float
    maximum: float
    curve: np.ndarray
    per_law: np.ndarray
    worst: int
    loss_start: float
    loss_end: float
    diverged: bool
    corrected: dict = field(default_factory=dict)


def relative_drift(trajectory, factors=None):
    """Return ``|h_k - h_0| / max(|h_0|, FLOOR m)`` per step and law.

    Parameters
    ----------
    trajectory : Trajectory
        The law values along a run.
    factors : ndarray, optional
        Shape ``(steps + 1, laws)``: multiply the values first (weight decay).
    """
    values = trajectory.values if factors is None else trajectory.values * factors
    start = values[0]
    scale = np.maximum(np.abs(start), FLOOR * trajectory.magnitude)
    scale = np.where(scale > 0, scale, 1.0)
    return np.abs(values - start) / scale


def decay_factors(degrees, steps, lr, weight_decay):
    """Return ``exp(p lambda tau k)`` per step k and law (NaN for no degree)."""
    time = lr * np.arange(steps + 1)[:, None]
    factors = np.exp(weight_decay * degrees[None, :] * time)
    return np.where(degrees[None, :] >= 0, factors, np.nan)


def _summarize(lr, trajectories, laws, setup):
    """Average the runs at one learning rate into a `DriftRow`."""
    drifts = np.array([relative_drift(t) for t in trajectories])
    per_law = drifts[:, -1, :].mean(axis=0)
    row = DriftRow(
        lr=lr,
        final=float(_worst(drifts)[:, -1].mean()),
        maximum=float(_worst(drifts).max(axis=1).mean()),
        curve=_worst(drifts).mean(axis=0),
        per_law=per_law,
        worst=int(np.nanargmax(per_law)) if np.any(np.isfinite(per_law)) else 0,
        loss_start=float(np.mean([t.loss_start for t in trajectories])),
        loss_end=float(np.mean([t.loss_end for t in trajectories])),
        diverged=bool(np.isnan(drifts[:, -1, :]).any()),
    )
    if setup.weight_decay > 0:
        factors = decay_factors(laws.degrees, setup.steps, lr, setup.weight_decay)
        fixed = np.array([relative_drift(t, factors) for t in trajectories])
        row.corrected = {
            "final": float(_worst(fixed)[:, -1].mean()),
            "maximum": float(_worst(fixed).max(axis=1).mean()),
            "curve": _worst(fixed).mean(axis=0),
        }
    return row


def _worst(drifts):
    """Return the largest drift over laws, per seed and step (NaN if none)."""
    if drifts.shape[-1] == 0 or np.all(np.isnan(drifts)):
        return np.full(drifts.shape[:-1], np.nan)
    with np.errstate(all="ignore"):
        masked = np.where(np.isnan(drifts), -np.inf, drifts).max(axis=-1)
    return np.where(np.isneginf(masked), np.nan, masked)


def fit_exponent(learning_rates, drifts):
    """Fit p in ``drift ~ lr^p`` by least squares on log-log axes.

    Points whose drift is not finite and positive are left out.

    Returns
    -------
    float or None
        The slope, or None with fewer than two distinct learning rates left.

    Examples
    --------
    >>> round(fit_exponent([1e-3, 1e-2], [2e-6, 2e-4]), 6)
    2.0
    """
    points = [
        (math.log(lr), math.log(d))
        for lr, d in zip(learning_rates, drifts, strict=True)
        if math.isfinite(d) and d > 0
    ]
    if len({x for x, _ in points}) < 2:
        return None
    x, y = np.array(points).T
    return float(np.polyfit(x, y, 1)[0])


class DriftReport:
    """The drift of every law of a model, per learning rate.

    Parameters
    ----------
    model : str
        The model's name.
    setup : TrainingSetup
        Optimizer, steps, batch, loss and weight decay.
    seeds, samples : int
        Runs per learning rate, and samples in the data.
    backend : str
        ``numpy`` or ``torch``.
    law_names : list of str
        Each law, prefixed by its block.
    rows : list of DriftRow
        One per learning rate, in the order given.
    """

    def __init__(self, model, setup, seeds, samples, backend, law_names, rows):
        self.model = model
        self.setup = setup
        self.seeds = seeds
        self.samples = samples
        self.backend = backend
        self.law_names = law_names
        self.rows = rows

    def exponent(self, which="final", corrected=False):
        """Return p of ``drift ~ lr^p`` for the ``final`` or ``maximum`` drift."""
        values = [
            (row.corrected.get(which, math.nan) if corrected else getattr(row, which))
            for row in self.rows
        ]
        rates = [row.lr for row in self.rows]
        usable = [
            (r, v)
            for r, v, row in zip(rates, values, self.rows, strict=True)
            if not row.diverged
        ]
        if not usable:
            return None
        return fit_exponent(*zip(*usable, strict=True))

    def to_dict(self):
        """Return the report as a JSON-ready dict."""
        setup = self.setup
        result = {
            "model": self.model,
            "optimizer": setup.optimizer,
            "steps": setup.steps,
            "batch": setup.batch if setup.optimizer != "gd" else None,
            "seeds": self.seeds,
            "samples": self.samples,
            "loss": setup.loss,
            "weight_decay": setup.weight_decay,
            "backend": self.backend,
            "laws": self.law_names,
            "drift": "|h(theta_k) - h(theta_0)| / |h(theta_0)|, worst law, "
            "mean over seeds",
            "rows": [self._row_dict(row) for row in self.rows],
            "exponent": {
                "final": self.exponent("final"),
                "maximum": self.exponent("maximum"),
            },
        }
        if setup.weight_decay > 0:
            result["corrected_exponent"] = {
                key: self.exponent(key, corrected=True) for key in ("final", "maximum")
            }
        return result

    def to_json(self, indent=2):
        """Return the JSON text of `to_dict`."""
        import json

        return json.dumps(self.to_dict(), indent=indent)

    def _row_dict(self, row):
        entry = {
            "lr": row.lr,
            "final": _number(row.final),
            "maximum": _number(row.maximum),
            "loss_start": _number(row.loss_start),
            "loss_end": _number(row.loss_end),
            "diverged": row.diverged,
            "worst_law": self.law_names[row.worst] if self.law_names else None,
            "per_law_final": [_number(v) for v in row.per_law],
            "curve": [_number(v) for v in row.curve],
        }
        if row.corrected:
            entry["corrected"] = {
                "final": _number(row.corrected["final"]),
                "maximum": _number(row.corrected["maximum"]),
                "curve": [_number(v) for v in row.corrected["curve"]],
            }
        return entry

    def to_text(self):
        """Return the drift table for people."""
        setup = self.setup
        batch = "full batch" if setup.optimizer == "gd" else f"batch {setup.batch}"
        lines = [
            f"drift of {self.model}: {len(self.law_names)} laws, {setup.optimizer}, "
            f"{setup.steps} steps, {batch}, {self.seeds} seeds, "
            f"{setup.loss.replace('_', '-')} loss ({self.backend}, float64)",
            "relative drift |h(θ_k) − h(θ_0)| / |h(θ_0)| of the worst law, "
            "mean over seeds",
            "",
        ]
        lines.extend(_align(self._table()))
        lines.append("")
        lines.extend(self._summary())
        return "\n".join(lines)

    def _table(self):
        decay = self.setup.weight_decay > 0
        header = ["lr", "final", "max"]
        if decay:
            header += ["corrected final", "corrected max"]
        rows = [header + ["loss start → end"]]
        for row in self.rows:
            cells = [f"{row.lr:g}", _short(row.final), _short(row.maximum)]
            if decay:
                cells += [_short(row.corrected[k]) for k in ("final", "maximum")]
            loss = f"{row.loss_start:.4g} → {row.loss_end:.4g}"
            rows.append(cells + [loss + ("  (diverged)" if row.diverged else "")])
        return rows

    def _summary(self):
        lines = [
            "exponent p in drift ~ lr^p: "
            f"{_slope(self.exponent('final'))} (final), "
            f"{_slope(self.exponent('maximum'))} (max)"
        ]
        if self.setup.weight_decay > 0:
            lines.append(
                f"corrected exp(p λ t)·h, λ = {self.setup.weight_decay:g}: "
                f"{_slope(self.exponent('final', True))} (final), "
                f"{_slope(self.exponent('maximum', True))} (max)"
            )
        finite = [row for row in self.rows if not row.diverged]
        if finite and self.law_names:
            row = finite[-1]
            lines.append(f"worst law at lr {row.lr:g}: {self.law_names[row.worst]}")
        if not self.law_names:
            lines.append("the analysis found no law to follow")
        return lines


def _number(value):
    """Return a float for JSON, or None when it is not finite."""
    value = float(value)
    return value if math.isfinite(value) else None


def _short(value):
    return f"{value:.3g}" if math.isfinite(value) else "—"


def _slope(value):
    return "n/a" if value is None else f"{value:.2f}"


def _align(rows):
    """Left-align the columns of a table of strings."""
    widths = [max(len(row[k]) for row in rows) for k in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def plot_drift(report, path):
    """Draw drift against step for each learning rate, on log axes, as a PNG.

    Dashed lines show ``C tau^2 k``, with C set so that the line of the smallest
    step meets its curve at the last step: where the curves follow their dashed
    lines, the drift scales as tau^2.

    Parameters
    ----------
    report : DriftReport
        The measured drift.
    path : str or pathlib.Path
        Where to write the PNG.

    Raises
    ------
    ImportError
        When matplotlib is not installed (``pip install -e '.[plot]'``).
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError("--plot needs matplotlib: pip install -e '.[plot]'") from err
    figure = Figure(figsize=(7, 4.5), dpi=120)
    axes = figure.add_subplot()
    _draw_curves(axes, report)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("step k")
    axes.set_ylabel("relative drift of the worst law")
    axes.set_title(f"{report.model}: {report.setup.optimizer}, drift of the laws")
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, format="png")


def _draw_curves(axes, report):
    """Plot each learning rate's curve and its tau^2 reference line."""
    steps = np.arange(1, report.setup.steps + 1)
    rows = sorted(report.rows, key=lambda row: row.lr)
    reference = next(
        (row for row in rows if np.isfinite(row.curve[-1]) and row.curve[-1] > 0), None
    )
    scale = None
    if reference is not None:
        scale = reference.curve[-1] / (reference.lr**2 * steps[-1])
    for row in rows:
        (line,) = axes.plot(steps, row.curve[1:], label=f"lr {row.lr:g}")
        if scale is not None:
            axes.plot(
                steps, scale * row.lr**2 * steps, "--", color=line.get_color(), lw=0.8
            )
    axes.plot([], [], "k--", lw=0.8, label="∝ τ² k")
