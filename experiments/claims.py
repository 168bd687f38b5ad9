"""Exactly-once grid cells across processes and machines that share one MLflow store.

A cell (a spec hash) is done when it has a FINISHED run. Before running a cell, a worker claims its
next attempt by creating an MLflow experiment named ``litbench-claim/<experiment id>/<hash>/<attempt>``
and deleting it at once: experiment names are unique in every MLflow store (SQLite, PostgreSQL behind
``mlflow server``) and stay reserved after deletion, so exactly one worker anywhere wins each attempt,
and the claims never show in the UI. A RUNNING run whose worker is gone (its process is dead on this
host, or its heartbeat is older than ``ORPHAN_AFTER_S``) is orphaned: it is marked KILLED and the cell
is claimed again under the next attempt number.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core import tags as tag
from experiments import tracking
from experiments.processes import process_alive

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

HEARTBEAT_EVERY_S = 30.0
ORPHAN_AFTER_S = 180.0  # six missed heartbeats
CLAIM_GRACE_S = 120.0  # a claim with no run after this long was abandoned by a dead worker


@dataclass(frozen=True)
class CellState:
    status: str  # done, running, failed, missing
    runs: tuple[Run, ...]
    finished_run_id: str | None = None
    failure: str | None = None


def worker_tags(attempt: int | None = None) -> dict[str, str]:
    owner = {tag.HOST: socket.gethostname(), tag.PID: str(os.getpid()), tag.HEARTBEAT: f"{time.time():.0f}"}
    if attempt is not None:
        owner[tag.ATTEMPT] = str(attempt)
    return owner


def worker_gone(run: Run, now: float | None = None) -> bool:
    """Whether the worker that owns ``run`` has stopped: its process is dead on this host, or its
    heartbeat is older than ``ORPHAN_AFTER_S``. Says nothing about the run's status."""
    tags = run.data.tags
    if tags.get(tag.RAY_NODE):  # a Ray cell: a dead node is a dead worker, wherever it was
        from experiments.ray_cluster import node_alive

        if node_alive(tags[tag.RAY_NODE]) is False:
            return True
    if tags.get(tag.HOST) == socket.gethostname() and tags.get(tag.PID, "").isdigit():
        return not process_alive(int(tags[tag.PID]))
    last_sign = float(tags.get(tag.HEARTBEAT) or run.info.start_time / 1000)
    return (now or time.time()) - last_sign > ORPHAN_AFTER_S


def orphan_reason(run: Run) -> str:
    node = run.data.tags.get(tag.NODE)
    if node:
        from experiments.ray_cluster import node_alive

        if node_alive(run.data.tags.get(tag.RAY_NODE, "")) is False:
            return f"orphaned: its Ray node {node} died (lost mid-run)"
        return f"orphaned: its worker process on Ray node {node} is gone"
    return "orphaned: its worker process is gone"


def is_orphaned(run: Run, now: float | None = None) -> bool:
    """RUNNING in this view of the run, with its worker gone. A view read before the check may be
    stale (the worker finished the run and exited in between): ``settle`` reads it again."""
    return run.info.status == "RUNNING" and worker_gone(run, now)


def settle(client: MlflowClient, run: Run, tags: dict[str, str] | None = None) -> Run:
    """The run as it stands, with a RUNNING run whose worker is gone marked KILLED (with the reason
    and ``tags``). Liveness is judged first and the status read after it: a worker sets its run's
    end status before it exits, so once it is gone its run can no longer change. (Read the status
    first and a worker that finishes and exits in between looks like an orphan, and its cell runs
    twice.) A RUNNING run whose worker lives is returned as is, even if it ended since it was read:
    callers treat it as still running and look again later."""
    if run.info.status != "RUNNING" or not worker_gone(run):
        return run
    from mlflow.entities import RunTag

    run = client.get_run(run.info.run_id)
    if run.info.status != "RUNNING":
        return run
    reason = {tag.FAILURE: orphan_reason(run)}
    client.log_batch(run.info.run_id, tags=[RunTag(k, v) for k, v in (reason | (tags or {})).items()])
    client.set_terminated(run.info.run_id, "KILLED")
    return client.get_run(run.info.run_id)


