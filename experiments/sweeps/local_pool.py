"""The default executor: each cell in a worker process of this machine, forked from the fork server.

CPU threads and GPUs come from a ``DevicePool``; a DDP cell is a command line of its own (Lightning's
launcher starts the other ranks by running it again). The scheduler asks ``start`` for each cell
whose needs are met and ``wait`` for the cells that ended.
"""

from __future__ import annotations

import json
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import tags as tag
from core.context import Context
from experiments import tracking
from experiments.events import CellOutcome, CellStarted, Listener
from experiments.processes import Job, start_command, start_forked
from experiments.sweeps.devices import Allocation, DevicePool
from experiments.sweeps.grid import GridCell


@dataclass
class _Running:
    cell: GridCell
    job: Job
    allocation: Allocation
    outcome_path: Path
    started: float = field(default_factory=time.monotonic)
    seen_dead: float | None = None  # when a worker killed by a signal was first seen dead


# A worker killed by a signal is recorded this long after it is seen dead. A kill of the whole process
# group (the command killed, a node preempted) takes this command down within it; the next command then
# finds the run orphaned, which is not the cell's own repeated kill (two of those make it FAILED).
SIGNAL_GRACE_S = 1.0


def cell_task(
    cell: GridCell, experiment: str, ctx: Context, retry_failed: bool, force: bool
) -> dict[str, Any]:
    """What a worker needs to claim and run one cell (``experiments.sweeps.worker.run_task``)."""
    return {
        "spec": cell.spec,
        "run_name": cell.run_name,
        "config": cell.config,
        "factors": cell.factors,
        "tags": cell.tags,
        "experiment": experiment,
        "experiment_id": ctx.experiment_id(experiment),
        "tracking_uri": ctx.tracking_uri,
        "data_dir": str(Path(ctx.data_dir).resolve()),
        "retry_failed": retry_failed,
        "force": force,
        "command": tracking.current_command(),  # the runs' mlflow.source.name
    }


def devices_needed(cell: GridCell) -> tuple[int, bool]:
    """The devices a cell's run trains on, and whether it wants GPUs (``accelerator`` not ``cpu``)."""
    trainer = cell.spec.trainer
    devices = trainer.devices if isinstance(trainer.devices, int) else 1
    return devices, trainer.accelerator != "cpu"


def is_ddp(cell: GridCell) -> bool:
    return not (cell.spec.trainer.devices == 1 or cell.spec.trainer.devices == "auto")


class LocalPool:
    """Worker processes on this machine, as many at once as ``pool`` allows."""

    def __init__(
        self,
        pool: DevicePool,
        experiment: str,
        ctx: Context,
        scratch: Path,
        on_event: Listener,
        retry_failed: bool = False,
        force: bool = False,
    ) -> None:
        self.pool, self.experiment, self.ctx, self.scratch = pool, experiment, ctx, scratch
        self.on_event = on_event
        self.retry_failed, self.force = retry_failed, force
        self.running: list[_Running] = []

    def start(self, cell: GridCell) -> bool:
        """Start ``cell`` if its devices are free now; False to be asked again later."""
        devices, on_gpu = devices_needed(cell)
        allocation = self.pool.acquire(devices, gpu=on_gpu)
        if allocation is None:
            return False
        from experiments.sweeps.worker import run_cell

        name = f"{cell.spec.spec_hash}-{time.monotonic_ns()}"
        task_path, outcome_path = self.scratch / f"{name}.task.json", self.scratch / f"{name}.outcome.json"
        task = cell_task(cell, self.experiment, self.ctx, self.retry_failed, self.force)
        log_path = self.scratch / f"{name}.log"
        env = allocation.environment()
        if not is_ddp(cell):
            job = start_forked(run_cell, (task, str(outcome_path)), env, log_path)
        else:  # DDP: Lightning's launcher re-runs this process's command line for the other ranks
            task_path.write_text(json.dumps({**task, "spec": cell.spec.model_dump(mode="json")}))
            job = start_command(
                "experiments.sweeps.worker", [str(task_path), str(outcome_path)], env, log_path
            )
        self.running.append(_Running(cell, job, allocation, outcome_path))
        self.on_event(CellStarted(cell, job.pid))
        return True

    def busy(self) -> bool:
        return bool(self.running)

    def wait(self, timeout: float) -> list[CellOutcome]:
        """The outcomes of the cells whose workers ended within ``timeout`` seconds."""
        time.sleep(timeout)
        ended = []
        now = time.monotonic()
        for entry in [r for r in self.running if r.job.returncode() is not None]:
            if self._in_signal_grace(entry, now):
                continue
            self.running.remove(entry)
            self.pool.release(entry.allocation)
            ended.append(self._collect(entry))
        return ended

    def stop(self) -> None:
        """Ctrl-C or a crash of ours: the workers record their runs as KILLED."""
        for entry in self.running:
            entry.job.terminate()
        for entry in self.running:
            entry.job.wait(timeout=60)

    def _in_signal_grace(self, entry: _Running, now: float) -> bool:
        code = entry.job.returncode()
        if code is None or code >= 0 or entry.outcome_path.exists():
            return False
        if entry.seen_dead is None:
            entry.seen_dead = now
        return now - entry.seen_dead < SIGNAL_GRACE_S

    def _collect(self, entry: _Running) -> CellOutcome:
        wall = time.monotonic() - entry.started
        if entry.outcome_path.exists():
            found = json.loads(entry.outcome_path.read_text())
            return CellOutcome(entry.cell, found["status"], found.get("run_id"), found.get("failure"), wall)
        job = entry.job
        status, run_id, reason = end_orphan(
            self.ctx, self.experiment, entry.cell.spec.spec_hash, job.pid, job.returncode(), job.exit_reason()
        )
        return CellOutcome(entry.cell, status, run_id, reason, wall)


def end_orphan(
    ctx: Context, experiment: str, spec_hash: str, pid: int | None, code: int | None, reason: str
) -> tuple[str, str | None, str]:
    """A worker that died without reporting left its run RUNNING: end it, and say how.

    Killed by a signal from outside (a kill, a preemption, the OOM killer) is not the cell's own
    failure: the run ends KILLED and a plain re-run does the cell again. A cell whose previous run
    was killed the same way too ends FAILED, so that a grid never loops on a cell that keeps being
    killed. A worker that exited without a result failed. Returns (status, run id, reason).
    """
    client = ctx.client
    runs = tracking.runs_with_hashes(client, ctx.experiment_id(experiment), [spec_hash])[spec_hash]
    status = "KILLED" if code is not None and code < 0 else "FAILED"
    for run in runs:
        if run.info.status != "RUNNING" or run.data.tags.get(tag.PID) != str(pid):
            continue
        earlier = sorted(
            (r for r in runs if r.info.run_id != run.info.run_id and r.info.status != "RUNNING"),
            key=lambda r: r.info.start_time or 0,
        )
        if status == "KILLED" and earlier and tag.KILLED_BY in earlier[-1].data.tags:
            status = "FAILED"
            reason = (
                f"{reason}; its previous run was killed from outside too, so the cell is FAILED now "
                "instead of running a third time: find what kills it, then run with --retry-failed"
            )
        tags = {tag.FAILURE: reason}
        if status == "KILLED":
            tags[tag.KILLED_BY] = signal.Signals(-code).name
        for key, value in tags.items():
            client.set_tag(run.info.run_id, key, value)
        client.set_terminated(run.info.run_id, status)
        return status, run.info.run_id, reason
    return status, None, reason
