"""Runs a grid's cells in worker processes until every cell is done, failed, or running elsewhere.

The tracking store is the only shared state: each round reads every cell's state from it, starts a
worker process for each cell that needs a run (the worker claims it; see ``claims``), and waits for
cells that another ``litbench grid`` process is running. A failed or killed worker ends only its cell.
Each cell's start and end reach the listener the moment they happen (``experiments.events``).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from core import tags as tag
from core.context import Context
from core.store import sqlite_missing
from experiments import claims, tracking
from experiments.events import (
    CellBlocked,
    CellEnded,
    CellOutcome,
    Listener,
    WaitingForOthers,
    ignore,
)
from experiments.sweeps.devices import DevicePool
from experiments.sweeps.grid import GridCell
from experiments.sweeps.local_pool import LocalPool

if TYPE_CHECKING:
    from experiments.sweeps.preflight import Preflight

POLL_S = 0.05  # how often running workers are checked: a cell's end is seen within this
WAIT_ELSEWHERE_S = 5.0  # how often cells running in another process are looked at again


@dataclass
class Policy:
    workers: int = 1
    runs_per_gpu: int = 1
    retry_failed: bool = False  # run cells whose last run FAILED again
    force: bool = False  # run every cell again, FINISHED ones included
    gpus: Sequence[int] | None = None  # None: every GPU this process may see (found by the preflight)
    wait_for_others: bool = True  # wait for cells another process is running, to report them
    executor: str = "process"  # process (this machine's worker processes) or ray
    ray_address: str | None = None  # the Ray head's host:port; None: $RAY_ADDRESS, else a local cluster
    cpus_per_run: int = 1  # the CPUs (torch threads) a Ray task declares for each of a cell's processes


class Executor(Protocol):
    """Where cells run: ``LocalPool`` (this machine's processes) or ``RayPool`` (a Ray cluster)."""

    def start(self, cell: GridCell) -> bool: ...  # False: no room now, ask again after the next wait
    def busy(self) -> bool: ...
    def wait(self, timeout: float) -> list[CellOutcome]: ...  # the cells that ended meanwhile
    def stop(self) -> None: ...  # end every running cell (its run KILLED)


def plan(cells: Sequence[GridCell], experiment: str, ctx: Context) -> dict[str, claims.CellState]:
    """Each cell's state in the store (orphaned runs are retired to KILLED on the way)."""
    experiment_id = ctx.experiment_id(experiment)
    return claims.settled_cell_states(ctx.client, experiment_id, (c.spec.spec_hash for c in cells))


def preview(cells: Sequence[GridCell], experiment: str, ctx: Context) -> dict[str, claims.CellState]:
    """Each cell's state, as ``plan`` sees it, without writing anything: no store or experiment is
    created, and a RUNNING run whose worker is gone counts as not running (a real run retires it)."""
    hashes = [c.spec.spec_hash for c in cells]
    missing = {h: claims.CellState("missing", ()) for h in hashes}
    uri = ctx.tracking_uri
    if sqlite_missing(uri):
        return missing  # opening it would create it
    found = ctx.client.get_experiment_by_name(experiment)
    if found is None:
        return missing
    runs = tracking.runs_with_hashes(ctx.client, found.experiment_id, hashes)
    states = {}
    for spec_hash, cell_runs in runs.items():
        state = claims.cell_state(r for r in cell_runs if not claims.is_orphaned(r))
        states[spec_hash] = dataclasses.replace(state, runs=tuple(cell_runs))
    return {**missing, **states}


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
    executor: Executor | None = None
    outcomes: dict[str, CellOutcome] = {}
    attempted: set[str] = set()  # cells this process ran to an end: never twice in one invocation
    by_hash = {c.spec.spec_hash: c for c in cells}
    gpus: list | None = None
    if preflight is not None and ctx.client.get_experiment_by_name(experiment) is None:
        gpus = preflight.wait()  # a failed data check must not leave a new, empty experiment behind
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
            if executor is None:
                if gpus is None:
                    gpus = preflight.wait() if preflight is not None else []
                executor = _executor(policy, gpus, experiment, ctx, Path(scratch), on_event)
            ended = []
            if todo:
                done = {h for h, state in states.items() if state.status == "done"}
                ended = _run_cells(todo, executor, experiment, ctx, on_event, done)
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


def _executor(
    policy: Policy, gpus: list[int], experiment: str, ctx: Context, scratch: Path, on_event: Listener
) -> Executor:
    if policy.executor == "ray":
        from experiments.sweeps.ray_pool import RayPool

        return RayPool(policy, experiment, ctx, on_event)
    gpus = gpus if policy.gpus is None else list(policy.gpus)
    pool = DevicePool(workers=policy.workers, gpus=gpus, runs_per_gpu=policy.runs_per_gpu)
    return LocalPool(pool, experiment, ctx, scratch, on_event, policy.retry_failed, policy.force)


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
        if ours is not None and ours.status in ("FINISHED", "FAILED", "KILLED", "BLOCKED"):
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


def _run_cells(
    cells: Sequence[GridCell],
    executor: Executor,
    experiment: str,
    ctx: Context,
    on_event: Listener,
    finished: set[str] | None = None,
) -> list[CellOutcome]:
    """Run ``cells`` on ``executor`` as fast as it takes them; each end is reported as it happens.

    A cell starts once every cell it ``needs`` is in ``finished`` (hashes with a FINISHED run, grown
    as runs here finish). A cell whose need FAILED here is reported BLOCKED and not run; cells whose
    needs run elsewhere are left for the caller once nothing here is running."""
    queue = list(cells)
    done: list[CellOutcome] = []
    finished = set(finished or ())
    failed: dict[str, tuple[GridCell, str | None]] = {}  # cells that failed here, and why
    try:
        while queue or executor.busy():
            for cell in list(queue):  # start every queued cell that fits; a big DDP run waits its turn
                if not all(need in finished for need in cell.needs):
                    parent = next((failed[n] for n in cell.needs if n in failed), None)
                    if parent is not None:
                        queue.remove(cell)
                        outcome = _block(cell, parent[0], parent[1], experiment, ctx)
                        done.append(outcome)
                        on_event(CellBlocked(outcome))
                    continue
                if executor.start(cell):
                    queue.remove(cell)
            if not executor.busy():  # the rest wait for cells that run elsewhere (or were not run at all)
                break
            for outcome in executor.wait(POLL_S):
                if outcome.status == "FINISHED":
                    finished.add(outcome.cell.spec.spec_hash)
                elif outcome.status == "FAILED":
                    failed[outcome.cell.spec.spec_hash] = outcome.cell, outcome.failure
                done.append(outcome)
                on_event(CellEnded(outcome))
    except BaseException:
        executor.stop()
        raise
    return done