def cell_state(runs: Iterable[Run]) -> CellState:
    """done if any run FINISHED, running if one is RUNNING, failed if the latest failed, else missing.

    Pass runs through ``settle`` first, so that a RUNNING run is a live one.
    """
    runs = tuple(sorted(runs, key=lambda r: r.info.start_time or 0))
    finished = [r for r in runs if r.info.status == "FINISHED"]
    if finished:
        return CellState("done", runs, finished_run_id=finished[0].info.run_id)
    if any(r.info.status == "RUNNING" for r in runs):
        return CellState("running", runs)
    if runs and runs[-1].info.status == "FAILED":
        return CellState("failed", runs, failure=runs[-1].data.tags.get(tag.FAILURE))
    return CellState("missing", runs)


def settled_cell_states(
    client: MlflowClient, experiment_id: str, hashes: Iterable[str]
) -> dict[str, CellState]:
    """Each cell's state, its orphaned runs retired to KILLED on the way."""
    found = tracking.runs_with_hashes(client, experiment_id, hashes)
    return {spec_hash: cell_state(settle(client, r) for r in runs) for spec_hash, runs in found.items()}


def retire_orphans(client: MlflowClient, runs: Iterable[Run]) -> int:
    """Mark the orphaned RUNNING runs KILLED, with the reason, so the UI stops showing them as live."""
    return sum(run.info.status == "RUNNING" and settle(client, run).info.status == "KILLED" for run in runs)


def claim(client: MlflowClient, experiment_id: str, spec_hash: str, runs: Iterable[Run]) -> int | None:
    """The attempt number this process now owns for the cell, or None if another worker has it."""
    from mlflow.exceptions import MlflowException

    runs = list(runs)
    attempts_with_runs = {r.data.tags.get(tag.ATTEMPT) for r in runs}
    # after the last attempt that has a run: a taken-over claim leaves a gap (runs of attempts 0 and
    # 2), and counting runs would point at attempt 2 again, claimed forever by a run that exists
    numbered = [int(a) for a in attempts_with_runs if a and a.isdigit()]
    attempt = max(len(runs), max(numbered, default=-1) + 1)
    while True:
        name = f"litbench-claim/{experiment_id}/{spec_hash}/{attempt}"
        try:
            # who claims it: on this host, a dead claimer is seen at once instead of after the grace
            claim_id = client.create_experiment(
                name, tags={tag.HOST: socket.gethostname(), tag.PID: str(os.getpid())}
            )
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            if str(attempt) in attempts_with_runs or not _abandoned(client, name):
                return None
            attempt += 1  # a worker claimed this attempt and died before starting its run
            continue
        client.delete_experiment(claim_id)  # keeps the name reserved, hides it from the UI
        return attempt


def _abandoned(client: MlflowClient, claim_name: str) -> bool:
    """Whether the worker that claimed this attempt died before it created its run: at once when
    it ran on this host (its process is gone), else once the claim is older than the grace."""
    claimed = client.get_experiment_by_name(claim_name)
    if claimed is None or claimed.creation_time is None:
        return False
    owner = claimed.tags or {}
    here = owner.get(tag.HOST) == socket.gethostname() and owner.get(tag.PID, "").isdigit()
    if here and not process_alive(int(owner[tag.PID])):
        return True
    return time.time() - claimed.creation_time / 1000 > CLAIM_GRACE_S


class Heartbeat:
    """Refreshes the run's heartbeat tag from a daemon thread while the run trains."""

    def __init__(self, client: MlflowClient, run_id: str, every_s: float = HEARTBEAT_EVERY_S) -> None:
        self._client, self._run_id, self._every_s = client, run_id, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="litbench-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _beat(self) -> None:
        while not self._stop.wait(self._every_s):
            try:
                self._client.set_tag(self._run_id, tag.HEARTBEAT, f"{time.time():.0f}")
            except Exception:  # a store hiccup must not kill training; the next beat retries
                continue
