"""The Ray executor: each grid cell is a Ray task, placed by the CPUs and GPUs it declares.

A cell's task asks for ``--cpus-per-run`` CPUs (its torch threads) for each of its processes, and a
GPU or ``1/K`` of one (``--runs-per-gpu K``) where the cluster has GPUs and the cell does not ask for
the CPU. A DDP cell over k devices is one task that asks for all of them at once: Ray places a task on
one node, so its k devices are together, and inside it Lightning's own launcher starts the ranks, as
it does in the local pool (Ray Train's TorchTrainer would replace that launcher and the strategy with
its own, so a cell would train differently under the two executors).

The tracking store stays the only truth: the task claims its cell there (``experiments.claims``)
before it trains, so Ray's retries of a lost task and other grid commands on the same store still
leave each cell FINISHED exactly once. A node lost mid-cell leaves its run RUNNING with a dead
worker; the retry (or the next command) finds it orphaned, ends it KILLED with the reason, and runs
the cell under the next attempt. Runs record the node they ran on (``litbench.ray.node``).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core import tags as tag
from core.context import Context
from core.plugins import plugin_modules
from experiments import claims, ray_cluster, tracking
from experiments.events import CellOutcome, CellStarted, Listener
from experiments.ray_board import StartBoard
from experiments.sweeps.grid import GridCell
from experiments.sweeps.local_pool import cell_task, devices_needed, end_orphan, is_ddp
from experiments.sweeps.preflight import PreflightError

if TYPE_CHECKING:
    from experiments.sweeps.scheduler import Policy

TASK_RETRIES = 3  # Ray's retries of a task whose worker or node died (not of a cell's own failure)
STOP_WAIT_S = 60.0


def resources_of(cell: GridCell, cpus_per_run: int, runs_per_gpu: int, cluster_gpus: float) -> dict:
    """The Ray resources of a cell's task: CPUs for each process, and its GPUs (a share of one when
    ``runs_per_gpu`` > 1) where the cluster has GPUs and the cell may use them."""
    devices, wants_gpu = devices_needed(cell)
    on_gpu = wants_gpu and cluster_gpus > 0
    if cell.spec.trainer.accelerator in ("gpu", "cuda") and cluster_gpus == 0:
        on_gpu = True  # asks for GPUs explicitly: check_fits says the cluster has none
    return ray_cluster.task_resources(devices, on_gpu, cpus_per_run, runs_per_gpu)


class RayPreflight:
    """Connects to the cluster and checks it can run the grid, at once (errors before anything
    trains); ``wait()`` then checks, on every node, that the data sets are there (downloaded where
    they can be), as the local ``Preflight`` does on this machine."""

    def __init__(self, cells: Sequence[GridCell], ctx: Context, policy: Policy) -> None:
        address = ray_cluster.resolve_address(policy.ray_address)
        self.ray = ray = ray_cluster.connect(address)
        self.nodes = ray_cluster.alive_nodes(ray)
        where = address or "this machine (a local cluster)"
        ray_cluster.check_store_reachable(ctx.tracking_uri, self.nodes, ray)
        gpus = sum(n.gpus for n in self.nodes)
        needs = []
        for cell in cells:
            res = resources_of(cell, policy.cpus_per_run, policy.runs_per_gpu, gpus)
            needs.append((f"cell {cell.run_name}", res["num_cpus"], res["num_gpus"]))
        ray_cluster.check_fits(needs, self.nodes, where)
        data = sorted({json.dumps(c.spec.data.model_dump(mode="json"), sort_keys=True) for c in cells})
        self.checks = ray_cluster.check_data_on_nodes(
            ray, self.nodes, data, str(Path(ctx.data_dir).resolve())
        )

    def describe(self) -> str:
        return ", ".join(f"{n.label}: {n.cpus:g} CPUs, {n.gpus:g} GPUs" for n in self.nodes)

    def wait(self) -> list[int]:
        problems = ray_cluster.wait_data_checks(self.ray, self.checks)
        if problems:
            raise PreflightError(
                "the Ray cluster's workers cannot read the grid's data: "
                + "; ".join(problems)
                + ". Put the data directory on a path every node shares (NFS, a cluster file system) "
                "and pass it as --data-dir, or let each node download it (give a data directory every "
                "node can write)."
            )
        return []


class RayPool:
    """Cells as Ray tasks on the connected cluster; Ray queues what does not fit yet."""

    def __init__(self, policy: Policy, experiment: str, ctx: Context, on_event: Listener) -> None:
        self.ray = ray = ray_cluster.connect(ray_cluster.resolve_address(policy.ray_address))
        self.policy, self.experiment, self.ctx, self.on_event = policy, experiment, ctx, on_event
        self.cluster_gpus = sum(n.gpus for n in ray_cluster.alive_nodes(ray))
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        # on this command's own node: the board must outlive any worker node the grid loses
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        self.board = ray.remote(num_cpus=0)(StartBoard).options(scheduling_strategy=here).remote()
        self.remote = ray.remote(run_on_node)
        self.pending: dict[Any, tuple[GridCell, float]] = {}  # task ref -> its cell and submit time
        self.started: dict[str, float] = {}  # spec hash -> when its start was reported
        self._drain: Any = None  # the board's answer being waited for

    def start(self, cell: GridCell) -> bool:
        task = cell_task(cell, self.experiment, self.ctx, self.policy.retry_failed, self.policy.force)
        resources = resources_of(cell, self.policy.cpus_per_run, self.policy.runs_per_gpu, self.cluster_gpus)
        ref = self.remote.options(max_retries=TASK_RETRIES, retry_exceptions=False, **resources).remote(
            task, self.board, plugin_modules(), self.policy.cpus_per_run, is_ddp(cell)
        )
        self.pending[ref] = (cell, time.monotonic())
        return True

    def busy(self) -> bool:
        return bool(self.pending)

    def wait(self, timeout: float) -> list[CellOutcome]:
        """The cells that ended within ``timeout``; returns early, with none, when one starts."""
        tasks = list(self.pending)
        if self.board is not None and self._drain is None:
            self._drain = self.board.next_starts.remote()
        watched = tasks + ([self._drain] if self._drain is not None else [])
        self.ray.wait(watched, num_returns=1, timeout=timeout)  # blocks; no polling of the board
        ready, _ = self.ray.wait(tasks, num_returns=len(tasks), timeout=0) if tasks else ([], [])
        self._report_starts()
        ended = []
        for ref in ready:
            cell, submitted = self.pending.pop(ref)
            if cell.spec.spec_hash not in self.started:  # ended before its start was reported
                self.started[cell.spec.spec_hash] = submitted
                self.on_event(CellStarted(cell, None))
            began = max(submitted, self.started[cell.spec.spec_hash])  # not the time it queued
            ended.append(self._outcome(ref, cell, time.monotonic() - began))
        return ended

    def stop(self) -> None:
        """Ctrl-C: Ray interrupts each running task (its run ends KILLED) and drops the queued ones."""
        for ref in self.pending:
            self.ray.cancel(ref)
        if self.pending:
            self.ray.wait(list(self.pending), num_returns=len(self.pending), timeout=STOP_WAIT_S)

    def _report_starts(self) -> None:
        if self.board is None or self._drain is None:
            return
        ready, _ = self.ray.wait([self._drain], timeout=0)
        if not ready:
            return
        by_hash = {cell.spec.spec_hash: cell for cell, _ in self.pending.values()}
        try:
            started = self.ray.get(self._drain)
        except self.ray.exceptions.RayError:  # the board is gone: the cells go on, unreported until they end
            self.board = None
            return
        self._drain = None
        for spec_hash, node, pid in started:
            cell = by_hash.get(spec_hash)
            if cell is None:
                continue
            again = spec_hash in self.started  # Ray retried the task after its node or worker died
            self.started[spec_hash] = time.monotonic()
            self.on_event(CellStarted(cell, pid, node=node, retry=again))

    def _outcome(self, ref: Any, cell: GridCell, wall: float) -> CellOutcome:
        try:
            found = self.ray.get(ref)
        except self.ray.exceptions.RayError as err:  # lost more often than Ray retries, or cancelled
            reason = f"the Ray task was lost {TASK_RETRIES + 1} times: {ray_cluster.one_line(err)}"
            run_id = self._retire_runs(cell, reason)
            return CellOutcome(cell, "FAILED", run_id, reason, wall)
        return CellOutcome(
            cell, found["status"], found.get("run_id"), found.get("failure"), wall, node=found.get("node")
        )

    def _retire_runs(self, cell: GridCell, reason: str) -> str | None:
        """The cell's runs left RUNNING by dead workers, ended KILLED with ``reason``."""
        client = self.ctx.client
        spec_hash = cell.spec.spec_hash
        runs = tracking.runs_with_hashes(client, self.ctx.experiment_id(self.experiment), [spec_hash])
        last = None
        for run in runs[spec_hash]:
            last = claims.settle(client, run, {tag.FAILURE: reason}).info.run_id
        return last


