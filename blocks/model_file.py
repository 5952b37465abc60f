"""Read a model file (YAML, or an already parsed dict) into a validated `ModelSpec`.

The reader is the one place where user input enters the engine (DESIGN.md sections 4
and 6), so it checks everything and fails with one line of the form
``{file}:{line}: {key path}: got {what was found}; expected {what is allowed}``.
For a dict the line is left out (``<dict>: layers[2].out: got -3; ...``); for a
problem with the whole file the key path is left out.

Examples
--------
>>> spec = load_model({"input": [3], "layers": [
...     {"type": "linear", "name": "fc1", "out": 2}, {"type": "relu"}]})
>>> [(layer.name, layer.options) for layer in spec.layers]
[('fc1', (('bias', False), ('out', 2))), ('relu_0', ())]
"""

import itertools
import math
import os
import re
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

import sympy
import yaml
from sympy.parsing.sympy_parser import auto_number, parse_expr, rationalize

from algebra.errors import ModelFileError
from blocks.spec import LAYER_OPTIONS, CustomModel, Layer, ModelSpec

__all__ = ["load_model", "parse_phi", "symbol_map"]

# Limits on what a model file may ask for (DESIGN.md section 6, "absurd sizes").
_MAX_FILE_BYTES = 1_048_576
_MAX_SIZE = 1_048_576
_MAX_TIMES = 1000
_MAX_TIMES_PRODUCT = 10_000
_MAX_ENTRIES = 10_000
_MAX_YAML_DEPTH = 64
_MAX_LAYER_DEPTH = 32
_MAX_DIGITS = 1000
_MAX_NAME_CHARS = 200
_MAX_PHI_CHARS = 4000
_MAX_PHI_PARENS = 32
_MAX_EXPONENT = 1000
_MAX_NUMBER_BITS = 256

_YAML_TAG = "tag:yaml.org,2002:"
_TOP_KEYS = ("name", "input", "layers", "custom")
_TOP_EXPECTED = "a mapping with the keys name, input and layers (or custom)"
_CONTAINER_KEYS = {"residual": ("body", "shortcut"), "repeat": ("body",)}
# Attention options that default to None ("not given") instead of being required.
_OPTIONAL_NONE = {"attention": ("out", "value_dim")}
_BOOLEAN_WORDS = ("yes", "no", "on", "off", "y", "n")
_POSITIONAL = ("none", "sinusoidal")
_PHI_FUNCTIONS = {
    "Abs": sympy.Abs,
    "cos": sympy.cos,
    "exp": sympy.exp,
    "log": sympy.log,
    "sin": sympy.sin,
    "sqrt": sympy.sqrt,
    "tanh": sympy.tanh,
}

# Plain scalars are resolved by these patterns only (YAML 1.2 style): `yes`, `no`,
# `on` and `off` stay text, `1e-3` is a float, `010` and `1:30` are not numbers.
_INT_TEXT = r"[-+]?(?:0|[1-9][0-9]*)"
_FLOAT_TEXT = (
    r"[-+]?(?:(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
    r"|[0-9]+[eE][-+]?[0-9]+)"
)
_BOOL_TEXT = r"(?:[Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])"
_NULL_TEXT = r"(?:~|null|Null|NULL|)"
# (tag, pattern, possible first characters) of each implicit resolver.
_RESOLVERS = (
    ("bool", _BOOL_TEXT, list("tTfF")),
    ("int", _INT_TEXT, list("-+0123456789")),
    ("float", _FLOAT_TEXT, list("-+0123456789.")),
    ("null", _NULL_TEXT, ["~", "n", "N", ""]),
)
# What a scalar with an explicit tag may hold (``!!float 2`` is 2.0).
_SCALAR_PATTERNS = {
    "bool": re.compile(f"^{_BOOL_TEXT}$"),
    "int": re.compile(f"^{_INT_TEXT}$"),
    "float": re.compile(f"^(?:{_FLOAT_TEXT}|{_INT_TEXT})$"),
    "null": re.compile(f"^{_NULL_TEXT}$"),
}
# What parsing or evaluating a checked formula may raise (never a traceback).
_PARSE_ERRORS = (
    SyntaxError,
    TypeError,
    ValueError,
    ArithmeticError,
    AttributeError,
    tokenize.TokenError,
)
_PHI_TOKEN = re.compile(
    r" *(?:(?P<number>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>\*\*|[-+*/(),]))"
)


class _Refusal(Exception):
    """A problem found in the input, before its location is written out."""

    def __init__(self, path, got, expected, line=None):
        super().__init__(got)
        self.path = tuple(path)
        self.got = got
        self.expected = expected
        self.line = line

    def message(self, origin, lines):
        """Write the one-line message, placed in `origin` with the `lines` map."""
        line = self.line if self.line is not None else _line_at(lines, self.path)
        where = f"{origin}:{line}" if line else str(origin)
        parts = [where, _path_text(self.path)]
        parts.append(f"got {self.got}; expected {self.expected}")
        text = ": ".join(part for part in parts if part)
        return " ".join(text.splitlines())


