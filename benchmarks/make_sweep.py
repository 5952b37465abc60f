"""Write a sweep of architecture files that share many blocks.

The sweep is the grid a researcher runs: four families of networks (deep linear,
quadratic activation, ReLU MLP, residual ReLU), two widths each, depths one to
five: 40 files. Consecutive layers make a block, so the networks of one family and
width share most of their blocks with each other, and a deep network repeats its
middle block. Layer names differ from file to file (a random prefix), so the cache
can only hit on the blocks' canonical signatures.

Run ``python benchmarks/make_sweep.py DIRECTORY [--seed 0]``.
"""

import argparse
import pathlib
import random

DEPTHS = (1, 2, 3, 4, 5)
WIDTHS = {"linear": (3, 4), "square": (3, 4), "relu": (6, 10), "residual": (4, 8)}


def make_sweep(directory, seed=0):
    """Write the sweep's 40 model files into `directory` and return their paths."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    paths = []
    for family, widths in WIDTHS.items():
        for width in widths:
            for depth in DEPTHS:
                prefix = f"n{rng.randrange(10**6):06d}"
                path = directory / f"{family}_w{width}_d{depth}.yaml"
                path.write_text(_ARCHITECTURES[family](prefix, width, depth))
                paths.append(path)
    return paths


def _polynomial(activation):
    """Write networks 3 -> width x depth -> 2 joined by a polynomial activation."""

    def write(prefix, width, depth):
        widths = [3, *[width] * depth, 2]
        layers = []
        for k, out in enumerate(widths[1:]):
            if k and activation != "identity":
                layers.append(f"  - {{type: {activation}}}")
            layers.append(f"  - {{type: linear, name: {prefix}_l{k}, out: {out}}}")
        return _model(f"{prefix}-{activation}", [widths[0]], layers)

    return write


def _relu(prefix, width, depth):
    widths = [4, *[width] * depth, 2]
    layers = []
    for k, out in enumerate(widths[1:]):
        if k:
            layers.append("  - {type: relu}")
        layers.append(
            f"  - {{type: linear, name: {prefix}_fc{k}, out: {out}, bias: true}}"
        )
    return _model(f"{prefix}-relu", [widths[0]], layers)


def _residual(prefix, width, depth):
    layers = []
    for k in range(depth):
        layers += [
            f"  - type: residual\n    name: {prefix}_b{k}\n    body:",
            f"      - {{type: linear, name: {prefix}_b{k}a, out: 8, bias: true}}",
            "      - {type: relu}",
            f"      - {{type: linear, name: {prefix}_b{k}b, out: {width}}}",
            "  - {type: relu}",
        ]
    layers.append(f"  - {{type: linear, name: {prefix}_head, out: 3}}")
    return _model(f"{prefix}-residual", [width], layers)


def _model(name, shape, layers):
    dims = ", ".join(str(n) for n in shape)
    return f"name: {name}\ninput: [{dims}]\nlayers:\n" + "\n".join(layers) + "\n"


_ARCHITECTURES = {
    "linear": _polynomial("identity"),
    "square": _polynomial("square"),
    "relu": _relu,
    "residual": _residual,
}


def main():
    """Write the sweep into the directory named on the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the names.")
    args = parser.parse_args()
    for path in make_sweep(args.directory, args.seed):
        print(path)


if __name__ == "__main__":
    main()
