"""Finished analyses kept as JSON, so that a warm run skips the whole engine.

`analyze_stored` looks a model up in the cache by `report_key` and, on a hit,
returns the `StoredReport` read back: no graph, no block, no parametrization and
no certificate is built. A stored report holds the model's summary (name, D, law
count, status) and one or more *views*: the rendered outputs ``text``,
``text-all`` (``--all-laws``), ``latex`` and the ``json`` object of DESIGN.md
section 5. Each view is rendered once, on the run that first asks for it, and
printed from the stored copy on every run, cold or warm, so that the outputs are
byte-identical either way.

The key is the canonical form of the parsed model (every layer, option and name,
as `blocks.model_file.load_model` returns them), the degree, the seed, the engine
version and `REPORT_SCHEMA`. The file's path, bytes, comments, spacing and line
numbers are not part of it; a changed layer, option or name is.

Notes
-----
Views are rendered on demand because they cost very different amounts: the
``json`` view writes every law of every block in compact notation (minutes for
GPT-2's 36 864 laws), the ``text`` view eight per block. A run that finds the
model's entry without its view analyses the model again (the group cache still
serves the certificates) and adds the view to the entry.

Examples
--------
>>> model = {"custom": {"parameters": {"x": [2]}, "phi": ["x_0*x_1"]}}
>>> stored = analyze_stored(model, "json")
>>> stored.laws, stored.status, stored.view("json")["blocks"][0]["expressions"]
(1, 'certified', ['-x_0**2 + x_1**2'])
>>> print(stored.output("text").splitlines()[0])
Traceback (most recent call last):
...
KeyError: "view 'text' was not rendered"
>>> StoredReport.from_data({"summary": {"model": "m"}, "views": {}})
Traceback (most recent call last):
...
ValueError: summary fields differ from this version's summary
"""

import dataclasses
import hashlib
import json
import logging

__all__ = [
    "StoredReport",
    "analyze_stored",
    "report_key",
    "render_view",
    "REPORT_SCHEMA",
    "VIEWS",
]

# Bumped whenever a stored report changes shape.
REPORT_SCHEMA = "1"
VIEWS = ("text", "text-all", "latex", "json")
# Spec fields that say where the model came from, not what it is.
_PROVENANCE = frozenset({"source", "line"})
_SUMMARY_FIELDS = {"model": str, "parameters": int, "laws": int, "status": str}
logger = logging.getLogger(__name__)


