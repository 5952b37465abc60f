"""Run every scale benchmark of issue 6 and print their tables, one after another.

    python benchmarks/issue6.py [--quick]

1. `battery_bench.py`: the 100 networks of the 2023 reference battery, each as one
   block (targets: all certified at the known count, under 60 s in all, none over
   5 s; ratio to the reference's time; sympy baseline on the small ones).
2. `real_bench.py`: ResNet-18 and GPT-2 small, cold and warm (targets: cold under
   60 s, warm under 2 s, under 4 GB).
3. `scale_bench.py`: one GPT-2 query-key head, one value-output head and a linear
   pair with D >= 10^5 (targets: certified, under 60 s and 4 GB each), with the
   exact engine as the baseline on a small block.

``--quick`` runs the first 10 networks of each kind and one warm run.
"""

import argparse
import pathlib
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run")
    args = parser.parse_args()
    runs = [
        ("battery_bench.py", ["--limit", "10"] if args.quick else []),
        ("real_bench.py", ["--warm", "1"] if args.quick else []),
        ("scale_bench.py", ["--runs", "1", "--skip-model"] if args.quick else []),
    ]
    failed = []
    for script, options in runs:
        print(f"\n=== {script} {' '.join(options)}", flush=True)
        start = time.perf_counter()
        done = subprocess.run([sys.executable, str(HERE / script), *options])
        print(f"=== {script}: {time.perf_counter() - start:.0f} s", flush=True)
        if done.returncode:
            failed.append(script)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
