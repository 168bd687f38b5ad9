"""Runs a grid's cells in worker processes until every cell is done, failed, or running elsewhere.

The tracking store is the only shared state: each round reads every cell's state from it, starts a
worker process for each cell that needs a run (the worker claims it; see ``claims``), and waits for
cells that another ``litbench grid`` process is running. A failed or killed worker ends only its cell.
"""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.context
import multiprocessing.process
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from experiments import claims, tracking
from experiments.devices import Allocation, DevicePool
from experiments.grid import GridCell

POLL_S = 0.2  # how often running workers are checked
WAIT_ELSEWHERE_S = 5.0  # how often cells running in another process are looked at again


@dataclass
class CellOutcome:
    cell: GridCell
    status: str  # FINISHED, FAILED, SKIPPED (done before), or RUNNING (elsewhere, when we gave up)
    run_id: str | None
    failure: str | None = None
    wall_s: float = 0.0


@dataclass
class Policy:
    workers: int = 1
    runs_per_gpu: int = 1
    retry_failed: bool = False  # run cells whose last run FAILED again
    force: bool = False  # run every cell again, FINISHED ones included
    gpus: Sequence[int] | None = None  # None: every GPU this process may see (found by the preflight)
    wait_for_others: bool = True  # wait for cells another process is running, to report them


class _Job:
    """A worker process, forked from the fork server or (for DDP runs) a fresh interpreter."""

    def __init__(self, process: subprocess.Popen | multiprocessing.process.BaseProcess) -> None:
        self.process = process

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def returncode(self) -> int | None:
        if isinstance(self.process, subprocess.Popen):
            return self.process.poll()
        return self.process.exitcode

    def terminate(self) -> None:
        self.process.terminate()

    def wait(self, timeout: float) -> None:
        if isinstance(self.process, subprocess.Popen):
            self.process.wait(timeout=timeout)
        else:
            self.process.join(timeout=timeout)


@dataclass
class _Running:
    cell: GridCell
    job: _Job
    allocation: Allocation
    outcome_path: Path
    log_path: Path
    started: float = field(default_factory=time.monotonic)


_FORK_CONTEXT: multiprocessing.context.BaseContext | None = None


def start_fork_server() -> None:
    """Start the fork server now, so its imports overlap with the grid command's own start-up."""
    import multiprocessing.forkserver

    fork_context()
    multiprocessing.forkserver.ensure_running()


def fork_context() -> multiprocessing.context.BaseContext:
    """A fork server that imports torch, Lightning and MLflow once; each run forks from it.

    A process per run keeps failures apart; forking from a warm server spares every run the ten
    seconds those imports take on a small machine. CUDA is never initialized in the server, so each
    child still chooses its GPUs through CUDA_VISIBLE_DEVICES.
    """
    global _FORK_CONTEXT
    if _FORK_CONTEXT is None:
        from experiments.worker import PRELOAD

        _FORK_CONTEXT = multiprocessing.get_context("forkserver")
        _FORK_CONTEXT.set_forkserver_preload(PRELOAD)
    return _FORK_CONTEXT


class PreflightError(RuntimeError):
    """A data set the grid needs is missing or corrupt; nothing was run or tracked."""


class Preflight:
    """Checks (and downloads) every data set the grid needs, once, before any worker starts.

    It runs in a process forked from the fork server, which has torch and Lightning imported
    already, so the grid command never pays for those imports, and it runs while the grid command
    reads the store.
    """

    def __init__(self, cells: Sequence[GridCell], data_dir: Path) -> None:
        specs = sorted({json.dumps(c.spec.data.model_dump(mode="json"), sort_keys=True) for c in cells})
        self._scratch = tempfile.TemporaryDirectory(prefix="litbench-preflight-")
        self._report = Path(self._scratch.name) / "report.json"
        self._child = fork_context().Process(
            target=_check_data, args=(specs, str(data_dir), str(self._report))
        )
        self._child.start()

    def wait(self) -> list[int]:
        """The GPUs this machine offers, once every data set is in place; else PreflightError."""
        self._child.join()
        try:
            report = json.loads(self._report.read_text()) if self._report.exists() else {}
            if self._child.exitcode != 0 or "gpus" not in report:
                died = f"the data check died with exit code {self._child.exitcode}"
                raise PreflightError(report.get("error", died))
            return report["gpus"]
        finally:
            self._scratch.cleanup()


