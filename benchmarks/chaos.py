"""Chaos: kill grids, studies, workers and the tracking server at random moments, then count what was lost.

Everything runs against a real `mlflow server` on 127.0.0.1 (its own SQLite backend and artifact
folder in a scratch directory), as a team would run it, with the commands started as users start them:
1. Whole grids: `litbench grid` (18 tiny digits cells, `--workers 2`) is SIGKILLed, with its fork
   server and every worker (its process group), at a random moment, ``--grid-kills`` times.
2. Single workers: in a grid of its own, a worker that holds a RUNNING run is SIGKILLed (read off its
   run's `litbench.pid` tag), in ``--worker-kills`` grids of their own (a cell killed twice in a row
   is FAILED on purpose, so that a grid never loops: each grid loses one worker once).
3. Whole studies: `litbench tune` (digits, 2 workers) is SIGKILLed at a random moment,
   ``--study-kills`` times.
4. The tracking server: stopped for ``--outage`` seconds in the middle of a grid of its own, then
   started again on the same backend and port.
After the chaos, one plain re-run of each grid and of the study (no --retry-failed). Prints: kills,
FINISHED runs lost (a run FINISHED at some moment and not at the end: 0), cells FINISHED twice (0),
runs left RUNNING (0), cells left undone after the one plain re-run (0), and the study's trial
numbers (unique) and parent runs (1).

    python benchmarks/chaos.py --seed 0
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BASE = """base:
  data: {name: digits, batch_size: 32}
  model: {name: mlp, hidden: [32]}
  trainer: {max_epochs: 3, limit_train_batches: 8, limit_val_batches: 2, accelerator: cpu}
  tracking: {heatmaps: 0, log_checkpoint: false}
"""
GRID = (
    "name: GRID_NAME\n"
    + BASE
    + "axes:\n  optimizer.lr: [0.001, 0.003, 0.01, 0.03, 0.1, 0.3]\nseeds: [0, 1, 2]\n"
)
STUDY = (
    "name: chaos_study\n"
    + BASE
    + "space:\n  optimizer.lr: {type: float, low: 1.0e-4, high: 0.3, log: true}\n"
    + "objective: val/acc\nsampler: {name: tpe, seed: 0}\ntrials: 40\n"
)
CELLS = 18


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`mlflow server` on a SQLite backend, stoppable and startable again on the same port."""

    def __init__(self, scratch: Path) -> None:
        self.scratch, self.port = scratch, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        command = [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", f"sqlite:///{self.scratch / 'server.db'}",
            "--artifacts-destination", str(self.scratch / "artifacts"),
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
        ]  # fmt: skip
        log = (self.scratch / "server.log").open("ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        sys.exit(f"mlflow server did not start; see {self.scratch / 'server.log'}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)


def litbench(args: list[str], scratch: Path, uri: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": uri}
    log = (scratch / "commands.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "cli", *args], cwd=scratch, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip


def runs_of(uri: str, experiment: str) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id], max_results=5000) if found else []


def finished_ids(uri: str, experiment: str) -> set[str]:
    return {r.info.run_id for r in runs_of(uri, experiment) if r.info.status == "FINISHED"}


