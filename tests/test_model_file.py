import re
import textwrap

import pytest
import sympy

from algebra.errors import ModelFileError
from blocks.model_file import load_model, parse_phi, symbol_map
from blocks.spec import CustomModel, Layer

MLP = """\
name: tiny-mlp
input: [4]
layers:
  - {type: linear, name: fc1, out: 8, bias: true}
  - {type: relu}
  - type: linear
    name: fc2
    out: 3
"""


@pytest.fixture
def write_model(tmp_path):
    """Write YAML text (or bytes) into tmp_path and return the file's path."""

    def write(text, name="mlp.yaml"):
        path = tmp_path / name
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


def one_layer(options, layer_type="linear"):
    """A dict model with one layer of the given options."""
    return {"input": [4], "layers": [{"type": layer_type, **options}]}


# ---------------------------------------------------------------- good files


def test_mlp_parses_to_exact_layers(write_model):
    path = write_model(MLP)

    spec = load_model(path)

    assert spec.name == "tiny-mlp"
    assert spec.source == str(path)
    assert spec.input == (4,)
    assert spec.custom is None
    assert spec.layers == (
        Layer("linear", "fc1", (("bias", True), ("out", 8)), line=4),
        Layer("relu", "relu_0", (), line=5),
        Layer("linear", "fc2", (("bias", False), ("out", 3)), line=6),
    )


def test_name_defaults_to_file_stem(write_model):
    path = write_model("input: [2]\nlayers: [{type: relu}]\n", name="small.yaml")

    assert load_model(path).name == "small"
    assert load_model(str(path)).name == "small"


def test_unnamed_layers_are_counted_by_type_depth_first():
    spec = load_model(
        {
            "input": [4],
            "layers": [
                {"type": "relu"},
                {
                    "type": "residual",
                    "body": [{"type": "linear", "out": 4}, {"type": "relu"}],
                    "shortcut": [{"type": "linear", "out": 4}],
                },
                {"type": "relu"},
            ],
        }
    )

    outer = [layer.name for layer in spec.layers]
    residual = spec.layers[1]
    assert outer == ["relu_0", "residual_0", "relu_2"]
    assert [layer.name for layer in residual.body] == ["linear_0", "relu_1"]
    assert [layer.name for layer in residual.shortcut] == ["linear_1"]


def test_auto_names_skip_numbers_taken_by_given_names():
    layers = [
        {"type": "relu"},
        {"type": "relu"},
        {"type": "relu", "name": "relu_1"},
        {"type": "linear", "name": "head", "out": 2},
        {"type": "linear", "out": 2},
    ]

    spec = load_model({"input": [4], "layers": layers})

    names = [layer.name for layer in spec.layers]
    assert names == ["relu_0", "relu_2", "relu_1", "head", "linear_1"]


def test_nested_residual_and_repeat(write_model):
    path = write_model(
        """\
        input: [3, 8, 8]
        layers:
          - type: repeat
            name: blocks
            times: 3
            body:
              - type: residual
                body:
                  - {type: conv2d, out: 3, kernel: 3, padding: 1}
                  - {type: relu}
                shortcut: []
          - {type: flatten}
        """
    )

    spec = load_model(path)

    repeat = spec.layers[0]
    residual = repeat.body[0]
    conv = residual.body[0]
    assert (repeat.type, repeat.name, repeat.options, repeat.line) == (
        "repeat",
        "blocks",
        (("times", 3),),
        3,
    )
    assert (residual.name, residual.line, residual.shortcut) == ("residual_0", 7, ())
    assert conv.name == "conv2d_0"
    assert conv.line == 9
    assert conv.option("padding") == (1, 1)
    assert residual.body[1].name == "relu_0"
    assert spec.layers[1].name == "flatten_0"


def test_conv_windows_become_tuples_per_axis():
    layers = [
        {"type": "conv1d", "out": 2, "kernel": 3},
        {"type": "conv2d", "out": 2, "kernel": [3, 1], "stride": 2},
        {"type": "conv2d", "out": 2, "kernel": 5, "padding": [0, 2]},
    ]

    spec = load_model({"input": [2, 9, 9], "layers": layers})

    conv1d, conv2d_a, conv2d_b = spec.layers
    assert conv1d.options == (
        ("bias", False),
        ("kernel", (3,)),
        ("out", 2),
        ("padding", (0,)),
        ("stride", (1,)),
    )
    assert conv2d_a.option("kernel") == (3, 1)
    assert conv2d_a.option("stride") == (2, 2)
    assert conv2d_a.option("padding") == (0, 0)
    assert conv2d_b.option("kernel") == (5, 5)
    assert conv2d_b.option("padding") == (0, 2)