def _check_data(data_specs: list[str], data_dir: str, report: str) -> None:
    from datamodules import create_datamodule
    from experiments.devices import visible_gpus
    from experiments.specs import DataSpec, options_model

    try:
        for text in data_specs:
            data = DataSpec.model_validate(json.loads(text))
            options = options_model("data", data.name).model_validate(data.options)
            create_datamodule(data.name, data_dir=data_dir, **dict(options)).prepare_data()
    except Exception as err:
        Path(report).write_text(json.dumps({"error": str(err)}))
        sys.exit(2)
    Path(report).write_text(json.dumps({"gpus": visible_gpus()}))


def plan(cells: Sequence[GridCell], experiment: str, tracking_uri: str) -> dict[str, claims.CellState]:
    """Each cell's state in the store (orphaned runs are retired to KILLED on the way)."""
    client = tracking.client_for(tracking_uri)
    experiment_id = tracking.experiment_id_for(client, experiment, tracking_uri)
    return claims.settled_cell_states(client, experiment_id, (c.spec.spec_hash for c in cells))


def wants_run(state: claims.CellState, policy: Policy, forced_once: set[str], spec_hash: str) -> bool:
    if state.status == "missing":
        return True
    if state.status == "failed":
        return policy.retry_failed or (policy.force and spec_hash not in forced_once)
    return state.status == "done" and policy.force and spec_hash not in forced_once


def run_grid(
    cells: Sequence[GridCell],
    *,
    experiment: str,
    tracking_uri: str,
    data_dir: Path,
    policy: Policy,
    on_start: Callable[[GridCell], None] | None = None,
    on_outcome: Callable[[CellOutcome], None] | None = None,
    preflight: Preflight | None = None,
) -> dict[str, CellOutcome]:
    """Work the grid until nothing is left to run; returns the final outcome of every cell by hash.

    ``preflight`` is waited for after the first look at the store and before the first worker starts.
    """
    pool: DevicePool | None = None
    outcomes: dict[str, CellOutcome] = {}
    attempted: set[str] = set()  # cells this process ran to an end: never twice in one invocation
    with tempfile.TemporaryDirectory(prefix="litbench-grid-") as scratch:
        while True:
            states = plan(cells, experiment, tracking_uri)
            todo = [
                c
                for c in cells
                if c.spec.spec_hash not in attempted
                and wants_run(states[c.spec.spec_hash], policy, attempted, c.spec.spec_hash)
            ]
            elsewhere = [c for c in cells if states[c.spec.spec_hash].status == "running"]
            if pool is None:
                gpus = preflight.wait() if preflight is not None else []
                gpus = gpus if policy.gpus is None else list(policy.gpus)
                pool = DevicePool(workers=policy.workers, gpus=gpus, runs_per_gpu=policy.runs_per_gpu)
            if todo:
                ran = _run_cells(
                    todo, pool, experiment, tracking_uri, data_dir, policy, Path(scratch), on_start
                )
                for cell, outcome in ran:
                    if outcome.status == "SKIPPED":  # another process claimed it first: look again
                        continue
                    attempted.add(cell.spec.spec_hash)
                    outcomes[cell.spec.spec_hash] = outcome
                    if on_outcome:
                        on_outcome(outcome)
                continue
            if elsewhere and policy.wait_for_others:
                time.sleep(WAIT_ELSEWHERE_S)
                continue
            break
    return _final(cells, states, outcomes)


def _final(
    cells: Sequence[GridCell], states: dict[str, claims.CellState], outcomes: dict[str, CellOutcome]
) -> dict[str, CellOutcome]:
    final = {}
    for cell in cells:
        state, ours = states[cell.spec.spec_hash], outcomes.get(cell.spec.spec_hash)
        if ours is not None and ours.status in ("FINISHED", "FAILED"):
            final[cell.spec.spec_hash] = ours
        elif state.status == "done":
            final[cell.spec.spec_hash] = CellOutcome(cell, "SKIPPED", state.finished_run_id)
        elif state.status == "failed":
            run_id = state.runs[-1].info.run_id
            final[cell.spec.spec_hash] = CellOutcome(cell, "FAILED", run_id, state.failure)
        else:
            final[cell.spec.spec_hash] = CellOutcome(
                cell, "RUNNING" if state.status == "running" else "MISSING", None
            )
    return final


def _devices_needed(cell: GridCell) -> tuple[int, bool]:
    trainer = cell.spec.trainer
    devices = trainer.devices if isinstance(trainer.devices, int) else 1
    return devices, trainer.accelerator != "cpu"


