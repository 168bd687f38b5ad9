"""`litbench run` against a plain PyTorch script, whole processes (issue 15, acceptance 2).

Both train the same MNIST MLP (784-256-128-10, Adam 1e-3, batch 128, 3 epochs, no dropout, validation
after every epoch, test on the best epoch):
- plain: `python benchmarks/plain_mnist_mlp.py` (reads the IDX files, a hand-written loop, no tracking);
- litbench: `litbench run benchmarks/run_vs_script.yaml` as users run it, tracked in a SQLite store,
  once into a store that already exists (the usual case) and once into a fresh one (MLflow creates its
  schema first).

Each side is timed from process start to process end. The sides alternate over ``--repeats`` rounds
after one untimed round that fills the page cache; the medians and their ratios are printed (target:
litbench / plain at most 1.5x).

    python benchmarks/run_vs_script.py --data-dir ../shared/data --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "benchmarks" / "run_vs_script.yaml"
PLAIN = REPO / "benchmarks" / "plain_mnist_mlp.py"


def timed(command: list[str], cwd: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(
            f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    default_data = os.environ.get("LITBENCH_DATA_DIR", str(REPO.parent / "shared" / "data"))
    parser.add_argument("--data-dir", default=default_data, help="holds MNIST/raw (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=5, help="alternating timed rounds (default: 5)")
    args = parser.parse_args()
    args.data_dir = str(Path(args.data_dir).resolve())  # the sides run in a scratch folder
    litbench = [sys.executable, "-m", "cli", "run", str(SPEC), "--data-dir", args.data_dir]
    plain = [sys.executable, str(PLAIN), "--data-dir", args.data_dir]
    walls: dict[str, list[float]] = {"plain": [], "existing store": [], "fresh store": []}
    with tempfile.TemporaryDirectory(prefix="litbench-run-vs-script-") as tmp:
        scratch = Path(tmp)
        existing = ["--tracking-uri", f"sqlite:///{scratch / 'existing.db'}"]
        timed(plain, scratch)  # untimed: the page cache, and the existing store's schema
        timed([*litbench, *existing], scratch)
        for i in range(args.repeats):
            sides = {
                "plain": plain,
                "existing store": [*litbench, *existing],
                "fresh store": [*litbench, "--tracking-uri", f"sqlite:///{scratch / f'fresh{i}.db'}"],
            }
            order = list(sides) if i % 2 == 0 else list(reversed(sides))
            for side in order:
                walls[side].append(timed(sides[side], scratch))
            row = ", ".join(f"{side} {walls[side][-1]:.1f} s" for side in sides)
            print(f"round {i + 1}: {row}", flush=True)
    base = statistics.median(walls["plain"])
    print(f"MNIST MLP 784-256-128, 3 epochs, whole processes, median of {args.repeats}:")
    print(f"  plain PyTorch script: {base:.1f} s")
    for side in ("existing store", "fresh store"):
        wall = statistics.median(walls[side])
        print(f"  litbench run, {side}: {wall:.1f} s, ratio {wall / base:.2f}x (target: at most 1.5x)")


if __name__ == "__main__":
    main()