def test_defaults_are_filled_in_for_attention():
    spec = load_model(one_layer({"heads": 2, "head_dim": 4}, "attention"))

    assert spec.layers[0].options == (
        ("bias", False),
        ("head_dim", 4),
        ("heads", 2),
        ("out", None),
        ("positional", "none"),
        ("rope", False),
        ("value_dim", None),
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1e-3", 0.001), ("1E5", 100000.0), ("-2.5e-1", -0.25), ("0.5", 0.5)],
    ids=["1e-3", "1E5", "-2.5e-1", "0.5"],
)
def test_exponent_floats_are_floats(write_model, text, expected):
    path = write_model(f"input: [2]\nlayers: [{{type: leaky_relu, slope: {text}}}]\n")

    slope = load_model(path).layers[0].option("slope")

    assert type(slope) is float
    assert slope == expected


def test_yaml_1_1_words_stay_text(write_model):
    path = write_model(
        "name: no\ninput: [2]\nlayers: [{type: layernorm, affine: TRUE}]\n"
    )

    spec = load_model(path)

    assert spec.name == "no"
    assert spec.layers[0].option("affine") is True


def test_dict_input_has_no_lines():
    spec = load_model({"input": [4], "layers": [{"type": "linear", "out": 2}]})

    assert spec.source == "<dict>"
    assert spec.name == "model"
    assert spec.layers == (Layer("linear", "linear_0", (("bias", False), ("out", 2))),)


def test_custom_model_parses(write_model):
    path = write_model(
        """\
        custom:
          parameters: {x: [3], W: [2, 2]}
          phi: ["x_0*x_1*x_2", "W_0_0*W_1_1 - 1e-3*W_0_1**2", "exp(x_0)/2"]
        """
    )

    spec = load_model(path)

    assert spec.input == ()
    assert spec.layers == ()
    assert spec.custom == CustomModel(
        parameters=(("x", (3,)), ("W", (2, 2))),
        phi=("x_0*x_1*x_2", "W_0_0*W_1_1 - 1e-3*W_0_1**2", "exp(x_0)/2"),
    )


def test_parse_phi_gives_exact_expressions_in_flat_order():
    custom = CustomModel(
        parameters=(("x", (2,)), ("W", (1, 2))), phi=("x_0*x_1 - 1e-3*W_0_1", "x_0**2")
    )

    symbols, exprs = parse_phi(custom)

    x0, x1, w00, w01 = sympy.symbols("x_0 x_1 W_0_0 W_0_1")
    assert symbols == (x0, x1, w00, w01)
    assert sympy.simplify(exprs[0] - (x0 * x1 - sympy.Rational(1, 1000) * w01)) == 0
    assert sympy.expand(exprs[1]) == x0**2


def test_symbol_map_names_parameter_and_index():
    custom = CustomModel(parameters=(("b", (2,)), ("W", (2, 3))), phi=("b_0",))

    mapping = symbol_map(custom)

    assert mapping["b_1"] == ("b", 1)
    assert mapping["W_1_2"] == ("W", 1, 2)
    assert list(mapping)[:3] == ["b_0", "b_1", "W_0_0"]
    assert len(mapping) == 8


# ---------------------------------------------------------------- bad YAML


def test_message_names_file_line_key_found_and_allowed(write_model):
    path = write_model(MLP.replace("out: 3", "out: -3"))

    with pytest.raises(ModelFileError, match="mlp") as caught:
        load_model(path)

    message = str(caught.value)
    assert message == f"{path}:8: layers[2].out: got -3; expected a positive integer"
    assert "\n" not in message


def test_tab_is_refused_with_its_line(write_model):
    path = write_model("input: [4]\nlayers:\n\t- {type: relu}\n")

    with pytest.raises(ModelFileError, match=r"mlp\.yaml:3: got a tab"):
        load_model(path)


def test_billion_laughs_is_refused_at_the_first_anchor(write_model):
    path = write_model(
        """\
        # billion laughs
        a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
        b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
        c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
        d: [*c, *c, *c, *c, *c, *c, *c, *c, *c]
        """
    )

    with pytest.raises(ModelFileError, match=r"mlp\.yaml:2: a: got the anchor &a"):
        load_model(path)