def _run_cells(
    cells: Sequence[GridCell],
    pool: DevicePool,
    experiment: str,
    tracking_uri: str,
    data_dir: Path,
    policy: Policy,
    scratch: Path,
    on_start: Callable[[GridCell], None] | None,
) -> list[tuple[GridCell, CellOutcome]]:
    queue = list(cells)
    running: list[_Running] = []
    done: list[tuple[GridCell, CellOutcome]] = []
    try:
        while queue or running:
            for cell in list(queue):  # start every queued cell that fits; a big DDP run waits its turn
                devices, on_gpu = _devices_needed(cell)
                allocation = pool.acquire(devices, gpu=on_gpu)
                if allocation is None:
                    continue
                queue.remove(cell)
                running.append(_start(cell, allocation, experiment, tracking_uri, data_dir, policy, scratch))
                if on_start:
                    on_start(cell)
            time.sleep(POLL_S)
            for entry in [r for r in running if r.job.returncode() is not None]:
                running.remove(entry)
                pool.release(entry.allocation)
                done.append((entry.cell, _collect(entry, experiment, tracking_uri)))
    except BaseException:
        for entry in running:  # Ctrl-C or a crash of ours: the workers record their runs as KILLED
            entry.job.terminate()
        for entry in running:
            entry.job.wait(timeout=60)
        raise
    return done


def _start(
    cell: GridCell,
    allocation: Allocation,
    experiment: str,
    tracking_uri: str,
    data_dir: Path,
    policy: Policy,
    scratch: Path,
) -> _Running:
    name = f"{cell.spec.spec_hash}-{time.monotonic_ns()}"
    task_path, outcome_path = scratch / f"{name}.task.json", scratch / f"{name}.outcome.json"
    task = {
        "spec": cell.spec.model_dump(mode="json"),
        "run_name": cell.run_name,
        "config": cell.config,
        "factors": cell.factors,
        "tags": cell.tags,
        "experiment": experiment,
        "tracking_uri": tracking_uri,
        "data_dir": str(data_dir.resolve()),
        "retry_failed": policy.retry_failed,
        "force": policy.force,
    }
    task_path.write_text(json.dumps(task))
    log_path = scratch / f"{name}.log"
    env = allocation.environment()
    if cell.spec.trainer.devices == 1 or cell.spec.trainer.devices == "auto":
        from experiments.worker import run_forked

        process = fork_context().Process(
            target=run_forked, args=(str(task_path), str(outcome_path), str(log_path), env), daemon=False
        )
        process.start()
        return _Running(cell, _Job(process), allocation, outcome_path, log_path)
    # DDP: Lightning starts the other ranks by running this process's command line again, so the
    # worker must be a command line of its own.
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            [sys.executable, "-m", "experiments.worker", str(task_path), str(outcome_path)],
            env={**base_env(), **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return _Running(cell, _Job(popen), allocation, outcome_path, log_path)


def base_env() -> dict[str, str]:
    env = dict(os.environ)
    # The workers import this package from wherever the grid command found it.
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _collect(job: _Running, experiment: str, tracking_uri: str) -> CellOutcome:
    wall = time.monotonic() - job.started
    if job.outcome_path.exists():
        found = json.loads(job.outcome_path.read_text())
        return CellOutcome(job.cell, found["status"], found.get("run_id"), found.get("failure"), wall)
    code = job.job.returncode()
    reason = (
        f"worker killed by signal {-code} ({signal.Signals(-code).name})"
        if code < 0
        else f"worker exited {code}"
    )
    if code == -signal.SIGKILL:
        reason += "; the kernel's out-of-memory killer does this"
    log_tail = _tail(job.log_path)
    if log_tail:
        reason += f"; last output: {log_tail}"
    run_id = _fail_orphan(job, experiment, tracking_uri, reason)
    return CellOutcome(job.cell, "FAILED", run_id, reason, wall)


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])


def _fail_orphan(job: _Running, experiment: str, tracking_uri: str, reason: str) -> str | None:
    """A worker that died without reporting left its run RUNNING: end it as FAILED with the reason."""
    client = tracking.client_for(tracking_uri)
    experiment_id = tracking.experiment_id_for(client, experiment, tracking_uri)
    runs = tracking.runs_with_hashes(client, experiment_id, [job.cell.spec.spec_hash])[
        job.cell.spec.spec_hash
    ]
    for run in runs:
        if run.info.status == "RUNNING" and run.data.tags.get(claims.TAG_PID) == str(job.job.pid):
            client.set_tag(run.info.run_id, tracking.TAG_FAILURE, reason)
            client.set_terminated(run.info.run_id, "FAILED")
            return run.info.run_id
    return None
