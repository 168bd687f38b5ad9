"""Grid throughput: the same 8 small runs with `litbench grid --workers 2` against `--workers 1`.

Both are `litbench grid` commands started by this script (one process tree), timed from start to
exit, start-up included, on one SQLite store created beforehand (as `mlruns/` is after a first grid;
creating a store costs a few seconds once) under two experiment names. The target on the 2-core
machine is at least 1.6x faster with two workers. The runs train an MLP on scikit-learn's digits, so
no data set is needed.

    python benchmarks/grid_throughput.py
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GRID = """
name: throughput-%(workers)d-workers
base:
  data: {name: digits, batch_size: 32}
  model: {name: mlp, hidden: [128, 64]}
  trainer: {max_epochs: %(epochs)d, accelerator: cpu}
  tracking: {heatmaps: 0, log_checkpoint: false}
axes:
  optimizer:
    - {name: sgd, lr: 0.05, momentum: 0.9}
    - {name: adam, lr: 0.002}
    - {name: rmsprop, lr: 0.001}
    - {name: adamw, lr: 0.002}
seeds: [0, 1]
"""


def litbench(*args: str, cwd: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "cli", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)


def timed_grid(workers: int, epochs: int, scratch: str) -> float:
    grid = Path(scratch) / f"throughput-{workers}.yaml"
    grid.write_text(GRID % {"epochs": epochs, "workers": workers})
    start = time.perf_counter()
    done = litbench(
        "grid", str(grid), "--workers", str(workers), "--tracking-uri", _store(scratch), cwd=scratch
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"litbench grid --workers {workers} failed:\n{done.stdout}\n{done.stderr}")
    finished = sum(line.startswith("FINISHED ") for line in done.stdout.splitlines())
    if finished != 8:
        sys.exit(f"expected 8 finished runs with --workers {workers}, saw {finished}:\n{done.stdout}")
    return elapsed


def _store(scratch: str) -> str:
    return f"sqlite:///{scratch}/mlflow.db"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=80, help="epochs per run (default: %(default)s)")
    args = parser.parse_args()
    print(f"8 runs (digits MLP, {args.epochs} epochs each) on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="litbench-throughput-") as scratch:
        litbench("ls", "--tracking-uri", _store(scratch), cwd=scratch)  # creates the store
        one = timed_grid(1, args.epochs, scratch)
        print(f"--workers 1 : {one:7.1f} s")
        two = timed_grid(2, args.epochs, scratch)
        print(f"--workers 2 : {two:7.1f} s")
    speedup = one / two
    print(f"speed-up    : {speedup:7.2f}x (target >= 1.6x)")
    return 0 if speedup >= 1.6 else 1


if __name__ == "__main__":
    sys.exit(main())