def test_alias_is_refused_with_its_line(write_model):
    path = write_model("input: [4]\nlayers:\n  - *relu\n")

    with pytest.raises(
        ModelFileError, match=r"mlp\.yaml:3: layers\[0\]: got the alias"
    ):
        load_model(path)


def test_python_tag_is_refused(write_model):
    path = write_model(
        "input: [4]\nlayers:\n  - !!python/object/apply:os.system ['echo hacked']\n"
    )

    with pytest.raises(ModelFileError, match=r":3: .*python/object/apply:os\.system"):
        load_model(path)


def test_local_tag_is_refused(write_model):
    path = write_model("input: !shape [4]\nlayers: [{type: relu}]\n")

    with pytest.raises(ModelFileError, match=r":1: input: got the tag '!shape'"):
        load_model(path)


def test_duplicate_key_is_refused_with_both_lines(write_model):
    path = write_model(
        "input: [4]\nlayers:\n  - type: linear\n    out: 2\n    out: 3\n"
    )

    with pytest.raises(
        ModelFileError, match=r"mlp\.yaml:5: layers\[0\]\.out: .*first on line 4"
    ):
        load_model(path)


def test_duplicate_layer_name_is_refused_with_both_lines(write_model):
    path = write_model(
        """\
        input: [4]
        layers:
          - {type: linear, name: fc, out: 4}
          - type: residual
            body:
              - {type: linear, name: fc, out: 4}
        """
    )

    with pytest.raises(
        ModelFileError,
        match=r"mlp\.yaml:6: layers\[1\]\.body\[0\]\.name: got the name 'fc' "
        r"a second time \(first at layers\[0\], line 3\)",
    ):
        load_model(path)


def test_non_utf8_bytes_are_refused(write_model):
    path = write_model(b"input: [4]\nname: caf\xe9\nlayers: [{type: relu}]\n")

    with pytest.raises(ModelFileError, match=r"mlp\.yaml:2: .*not UTF-8"):
        load_model(path)


def test_top_level_list_is_refused(write_model):
    path = write_model("- {type: relu}\n")

    with pytest.raises(ModelFileError, match=r"mlp\.yaml:1: got a list at the top"):
        load_model(path)


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"], ids=repr)
def test_empty_file_is_refused(write_model, text):
    path = write_model(text)

    with pytest.raises(ModelFileError, match=r"mlp\.yaml: got an empty file"):
        load_model(path)


def test_file_over_one_megabyte_is_refused(write_model):
    path = write_model("input: [4]\nlayers: [{type: relu}]\n" + "#" * 1_100_000)

    with pytest.raises(ModelFileError, match="over 1 MB"):
        load_model(path)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(ModelFileError, match=r"nothere\.yaml: got a file that cannot"):
        load_model(tmp_path / "nothere.yaml")


def test_yaml_syntax_error_gives_one_line_with_its_line(write_model):
    path = write_model("input: [4\nlayers: [{type: relu}]\n")

    with pytest.raises(ModelFileError, match=r"mlp\.yaml:2: got a YAML syntax error"):
        load_model(path)


def test_octal_looking_int_tag_is_refused(write_model):
    path = write_model("input: [!!int 010]\nlayers: [{type: relu}]\n")

    with pytest.raises(ModelFileError, match=r"input\[0\]: got '010' tagged !!int"):
        load_model(path)


# ---------------------------------------------------------------- bad layers


def test_unknown_layer_type_is_refused(write_model):
    path = write_model("input: [4]\nlayers:\n  - {type: dense, out: 3}\n")

    with pytest.raises(
        ModelFileError,
        match=r"mlp\.yaml:3: layers\[0\]\.type: got 'dense'; expected one of .*linear",
    ):
        load_model(path)


def test_unknown_option_lists_the_allowed_ones(write_model):
    path = write_model("input: [4]\nlayers:\n  - {type: linear, out: 3, outs: 4}\n")

    with pytest.raises(
        ModelFileError,
        match=r"layers\[0\]\.outs: got an unknown option of linear; "
        r"expected one of bias, name, out, type",
    ):
        load_model(path)


def test_missing_out_is_refused_on_the_layer_line(write_model):
    path = write_model("input: [4]\nlayers:\n  - {type: relu}\n  - {type: linear}\n")

    with pytest.raises(
        ModelFileError, match=r"mlp\.yaml:4: layers\[1\]\.out: got nothing"
    ):
        load_model(path)


