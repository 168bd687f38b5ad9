"""Runs a grid's cells in worker processes until every cell is done, failed, or running elsewhere.

The tracking store is the only shared state: each round reads every cell's state from it, starts a
worker process for each cell that needs a run (the worker claims it; see ``claims``), and waits for
cells that another ``litbench grid`` process is running. A failed or killed worker ends only its cell.
Each cell's start and end reach the listener the moment they happen (``experiments.events``).
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from core import tags as tag
from core.context import Context
from experiments import claims, tracking
from experiments.events import (
    CellBlocked,
    CellEnded,
    CellOutcome,
    CellStarted,
    Listener,
    WaitingForOthers,
    ignore,
)
from experiments.processes import Job, start_command, start_forked
from experiments.sweeps.devices import Allocation, DevicePool
from experiments.sweeps.grid import GridCell
from experiments.sweeps.preflight import Preflight

POLL_S = 0.2  # how often running workers are checked
WAIT_ELSEWHERE_S = 5.0  # how often cells running in another process are looked at again


@dataclass
class Policy:
    workers: int = 1
    runs_per_gpu: int = 1
    retry_failed: bool = False  # run cells whose last run FAILED again
    force: bool = False  # run every cell again, FINISHED ones included
    gpus: Sequence[int] | None = None  # None: every GPU this process may see (found by the preflight)
    wait_for_others: bool = True  # wait for cells another process is running, to report them


@dataclass
class _Running:
    cell: GridCell
    job: Job
    allocation: Allocation
    outcome_path: Path
    started: float = field(default_factory=time.monotonic)


def plan(cells: Sequence[GridCell], experiment: str, ctx: Context) -> dict[str, claims.CellState]:
    """Each cell's state in the store (orphaned runs are retired to KILLED on the way)."""
    experiment_id = ctx.experiment_id(experiment)
    return claims.settled_cell_states(ctx.client, experiment_id, (c.spec.spec_hash for c in cells))


def resolve_cells(cells: Sequence[GridCell], ctx: Context) -> list[GridCell]:
    """The cells with the runs and checkpoints their ``init_from`` or teacher names resolved to those
    parents' hashes (a bad reference is a SpecError before anything runs)."""
    from experiments.run.lineage import resolve_refs

    resolved = []
    for cell in cells:
        spec = resolve_refs(cell.spec, ctx)
        resolved.append(cell if spec is cell.spec else dataclasses.replace(cell, spec=spec))
    return resolved


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
    ctx: Context,
    policy: Policy,
    on_event: Listener = ignore,
    preflight: Preflight | None = None,
) -> dict[str, CellOutcome]:
    """Work the grid until nothing is left to run; returns the final outcome of every cell by hash.

    ``preflight`` is waited for after the first look at the store and before the first worker starts.
    """
    pool: DevicePool | None = None
    outcomes: dict[str, CellOutcome] = {}
    attempted: set[str] = set()  # cells this process ran to an end: never twice in one invocation
    by_hash = {c.spec.spec_hash: c for c in cells}
    with tempfile.TemporaryDirectory(prefix="litbench-grid-") as scratch:
        while True:
            states = plan(cells, experiment, ctx)
            todo = [
                c
                for c in cells
                if c.spec.spec_hash not in attempted
                and wants_run(states[c.spec.spec_hash], policy, attempted, c.spec.spec_hash)
            ]
            will_run = {c.spec.spec_hash for c in todo}
            for c in [c for c in todo if _failed_need(c, states, will_run)]:
                todo.remove(c)
                parent = by_hash[_failed_need(c, states, will_run)]
                outcome = _block(c, parent, states[parent.spec.spec_hash].failure, experiment, ctx)
                attempted.add(c.spec.spec_hash)
                outcomes[c.spec.spec_hash] = outcome
                on_event(CellBlocked(outcome))
            elsewhere = [c for c in cells if states[c.spec.spec_hash].status == "running"]
            if pool is None:
                gpus = preflight.wait() if preflight is not None else []
                gpus = gpus if policy.gpus is None else list(policy.gpus)
                pool = DevicePool(workers=policy.workers, gpus=gpus, runs_per_gpu=policy.runs_per_gpu)
            ended = []
            if todo:
                done = {h for h, state in states.items() if state.status == "done"}
                ended = _run_cells(todo, pool, experiment, ctx, policy, Path(scratch), on_event, done)
                for outcome in ended:
                    if outcome.status == "SKIPPED":  # another process claimed it first: look again
                        continue
                    attempted.add(outcome.cell.spec.spec_hash)
                    outcomes[outcome.cell.spec.spec_hash] = outcome
            if ended:
                continue
            if elsewhere and policy.wait_for_others:  # what is left waits for (or on) other processes
                on_event(WaitingForOthers(tuple(elsewhere)))
                time.sleep(WAIT_ELSEWHERE_S)
                continue
            break
    return _final(cells, states, outcomes)