def report_key(spec, degree, seed):
    """Return the cache key of a whole analysis.

    Parameters
    ----------
    spec : ModelSpec
        The parsed model (`blocks.model_file.load_model`).
    degree, seed : int
        The options of the analysis.

    Returns
    -------
    str
        A SHA-256 hex digest.

    Raises
    ------
    TypeError
        When the spec holds a value with no canonical form.
    """
    from algebra.analysis import ENGINE_VERSION

    content = [REPORT_SCHEMA, ENGINE_VERSION, degree, seed, _canonical(spec)]
    text = json.dumps(content, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _canonical(value):
    """Return `value` as plain JSON data, independent of where it was read."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        named = {
            f.name: _canonical(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.name not in _PROVENANCE
        }
        return [type(value).__name__, named]
    if isinstance(value, (tuple, list)):
        return [_canonical(item) for item in value]
    if isinstance(value, dict):
        items = [[_canonical(k), _canonical(v)] for k, v in value.items()]
        return ["dict", sorted(items, key=json.dumps)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"no canonical form for a {type(value).__name__}")


def render_view(report, view):
    """Render one view of a `Report` (see the module notes).

    Parameters
    ----------
    report : Report
        A finished analysis.
    view : str
        One of `VIEWS`.

    Returns
    -------
    str or dict
        The text, or for ``json`` the report's JSON object read back from its
        text (so that it equals what a cache returns).
    """
    from algebra.output import render_latex, render_text

    if view == "json":
        return json.loads(report.to_json(indent=None))
    if view == "latex":
        return render_latex(report)
    return render_text(report, all_laws=view == "text-all")


class StoredReport:
    """A finished analysis: the model's summary and some rendered views.

    Parameters
    ----------
    summary : dict
        ``model``, ``parameters``, ``laws`` and ``status`` of the model.
    views : dict
        View name (one of `VIEWS`) to its text, or to the JSON object for
        ``json``.

    Notes
    -----
    `from_data` checks what it reads: the fields and their types, and that every
    view agrees with the summary (the first line of the text and LaTeX views, the
    top fields of the JSON object). That catches entries of another version or
    damaged ones; it cannot tell a consistent forgery from the truth: whoever can
    write the cache directory can change any result, as with the certificates.
    """

    def __init__(self, summary, views):
        self.summary = summary
        self.views = views

    @classmethod
    def from_report(cls, report, views=()):
        """Return the summary of a `Report` and the views named."""
        summary = {
            "model": report.model,
            "parameters": report.parameters,
            "laws": report.laws,
            "status": report.status,
        }
        return cls(summary, {view: render_view(report, view) for view in views})

    @classmethod
    def from_data(cls, data):
        """Return the stored report of `to_data`'s object, checking it.

        Raises
        ------
        ValueError
            When the object is not a consistent stored report.
        """
        if not isinstance(data, dict) or set(data) != {"summary", "views"}:
            raise ValueError("fields differ from this version's stored report")
        summary, views = data["summary"], data["views"]
        _check_summary(summary)
        if not isinstance(views, dict) or not set(views) <= set(VIEWS):
            raise ValueError(f"views are not a mapping with keys among {VIEWS}")
        for view, value in views.items():
            _check_view(view, value, summary)
        return cls(summary, views)

    def to_data(self):
        """Return the JSON-ready object that `from_data` reads."""
        return {"summary": self.summary, "views": self.views}

    def merged(self, other):
        """Return this report with the views of `other` added, when they agree.

        When the summaries differ (the engine changed under one key), only
        `other` is kept.
        """
        if other.summary != self.summary:
            return other
        return StoredReport(self.summary, {**self.views, **other.views})

    @property
    def model(self):
        """The model's name."""
        return self.summary["model"]

    @property
    def parameters(self):
        """D of the whole model."""
        return self.summary["parameters"]

    @property
    def laws(self):
        """Independent laws in the union of all blocks."""
        return self.summary["laws"]

    @property
    def status(self):
        """``certified`` or ``bounds``."""
        return self.summary["status"]

    def view(self, name):
        """Return one view, or None when it was not rendered."""
        return self.views.get(name)

    def output(self, name):
        """Return what the command prints for a view (JSON indented by two)."""
        if name not in self.views:
            raise KeyError(f"view {name!r} was not rendered")
        if name == "json":
            return json.dumps(self.views[name], indent=2)
        return self.views[name]


def _check_summary(summary):
    if not isinstance(summary, dict) or set(summary) != set(_SUMMARY_FIELDS):
        raise ValueError("summary fields differ from this version's summary")
    for key, kind in _SUMMARY_FIELDS.items():
        value = summary[key]
        if type(value) is not kind or (kind is int and value < 0):
            raise ValueError(f"summary field {key!r} is not a {kind.__name__}")
    if summary["status"] not in ("certified", "bounds"):
        raise ValueError(f"bad status {summary['status']!r}")
    if summary["laws"] > summary["parameters"]:
        raise ValueError("more laws than parameters")


def _check_view(view, value, summary):
    """Raise ValueError unless a view agrees with the summary."""
    if view == "json":
        if not isinstance(value, dict) or not isinstance(value.get("blocks"), list):
            raise ValueError("the json view is not a report object")
        if any(value.get(key) != summary[key] for key in _SUMMARY_FIELDS):
            raise ValueError("the json view contradicts the summary")
        return
    first = value.split("\n", 1)[0] if isinstance(value, str) else None
    if first is None or not first.startswith(_first_line(view, summary)):
        raise ValueError(f"the {view} view contradicts the summary")


def _first_line(view, summary):
    """Return how a view's first line starts for this summary."""
    model, laws, status = summary["model"], summary["laws"], summary["status"]
    if view == "latex":
        return f"% conservation laws of {model}: {laws} ({status})"
    plural = "law" if laws == 1 else "laws"
    parameters = summary["parameters"]
    return f"model {model}: {parameters} parameters, {laws} {plural} ({status})"


def analyze_stored(source, view=None, degree=2, seed=0, cache=None, progress=None):
    """Return a model's finished analysis, from the cache when it is there.

    Parameters
    ----------
    source : str, pathlib.Path or dict
        A model file or its content (see `algebra.analysis.analyze`).
    view : str, optional
        The view the caller needs (one of `VIEWS`); None needs the summary only.
    degree, seed : int
        The options of the analysis.
    cache : GroupCache-like, optional
        A cache with ``get_report`` and ``set_report`` (and the group cache's
        ``get`` and ``set``, used on a miss); None computes everything.
    progress : callable, optional
        Passed to `algebra.analysis.analyze` on a miss.

    Returns
    -------
    StoredReport
        Holding `view`.

    Raises
    ------
    ModelFileError, ArchitectureError
        As `algebra.analysis.analyze`.
    """
    from algebra.analysis import analyze
    from blocks.model_file import load_model

    spec = load_model(source)
    key = _key_or_none(spec, degree, seed) if hasattr(cache, "get_report") else None
    stored = cache.get_report(key, view) if key is not None else None
    if stored is not None:
        return stored

    report = analyze(spec, degree=degree, seed=seed, cache=cache, progress=progress)
    stored = StoredReport.from_report(report, () if view is None else (view,))
    if key is not None:
        cache.set_report(key, stored)
    return stored


def _key_or_none(spec, degree, seed):
    """Return the report key, or None (no report caching) when it has none."""
    try:
        return report_key(spec, degree, seed)
    except TypeError as err:
        logger.debug("report of %s not cached: %s", spec.name, err)
        return None