@pytest.mark.parametrize(
    ("value", "found"),
    [
        ("-3", "got -3; expected a positive integer$"),
        ("0", "got 0; expected a positive integer$"),
        ("2000000", "got 2000000; expected a positive integer at most 1048576"),
        ("2.5", "got 2.5; expected a positive integer$"),
        ("4.0", "got 4.0; expected a positive integer$"),
        ("1e3", "got 1000.0; expected a positive integer$"),
        ("true", "got true; expected a positive integer$"),
        ("'4'", "got '4'; expected a positive integer$"),
    ],
    ids=["negative", "zero", "absurd", "float", "whole-float", "exp", "bool", "text"],
)
def test_bad_out_is_refused(write_model, value, found):
    path = write_model(f"input: [4]\nlayers:\n  - type: linear\n    out: {value}\n")

    with pytest.raises(
        ModelFileError, match=r"mlp\.yaml:4: layers\[0\]\.out: " + found
    ):
        load_model(path)


@pytest.mark.parametrize("shape", [[], [0], [2, -1], [1, 2, 3, 4], [2**30]], ids=str)
def test_bad_input_shape_is_refused(shape):
    with pytest.raises(ModelFileError, match=r"^<dict>: input"):
        load_model({"input": shape, "layers": [{"type": "relu"}]})


def test_bias_no_says_to_write_true_or_false(write_model):
    path = write_model("input: [4]\nlayers:\n  - {type: linear, out: 2, bias: no}\n")

    with pytest.raises(
        ModelFileError,
        match=r"mlp\.yaml:3: layers\[0\]\.bias: got 'no'; expected true or false "
        r"\(write true or false",
    ):
        load_model(path)


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"out": 2, "kernel": [3, 3]}, "kernel"),
        ({"out": 2, "kernel": 3, "stride": 0}, "stride"),
        ({"out": 2, "kernel": 3, "padding": -1}, "padding"),
    ],
    ids=["conv1d-list-of-two", "zero-stride", "negative-padding"],
)
def test_bad_conv_window_is_refused(options, key):
    with pytest.raises(ModelFileError, match=rf"layers\[0\]\.{key}: got"):
        load_model(one_layer(options, "conv1d"))


@pytest.mark.parametrize(
    ("options", "layer_type", "found"),
    [
        ({"slope": "0.1"}, "leaky_relu", r"slope: got '0\.1'; expected a number"),
        (
            {"heads": 2, "head_dim": 2, "positional": "learned"},
            "attention",
            r"positional: got 'learned'; expected one of none, sinusoidal",
        ),
        (
            {"times": 0, "body": [{"type": "relu"}]},
            "repeat",
            r"times: got 0; expected an integer from 1 to 1000",
        ),
        ({"times": 2}, "repeat", r"body: got nothing; expected a non-empty list"),
        ({"body": []}, "residual", r"body: got a list; expected a non-empty list"),
        ({"name": "_hidden"}, "relu", r"name: got '_hidden'; expected an identifier"),
        ({"name": "my-layer"}, "relu", r"name: got 'my-layer'; expected an identifier"),
    ],
    ids=[
        "slope-text",
        "positional",
        "times-zero",
        "no-body",
        "empty-body",
        "underscore-name",
        "dash-name",
    ],
)
def test_bad_option_values_are_refused(options, layer_type, found):
    with pytest.raises(ModelFileError, match=r"^<dict>: layers\[0\]\." + found):
        load_model(one_layer(options, layer_type))


def test_nested_repeats_above_ten_thousand_are_refused():
    inner = {"type": "repeat", "times": 101, "body": [{"type": "relu"}]}
    outer = {"type": "repeat", "times": 100, "body": [inner]}

    with pytest.raises(
        ModelFileError, match=r"layers\[0\]\.body\[0\]\.times: got nested repeats"
    ):
        load_model({"input": [4], "layers": [outer]})


def test_layer_that_is_not_a_mapping_is_refused(write_model):
    path = write_model("input: [4]\nlayers:\n  - relu\n")

    with pytest.raises(
        ModelFileError, match=r":3: layers\[0\]: got 'relu'; expected a"
    ):
        load_model(path)


