"""The import floor of a cell: how long before any forked cell can start, on this machine.

No cell trains before some process has imported torch, Lightning and MLflow. This script starts the
fork server as `litbench grid` does (``experiments.processes.start_fork_server``), forks one empty
child from it and joins it, and prints that time. It then prints how long a fresh interpreter takes
for each top-level import of the fork server's preload list, one interpreter per row, in
preload order, so that each row is its own cost.

The fit share of a grid, sum(fit) / (wall x workers), is at most
sum(fit) / (workers x (floor + sum(fit) / workers)). The script prints that bound for the fits
given with ``--fits`` (the quickstart grid's sum of ``perf/fit_time_s``, as
`benchmarks/cell_overhead.py` prints it).

    python benchmarks/import_floor.py --fits 29.3
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _nothing() -> None:
    pass


def fork_server_ready() -> float:
    from experiments.processes import fork_context, start_fork_server

    start = time.perf_counter()
    start_fork_server()
    child = fork_context().Process(target=_nothing)
    child.start()
    child.join()
    return time.perf_counter() - start


def import_seconds(module: str, before: list[str]) -> float:
    """Seconds ``import module`` takes in a fresh interpreter that has imported ``before`` first."""
    code = (
        "import time, importlib\n"
        f"for m in {before!r}: importlib.import_module(m)\n"
        "t = time.perf_counter()\n"
        f"importlib.import_module({module!r})\n"
        "print(time.perf_counter() - t)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fits", type=float, help="a grid's sum of fit times, for the fit-share bound")
    parser.add_argument("--workers", type=int, default=2, help="the grid's workers (default: 2)")
    args = parser.parse_args()
    from experiments.processes import PRELOAD

    for i, module in enumerate(PRELOAD):
        print(
            f"import {module}: {import_seconds(module, PRELOAD[:i]):.2f} s (after {PRELOAD[:i] or 'nothing'})"
        )
    floor = fork_server_ready()
    print(f"fork server started, first child forked and joined: {floor:.2f} s")
    if args.fits:
        bound = args.fits / (args.workers * (floor + args.fits / args.workers))
        print(f"fit share, {args.fits:.1f} s of fits on {args.workers} workers: at most {bound:.2f}")
    sys.stdout.flush()
    os._exit(0)  # the fork server's finalization is not part of the measurement


if __name__ == "__main__":
    main()