# ---------------------------------------------------------------- locations


def _path_text(path):
    """Write a key path like ``layers[2].body[0].out``."""
    text = ""
    for step in path:
        if isinstance(step, int) and not isinstance(step, bool):
            text += f"[{step}]"
        elif isinstance(step, str) and step.isidentifier():
            text += f".{step}" if text else step
        else:
            text += f"[{step!r}]"
    return text


def _line_at(lines, path):
    """Return the line of `path`, or of its nearest enclosing key (0 if unknown)."""
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return 0


def _show(value):
    """Describe a found value in a message, in YAML spelling and on one line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    if not isinstance(value, (int, float, str)):
        return f"a {type(value).__name__}"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _choices(names):
    """List allowed names for a message: ``one of a, b, c``."""
    return "one of " + ", ".join(sorted(names))


# ---------------------------------------------------------------- YAML reading


class _StrictLoader(yaml.SafeLoader):
    """A SafeLoader that refuses anchors, aliases and deep nesting.

    It only scans, parses, composes and resolves; values are built by
    `_node_value`, which refuses every tag but str, int, float, bool, null, seq and
    map, so no constructor of PyYAML ever runs.
    """

    yaml_implicit_resolvers = {}

    def __init__(self, stream):
        super().__init__(stream)
        self._trail = []

    def compose_node(self, parent, index):
        """Compose one node, refusing anchors, aliases and nesting too deep."""
        self._trail.append(_trail_step(parent, index))
        try:
            event = self.peek_event()
            if len(self._trail) > _MAX_YAML_DEPTH:
                got = f"nesting deeper than {_MAX_YAML_DEPTH} levels"
                line = event.start_mark.line + 1
                raise _Refusal((), got, "a flatter file", line=line)
            path = tuple(step for step in self._trail if step is not None)
            _refuse_anchor(event, path)
            return super().compose_node(parent, index)
        finally:
            self._trail.pop()


for _kind, _text, _first in _RESOLVERS:
    _StrictLoader.add_implicit_resolver(
        _YAML_TAG + _kind, re.compile(f"^{_text}$"), _first
    )


def _trail_step(parent, index):
    """Return the key-path step of a node being composed (None for keys and root)."""
    if isinstance(index, int):
        return index
    if isinstance(index, yaml.ScalarNode):
        return index.value
    return None


def _refuse_anchor(event, path):
    """Refuse an alias or an anchor: aliases can expand without bound."""
    line = event.start_mark.line + 1
    expected = "no anchors or aliases (write the value out in full)"
    if isinstance(event, yaml.AliasEvent):
        raise _Refusal(path, f"the alias *{event.anchor}", expected, line=line)
    if getattr(event, "anchor", None) is not None:
        raise _Refusal(path, f"the anchor &{event.anchor}", expected, line=line)


def _read_bytes(path):
    """Read at most one byte past the size limit of a model file."""
    try:
        with Path(path).open("rb") as handle:
            raw = handle.read(_MAX_FILE_BYTES + 1)
    except OSError as err:
        got = f"a file that cannot be read ({err.strerror or type(err).__name__})"
        raise _Refusal((), got, "a readable YAML file") from err

    if len(raw) > _MAX_FILE_BYTES:
        expected = f"a model file of at most {_MAX_FILE_BYTES} bytes"
        raise _Refusal((), "a file over 1 MB", expected)
    if not raw.strip():
        raise _Refusal((), "an empty file", _TOP_EXPECTED)
    return raw


def _decode(raw):
    """Decode UTF-8 text and refuse tabs, with the line of the first offender."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        got = f"the byte 0x{raw[err.start]:02x}: the file is not UTF-8"
        raise _Refusal((), got, "a UTF-8 text file", line=line) from err

    tab = text.find("\t")
    if tab >= 0:
        line = text.count("\n", 0, tab) + 1
        raise _Refusal((), "a tab character", "spaces only (no tabs)", line=line)
    return text


def _yaml_refusal(err, text):
    """Translate a PyYAML error into a refusal on the line it names."""
    if isinstance(err, yaml.MarkedYAMLError):
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark is not None else None
        parts = (err.context, err.problem)
        problem = ", ".join(part for part in parts if part) or "invalid YAML"
        return _Refusal((), f"a YAML syntax error ({problem})", "valid YAML", line=line)
    if isinstance(err, yaml.reader.ReaderError):
        line = text.count("\n", 0, err.position) + 1
        got = f"the control character U+{err.character:04X}"
        return _Refusal((), got, "printable text", line=line)
    return _Refusal((), f"a YAML error ({err})", "valid YAML")


