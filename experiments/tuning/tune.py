"""``litbench tune``: an Optuna study over a search space written in YAML; every trial a tracked run.

``litbench tune STUDY.yaml --trials N --workers K`` creates (or loads) the Optuna study once, in this
process, then runs trials in-process (K = 1) or in K worker processes forked from the fork server
(``experiments.processes``), each with ``cores // K`` torch threads, until N trials have finished
(COMPLETE or PRUNED). Failed trials do not count; a command stops after ``max_failures`` of them.
Each trial is ``experiments.tuning.trials``; the study's tracking (one MLflow experiment, a parent run,
nested trial runs) is ``experiments.tuning.parent``; the storages are ``experiments.tuning.storage``.

Resume. Running the same command again continues the study up to N finished trials. Trials left
RUNNING by a dead process (its pid on this host is gone, or its run's heartbeat is older than
``claims.ORPHAN_AFTER_S``, or Optuna's RDB heartbeat is stale) are marked FAIL first and their runs
KILLED. Two commands working one study at once may overshoot N by at most one trial per worker.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from core import tags as tag
from core.context import Context
from core.errors import SpecError
from experiments import tracking
from experiments.events import Listener, TrialEnded, WorkerProblem, ignore
from experiments.processes import start_forked
from experiments.tuning.parent import parent_run, retire_stale, update_parent
from experiments.tuning.search_space import grid_space
from experiments.tuning.storage import best_trial, open_storage, prepare_study, quiet_optuna, resolve_storage
from experiments.tuning.study_spec import StudySpec, make_pruner, make_sampler, resolve_objective
from experiments.tuning.trials import TrialFailedError, is_ddp, objective_of

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
POLL_S = 1.0


@dataclass
class TuneOutcome:
    study: optuna.Study
    target: int
    parent_run_id: str
    objective: str
    direction: str
    trials: list[FrozenTrial] = field(default_factory=list)

    def count(self, *states: TrialState) -> int:
        return sum(t.state in states for t in self.trials)

    @property
    def finished(self) -> int:
        return self.count(*FINISHED)

    @property
    def reached(self) -> bool:
        return self.finished >= self.target

    @property
    def best(self) -> FrozenTrial | None:
        return best_trial(self.study)


def failures_since(study: optuna.Study, first_number: int) -> int:
    """Trials this command started that failed by their own fault (not a killed worker's)."""
    return sum(
        t.number >= first_number and not t.user_attrs.get(tag.ATTR_ORPHANED)
        for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    )


def optimize(task: dict[str, Any], n_trials: int, on_trial: Listener = ignore) -> None:
    """Run up to ``n_trials`` trials of the study in this process (a worker, or the command itself)."""
    from optuna.study import MaxTrialsCallback

    quiet_optuna()
    spec = StudySpec.model_validate(task["study"])
    study = optuna.load_study(
        study_name=spec.name,
        storage=open_storage(task["storage"]),
        sampler=make_sampler(spec, task["seed"]),
        pruner=make_pruner(spec),
    )
    client = Context(task["tracking_uri"], Path(task["data_dir"])).client

    def stop_after_failures(study: optuna.Study, trial: FrozenTrial) -> None:
        if failures_since(study, task["first_number"]) >= spec.max_failures:
            study.stop()

    def after(study: optuna.Study, trial: FrozenTrial) -> None:
        update_parent(client, task["parent_run_id"], study, trial.number)
        on_trial(TrialEnded.of(spec.name, trial))

    study.optimize(
        objective_of(task, spec),
        n_trials=n_trials,
        catch=(TrialFailedError,),
        callbacks=[MaxTrialsCallback(task["target"], states=FINISHED), stop_after_failures, after],
        gc_after_trial=False,
    )


def _worker(task: dict[str, Any], n_trials: int) -> None:
    """A worker process (forked, its log and threads set by ``experiments.processes``)."""
    optimize(task, n_trials)


def _run_workers(
    task: dict[str, Any],
    shares: list[int],
    study: optuna.Study,
    on_event: Listener,
    gpus: list[int],
    on_gpu: bool,
) -> None:
    """K worker processes on the study; reports each trial as it ends, and each worker that died."""
    from experiments.sweeps.devices import DevicePool

    pool = DevicePool(
        workers=len(shares), gpus=gpus, runs_per_gpu=max(1, -(-len(shares) // max(1, len(gpus))))
    )
    seen = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
    name = study.study_name
    with tempfile.TemporaryDirectory(prefix="litbench-tune-") as scratch:
        jobs = []
        try:
            for i, share in enumerate(shares):
                allocation = pool.acquire(task["devices"] if on_gpu else 1, gpu=on_gpu)
                seed = None if task["seed"] is None else task["seed"] + 1000 * i
                log_path = Path(scratch) / f"worker{i}.log"
                jobs.append(
                    start_forked(_worker, ({**task, "seed": seed}, share), allocation.environment(), log_path)
                )
            while True:
                alive = any(job.returncode() is None for job in jobs)
                for trial in study.get_trials(deepcopy=False):
                    if trial.state.is_finished() and trial.number not in seen:
                        seen.add(trial.number)
                        on_event(TrialEnded.of(name, trial))
                if not alive:
                    break
                time.sleep(POLL_S)
        except BaseException:
            for job in jobs:  # Ctrl-C: the workers end their runs KILLED, their trials FAIL
                job.terminate()
            for job in jobs:
                job.wait(timeout=60)
            raise
        for job in jobs:
            if job.returncode():
                on_event(WorkerProblem(f"worker pid {job.pid}: {job.exit_reason()}", name))


def check_data(spec: StudySpec, data_dir: Path) -> None:
    """The base's data set is there (downloaded if it can be) before any trial starts."""
    from experiments.run.prepare import spec_datamodule

    spec_datamodule(spec.base_spec(), data_dir).prepare_data()


def run_study(
    spec: StudySpec,
    ctx: Context,
    *,
    trials: int | None = None,
    workers: int = 1,
    storage: str | None = None,
    on_event: Listener = ignore,
    ray: RayOptions | None = None,
) -> TuneOutcome:
    """Work the study until ``trials`` (default: the file's) trials finished, or too many failed.

    With ``ray``, every trial is a task on that Ray cluster (``experiments.tuning.ray_trials``) and
    ``workers`` is not used: the cluster's free CPUs and GPUs decide how many run at once."""
    quiet_optuna()
    objective = resolve_objective(spec)
    target = trials or spec.trials
    if spec.sampler.name == "grid":  # a grid has so many points; beyond them it would only repeat
        target = min(target, math.prod(len(values) for values in grid_space(spec.space).values()))
    location = resolve_storage(storage, ctx.tracking_uri)
    base = spec.base_spec()
    if is_ddp(base) and "://" not in location:
        raise SpecError(
            f"study {spec.name!r} trains each trial with DDP (trainer.devices = {base.trainer.devices}), "
            "and its pruning needs an RDB storage that every rank opens (optuna-integration's DDP "
            f"contract); the journal file {location} is not one. Drop --storage for the default SQLite "
            "storage, or give sqlite:///path.db or postgresql://..."
        )
    cluster = _connect(ray, spec, base, ctx, location) if ray is not None else None
    study = prepare_study(spec, location)
    client = ctx.client
    experiment_id = ctx.experiment_id(spec.name)
    parent_run_id = parent_run(client, experiment_id, spec, location)
    outcome = TuneOutcome(study, target, parent_run_id, objective.metric, objective.direction)
    try:
        if cluster is None:  # on Ray, every node checked its own data before this
            check_data(spec, ctx.data_dir)
        first_number = len(study.get_trials(deepcopy=False))
        task = {
            "study": spec.model_dump(mode="json"),
            "storage": location,
            "tracking_uri": ctx.tracking_uri,
            "data_dir": str(Path(ctx.data_dir).resolve()),
            "parent_run_id": parent_run_id,
            "objective": objective.metric,
            "direction": objective.direction,
            "target": target,
            "first_number": first_number,
            "devices": base.trainer.devices if is_ddp(base) else 1,
            "command": tracking.current_command(),  # the trials' mlflow.source.name
        }
        while True:
            retire_stale(study, location, client, experiment_id)
            done = sum(t.state in FINISHED for t in study.get_trials(deepcopy=False))
            failed = failures_since(study, first_number)
            if done >= target or failed >= spec.max_failures:
                break
            existing = len(study.get_trials(deepcopy=False))
            # a fresh single-worker study samples with the file's seed; later rounds and resumes move on
            seed = None if spec.sampler.seed is None else spec.sampler.seed + existing
            remaining = target - done
            if cluster is not None:
                from experiments.tuning.ray_trials import run_ray_trials

                resources = _ray_resources(ray, base, cluster)
                threads = ray.cpus_per_run
                run_ray_trials(
                    cluster, {**task, "seed": seed}, remaining, study, on_event, resources, threads, optimize
                )
            elif workers == 1:
                optimize({**task, "seed": seed}, remaining, on_event)
            else:
                k = min(workers, remaining)
                shares = [remaining // k + (i < remaining % k) for i in range(k)]
                on_gpu = base.trainer.accelerator != "cpu"
                gpus = _visible_gpus() if on_gpu else []
                _run_workers({**task, "seed": seed}, shares, study, on_event, gpus, on_gpu)
            if len(study.get_trials(deepcopy=False)) == existing:
                break  # no trial even started (dead workers): stop rather than spin
    except BaseException:
        client.set_terminated(parent_run_id, "KILLED")
        raise
    outcome.trials = study.get_trials(deepcopy=False)
    client.set_terminated(parent_run_id, "FINISHED" if outcome.reached else "FAILED")
    return outcome


@dataclass(frozen=True)
class RayOptions:
    """``--executor ray``: the cluster (None: $RAY_ADDRESS, else a local one) and each trial's share."""

    address: str | None = None
    cpus_per_run: int = 1
    runs_per_gpu: int = 1


def _connect(ray: RayOptions, spec: StudySpec, base, ctx: Context, storage: str):
    """The connected ``ray`` module, once the cluster is known to fit a trial, reach the store and
    hold the data on every node (errors before any trial starts)."""
    import json

    from experiments import ray_cluster
    from experiments.tuning.ray_trials import check_cluster

    address = ray_cluster.resolve_address(ray.address)
    cluster = ray_cluster.connect(address)
    where = address or "this machine (a local cluster)"
    nodes = check_cluster(cluster, spec.name, _ray_resources(ray, base, cluster), ctx.tracking_uri, where)
    ray_cluster.check_store_reachable(storage, nodes, cluster, what="the study's storage")
    data = [json.dumps(base.data.model_dump(mode="json"), sort_keys=True)]
    checks = ray_cluster.check_data_on_nodes(cluster, nodes, data, str(Path(ctx.data_dir).resolve()))
    problems = ray_cluster.wait_data_checks(cluster, checks)
    if problems:
        raise SpecError(
            f"study {spec.name!r}: the Ray cluster's workers cannot read its data: {'; '.join(problems)}. "
            "Put the data directory on a path every node shares and pass it as --data-dir."
        )
    return cluster


def _ray_resources(ray: RayOptions, base, cluster) -> dict[str, float]:
    from experiments.ray_cluster import alive_nodes, task_resources

    devices = base.trainer.devices if is_ddp(base) else 1
    gpus = sum(n.gpus for n in alive_nodes(cluster))
    on_gpu = base.trainer.accelerator in ("gpu", "cuda") or (base.trainer.accelerator != "cpu" and gpus > 0)
    return task_resources(devices, on_gpu, ray.cpus_per_run, ray.runs_per_gpu)


def _visible_gpus() -> list[int]:
    from experiments.sweeps.devices import visible_gpus

    return visible_gpus()
