"""Benchmark: the 2023 reference battery, each network analysed as one block.

Run from the project root:

    python benchmarks/battery_bench.py [--kind linear|relu|all] [--limit N]
                                       [--baseline-max-d 30]

For each network of benchmarks/data/reference-battery.json (a copy of the shared
reference data) it builds the model, takes the whole network as one block with every
activation pattern realizable (phi = path products), certifies the number of laws,
and compares it with the known count. It prints one row per network with the time,
the reference implementation's time on a 2-core machine and their ratio, then the
totals. A baseline, the straightforward algorithm (every bracket expanded as a sympy
expression, floating-point rank), runs in the same call on networks with at most
``--baseline-max-d`` parameters, so that the speed-up is measured, not quoted.
"""

import algebra  # noqa: F401,I001  (first: one BLAS thread, see algebra/__init__.py)
import argparse
import itertools
import json
import pathlib
import resource
import statistics
import time

import numpy as np
import sympy

from algebra.analysis import _GroupMemo, analyze_block
from blocks.graph import build_graph
from blocks.model_file import load_model
from blocks.network import network_parametrization

DATA = pathlib.Path(__file__).resolve().parent / "data" / "reference-battery.json"


def model_of(net, relu):
    widths = net["widths"]
    layers = []
    for k, out in enumerate(widths[1:]):
        layers.append(
            {"type": "linear", "name": f"l{k}", "out": out, "bias": net["bias"]}
        )
        if relu and k < len(widths) - 2:
            layers.append({"type": "relu"})
    return {"input": [widths[0]], "layers": layers}


def certify_network(net, relu):
    start = time.perf_counter()
    graph = build_graph(load_model(model_of(net, relu)))
    block, param = network_parametrization(
        graph, patterns="generic", max_parameters=10_000
    )
    report = analyze_block(block, param, _GroupMemo(None, 2, 0))
    return report, time.perf_counter() - start


def baseline(net, relu, max_depth=3):
    """Straightforward algorithm: sympy brackets, floating rank at a random point."""
    start = time.perf_counter()
    graph = build_graph(load_model(model_of(net, relu)))
    block, param = network_parametrization(
        graph, patterns="generic", max_parameters=10_000
    )
    D = block.dimension
    t = sympy.symbols(f"t0:{D}")
    phis = [p.to_sympy(t) for g in param.groups for p in g.components]
    local = [g.variables for g in param.groups for _ in g.components]
    fields = []
    for phi, variables in zip(phis, local, strict=True):
        renamed = phi.xreplace({t[k]: t[v] for k, v in enumerate(variables)})
        fields.append(sympy.Matrix([sympy.diff(renamed, s) for s in t]))
    point = {
        s: v for s, v in zip(t, np.random.default_rng(0).normal(size=D), strict=True)
    }

    def rank(fs):
        evaluate = sympy.lambdify([t], [list(f) for f in fs], "numpy")
        values = np.array(evaluate([point[s] for s in t]), dtype=float)
        return np.linalg.matrix_rank(values)

    level, current = fields, rank(fields)
    for _ in range(max_depth):
        new = []
        for X, Y in itertools.product(fields, level):
            bracket = Y.jacobian(t) * X - X.jacobian(t) * Y
            if any(c != 0 for c in bracket):
                new.append(sympy.expand(bracket))
        level = new
        after = rank(fields + level)
        fields = fields + level
        if after == current:
            break
        current = after
    return D - current, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=["linear", "relu", "all"], default="all")
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        help="analyse the first N networks of each kind",
    )
    parser.add_argument("--baseline-max-d", type=int, default=12)
    parser.add_argument(
        "--skip", type=int, default=0, help="skip the first N networks of each kind"
    )
    args = parser.parse_args()
    battery = json.loads(DATA.read_text())
    kinds = ["linear", "relu"] if args.kind == "all" else [args.kind]

    print(
        f"{'network':<10} {'widths':<22} {'D':>4} {'known':>5} {'found':>9} "
        f"{'status':<10} {'seconds':>8} {'ref s':>7} {'ratio':>7} "
        f"{'baseline s':>10} {'speed-up':>8}"
    )
    times, ratios, failures = [], [], 0
    for kind in kinds:
        chosen = battery[kind][args.skip :][: args.limit]
        for k, net in enumerate(chosen, start=args.skip):
            report, seconds = certify_network(net, kind == "relu")
            low, high = report.bounds
            ok = report.status == "certified" and low == net["known_laws"]
            failures += not ok
            times.append(seconds)
            ref = net.get("reference_seconds")
            ratio = f"{ref / seconds:7.1f}" if ref else "      -"
            if ref:
                ratios.append(ref / seconds)
            base = "         -        -"
            if report.parameters <= args.baseline_max_d:
                count, base_s = baseline(net, kind == "relu")
                base = f"{base_s:10.2f} {base_s / seconds:8.1f}"
                if count != high:
                    base += " (baseline disagrees)"
            found = f"{low}" if low == high else f"[{low},{high}]"
            print(
                f"{kind}-{k:<4} {str(net['widths']):<22} {report.parameters:>4} "
                f"{net['known_laws']:>5} {found:>9} {report.status:<10} "
                f"{seconds:8.2f} {ref or '-':>7} {ratio} {base}",
                flush=True,
            )

    print()
    print(f"networks: {len(times)}, not certified at the known count: {failures}")
    print(
        f"total {sum(times):.1f} s, median {statistics.median(times):.2f} s, "
        f"max {max(times):.2f} s"
    )
    if ratios:
        print(
            f"reference / ours: median {statistics.median(ratios):.1f}x, "
            f"min {min(ratios):.1f}x"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory {peak:.0f} MB")


if __name__ == "__main__":
    main()