def _failed_need(cell: GridCell, states: dict[str, claims.CellState], will_run: set[str]) -> str | None:
    """The hash of a cell this one needs whose last run FAILED and that is not run again now."""
    return next((h for h in cell.needs if states[h].status == "failed" and h not in will_run), None)


def _block(
    cell: GridCell, parent: GridCell, failure: str | None, experiment: str, ctx: Context
) -> CellOutcome:
    """A cell left unrun because a cell it needs FAILED: recorded as a KILLED run that says why (so
    ``litbench ls`` and the UI show it), once per reason; a later command runs it when the parent is
    retried and finishes."""
    reason = f"not run: it needs {parent.run_name}, whose last run FAILED ({failure or 'no reason recorded'})"
    client = ctx.client
    experiment_id = ctx.experiment_id(experiment)
    runs = tracking.runs_with_hashes(client, experiment_id, [cell.spec.spec_hash])[cell.spec.spec_hash]
    runs = sorted(runs, key=lambda r: r.info.start_time or 0)
    if runs and runs[-1].data.tags.get(tag.BLOCKED) == reason:
        return CellOutcome(cell, "BLOCKED", runs[-1].info.run_id, reason)
    run = client.create_run(
        experiment_id,
        run_name=cell.run_name,
        tags={
            tag.SPEC_HASH: cell.spec.spec_hash,
            tag.CONFIG: cell.config,
            tag.GRID: experiment,
            tag.BLOCKED: reason,
            tag.FAILURE: reason,
            **cell.tags,
        },
    )
    client.set_terminated(run.info.run_id, "KILLED")
    return CellOutcome(cell, "BLOCKED", run.info.run_id, reason)


