"""Sparse multivariate polynomials with exact rational coefficients.

A polynomial is an immutable mapping from monomials to nonzero coefficients. A
monomial is a tuple of ``(variable, exponent)`` pairs sorted by variable, with
positive exponents; the empty tuple is the constant monomial. Variables are integers
(the position of a parameter entry in the flat vector theta). Coefficients are
Python ``int`` or ``fractions.Fraction``, so arithmetic is exact.

Sparse monomials keep a product of two entries of a large block as small as the
product itself, whatever the number of variables: this is why we do not use dense
exponent vectors here.

Examples
--------
>>> p = Polynomial.from_terms({((0, 1), (1, 1)): 1})
>>> p.diff(0) == Polynomial.variable(1)
True
>>> str(p * p)
'x0**2*x1**2'
"""

from fractions import Fraction

__all__ = ["Polynomial", "monomial_product", "polynomial_from_sympy"]


def monomial_product(a, b):
    """Multiply two sparse monomials.

    Parameters
    ----------
    a, b : tuple of (int, int)
        Monomials as sorted ``(variable, exponent)`` pairs.

    Returns
    -------
    tuple of (int, int)
        The product, sorted by variable.
    """
    exponents = dict(a)
    for var, exp in b:
        exponents[var] = exponents.get(var, 0) + exp
    return tuple(sorted(exponents.items()))