def _read_yaml(path):
    """Read a model file into plain Python values and a map of key paths to lines."""
    text = _decode(_read_bytes(path))

    loader = None
    try:
        loader = _StrictLoader(text)
        node = loader.get_single_node()
    except yaml.YAMLError as err:
        raise _yaml_refusal(err, text) from err
    finally:
        if loader is not None:
            loader.dispose()
    if node is None:
        raise _Refusal((), "an empty file", _TOP_EXPECTED)

    lines = {(): node.start_mark.line + 1}
    return _node_value(node, (), lines), lines


def _node_value(node, path, lines):
    """Build the Python value of a composed node, recording the line of each key."""
    if isinstance(node, yaml.ScalarNode):
        return _scalar_value(node, path)
    kind = "seq" if isinstance(node, yaml.SequenceNode) else "map"
    if node.tag != _YAML_TAG + kind:
        _refuse_tag(node, path)

    if kind == "seq":
        items = []
        for index, item in enumerate(node.value):
            lines[path + (index,)] = item.start_mark.line + 1
            items.append(_node_value(item, path + (index,), lines))
        return items
    return _mapping_value(node, path, lines)


def _mapping_value(node, path, lines):
    """Build a dict from a mapping node, refusing a key given twice."""
    mapping = {}
    for key_node, value_node in node.value:
        line = key_node.start_mark.line + 1
        if not isinstance(key_node, yaml.ScalarNode):
            got = "a list or mapping used as a key"
            raise _Refusal(path, got, "a plain key", line=line)
        key = _scalar_value(key_node, path)
        here = path + (key,)
        if key in mapping:
            got = f"the key {_show(key)} a second time (first on line {lines[here]})"
            raise _Refusal(here, got, "each key once in a mapping", line=line)
        lines[here] = line
        mapping[key] = _node_value(value_node, here, lines)
    return mapping


def _refuse_tag(node, path):
    """Refuse a node whose tag would build anything but plain data."""
    tag = node.tag
    if tag.startswith(_YAML_TAG):
        tag = "!!" + tag[len(_YAML_TAG) :]
    expected = "no tags other than !!str, !!int, !!float, !!bool, !!null, !!seq, !!map"
    line = node.start_mark.line + 1
    raise _Refusal(path, f"the tag {_show(tag)}", expected, line=line)


def _scalar_value(node, path):
    """Convert a scalar node of a standard tag; refuse any other tag."""
    kind = node.tag[len(_YAML_TAG) :] if node.tag.startswith(_YAML_TAG) else None
    if kind == "str":
        return node.value
    if kind not in _SCALAR_PATTERNS:
        _refuse_tag(node, path)
    line = node.start_mark.line + 1
    if not _SCALAR_PATTERNS[kind].match(node.value):
        got = f"{_show(node.value)} tagged !!{kind}"
        raise _Refusal(path, got, f"a plain {kind} value", line=line)

    if kind == "bool":
        return node.value.lower() == "true"
    if kind == "null":
        return None
    if len(node.value) > _MAX_DIGITS:
        got = f"a number of {len(node.value)} characters"
        raise _Refusal(path, got, f"at most {_MAX_DIGITS} digits", line=line)
    return int(node.value) if kind == "int" else float(node.value)


# ---------------------------------------------------------------- values


def _is_int(value):
    """Tell a real integer (not a bool) from anything else."""
    return isinstance(value, int) and not isinstance(value, bool)


def _size(value, path, minimum=1):
    """Check a size: an integer from `minimum` up to the absurd-size limit."""
    expected = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
    if not _is_int(value) or value < minimum:
        raise _Refusal(path, _show(value), expected)
    if value > _MAX_SIZE:
        raise _Refusal(path, _show(value), f"{expected} at most {_MAX_SIZE}")
    return value


def _int_list(value, path, lengths, what):
    """Check a list of sizes whose length is in `lengths`."""
    if not isinstance(value, (list, tuple)) or len(value) not in lengths:
        raise _Refusal(path, _show(value), what)
    return tuple(_size(item, path + (index,)) for index, item in enumerate(value))


def _check_size(value, path, layer_type):
    """Check ``out``, ``heads``, ``head_dim``, ``value_dim``, ``hidden`` or ``k``."""
    return _size(value, path)


def _check_window(value, path, layer_type):
    """Check a convolution ``kernel``, ``stride`` or ``padding``; make it a tuple."""
    minimum = 0 if path[-1] == "padding" else 1
    axes = 2 if layer_type == "conv2d" else 1
    if _is_int(value):
        return (_size(value, path, minimum),) * axes
    if isinstance(value, (list, tuple)) and len(value) == axes:
        return tuple(
            _size(item, path + (index,), minimum) for index, item in enumerate(value)
        )

    such = "an integer" if axes == 1 else f"a list of {axes} integers"
    expected = f"an integer >= {minimum} or {such} >= {minimum}"
    raise _Refusal(path, _show(value), expected)


