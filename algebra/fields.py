"""Polynomial vector fields on the parameter space R^D.

A `VectorField` X has components X_i, polynomials in theta. The fields of a
parametrization phi are the gradients X_j = grad phi_j (DESIGN.md section 2, item 1).

Examples
--------
>>> from algebra.polynomial import Polynomial
>>> phi = Polynomial.from_terms({((0, 1), (1, 1)): 1})  # phi = x0 * x1
>>> X = gradient_field(phi)
>>> X.value_mod([3, 5], 101).tolist()
[5.0, 3.0]
"""

import numpy as np

from algebra.polynomial import Polynomial

__all__ = ["VectorField", "gradient_field"]


class VectorField:
    """An immutable polynomial vector field, stored by its nonzero components.

    Parameters
    ----------
    components : dict
        Variable i to the polynomial X_i; zero components are dropped.
    dimension : int
        D, the number of variables.
    """

    __slots__ = ("components", "dimension", "_key")

    def __init__(self, components, dimension):
        self.components = {i: p for i, p in components.items() if p}
        self.dimension = dimension
        self._key = None

    @property
    def key(self):
        """A canonical, hashable form: sorted components with sorted terms."""
        if self._key is None:
            self._key = tuple(
                (i, tuple(sorted(p.terms.items())))
                for i, p in sorted(self.components.items())
            )
        return self._key

    def __eq__(self, other):
        return isinstance(other, VectorField) and self.key == other.key

    def __hash__(self):
        return hash(self.key)

    def __bool__(self):
        return bool(self.components)

    def is_linear(self):
        """Return True when every component is homogeneous of degree 1."""
        return all(
            all(sum(e for _, e in m) == 1 for m in p.terms)
            for p in self.components.values()
        )

    def value_mod(self, point, prime):
        """Return X(point) modulo `prime`, as a float array of exact integers."""
        value = np.zeros(self.dimension)
        for i, p in self.components.items():
            value[i] = p.evaluate_mod(point, prime)
        return value

    def jacobian_mod(self, point, prime):
        """Return the matrix DX(point) modulo `prime` (rows: components)."""
        jacobian = np.zeros((self.dimension, self.dimension))
        for i, p in self.components.items():
            for k, value in p.gradient_mod(point, prime).items():
                jacobian[i, k] = value
        return jacobian

    def apply(self, h):
        """Return the derivative of the polynomial `h` along X: grad h . X."""
        total = Polynomial()
        for k in h.variables():
            if k in self.components:
                total = total + h.diff(k) * self.components[k]
        return total

    def rename(self, mapping, dimension):
        """Return the field with variable ``v`` renamed ``mapping[v]``."""
        return VectorField(
            {mapping[i]: p.rename(mapping) for i, p in self.components.items()},
            dimension,
        )


def gradient_field(phi, dimension=None):
    """Return the gradient field of a polynomial.

    Parameters
    ----------
    phi : Polynomial
        One component of the parametrization.
    dimension : int, optional
        D; by default one more than the largest variable of `phi`.

    Returns
    -------
    VectorField
        X with X_i = d phi / d theta_i.
    """
    variables = phi.variables()
    if dimension is None:
        dimension = max(variables, default=-1) + 1
    return VectorField({i: phi.diff(i) for i in variables}, dimension)