class Polynomial:
    """An immutable sparse polynomial with exact coefficients.

    Parameters
    ----------
    terms : dict
        Monomial to coefficient; zero coefficients are dropped.
    """

    __slots__ = ("terms", "_hash")

    def __init__(self, terms=None):
        self.terms = {m: c for m, c in (terms or {}).items() if c != 0}
        self._hash = None

    @classmethod
    def from_terms(cls, terms):
        """Build a polynomial from a monomial-to-coefficient mapping."""
        return cls(dict(terms))

    @classmethod
    def variable(cls, var):
        """Return the polynomial ``x_var``."""
        return cls({((var, 1),): 1})

    @classmethod
    def constant(cls, value):
        """Return a constant polynomial."""
        return cls({(): value})

    def __bool__(self):
        return bool(self.terms)

    def __eq__(self, other):
        return isinstance(other, Polynomial) and self.terms == other.terms

    def __hash__(self):
        if self._hash is None:
            self._hash = hash(frozenset(self.terms.items()))
        return self._hash

    def __add__(self, other):
        terms = dict(self.terms)
        for m, c in other.terms.items():
            terms[m] = terms.get(m, 0) + c
        return Polynomial(terms)

    def __sub__(self, other):
        terms = dict(self.terms)
        for m, c in other.terms.items():
            terms[m] = terms.get(m, 0) - c
        return Polynomial(terms)

    def __neg__(self):
        return Polynomial({m: -c for m, c in self.terms.items()})

    def __mul__(self, other):
        if not isinstance(other, Polynomial):
            return Polynomial({m: c * other for m, c in self.terms.items()})
        terms = {}
        for ma, ca in self.terms.items():
            for mb, cb in other.terms.items():
                m = monomial_product(ma, mb)
                terms[m] = terms.get(m, 0) + ca * cb
        return Polynomial(terms)

    __rmul__ = __mul__

    def diff(self, var):
        """Differentiate with respect to variable `var`."""
        terms = {}
        for mono, c in self.terms.items():
            for pos, (v, e) in enumerate(mono):
                if v == var:
                    rest = mono[:pos] + ((v, e - 1),) * (e > 1) + mono[pos + 1 :]
                    terms[rest] = terms.get(rest, 0) + c * e
                    break
        return Polynomial(terms)

    def primitive(self):
        """Scale to coprime integer coefficients, keeping the sign.

        Examples
        --------
        >>> from fractions import Fraction
        >>> str(Polynomial({((0, 2),): 1, ((1, 2),): Fraction(-1, 2)}).primitive())
        '2*x0**2 - x1**2'
        """
        import math

        denominators = [Fraction(c).denominator for c in self.terms.values()]
        scale = math.lcm(*denominators) if denominators else 1
        integers = [int(Fraction(c) * scale) for c in self.terms.values()]
        divisor = math.gcd(*integers) if integers else 1
        factor = Fraction(scale, divisor or 1)
        return Polynomial({m: int(Fraction(c) * factor) for m, c in self.terms.items()})

    def variables(self):
        """Return the set of variables that occur."""
        return frozenset(v for mono in self.terms for v, _ in mono)

    def degree(self):
        """Return the total degree (-1 for the zero polynomial)."""
        return max((sum(e for _, e in m) for m in self.terms), default=-1)

    def rename(self, mapping):
        """Substitute variable ``v`` by variable ``mapping[v]`` everywhere."""
        terms = {}
        for mono, c in self.terms.items():
            m = tuple(sorted((mapping[v], e) for v, e in mono))
            terms[m] = terms.get(m, 0) + c
        return Polynomial(terms)

    def evaluate_mod(self, point, prime):
        """Evaluate at an integer point modulo a prime.

        Parameters
        ----------
        point : sequence of int
            Values of the variables, indexed by variable.
        prime : int
            The modulus; rational coefficients are inverted modulo it.

        Returns
        -------
        int
            The value in ``range(prime)``.
        """
        total = 0
        for mono, c in self.terms.items():
            value = coefficient_mod(c, prime)
            for v, e in mono:
                value = value * pow(int(point[v]), e, prime) % prime
            total += value
        return total % prime

    def evaluate(self, point):
        """Evaluate at a floating-point point."""
        total = 0.0
        for mono, c in self.terms.items():
            value = float(c)
            for v, e in mono:
                value *= point[v] ** e
            total += value
        return total

    def gradient_mod(self, point, prime):
        """Return the gradient at an integer point modulo a prime, as a dict."""
        gradient = {}
        for mono, c in self.terms.items():
            base = coefficient_mod(c, prime)
            powers = [pow(int(point[v]), e, prime) for v, e in mono]
            for pos, (v, e) in enumerate(mono):
                value = base * e * pow(int(point[v]), e - 1, prime) % prime
                for other, power in enumerate(powers):
                    if other != pos:
                        value = value * power % prime
                gradient[v] = (gradient.get(v, 0) + value) % prime
        return gradient

    def to_sympy(self, symbols):
        """Return the sympy expression with variable ``v`` as ``symbols[v]``."""
        import sympy

        return sympy.Add(
            *(
                sympy.Rational(c.numerator, c.denominator)
                * sympy.Mul(*(symbols[v] ** e for v, e in mono))
                for mono, c in self.terms.items()
            )
        )

    def __str__(self):
        if not self.terms:
            return "0"
        parts = []
        for mono, c in sorted(self.terms.items()):
            factors = [f"x{v}" + (f"**{e}" if e > 1 else "") for v, e in mono]
            shown = [] if abs(c) == 1 and mono else [str(abs(c))]
            parts.append(("-" if c < 0 else "+", "*".join(shown + factors)))
        text = " ".join(f"{sign} {body}" for sign, body in parts)
        return text[2:] if text.startswith("+ ") else "-" + text[2:]

    __repr__ = __str__


def coefficient_mod(c, prime):
    """Reduce an exact coefficient (int or Fraction) modulo a prime."""
    if isinstance(c, Fraction):
        return c.numerator * pow(c.denominator, -1, prime) % prime
    return int(c) % prime


def polynomial_from_sympy(expr, index):
    """Convert a polynomial sympy expression to a `Polynomial`.

    Parameters
    ----------
    expr : sympy.Expr
        A polynomial in the symbols of `index` with rational coefficients.
    index : dict
        Symbol to variable number.

    Returns
    -------
    Polynomial or None
        None when `expr` is not a polynomial with rational coefficients.
    """
    import sympy

    symbols = list(index)
    try:
        poly = sympy.Poly(sympy.expand(expr), *symbols, domain="QQ")
    except (sympy.PolynomialError, sympy.CoercionFailed, ValueError):
        return None
    terms = {}
    for exps, coeff in zip(poly.monoms(), poly.coeffs(), strict=True):
        mono = tuple((index[s], e) for s, e in zip(symbols, exps, strict=True) if e)
        value = Fraction(int(coeff.numerator), int(coeff.denominator))
        terms[tuple(sorted(mono))] = (
            value.numerator if value.denominator == 1 else value
        )
    return Polynomial(terms)