def kill_group(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def kill_whole(
    args: list[str], times: int, rng: random.Random, scratch: Path, uri: str, seen: set[str]
) -> int:
    """Start the command and SIGKILL its process group at a random moment until it was killed
    ``times`` times (at most three times as many starts: a start that ended before its moment came
    killed nothing). Once its work is done a start only checks and ends, so later moments fall in
    its start-up: a kill there must lose nothing either."""
    kills = 0
    for _ in range(3 * times):
        if kills == times:
            break
        command = litbench(args, scratch, uri)
        time.sleep(rng.uniform(2.0, 14.0))
        if command.poll() is None:
            kill_group(command)
            kills += 1
        else:
            command.wait()
        seen |= finished_ids(uri, args_experiment(args))
    return kills


def args_experiment(args: list[str]) -> str:
    return Path(args[1]).stem


def kill_workers(times: int, scratch: Path, uri: str, seen: set[str]) -> list[str]:
    """``times`` grids of their own (chaos_workers_<i>), each started once: one worker that holds a
    RUNNING run is SIGKILLed, the grid goes on without it. Returns the grids' names."""
    names = []
    for i in range(times):
        name = f"chaos_workers_{i}"
        (scratch / f"{name}.yaml").write_text(GRID.replace("GRID_NAME", name, 1))
        names.append(name)
        command = litbench(["grid", f"{name}.yaml", "--workers", "2"], scratch, uri)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and command.poll() is None:
            running = [r for r in runs_of(uri, name) if r.info.status == "RUNNING"]
            target = next((r for r in running if r.data.tags.get("litbench.pid", "").isdigit()), None)
            if target is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(target.data.tags["litbench.pid"]), signal.SIGKILL)
                    break
            time.sleep(0.2)
        command.wait(timeout=300)
        seen |= finished_ids(uri, name)
    return names


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=0, help="the random moments (default: 0)")
    parser.add_argument("--grid-kills", type=int, default=12, help="SIGKILLs of a whole grid (default: 12)")
    parser.add_argument("--study-kills", type=int, default=8, help="SIGKILLs of a whole study (default: 8)")
    parser.add_argument("--worker-kills", type=int, default=3, help="SIGKILLs of one worker (default: 3)")
    parser.add_argument("--outage", type=float, default=30.0, help="seconds the server is down (default: 30)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="litbench-chaos-") as tmp:
        scratch = Path(tmp)
        grids: tuple[str, ...] = ("chaos", "chaos_outage")
        for name in grids:
            (scratch / f"{name}.yaml").write_text(GRID.replace("GRID_NAME", name, 1))
        (scratch / "chaos_study.yaml").write_text(STUDY)
        server = Server(scratch)
        server.start()
        uri = server.url
        storage = f"sqlite:///{scratch / 'optuna.db'}"
        study_args = ["tune", "chaos_study.yaml", "--workers", "2", "--storage", storage]
        seen: set[str] = set()
        started = time.monotonic()
        try:
            grid_kills = kill_whole(
                ["grid", "chaos.yaml", "--workers", "2"], args.grid_kills, rng, scratch, uri, seen
            )
            print(f"grid: {grid_kills} SIGKILLs of the whole grid", flush=True)
            study_kills = kill_whole(study_args, args.study_kills, rng, scratch, uri, seen)
            print(f"study: {study_kills} SIGKILLs of the whole study", flush=True)
            worker_grids = kill_workers(args.worker_kills, scratch, uri, seen)
            grids = (*grids, *worker_grids)
            worker_kills = sum(
                r.data.tags.get("litbench.killed_by") == "SIGKILL"
                for n in worker_grids
                for r in runs_of(uri, n)
            )
            print(f"workers: {worker_kills} SIGKILLs of one worker", flush=True)
            outage = litbench(["grid", "chaos_outage.yaml", "--workers", "2"], scratch, uri)
            time.sleep(14.0)
            server.stop()
            time.sleep(args.outage)
            server.start()
            outage_code = outage.wait(timeout=600)
            seen |= finished_ids(uri, "chaos_outage")
            print(
                f"server: stopped for {args.outage:.0f} s mid-grid; that grid exited {outage_code}",
                flush=True,
            )
            rerun = {}
            for name in grids:
                rerun[name] = litbench(["grid", f"{name}.yaml", "--workers", "2"], scratch, uri).wait(
                    timeout=900
                )
            rerun["chaos_study"] = litbench(study_args, scratch, uri).wait(timeout=900)
        finally:
            server.stop()
            server.start()
        grid_runs = [r for name in grids for r in runs_of(uri, name)]
        finished = [r for r in grid_runs if r.info.status == "FINISHED"]
        per_cell = Counter(
            (r.data.tags.get("litbench.grid"), r.data.tags.get("litbench.spec_hash")) for r in finished
        )
        study_runs = runs_of(uri, "chaos_study")
        now_finished = {r.info.run_id for r in grid_runs + study_runs if r.info.status == "FINISHED"}
        lost = seen - now_finished
        numbers = [
            r.data.tags["litbench.trial.number"] for r in study_runs if "litbench.trial.number" in r.data.tags
        ]
        parents = [r for r in study_runs if r.data.tags.get("litbench.study.role") == "parent"]
        running = [r for r in grid_runs + study_runs if r.info.status == "RUNNING"]
        statuses = Counter(r.info.status for r in grid_runs)
        latest = {}  # each cell's last run, for the cells without a FINISHED one
        for r in sorted(grid_runs, key=lambda r: r.info.start_time or 0):
            latest[(r.data.tags.get("litbench.grid"), r.data.tags.get("litbench.spec_hash"))] = r
        undone = [r for cell, r in latest.items() if cell not in per_cell]
        server.stop()
    kills = grid_kills + study_kills + worker_kills
    print(f"chaos, seed {args.seed}, {time.monotonic() - started:.0f} s:")
    print(
        f"  kills: {kills} ({grid_kills} grids, {study_kills} studies, {worker_kills} workers),"
        " 1 server outage"
    )
    print(f"  FINISHED runs lost: {len(lost)}")
    print(f"  cells FINISHED twice: {sum(n > 1 for n in per_cell.values())}")
    print(f"  runs left RUNNING: {len(running)}")
    print(
        f"  cells left undone after one plain re-run: {CELLS * len(grids) - len(per_cell)}"
        f" (exit codes {rerun})"
    )
    for r in undone:  # what a re-run left undone, and why
        print(f"    undone: {r.info.run_name} ({r.info.status}): {r.data.tags.get('litbench.failure', '')}")
    print(f"  grid runs by status: {dict(statuses)}")
    unique = len(numbers) == len(set(numbers))
    print(f"  study: {len(numbers)} trial runs, trial numbers unique: {unique}, parent runs: {len(parents)}")


if __name__ == "__main__":
    main()