def _check_number(value, path, layer_type):
    """Check ``slope``: a finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Refusal(path, _show(value), "a number, such as 0.01 or 1e-3")
    if not math.isfinite(value):
        raise _Refusal(path, _show(value), "a finite number")
    return value


def _check_flag(value, path, layer_type):
    """Check ``bias``, ``affine`` or ``rope``: true or false only."""
    if isinstance(value, bool):
        return value
    expected = "true or false"
    if isinstance(value, str) and value.lower() in _BOOLEAN_WORDS:
        expected += f" (write true or false; {value!r} is read as text, not a boolean)"
    raise _Refusal(path, _show(value), expected)


def _check_positional(value, path, layer_type):
    """Check ``positional`` of attention."""
    if value not in _POSITIONAL:
        raise _Refusal(path, _show(value), _choices(_POSITIONAL))
    return value


def _check_times(value, path, layer_type):
    """Check ``times`` of a repeat."""
    if not _is_int(value) or not 1 <= value <= _MAX_TIMES:
        raise _Refusal(path, _show(value), f"an integer from 1 to {_MAX_TIMES}")
    return value


_OPTION_CHECKS = {
    "out": _check_size,
    "heads": _check_size,
    "head_dim": _check_size,
    "value_dim": _check_size,
    "hidden": _check_size,
    "k": _check_size,
    "kernel": _check_window,
    "stride": _check_window,
    "padding": _check_window,
    "slope": _check_number,
    "bias": _check_flag,
    "affine": _check_flag,
    "rope": _check_flag,
    "positional": _check_positional,
    "times": _check_times,
}

_OPTION_WANTED = {
    "out": "a positive integer",
    "heads": "a positive integer",
    "head_dim": "a positive integer",
    "hidden": "a positive integer",
    "k": "a positive integer",
    "kernel": "a positive integer or a list of them",
    "times": f"an integer from 1 to {_MAX_TIMES}",
}


# ---------------------------------------------------------------- layers


@dataclass
class _Draft:
    """A checked layer before it has its final name."""

    type: str
    name: str | None
    options: tuple
    line: int
    body: list = field(default_factory=list)
    shortcut: list = field(default_factory=list)


@dataclass
class _LayerReader:
    """What the layer checks share: the line map and the names taken so far."""

    lines: dict
    names: dict = field(default_factory=dict)

    def layer_list(self, value, path, depth, times, allow_empty=False):
        """Check a list of layers (the top level, a body or a shortcut)."""
        if not isinstance(value, (list, tuple)) or not (value or allow_empty):
            expected = "a list of layers" if allow_empty else "a non-empty list"
            raise _Refusal(path, _show(value), expected + " of layers")
        if depth > _MAX_LAYER_DEPTH:
            got = f"layers nested {depth} deep"
            raise _Refusal(path, got, f"at most {_MAX_LAYER_DEPTH} levels")
        return [
            self.layer(item, path + (index,), depth, times)
            for index, item in enumerate(value)
        ]

    def layer(self, item, path, depth, times):
        """Check one layer mapping and the layers it contains."""
        if not isinstance(item, dict):
            expected = "a mapping with a type, like {type: relu}"
            raise _Refusal(path, _show(item), expected)
        layer_type = _layer_type(item, path)
        allowed = ("type", "name", *LAYER_OPTIONS[layer_type])
        allowed += _CONTAINER_KEYS.get(layer_type, ())
        _check_keys(item, path, allowed, what=f"option of {layer_type}")

        name = self.explicit_name(item, path)
        options = _layer_options(item, path, layer_type)
        draft = _Draft(layer_type, name, options, _line_at(self.lines, path))
        if layer_type in _CONTAINER_KEYS:
            self.fill_container(draft, item, path, depth, times)
        return draft

    def fill_container(self, draft, item, path, depth, times):
        """Check the body (and shortcut) of a residual or repeat."""
        if draft.type == "repeat":
            times *= dict(draft.options)["times"]
            if times > _MAX_TIMES_PRODUCT:
                got = f"nested repeats of {times} times in all"
                expected = f"at most {_MAX_TIMES_PRODUCT} in all"
                raise _Refusal(path + ("times",), got, expected)
        if "body" not in item:
            raise _Refusal(path + ("body",), "nothing", "a non-empty list of layers")

        draft.body = self.layer_list(item["body"], path + ("body",), depth + 1, times)
        if "shortcut" in item:
            where = path + ("shortcut",)
            shortcut = self.layer_list(item["shortcut"], where, depth + 1, times, True)
            draft.shortcut = shortcut

    def explicit_name(self, item, path):
        """Check a given layer name: an identifier, no leading ``_``, used once."""
        if "name" not in item:
            return None
        name, where = item["name"], path + ("name",)
        if not isinstance(name, str) or not name.isidentifier() or name[0] == "_":
            expected = "an identifier that does not start with '_'"
            raise _Refusal(where, _show(name), expected)

        if name in self.names:
            first = self.names[name]
            line = _line_at(self.lines, first)
            at = f"{_path_text(first)}, line {line}" if line else _path_text(first)
            got = f"the name {name!r} a second time (first at {at})"
            raise _Refusal(where, got, "each layer name once in the file")
        self.names[name] = path
        return name


def _check_keys(mapping, path, allowed, what="key"):
    """Refuse any key of `mapping` outside `allowed`."""
    for key in mapping:
        if key not in allowed:
            raise _Refusal(path + (key,), f"an unknown {what}", _choices(allowed))


def _layer_type(item, path):
    """Return the checked ``type`` of a layer mapping."""
    where = path + ("type",)
    if "type" not in item:
        raise _Refusal(where, "nothing", "a layer type, " + _choices(LAYER_OPTIONS))
    layer_type = item["type"]
    if not isinstance(layer_type, str) or layer_type not in LAYER_OPTIONS:
        raise _Refusal(where, _show(layer_type), _choices(LAYER_OPTIONS))
    return layer_type


def _layer_options(item, path, layer_type):
    """Check the options of one layer, fill in defaults and sort them by key."""
    options = []
    for key, default in sorted(LAYER_OPTIONS[layer_type].items()):
        where = path + (key,)
        if key in item:
            value = _OPTION_CHECKS[key](item[key], where, layer_type)
        elif default is not None:
            value = _OPTION_CHECKS[key](default, where, layer_type)
        elif key in _OPTIONAL_NONE.get(layer_type, ()):
            value = None
        else:
            wanted = _OPTION_WANTED.get(key, "a value")
            raise _Refusal(where, "nothing", f"{wanted} ({layer_type} needs {key})")
        options.append((key, value))
    return tuple(options)


def _finish(draft, counters, explicit):
    """Name an unnamed layer and freeze it with its body, depth first."""
    number = counters.get(draft.type, 0)
    name = draft.name
    if name is None:
        while f"{draft.type}_{number}" in explicit:
            number += 1
        name = f"{draft.type}_{number}"
    counters[draft.type] = number + 1

    body = tuple(_finish(child, counters, explicit) for child in draft.body)
    shortcut = tuple(_finish(child, counters, explicit) for child in draft.shortcut)
    return Layer(draft.type, name, draft.options, body, shortcut, draft.line)


def _read_layers(value, lines):
    """Check the ``layers`` list and return the named, frozen layers."""
    reader = _LayerReader(lines)
    drafts = reader.layer_list(value, ("layers",), depth=0, times=1)

    counters = {}
    explicit = frozenset(reader.names)
    return tuple(_finish(draft, counters, explicit) for draft in drafts)


# ---------------------------------------------------------------- custom models


def _read_parameters(value, path):
    """Check ``custom.parameters``: identifiers mapped to shapes."""
    if not isinstance(value, dict) or not value:
        expected = "a mapping of parameter names to shapes, like {x: [3]}"
        raise _Refusal(path, _show(value), expected)

    parameters, entries = [], 0
    for name, shape in value.items():
        where = path + (name,)
        if not isinstance(name, str) or not _is_symbol_stem(name):
            expected = "an ASCII identifier that does not start with '_'"
            raise _Refusal(where, f"the name {_show(name)}", expected)
        wanted = "a list of 1 to 4 positive integers"
        shape = _int_list(shape, where, range(1, 5), wanted)
        entries += math.prod(shape)
        if entries > _MAX_ENTRIES:
            got = f"{entries} parameter entries in all"
            raise _Refusal(where, got, f"at most {_MAX_ENTRIES}")
        parameters.append((name, shape))
    return tuple(parameters)


def _is_symbol_stem(name):
    """Tell whether `name` may name a parameter."""
    return name.isascii() and name.isidentifier() and not name.startswith("_")


def _entries(parameters, path):
    """Map each entry symbol name to ``(parameter, *index)``, in flat order."""
    entries = {}
    for name, shape in parameters:
        for index in itertools.product(*(range(size) for size in shape)):
            symbol = name + "".join(f"_{i}" for i in index)
            if symbol in entries:
                other = entries[symbol][0]
                got = f"the entry symbol {symbol} for both {other} and {name}"
                expected = "parameter names whose entry symbols differ"
                raise _Refusal(path + (name,), got, expected)
            entries[symbol] = (name, *index)
    return entries


def _read_custom(value, path):
    """Check a ``custom`` mapping; return the model, its symbols and phi parsed."""
    if not isinstance(value, dict):
        expected = "a mapping with the keys parameters and phi"
        raise _Refusal(path, _show(value), expected)
    _check_keys(value, path, ("parameters", "phi"))
    for key in ("parameters", "phi"):
        if key not in value:
            raise _Refusal(path + (key,), "nothing", "the keys parameters and phi")

    parameters = _read_parameters(value["parameters"], path + ("parameters",))
    entries = _entries(parameters, path + ("parameters",))
    symbols = {name: sympy.Symbol(name) for name in entries}
    phi = value["phi"]
    if not isinstance(phi, (list, tuple)) or not phi:
        raise _Refusal(path + ("phi",), _show(phi), "a non-empty list of formulas")

    exprs = tuple(
        _parse_formula(text, path + ("phi", index), symbols)
        for index, text in enumerate(phi)
    )
    model = CustomModel(parameters=parameters, phi=tuple(phi))
    return model, tuple(symbols.values()), exprs


def _phi_tokens(text, path, symbols):
    """Split a formula into tokens, refusing any character or name not allowed."""
    if not isinstance(text, str) or not text.strip():
        raise _Refusal(path, _show(text), "a formula as text, like 'x_0*x_1'")
    if len(text) > _MAX_PHI_CHARS:
        got = f"a formula of {len(text)} characters"
        raise _Refusal(path, got, f"at most {_MAX_PHI_CHARS}")

    tokens, position, end = [], 0, len(text.rstrip(" "))
    while position < end:
        match = _PHI_TOKEN.match(text, position)
        if match is None:
            got = f"the character {text[position]!r} at position {position}"
            expected = "numbers, entry symbols, functions, spaces and + - * / ** ( ) ,"
            raise _Refusal(path, got, expected)
        kind = match.lastgroup
        _check_phi_token(kind, match.group(kind), path, symbols)
        tokens.append((kind, match.group(kind)))
        position = match.end()

    _check_phi_grammar(tokens, path)
    return tokens


def _check_phi_token(kind, token, path, symbols):
    """Refuse an unknown name or an absurd number literal in a formula."""
    if kind == "name" and token not in symbols and token not in _PHI_FUNCTIONS:
        example = next(iter(symbols))
        functions = ", ".join(sorted(_PHI_FUNCTIONS))
        got = f"the unknown name {token!r}"
        expected = f"a parameter entry such as {example} or a function ({functions})"
        raise _Refusal(path, got, expected)
    if kind != "number":
        return

    exponent = token.lower().partition("e")[2]
    if len(token) > 40 or (exponent and abs(int(exponent)) > 99):
        got = f"the number {_show(token)}"
        expected = "at most 40 characters and a power of ten up to e99"
        raise _Refusal(path, got, expected)


def _check_phi_grammar(tokens, path):
    """Refuse token sequences that Python would read as something else.

    ``* *`` and ``/ /`` would be read back as ``**`` and ``//``; a function must be
    called; a comma may only separate the arguments of a call.
    """
    calls, previous = [], ("op", "(")
    for kind, token in (*tokens, ("op", None)):
        if previous[1] in _PHI_FUNCTIONS and token != "(":
            raise _Refusal(path, f"the function {previous[1]} without '('", "a call")
        operand_before = previous[0] != "op" or previous[1] == ")"
        if token in ("*", "/", "**", ")", ",") and not operand_before:
            got = f"{token!r} right after {previous[1]!r}"
            raise _Refusal(path, got, "an operand before each operator")

        stray = (token == ")" and not calls) or (token == "," and calls[-1:] != [True])
        if stray or (token is None and calls):
            got = f"a stray {token!r}" if stray else "an unclosed '('"
            raise _Refusal(path, got, "balanced calls and groups")
        if token == "(":
            calls.append(previous[1] in _PHI_FUNCTIONS)
        elif token == ")":
            calls.pop()
        if len(calls) > _MAX_PHI_PARENS:
            got = f"parentheses nested {len(calls)} deep"
            raise _Refusal(path, got, f"at most {_MAX_PHI_PARENS}")
        previous = (kind, token)


def _split_terms(tokens):
    """Cut a formula at its top-level binary ``+`` and ``-`` into terms.

    Parsing term by term keeps long sums within Python's recursion limit.
    """
    terms, current, depth, after_operand = [], [], 0, False
    for kind, token in tokens:
        depth += {"(": 1, ")": -1}.get(token, 0)
        if token in ("+", "-") and depth == 0 and after_operand:
            terms.append(current)
            current = []
        current.append(token)
        after_operand = kind != "op" or token == ")"
    terms.append(current)
    return terms


def _parse_term(term, path, symbols):
    """Parse one term with sympy, unevaluated, with no names but ours in reach."""
    text = " ".join(term)
    names = {token: symbols[token] for token in term if token in symbols}
    scope = {"__builtins__": {}, **_PHI_FUNCTIONS}
    scope.update(Add=sympy.Add, Mul=sympy.Mul, Pow=sympy.Pow)
    scope.update(Integer=sympy.Integer, Rational=sympy.Rational)
    try:
        return parse_expr(
            text,
            local_dict=names,
            global_dict=scope,
            transformations=(auto_number, rationalize),
            evaluate=False,
        )
    except _PARSE_ERRORS as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        got = f"{_show(text)}, which does not parse ({reason})"
        raise _Refusal(path, got, "a formula such as 'x_0*x_1 + exp(x_2)'") from err
    except RecursionError as err:
        got = f"{_show(text)}, nested too deeply"
        raise _Refusal(path, got, "a shorter product or fewer signs") from err


def _evaluate(expr, path):
    """Evaluate an unevaluated expression bottom up, refusing huge numbers."""
    if not expr.args:
        _check_numbers(expr, path)
        return expr
    args = [_evaluate(arg, path) for arg in expr.args]

    if expr.func is sympy.Pow and args[1].is_Number and abs(args[1]) > _MAX_EXPONENT:
        got = f"the exponent {args[1]}"
        raise _Refusal(path, got, f"exponents of at most {_MAX_EXPONENT} in size")
    result = expr.func(*args)
    _check_numbers(result, path)
    return result


def _check_numbers(expr, path):
    """Refuse any rational number in `expr` above 2**256 in numerator or denominator."""
    for number in expr.atoms(sympy.Rational):
        bits = max(abs(number.p).bit_length(), number.q.bit_length())
        if bits > _MAX_NUMBER_BITS:
            got = f"a number of {bits} bits"
            raise _Refusal(path, got, f"numbers of at most {_MAX_NUMBER_BITS} bits")


def _parse_formula(text, path, symbols):
    """Parse one component of phi into an exact sympy expression."""
    tokens = _phi_tokens(text, path, symbols)
    terms = [_parse_term(term, path, symbols) for term in _split_terms(tokens)]
    for term in terms:
        if not isinstance(term, sympy.Expr):
            raise _Refusal(path, f"{_show(text)}, a tuple", "a single expression")

    try:
        expr = _evaluate(sympy.Add(*terms, evaluate=False), path)
    except _PARSE_ERRORS as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        got = f"{_show(text)}, which sympy cannot evaluate ({reason})"
        raise _Refusal(path, got, "a formula such as 'x_0*x_1 + exp(x_2)'") from err
    bad = (sympy.zoo, sympy.nan, sympy.oo, -sympy.oo, sympy.I)
    if expr.has(*bad):
        got = f"{_show(text)}, which divides by zero or is not real"
        raise _Refusal(path, got, "a finite real formula")
    return expr


# ---------------------------------------------------------------- the model


def _read_spec(data, origin, lines, default_name):
    """Check the top level of a model and build its `ModelSpec`."""
    if not isinstance(data, dict):
        got = f"{_show(data)} at the top level"
        raise _Refusal((), got, _TOP_EXPECTED)
    _check_keys(data, (), _TOP_KEYS)
    if ("layers" in data) == ("custom" in data):
        both = "layers" in data
        got = "both layers and custom" if both else "neither layers nor custom"
        raise _Refusal(("custom",) if both else ("layers",), got, "exactly one of them")

    name = _read_name(data.get("name", default_name))
    if "custom" in data:
        if "input" in data:
            got = "an input for a custom model"
            raise _Refusal(("input",), got, "no input (custom gives the parameters)")
        custom, _, _ = _read_custom(data["custom"], ("custom",))
        return ModelSpec(name=name, source=origin, custom=custom)

    if "input" not in data:
        raise _Refusal(("input",), "nothing", "a list of 1 to 3 positive integers")
    input_shape = _int_list(
        data["input"], ("input",), range(1, 4), "a list of 1 to 3 positive integers"
    )
    layers = _read_layers(data["layers"], lines)
    return ModelSpec(name=name, source=origin, input=input_shape, layers=layers)


def _read_name(name):
    """Check the model's ``name``: short printable text."""
    if not isinstance(name, str) or not name or not name.isprintable():
        raise _Refusal(("name",), _show(name), "a non-empty name on one line")
    if len(name) > _MAX_NAME_CHARS:
        got = f"a name of {len(name)} characters"
        raise _Refusal(("name",), got, f"at most {_MAX_NAME_CHARS}")
    return name


