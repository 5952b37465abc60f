"""Write a sweep of architecture files that share many blocks.

The sweep is the grid a researcher runs: four families of networks, two widths
each, depths one to five, 40 files: a ReLU classifier under a softmax head, deep
linear networks on 4 inputs and on 3 (which share their inner blocks), and
networks with a quadratic activation. Consecutive layers make a block, so the
networks of one family and width share most of their blocks, and a deep network
repeats its middle block. Layer
names differ from file to file (a random prefix), so the cache can only hit on
the blocks' canonical signatures.

Run ``python benchmarks/make_sweep.py DIRECTORY [--seed 0]``.
"""

import argparse
import pathlib
import random

DEPTHS = (1, 2, 3, 4, 5)
# Family -> the two values of the width it varies (see each writer).
WIDTHS = {
    "classifier": (6, 8),
    "linear": (4, 5),
    "square": (4, 5),
    "linear3": (4, 5),
}


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


def _polynomial(activation, ends=4):
    """Write networks ends -> width x depth -> ends joined by `activation`."""

    def write(prefix, width, depth):
        widths = [ends, *[width] * depth, ends]
        layers = []
        for k, out in enumerate(widths[1:]):
            if k and activation != "identity":
                layers.append(f"  - {{type: {activation}}}")
            layers.append(f"  - {{type: linear, name: {prefix}_l{k}, out: {out}}}")
        return _model(f"{prefix}-{activation}", [widths[0]], layers)

    return write


def _classifier(prefix, width, depth):
    """Write a ReLU network 3 -> width x depth under a 3-class softmax head."""
    layers = []
    for k in range(depth):
        layers += [
            f"  - {{type: linear, name: {prefix}_fc{k}, out: {width}, bias: true}}",
            "  - {type: relu}",
        ]
    layers += [
        f"  - {{type: linear, name: {prefix}_head, out: 3, bias: true}}",
        "  - {type: softmax}",
    ]
    return _model(f"{prefix}-classifier", [3], layers)


def _model(name, shape, layers):
    dims = ", ".join(str(n) for n in shape)
    return f"name: {name}\ninput: [{dims}]\nlayers:\n" + "\n".join(layers) + "\n"


_ARCHITECTURES = {
    "classifier": _classifier,
    "linear": _polynomial("identity"),
    "square": _polynomial("square"),
    "linear3": _polynomial("identity", ends=3),
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