def run_on_node(task: dict[str, Any], board: Any, plugins: list[str], threads: int, ddp: bool) -> dict:
    """A cell in a Ray worker process: claim, train and track it (``worker.run_task``); a DDP cell in
    a command line of its own, whose ranks Lightning's launcher starts. The outcome as data."""
    import ray

    from experiments.processes import THREADS_ENV, prepare_process, start_command
    from experiments.sweeps.worker import run_task

    node_id, node = ray_cluster.this_node(ray)
    spec_hash = task["spec"].spec_hash
    board.post.remote(spec_hash, node, os.getpid())
    prepare_process(threads, plugins)
    task = {**task, "tags": {**task["tags"], tag.RAY_NODE: node_id, tag.NODE: node}}
    if not ddp:
        outcome = run_task(task)
        return {**(outcome or {}), "node": node}
    with tempfile.TemporaryDirectory(prefix="litbench-ray-cell-") as scratch:
        task_path, outcome_path = Path(scratch) / "task.json", Path(scratch) / "outcome.json"
        task_path.write_text(json.dumps({**task, "spec": task["spec"].model_dump(mode="json")}))
        env = {THREADS_ENV: str(threads), "OMP_NUM_THREADS": str(threads)}
        job = start_command(
            "experiments.sweeps.worker", [str(task_path), str(outcome_path)], env, Path(scratch) / "log"
        )
        try:
            job.wait()
        except BaseException:  # cancelled: rank 0 ends its run KILLED
            job.terminate()
            job.wait(timeout=STOP_WAIT_S)
            raise
        if outcome_path.exists():
            return {**json.loads(outcome_path.read_text()), "node": node}
        reason = job.exit_reason()
        ctx = Context(task["tracking_uri"], Path(task["data_dir"]))
        status, run_id, reason = end_orphan(
            ctx, task["experiment"], spec_hash, job.pid, job.returncode(), reason
        )
        return {"status": status, "run_id": run_id, "failure": reason, "node": node}