def load_model(source):
    """Read and check a model file, or an already parsed dict.

    Parameters
    ----------
    source : str, os.PathLike or dict
        The path of a YAML model file (DESIGN.md section 4), or its parsed content.

    Returns
    -------
    ModelSpec
        Every option filled in and every layer named; ``source`` is the path as
        given, or ``"<dict>"``.

    Raises
    ------
    ModelFileError
        On anything malformed, with one line
        ``{file}:{line}: {key path}: got {found}; expected {allowed}``.
    TypeError
        When `source` is neither a path nor a dict.

    Notes
    -----
    The YAML reader is stricter than YAML 1.1: only ``true`` and ``false`` (any case)
    are booleans, ``1e-3`` is a float, and ``010``, ``0x1f``, ``1_000`` or ``1:30``
    are text, not numbers. Tabs, anchors, aliases, tags other than the plain data
    tags, a key given twice, files over 1 MB and files that are not UTF-8 are
    refused. Unnamed layers are named ``{type}_{n}``, where ``n`` is the layer's
    position among the layers of its type, counted depth first (a container before
    its body, a body before its shortcut), skipping numbers taken by given names.

    Examples
    --------
    >>> spec = load_model({"input": [4], "layers": [{"type": "linear", "out": 2}]})
    >>> spec.name, spec.source, spec.input, spec.layers[0].name
    ('model', '<dict>', (4,), 'linear_0')
    >>> try:
    ...     load_model({"input": [4], "layers": [{"type": "linear", "out": -3}]})
    ... except ModelFileError as err:
    ...     print(err)
    <dict>: layers[0].out: got -3; expected a positive integer
    """
    if isinstance(source, dict):
        origin, default_name = "<dict>", "model"
    elif isinstance(source, (str, os.PathLike)):
        origin, default_name = str(source), Path(source).stem or "model"
    else:
        raise TypeError(f"expected a path or a dict, got {type(source).__name__}")

    lines = {}
    try:
        if isinstance(source, dict):
            data = source
        else:
            data, lines = _read_yaml(source)
        return _read_spec(data, origin, lines, default_name)
    except _Refusal as refusal:
        raise ModelFileError(refusal.message(origin, lines)) from refusal.__cause__


