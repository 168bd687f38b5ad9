"""The Ray executor against the local process pool on the same grid, in one script.

Runs the quickstart grid (12 cells on scikit-learn's digits) twice, each on a fresh SQLite store, as
users run it (`litbench grid` as a command):
- pool: `--workers 2` (the default executor: forked worker processes, one thread each);
- ray: `--executor ray` on a local Ray cluster of 2 CPUs started for the purpose (`ray start --head
  --num-cpus 2`, before the clock starts, as a cluster exists before a grid is sent to it), each cell
  a Ray task of 1 CPU.

Prints both walls and the ratio ray / pool (target: at most 1.15x), in alternating order over
``--repeats`` rounds (median), because a shared 2-core machine drifts between minutes.

    python benchmarks/ray_executor.py --repeats 3
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
GRID = REPO / "experiments" / "grids" / "quickstart.yaml"


def wall_of(args: list[str], scratch: Path, name: str) -> float:
    store = f"sqlite:///{scratch / f'{name}.db'}"
    command = [sys.executable, "-m", "cli", "grid", str(GRID), "--tracking-uri", store, *args]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    done = subprocess.run(command, cwd=scratch, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=1, help="alternating rounds (default: 1)")
    parser.add_argument("--cpus", type=int, default=2, help="the Ray cluster's CPUs and the pool's workers")
    args = parser.parse_args()
    ray_cli = Path(sys.executable).with_name("ray")
    with tempfile.TemporaryDirectory(prefix="litbench-ray-bench-") as tmp:
        scratch = Path(tmp)
        port = "6391"
        head = [str(ray_cli), "start", "--head", f"--port={port}", f"--num-cpus={args.cpus}", "--num-gpus=0"]
        subprocess.run(
            [*head, "--include-dashboard=false", "--disable-usage-stats"], check=True, capture_output=True
        )
        address = f"127.0.0.1:{port}"
        try:
            pools, rays = [], []
            for i in range(args.repeats):
                order = ["pool", "ray"] if i % 2 == 0 else ["ray", "pool"]
                for side in order:
                    if side == "pool":
                        pools.append(wall_of(["--workers", str(args.cpus)], scratch, f"pool{i}"))
                    else:
                        rays.append(
                            wall_of(["--executor", "ray", "--ray-address", address], scratch, f"ray{i}")
                        )
                ratio = rays[-1] / pools[-1]
                print(f"round {i + 1}: pool {pools[-1]:.1f} s, ray {rays[-1]:.1f} s, ratio {ratio:.2f}x")
        finally:
            subprocess.run([str(ray_cli), "stop", "--force"], capture_output=True)
    pool, ray = statistics.median(pools), statistics.median(rays)
    print(f"quickstart (12 cells), {args.cpus} CPUs, median of {args.repeats}:")
    print(f"  process pool --workers {args.cpus}: {pool:.1f} s")
    print(f"  ray executor ({args.cpus}-CPU local cluster): {ray:.1f} s")
    print(f"  ratio ray / pool: {ray / pool:.2f}x (target: at most 1.15x)")


if __name__ == "__main__":
    main()
