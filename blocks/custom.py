"""phi of a custom model: the parameters and the components given in the file.

Examples
--------
>>> from blocks.model_file import load_model
>>> spec = load_model({"custom": {"parameters": {"x": [2]}, "phi": ["x_0*x_1"]}})
>>> block, param = custom_parametrization(spec.custom)
>>> block.dimension, [str(p) for g in param.groups for p in g.components]
(2, ['x0*x1'])
"""

from algebra.polynomial import polynomial_from_sympy
from blocks.block import Block, Parametrization
from blocks.model_file import parse_phi
from blocks.pairs import group_components
from blocks.symbolic import BlockModel

__all__ = ["custom_parametrization"]


def custom_parametrization(custom):
    """Return the single block of a custom model and its phi.

    Parameters
    ----------
    custom : CustomModel
        The ``custom`` section of a model file.

    Returns
    -------
    tuple of (Block, Parametrization)
        When a component is not a polynomial with rational coefficients, the
        parametrization has no groups and holds phi as a `BlockModel` (outputs
        phi, no inputs) in ``symbolic``, for the sampled-gradient path.
    """
    block = Block("custom", "custom", (), tuple(custom.parameters))
    symbols, exprs = parse_phi(custom)
    index = {s: k for k, s in enumerate(symbols)}
    try:
        polys = [polynomial_from_sympy(e, index) for e in exprs]
    except RecursionError as err:
        raise NotImplementedError(
            "phi is too large for sympy's polynomial conversion; use fewer entries"
        ) from err
    if any(p is None for p in polys):
        model = BlockModel(list(symbols), [], list(exprs))
        return block, Parametrization((), symbolic=model)
    return block, group_components([p for p in polys if p], block.dimension)