def _final(
    cells: Sequence[GridCell], states: dict[str, claims.CellState], outcomes: dict[str, CellOutcome]
) -> dict[str, CellOutcome]:
    final = {}
    for cell in cells:
        state, ours = states[cell.spec.spec_hash], outcomes.get(cell.spec.spec_hash)
        if ours is not None and ours.status in ("FINISHED", "FAILED", "BLOCKED"):
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
    ctx: Context,
    policy: Policy,
    scratch: Path,
    on_event: Listener,
    finished: set[str] | None = None,
) -> list[CellOutcome]:
    """Run ``cells`` with as many workers as the pool allows; each end is reported as it happens.

    A cell starts once every cell it ``needs`` is in ``finished`` (hashes with a FINISHED run, grown
    as runs here finish). A cell whose need FAILED here is reported BLOCKED and not run; cells whose
    needs run elsewhere are left for the caller once nothing here is running."""
    queue = list(cells)
    running: list[_Running] = []
    done: list[CellOutcome] = []
    finished = set(finished or ())
    failed: dict[str, tuple[GridCell, str | None]] = {}  # cells that failed here, and why
    try:
        while queue or running:
            for cell in list(queue):  # start every queued cell that fits; a big DDP run waits its turn
                if not all(need in finished for need in cell.needs):
                    parent = next((failed[n] for n in cell.needs if n in failed), None)
                    if parent is not None:
                        queue.remove(cell)
                        outcome = _block(cell, parent[0], parent[1], experiment, ctx)
                        done.append(outcome)
                        on_event(CellBlocked(outcome))
                    continue
                devices, on_gpu = _devices_needed(cell)
                allocation = pool.acquire(devices, gpu=on_gpu)
                if allocation is None:
                    continue
                queue.remove(cell)
                entry = _start(cell, allocation, experiment, ctx, policy, scratch)
                running.append(entry)
                on_event(CellStarted(cell, entry.job.pid))
            if not running:  # the rest wait for cells that run elsewhere (or were not run at all)
                break
            time.sleep(POLL_S)
            for entry in [r for r in running if r.job.returncode() is not None]:
                running.remove(entry)
                pool.release(entry.allocation)
                outcome = _collect(entry, experiment, ctx)
                if outcome.status == "FINISHED":
                    finished.add(entry.cell.spec.spec_hash)
                elif outcome.status == "FAILED":
                    failed[entry.cell.spec.spec_hash] = entry.cell, outcome.failure
                done.append(outcome)
                on_event(CellEnded(outcome))
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
    ctx: Context,
    policy: Policy,
    scratch: Path,
) -> _Running:
    from experiments.sweeps.worker import run_cell

    name = f"{cell.spec.spec_hash}-{time.monotonic_ns()}"
    task_path, outcome_path = scratch / f"{name}.task.json", scratch / f"{name}.outcome.json"
    task = {
        "spec": cell.spec,
        "run_name": cell.run_name,
        "config": cell.config,
        "factors": cell.factors,
        "tags": cell.tags,
        "experiment": experiment,
        "experiment_id": ctx.experiment_id(experiment),
        "tracking_uri": ctx.tracking_uri,
        "data_dir": str(Path(ctx.data_dir).resolve()),
        "retry_failed": policy.retry_failed,
        "force": policy.force,
    }
    log_path = scratch / f"{name}.log"
    env = allocation.environment()
    if cell.spec.trainer.devices == 1 or cell.spec.trainer.devices == "auto":
        job = start_forked(run_cell, (task, str(outcome_path)), env, log_path)
        return _Running(cell, job, allocation, outcome_path)
    # DDP: Lightning starts the other ranks by running this process's command line again, so the
    # worker must be a command line of its own.
    task_path.write_text(json.dumps({**task, "spec": cell.spec.model_dump(mode="json")}))
    job = start_command("experiments.sweeps.worker", [str(task_path), str(outcome_path)], env, log_path)
    return _Running(cell, job, allocation, outcome_path)


def _collect(entry: _Running, experiment: str, ctx: Context) -> CellOutcome:
    wall = time.monotonic() - entry.started
    if entry.outcome_path.exists():
        found = json.loads(entry.outcome_path.read_text())
        return CellOutcome(entry.cell, found["status"], found.get("run_id"), found.get("failure"), wall)
    reason = entry.job.exit_reason()
    run_id = _fail_orphan(entry, experiment, ctx, reason)
    return CellOutcome(entry.cell, "FAILED", run_id, reason, wall)


def _fail_orphan(entry: _Running, experiment: str, ctx: Context, reason: str) -> str | None:
    """A worker that died without reporting left its run RUNNING: end it as FAILED with the reason."""
    spec_hash = entry.cell.spec.spec_hash
    runs = tracking.runs_with_hashes(ctx.client, ctx.experiment_id(experiment), [spec_hash])[spec_hash]
    for run in runs:
        if run.info.status == "RUNNING" and run.data.tags.get(tag.PID) == str(entry.job.pid):
            ctx.client.set_tag(run.info.run_id, tag.FAILURE, reason)
            ctx.client.set_terminated(run.info.run_id, "FAILED")
            return run.info.run_id
    return None
