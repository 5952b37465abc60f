from hypothesis import given, settings
from hypothesis import strategies as st

from algebra.brackets import BracketTable, lie_bracket
from algebra.fields import VectorField
from algebra.polynomial import Polynomial

DIMENSION = 3

monomials = st.lists(
    st.tuples(st.integers(0, DIMENSION - 1), st.integers(1, 2)), max_size=2
).map(lambda pairs: tuple(sorted(dict(pairs).items())))
polynomials = st.dictionaries(monomials, st.integers(-3, 3), max_size=3).map(
    Polynomial.from_terms
)
fields = st.dictionaries(st.integers(0, DIMENSION - 1), polynomials, max_size=3).map(
    lambda comps: VectorField(comps, DIMENSION)
)


def _add(X, Y, scale=1):
    keys = set(X.components) | set(Y.components)
    zero = Polynomial()
    return VectorField(
        {
            i: X.components.get(i, zero) + Y.components.get(i, zero) * scale
            for i in keys
        },
        DIMENSION,
    )


@settings(max_examples=60, deadline=None)
@given(fields, fields)
def test_bracket_is_antisymmetric(X, Y):
    assert _add(lie_bracket(X, Y), lie_bracket(Y, X)) == VectorField({}, DIMENSION)


@settings(max_examples=60, deadline=None)
@given(fields, fields, fields)
def test_bracket_is_bilinear(X, Y, Z):
    left = lie_bracket(_add(X, Y, 2), Z)
    right = _add(lie_bracket(X, Z), lie_bracket(Y, Z), 2)
    assert left == right


@settings(max_examples=40, deadline=None)
@given(fields, fields, fields)
def test_jacobi_identity(X, Y, Z):
    total = _add(
        _add(lie_bracket(X, lie_bracket(Y, Z)), lie_bracket(Y, lie_bracket(Z, X))),
        lie_bracket(Z, lie_bracket(X, Y)),
    )
    assert total == VectorField({}, DIMENSION)


def test_bracket_of_rotation_generators():
    x0, x1 = Polynomial.variable(0), Polynomial.variable(1)
    X = VectorField({0: x1}, 2)
    Y = VectorField({1: x0}, 2)

    assert lie_bracket(X, Y) == VectorField({0: -x0, 1: x1}, 2)


def test_table_memoizes_and_reads_reverse_order_negated():
    x0, x1 = Polynomial.variable(0), Polynomial.variable(1)
    X, Y = VectorField({0: x1}, 2), VectorField({1: x0}, 2)
    table = BracketTable()

    forward = table.bracket(X, Y)
    backward = table.bracket(Y, X)

    assert table.computed == 1
    assert _add(forward, backward) == VectorField({}, 2)
