"""Time the structured certificate of large bilinear blocks (attention, linear pairs).

    python benchmarks/scale_bench.py [--runs 3] [--skip-model]

Each case runs in a fresh process (cold: no cache, nothing imported beforehand
counts), `--runs` times; the table gives the median seconds, the peak resident
memory of the slowest run, the laws and the status. The last rows compare the
exact engine (`algebra.certificate.certify` on the expanded polynomials) with
`algebra.bilinear.certify_bilinear` on one small bilinear block, and time the
whole of examples/gpt2_small.yaml cold once.
"""

import argparse
import json
import pathlib
import resource
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent

HEAD = {
    "name": "gpt2-head",
    "input": [16, 768],
    "layers": [
        {
            "type": "attention",
            "name": "attn",
            "heads": 1,
            "head_dim": 64,
            "value_dim": 64,
            "out": 768,
        }
    ],
}
PAIR = {
    "name": "linear-pair",
    "input": [512],
    "layers": [
        {"type": "linear", "name": "fc1", "out": 200, "bias": True},
        {"type": "linear", "name": "fc2", "out": 512},
    ],
}
SMALL = (6, 5, 4)  # rows of U (plus a bias row), rows of V, inner size


def run_block(spec, kind):
    """Certify one block of a model, cold; return (D, laws, status)."""
    from algebra.analysis import _GroupMemo, _safe_parametrize, analyze_block
    from blocks.graph import build_graph
    from blocks.model_file import load_model
    from blocks.split import split_into_blocks

    graph = build_graph(load_model(spec))
    block = next(b for b in split_into_blocks(graph) if b.kind == kind)
    report = analyze_block(
        block, _safe_parametrize(block, graph), _GroupMemo(None, 2, 0)
    )
    return report.parameters, report.count, report.status


def run_model(source):
    """Analyse a whole model, cold; return (D, laws, status)."""
    from algebra.analysis import analyze

    report = analyze(source)
    return report.parameters, report.laws, report.status


def run_small(engine):
    """Certify the small bilinear block with one engine; return (D, laws, status)."""
    import numpy as np

    from algebra.bilinear import certify_bilinear
    from algebra.certificate import certify
    from algebra.fields import gradient_field
    from blocks.block import BilinearGroup

    n, m, r = SMALL
    d = (n + 1 + m) * r
    order = np.arange(d)
    left = (order[: n * r].reshape(n, r), order[n * r : (n + 1) * r].reshape(1, r))
    group = BilinearGroup(tuple(range(d)), left, (order[(n + 1) * r :].reshape(m, r),))
    if engine == "structured":
        cert = certify_bilinear(group)
    else:
        expanded = group.expand()
        cert = certify([gradient_field(p, d) for p in expanded.components], d)
    return d, len(cert.laws), cert.status


CASES = {
    "gpt2 query-key head 768x64": lambda: run_block(HEAD, "attention_qk"),
    "gpt2 value-output head 768x64": lambda: run_block(HEAD, "attention_vo"),
    "linear pair 512-200-512, bias": lambda: run_model(PAIR),
    "small bilinear 6+1x5x4, structured": lambda: run_small("structured"),
    "small bilinear 6+1x5x4, exact engine": lambda: run_small("exact"),
    "examples/gpt2_small.yaml (whole)": lambda: run_model(
        str(ROOT / "examples" / "gpt2_small.yaml")
    ),
}


def child(name):
    """Run one case in this process and print its measurements as JSON."""
    # Imports are not part of the measurement.
    import algebra.analysis  # noqa: F401
    import algebra.bilinear  # noqa: F401
    import blocks.graph  # noqa: F401

    start = time.perf_counter()
    d, laws, status = CASES[name]()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps({"D": d, "laws": laws, "status": status, "s": seconds, "mb": peak})
    )


def measure(name, runs):
    """Run a case `runs` times in fresh processes; return the median row."""
    results = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, __file__, "--case", name],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    row = dict(results[0])
    row["s"] = statistics.median(r["s"] for r in results)
    row["mb"] = max(r["mb"] for r in results)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-model", action="store_true")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        child(args.case)
        return

    header = f"{'case':40} {'D':>9} {'laws':>6} {'status':>10} {'s':>8} {'peak MB':>8}"
    print(header)
    rows = {}
    for name in CASES:
        whole = name.startswith("examples/")
        if whole and args.skip_model:
            continue
        row = measure(name, 1 if whole else args.runs)
        rows[name] = row
        print(
            f"{name:40} {row['D']:>9} {row['laws']:>6} {row['status']:>10} "
            f"{row['s']:>8.3f} {row['mb']:>8.0f}"
        )
    fast = rows["small bilinear 6+1x5x4, structured"]["s"]
    slow = rows["small bilinear 6+1x5x4, exact engine"]["s"]
    print(f"\nsmall block: exact engine / structured = {slow / fast:.1f}x")
    print(f"(median of {args.runs} runs per case; the whole model runs once)")


if __name__ == "__main__":
    main()