def _custom_mapping(custom):
    """Turn a `CustomModel` back into the mapping a model file would give."""
    if not isinstance(custom, CustomModel):
        raise TypeError(f"expected a CustomModel, got {type(custom).__name__}")
    where = "<custom>: custom.parameters: got"
    expected = "expected (name, shape) pairs with different names"
    try:
        parameters = dict(custom.parameters)
    except (TypeError, ValueError) as err:
        got = _show(custom.parameters)
        raise ModelFileError(f"{where} {got}; {expected}") from err
    if len(parameters) != len(custom.parameters):
        raise ModelFileError(f"{where} a parameter name given twice; {expected}")
    return {"parameters": parameters, "phi": custom.phi}


def parse_phi(custom):
    """Parse the components of phi of a custom model into sympy expressions.

    Parameters
    ----------
    custom : CustomModel
        A custom model, as found in ``load_model(...).custom``.

    Returns
    -------
    symbols : tuple of sympy.Symbol
        One plain (assumption-free) symbol per parameter entry, in flat order:
        parameters in file order, the entries of each in row-major order.
    exprs : tuple of sympy.Expr
        The components of phi, evaluated exactly (decimals become rationals).

    Raises
    ------
    ModelFileError
        When the model is malformed (it is checked again, as in `load_model`).
    TypeError
        When `custom` is not a `CustomModel`.

    Notes
    -----
    Formulas are never evaluated as Python: they may hold only numbers, entry
    symbols, the functions Abs, cos, exp, log, sin, sqrt and tanh, spaces and
    ``+ - * / ** ( ) ,``. Exponents are at most 1000 in size and numbers at most
    2**256, so that no formula can make sympy compute without end.

    Examples
    --------
    >>> model = {"custom": {"parameters": {"x": [2]}, "phi": ["x_0*x_1", "0.5*x_0"]}}
    >>> parse_phi(load_model(model).custom)
    ((x_0, x_1), (x_0*x_1, x_0/2))
    """
    mapping = _custom_mapping(custom)
    try:
        _, symbols, exprs = _read_custom(mapping, ("custom",))
    except _Refusal as refusal:
        raise ModelFileError(refusal.message("<custom>", {})) from refusal.__cause__
    return symbols, exprs


def symbol_map(custom):
    """Map each entry symbol of a custom model to its parameter and index.

    Parameters
    ----------
    custom : CustomModel
        A custom model, as found in ``load_model(...).custom``.

    Returns
    -------
    dict of str to tuple
        ``{"W_1_2": ("W", 1, 2), ...}``, in the flat order of `parse_phi`.

    Raises
    ------
    ModelFileError
        When the parameters are malformed.
    TypeError
        When `custom` is not a `CustomModel`.

    Examples
    --------
    >>> model = {"custom": {"parameters": {"W": [1, 2]}, "phi": ["W_0_0*W_0_1"]}}
    >>> symbol_map(load_model(model).custom)
    {'W_0_0': ('W', 0, 0), 'W_0_1': ('W', 0, 1)}
    """
    mapping = _custom_mapping(custom)
    path = ("custom", "parameters")
    try:
        return _entries(_read_parameters(mapping["parameters"], path), path)
    except _Refusal as refusal:
        raise ModelFileError(refusal.message("<custom>", {})) from refusal.__cause__
