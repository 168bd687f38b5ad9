"""Where a grid cell's time goes outside its fit: phases of the quickstart cells, and the grid's ratios.

Two measurements in one script, on the 2-core CPU:

1. Phases. Each of the 12 quickstart cells runs as the grid runs it, in a process forked from a parent
   that has imported what the fork server imports, through ``experiments.sweeps.worker.run_task``
   (claim, run, track), with timers wrapped around each phase: process start, the claim, data and
   model set-up (``prepare``), the run's creation and params, the Trainer's build, the sanity check,
   the fit, the test, the metric flush, the artifacts, the run's end, and the process's exit. Prints
   the median of each phase over the cells, and "other" (what no timer covers).
2. The grid. ``litbench grid experiments/grids/quickstart.yaml --workers 2`` as a command on a fresh
   store: wall, the sum of the runs' ``perf/fit_time_s``, the fit share ``sum(fit) / (wall x
   workers)`` (target: at least 0.6) and the median cell overhead, each cell's wall (as the command
   prints it) minus its fit (target: at most 0.5 s).

    python benchmarks/cell_overhead.py [--skip-phases] [--skip-grid]
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
GRID = REPO / "experiments" / "grids" / "quickstart.yaml"
PHASES = [
    "process start",
    "claim",
    "prepare (seed, data, model)",
    "run created, params",
    "trainer build",
    "sanity check",
    "fit (less sanity)",
    "test",
    "metric flush",
    "artifacts",
    "run ended",
    "other",
    "process exit",
]


def _timed(times: dict[str, float], phase: str, function):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            times[phase] += time.perf_counter() - start

    return wrapper


def _child(task: dict, started: float, out: str) -> None:
    """One cell, as a forked worker runs it, with a timer on each phase."""
    from experiments.processes import bootstrap

    times: dict[str, float] = defaultdict(float)
    times["process start"] = time.time() - started
    t0 = time.perf_counter()
    bootstrap({"OMP_NUM_THREADS": "1", "LITBENCH_NUM_THREADS": "1"})
    import lightning as L
    from mlflow import MlflowClient

    from experiments import claims
    from experiments.run import fit, runner
    from experiments.run.buffered_logger import BufferedMLFlowLogger
    from experiments.sweeps.worker import run_task

    claims.settled_cell_states = _timed(times, "claim", claims.settled_cell_states)
    claims.claim = _timed(times, "claim", claims.claim)
    runner.prepare = _timed(times, "prepare (seed, data, model)", runner.prepare)
    MlflowClient.create_run = _timed(times, "run created, params", MlflowClient.create_run)
    runner.tracking.log_params = _timed(times, "run created, params", runner.tracking.log_params)
    fit.build_trainer = _timed(times, "trainer build", fit.build_trainer)
    L.Trainer._run_sanity_check = _timed(times, "sanity check", L.Trainer._run_sanity_check)
    L.Trainer.fit = _timed(times, "fit (less sanity)", L.Trainer.fit)
    L.Trainer.test = _timed(times, "test", L.Trainer.test)
    BufferedMLFlowLogger.wait = _timed(times, "metric flush", BufferedMLFlowLogger.wait)
    runner._log_artifacts = _timed(times, "artifacts", runner._log_artifacts)
    MlflowClient.set_terminated = _timed(times, "run ended", MlflowClient.set_terminated)
    outcome = run_task(task)
    total = time.perf_counter() - t0
    times["fit (less sanity)"] -= times["sanity check"]
    times["other"] = total - sum(v for k, v in times.items() if k not in ("process start", "other"))
    Path(out).write_text(json.dumps({"times": times, "outcome": outcome, "ended": time.time()}))


def phases(scratch: Path) -> None:
    from core.context import Context
    from experiments.processes import PRELOAD
    from experiments.sweeps.grid import expand, load_grid
    from experiments.sweeps.local_pool import cell_task

    for module in PRELOAD:  # what the fork server has imported before it forks a cell
        __import__(module)
    ctx = Context(f"sqlite:///{scratch / 'phases.db'}", REPO / "data")
    cells = expand(load_grid(GRID))
    fork = multiprocessing.get_context("fork")
    rows, fits = defaultdict(list), []
    for cell in cells:
        out = scratch / f"{cell.spec.spec_hash}.json"
        task = cell_task(cell, "quickstart-phases", ctx, retry_failed=False, force=False)
        child = fork.Process(target=_child, args=(task, time.time(), str(out)))
        child.start()
        child.join()
        ended = time.time()
        found = json.loads(out.read_text())
        found["times"]["process exit"] = ended - found["ended"]
        for phase in PHASES:
            rows[phase].append(found["times"].get(phase, 0.0))
        fits.append(found["outcome"]["metrics"]["perf/fit_time_s"])
        print(f"  {cell.run_name}: {sum(found['times'].values()):.2f} s, fit {fits[-1]:.2f} s", flush=True)
    total = statistics.median(sum(rows[p][i] for p in PHASES) for i in range(len(cells)))
    print(f"\nphases of a quickstart cell, median over {len(cells)} cells (seconds; one thread):")
    print(f"  {'phase':30} {'median':>8} {'share':>7}")
    for phase in PHASES:
        median = statistics.median(rows[phase])
        print(f"  {phase:30} {median:8.3f} {median / total:7.1%}")
    print(f"  {'cell (median of the sums)':30} {total:8.3f}")
    print(
        f"  perf/fit_time_s median {statistics.median(fits):.3f} s (Lightning's fit loop, timed by the run)"
    )


def grid(scratch: Path) -> None:
    store = f"sqlite:///{scratch / 'grid.db'}"
    command = [sys.executable, "-m", "cli", "grid", str(GRID), "--workers", "2", "--tracking-uri", store]
    start = time.perf_counter()
    done = subprocess.run(
        command, cwd=scratch, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"the grid failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    cell_walls = {m[1]: float(m[2]) for m in re.finditer(r"FINISHED (\S+)\s+([\d.]+) s", done.stdout)}
    from mlflow import MlflowClient

    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("quickstart")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    fit = {r.info.run_name: r.data.metrics["perf/fit_time_s"] for r in runs}
    overheads = [cell_walls[name] - fit[name] for name in fit if name in cell_walls]
    share = sum(fit.values()) / (wall * 2)
    print(f"\nlitbench grid quickstart.yaml --workers 2 on a fresh store: {len(runs)} runs")
    print(f"  wall {wall:.1f} s; fits sum to {sum(fit.values()):.1f} s")
    print(f"  fit share sum(fit) / (wall x 2): {share:.2f} (target: at least 0.6)")
    print(
        f"  cell overhead (cell wall - fit): median {statistics.median(overheads):.2f} s, "
        f"min {min(overheads):.2f}, max {max(overheads):.2f} (target: median at most 0.5 s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--skip-phases", action="store_true", help="only the grid's ratios")
    parser.add_argument("--skip-grid", action="store_true", help="only the phase table")
    args = parser.parse_args()
    from experiments.environment import quiet_libraries

    quiet_libraries()
    with tempfile.TemporaryDirectory(prefix="litbench-overhead-") as tmp:
        if not args.skip_phases:
            phases(Path(tmp))
        if not args.skip_grid:
            grid(Path(tmp))


if __name__ == "__main__":
    main()