@pytest.mark.parametrize(
    ("model", "found"),
    [
        ({"input": [4]}, r"layers: got neither layers nor custom"),
        ({"layers": [{"type": "relu"}]}, r"input: got nothing"),
        ({"input": [4], "layers": [], "custom": {}}, r"custom: got both"),
        (
            {"input": [4], "layers": [{"type": "relu"}], "seed": 1},
            r"seed: got an unknown",
        ),
    ],
    ids=["no-layers", "no-input", "both", "unknown-key"],
)
def test_bad_top_level_is_refused(model, found):
    with pytest.raises(ModelFileError, match="^<dict>: " + found):
        load_model(model)


def test_dict_errors_leave_out_the_line():
    with pytest.raises(
        ModelFileError, match=r"^<dict>: layers\[0\]\.out: got -1; expected a positive"
    ):
        load_model(one_layer({"out": -1}))


# ---------------------------------------------------------------- bad custom models


def custom_model(phi, parameters=None):
    return {"custom": {"parameters": parameters or {"x": [3]}, "phi": phi}}


def test_custom_unknown_identifier_names_index_and_name(write_model):
    path = write_model(
        'custom:\n  parameters: {x: [3]}\n  phi: ["x_0*x_1", "x_0 + y_0"]\n'
    )

    with pytest.raises(
        ModelFileError,
        match=r"mlp\.yaml:3: custom\.phi\[1\]: got the unknown name 'y_0'",
    ):
        load_model(path)


def test_custom_import_is_refused_before_any_evaluation():
    phi = ["__import__('os').system('echo hacked')"]

    with pytest.raises(ModelFileError, match=r"custom\.phi\[0\]: .*'__import__'"):
        load_model(custom_model(phi))


@pytest.mark.parametrize(
    ("formula", "found"),
    [
        ("x_0.real", r"the character '\.'"),
        ("x_0[0]", r"the character '\['"),
        ("9**9**9", r"the exponent 387420489"),
        ("x_0 * * x_1", r"'\*' right after '\*'"),
        ("x_0 // x_1", r"'/' right after '/'"),
        ("x_0, x_1", r"a stray ','"),
        ("exp", r"the function exp without '\('"),
        ("x_0/0", r"'x_0/0', which divides by zero"),
        ("1e999999", r"the number '1e999999'"),
        ("(x_0", r"an unclosed '\('"),
    ],
    ids=[
        "attribute",
        "subscript",
        "power-tower",
        "star-star",
        "floor-division",
        "tuple",
        "bare-function",
        "zero-division",
        "huge-literal",
        "unclosed",
    ],
)
def test_custom_unsafe_or_bad_formula_is_refused(formula, found):
    with pytest.raises(
        ModelFileError, match=r"^<dict>: custom\.phi\[0\]: got " + found
    ):
        load_model(custom_model([formula]))


@pytest.mark.parametrize(
    ("parameters", "found"),
    [
        ({"x": [0]}, r"custom\.parameters\.x\[0\]: got 0"),
        ({"x": [2, 2, 2, 2, 2]}, r"custom\.parameters\.x: got a list"),
        ({"x": [200, 200]}, r"got 40000 parameter entries"),
        ({"W": [2, 3], "W_1": [2]}, r"the entry symbol W_1_0"),
        ({"_x": [2]}, r"got the name '_x'"),
    ],
    ids=["zero", "rank-five", "too-many", "clash", "underscore"],
)
def test_custom_bad_parameters_are_refused(parameters, found):
    with pytest.raises(ModelFileError, match=found):
        load_model(custom_model(["1"], parameters))


def test_custom_model_takes_no_input():
    model = {"input": [3], **custom_model(["x_0"])}

    with pytest.raises(ModelFileError, match=r"^<dict>: input: got an input"):
        load_model(model)


def test_parse_phi_rechecks_a_hand_made_model():
    custom = CustomModel(parameters=(("x", (2,)),), phi=("x_0 + z",))

    with pytest.raises(ModelFileError, match=r"^<custom>: custom\.phi\[0\]: .*'z'"):
        parse_phi(custom)


def test_messages_are_one_line_even_for_odd_keys():
    model = {"input": [4], "layers": [{"type": "relu", "a\nb": 1}]}

    with pytest.raises(ModelFileError, match="unknown option") as caught:
        load_model(model)

    assert len(str(caught.value).splitlines()) == 1
    assert re.search(r"\['a\\nb'\]", str(caught.value))
