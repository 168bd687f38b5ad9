"""Optuna studies over a search space written in YAML; every trial is a tracked litbench run.

``litbench tune STUDY.yaml --trials N --workers K`` creates (or loads) the Optuna study once, in this
process, then runs trials in-process (K = 1) or in K worker processes forked from the grid's fork
server, each with ``cores // K`` torch threads, until N trials have finished (COMPLETE or PRUNED).
Failed trials do not count; a command stops after ``max_failures`` of them.

A trial samples the space (``experiments.search_space``), validates the spec, and trains it with the
runner, with Optuna's ``PyTorchLightningPruningCallback`` watching the study's validation objective.
Its value is the objective's best validation value over the epochs (the epoch whose checkpoint the
run keeps, for the default objective); the test split is evaluated and tracked as for any run, and
never read by the study.

Tracking. The study is one MLflow experiment (the study's name) with one parent run (found again by
its ``litbench.study.role = parent`` tag on resume) that carries the best value and params so far
(tags ``litbench.best.*``, metric ``study/best_value`` per trial number). Each trial is a run nested
under it (``mlflow.parentRunId``) with tags ``litbench.study``, ``litbench.trial.number`` and
``litbench.trial.state`` (complete, pruned, failed). A COMPLETE trial's run is FINISHED. A PRUNED
trial's run ends KILLED with ``litbench.failure = "TrialPruned: ..."``: it stopped early by design,
has no test metrics, and a report lists it among the unfinished runs instead of averaging it. A
failed trial's run is FAILED (an exception) or KILLED (its process died).

Storage: ``--storage`` takes an RDB URL (``sqlite:///...``, ``postgresql://...``; with Optuna's
heartbeat) or a path ending in ``.log``/``.journal`` (Optuna's JournalStorage over a file, for workers
on a shared filesystem). The default is ``optuna.db`` beside the embedded MLflow store.

Resume. Running the same command again continues the study up to N finished trials. Trials left
RUNNING by a dead process (its pid on this host is gone, or its run's heartbeat is older than
``claims.ORPHAN_AFTER_S``, or Optuna's RDB heartbeat is stale) are marked FAIL first and their runs
KILLED. Two commands working one study at once may overshoot N by at most one trial per worker.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from experiments import claims, tracking
from experiments.search_space import grid_space
from experiments.specs import SpecError, validate_run_spec
from experiments.study import StudySpec, make_pruner, make_sampler, resolve_objective

TAG_STUDY = "litbench.study"
TAG_ROLE = "litbench.study.role"  # "parent" on the study's own run
TAG_TRIAL_NUMBER = "litbench.trial.number"
TAG_TRIAL_STATE = "litbench.trial.state"  # running, complete, pruned, failed
TAG_PARENT = "mlflow.parentRunId"  # MLflow's own nesting tag

ATTR_HOST, ATTR_PID = "litbench.host", "litbench.pid"  # the worker that runs a trial
ATTR_SPEC = "litbench.spec"  # the trial's complete RunSpec
ATTR_RUN_ID = "litbench.run_id"
ATTR_FAILURE = "litbench.failure"
ATTR_ORPHANED = "litbench.orphaned"  # a trial whose process died: failed, but not by its own fault
STUDY_ATTR_IDENTITY = "litbench.identity"

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
RDB_HEARTBEAT_S, RDB_GRACE_S = 60, 180
POLL_S = 1.0


class TrialFailedError(Exception):
    """A trial that could not give a value (its run failed, or its spec was invalid)."""


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


# ---------------------------------------------------------------- storage and study


def quiet_optuna() -> None:
    """The command prints its own line per trial; Optuna marks its (long-standing) heartbeat API
    experimental, which says nothing a user can act on."""
    import warnings

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def default_storage(tracking_uri: str) -> str:
    """``optuna.db`` beside the embedded MLflow SQLite store, else in ``./mlruns``."""
    if tracking_uri.startswith("sqlite:///"):
        folder = Path(tracking_uri.removeprefix("sqlite:///")).parent
    else:
        folder = tracking.STORE_DIR
    return f"sqlite:///{(folder / 'optuna.db').resolve()}"


def resolve_storage(storage: str | None, tracking_uri: str) -> str:
    """An RDB URL or an absolute journal-file path, as every process will open it."""
    if not storage:
        return default_storage(tracking_uri)
    if storage.endswith((".log", ".journal")) and "://" not in storage:
        return str(Path(storage).resolve())
    if "://" in storage:
        if storage.startswith("sqlite:///") and not storage.startswith("sqlite:////"):
            return f"sqlite:///{Path(storage.removeprefix('sqlite:///')).resolve()}"
        return storage
    raise SpecError(
        f"--storage {storage!r}: give an RDB URL (sqlite:///path/optuna.db, postgresql://user@host/db) or "
        "a journal file ending in .log or .journal (for workers on a shared filesystem)"
    )


_STORAGES: dict[str, optuna.storages.BaseStorage] = {}


def open_storage(location: str) -> optuna.storages.BaseStorage:
    """One storage object per location and process (a journal replays its file once)."""
    quiet_optuna()
    if location not in _STORAGES:
        if "://" not in location:
            from optuna.storages.journal import JournalFileBackend, JournalStorage

            Path(location).parent.mkdir(parents=True, exist_ok=True)
            _STORAGES[location] = JournalStorage(JournalFileBackend(location))
        else:
            engine: dict[str, Any] = {}
            if location.startswith("sqlite:///"):
                Path(location.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
                engine = {"connect_args": {"timeout": 60}}  # workers wait for each other's writes
            _STORAGES[location] = _rdb_storage(location, engine)
    return _STORAGES[location]


def _rdb_storage(location: str, engine: dict[str, Any]) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage; commands started together on a fresh database (two machines, one study)
    both create its tables, and on PostgreSQL the slower one fails on a duplicate type or table: by
    then the tables exist, so it tries again."""
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    for attempt in range(6):
        try:
            return optuna.storages.RDBStorage(
                location, engine_kwargs=engine, heartbeat_interval=RDB_HEARTBEAT_S, grace_period=RDB_GRACE_S
            )
        except (IntegrityError, ProgrammingError, OperationalError) as err:
            raced = not isinstance(err, OperationalError) or "already exists" in str(err)  # SQLite's way
            if attempt == 5 or not raced:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def prepare_study(spec: StudySpec, location: str) -> optuna.Study:
    """Create the study (or load it), once, before any worker starts; refuse a different study file."""
    objective = resolve_objective(spec)
    study = optuna.create_study(
        study_name=spec.name,
        storage=open_storage(location),
        direction=objective.direction,
        load_if_exists=True,
    )
    identity = spec.identity()
    stored = study.user_attrs.get(STUDY_ATTR_IDENTITY)
    if stored is None:
        study.set_user_attr(STUDY_ATTR_IDENTITY, identity)
    elif stored != identity:
        raise SpecError(
            f"study {spec.name!r} in {location} was created from a different study file (its base, space, "
            "objective or direction differ), and its trials would not be comparable; give the study "
            "another name or use another --storage"
        )
    return study


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    try:
        return study.best_trial
    except ValueError:  # no COMPLETE trial yet
        return None


# ---------------------------------------------------------------- tracking


def parent_run(client, experiment_id: str, spec: StudySpec, location: str) -> str:
    """The study's parent run: found by its tags, else created with the study file as an artifact.

    Commands started together on a fresh study (several machines, one tracking server) would each
    create one; the one that wins the claim (``claims.claim``) creates it and the others wait for it.
    """
    while True:
        found = client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{TAG_ROLE}` = 'parent' and tags.`{TAG_STUDY}` = '{spec.name}'",
            order_by=["attributes.start_time ASC"],
            max_results=1,
        )
        if found:
            run_id = found[0].info.run_id
            client.update_run(run_id, status="RUNNING")
            return run_id
        if claims.claim(client, experiment_id, f"study-parent-{spec.name}", runs=[]) is not None:
            break
        time.sleep(POLL_S)  # another command is creating it (or died doing so: the claim lapses)
    objective = resolve_objective(spec)
    tags = {
        TAG_STUDY: spec.name,
        TAG_ROLE: "parent",
        "litbench.study.objective": objective.metric,
        "litbench.study.direction": objective.direction,
        "litbench.study.sampler": spec.sampler.name,
        "litbench.study.pruner": spec.pruner.name,
        "litbench.study.storage": location,
    }
    run = client.create_run(experiment_id, run_name=spec.name, tags=tags)
    with tempfile.TemporaryDirectory(prefix="litbench-study-") as folder:
        path = Path(folder) / "study.yaml"
        path.write_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
        client.log_artifact(run.info.run_id, str(path))
    return run.info.run_id


def update_parent(client, parent_run_id: str, study: optuna.Study, number: int) -> None:
    """Counts and the best trial so far, after trial ``number`` ended."""
    from mlflow.entities import Metric

    trials = study.get_trials(deepcopy=False)
    now = int(time.time() * 1000)
    counts = {
        "study/complete": sum(t.state == TrialState.COMPLETE for t in trials),
        "study/pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "study/failed": sum(t.state == TrialState.FAIL for t in trials),
    }
    metrics = [Metric(key, float(value), now, number) for key, value in counts.items()]
    best = best_trial(study)
    tags = {}
    if best is not None:
        metrics.append(Metric("study/best_value", float(best.value), now, number))
        tags = {
            "litbench.best.value": f"{best.value:.6g}",
            "litbench.best.trial": str(best.number),
            "litbench.best.params": json.dumps(best.params, sort_keys=True),
            "litbench.best.run_id": str(best.user_attrs.get(ATTR_RUN_ID, "")),
        }
    from mlflow.entities import RunTag

    client.log_batch(parent_run_id, metrics=metrics, tags=[RunTag(k, v) for k, v in tags.items()])


def retire_stale(study: optuna.Study, client, experiment_id: str) -> int:
    """Trials RUNNING in the storage whose process is gone become FAIL; their runs become KILLED."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{TAG_STUDY}` = '{study.study_name}' and attributes.status = 'RUNNING'",
        max_results=5000,
    )
    runs = [r for r in runs if r.data.tags.get(TAG_ROLE) != "parent"]
    run_of = {r.data.tags.get(TAG_TRIAL_NUMBER): r for r in runs}
    storage, retired = study._storage, 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = _orphaned(trial, run_of.get(str(trial.number)))
        if reason is None:
            continue
        try:
            storage.set_trial_user_attr(trial._trial_id, ATTR_FAILURE, reason)
            storage.set_trial_user_attr(trial._trial_id, ATTR_ORPHANED, True)
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            retired += 1
        except optuna.exceptions.UpdateFinishedTrialError:  # another process ended it just now
            continue
    optuna.storages.fail_stale_trials(study)  # Optuna's own heartbeat, where the storage has one
    for run in run_of.values():  # a run outlives its trial only when their worker died
        claims.settle(client, run, tags={TAG_TRIAL_STATE: "failed"})
    return retired


def _orphaned(trial: FrozenTrial, run) -> str | None:
    host, pid = trial.user_attrs.get(ATTR_HOST), trial.user_attrs.get(ATTR_PID)
    if host == socket.gethostname() and isinstance(pid, int):
        alive = claims.process_alive(pid)
        return None if alive else f"orphaned: its worker (pid {pid} on {host}) is gone"
    if run is not None:
        return "orphaned: its run's heartbeat stopped" if claims.is_orphaned(run) else None
    started = trial.datetime_start.timestamp() if trial.datetime_start else time.time()
    if time.time() - started > claims.ORPHAN_AFTER_S:
        return "orphaned: no sign of its worker since it started"
    return None


# ---------------------------------------------------------------- trials


class BestValue(L.Callback):
    """The objective's best validation value over the epochs: the trial's value."""

    def __init__(self, monitor: str, direction: str) -> None:
        self.monitor, self.sign = monitor, 1.0 if direction == "maximize" else -1.0
        self.value: float | None = None

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        current = trainer.callback_metrics.get(self.monitor)
        if current is None or not math.isfinite(float(current)):
            return
        if self.value is None or self.sign * float(current) > self.sign * self.value:
            self.value = float(current)


def run_name_of(number: int, chosen: dict[str, Any]) -> str:
    from experiments.grid import label

    return "-".join([f"t{number:03d}", *(label(key, value) for key, value in chosen.items())])


def _objective(task: dict[str, Any], spec: StudySpec) -> Callable[[optuna.Trial], float]:
    from experiments.grid import label
    from experiments.search_space import sample
    from experiments.tune_trial import train_trial

    client = tracking.client_for(task["tracking_uri"])
    metric, direction = task["objective"], task["direction"]

    def fail(trial: optuna.Trial, reason: str, run_id: str | None = None) -> TrialFailedError:
        trial.set_user_attr(ATTR_FAILURE, reason)
        if run_id:
            client.set_tag(run_id, TAG_TRIAL_STATE, "failed")
        return TrialFailedError(reason)

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr(ATTR_HOST, socket.gethostname())
        trial.set_user_attr(ATTR_PID, os.getpid())
        try:
            raw, chosen = sample(trial, spec.space, spec.base)
            run_spec = validate_run_spec(raw, where=f"trial {trial.number}")
        except SpecError as err:
            raise fail(trial, str(err)) from None
        trial.set_user_attr(ATTR_SPEC, run_spec.model_dump(mode="json"))
        run_name = run_name_of(trial.number, chosen)
        tags = {
            TAG_STUDY: spec.name,
            TAG_PARENT: task["parent_run_id"],
            TAG_TRIAL_NUMBER: str(trial.number),
            TAG_TRIAL_STATE: "running",
            tracking.TAG_CONFIG: run_name,
            **tracking.factor_tags(
                {k: label(k, v) if isinstance(v, dict | list) else str(v) for k, v in chosen.items()}
            ),
        }
        job = {
            "objective": metric,
            "direction": direction,
            "experiment": spec.name,  # the study is its own experiment
            "tracking_uri": task["tracking_uri"],
            "data_dir": task["data_dir"],
            "run_name": run_name,
            "tags": tags,
        }
        try:
            if is_ddp(run_spec):
                outcome = _ddp_trial(trial, run_spec, job, task, fail)
            else:
                outcome = train_trial(trial, run_spec, job, ddp=False)
        except (KeyboardInterrupt, SystemExit):  # Lightning turns Ctrl-C into SystemExit; Optuna wants this
            trial.set_user_attr(ATTR_FAILURE, "interrupted")
            raise KeyboardInterrupt from None
        return _tell(trial, outcome, client, metric, fail)

    return objective


def is_ddp(spec) -> bool:
    """Whether the run trains on several processes (Lightning's launcher starts the other ranks)."""
    return isinstance(spec.trainer.devices, int) and spec.trainer.devices > 1


def _ddp_trial(
    trial: optuna.Trial,
    run_spec,
    job: dict[str, Any],
    task: dict[str, Any],
    fail: Callable[..., TrialFailedError],
) -> dict[str, Any]:
    """A DDP trial's outcome: trained by ``experiments.tune_trial`` in a process of its own (Lightning's
    launcher re-runs a command line for the other ranks); this process keeps the trial."""
    import subprocess
    import sys

    from experiments.scheduler import base_env

    with tempfile.TemporaryDirectory(prefix="litbench-trial-") as scratch:
        task_path, outcome_path = Path(scratch) / "task.json", Path(scratch) / "outcome.json"
        log_path = Path(scratch) / "trial.log"
        task_path.write_text(
            json.dumps(
                {
                    **job,
                    "study_name": trial.study.study_name,
                    "study": task["study"],
                    "storage": task["storage"],
                    "trial_id": trial._trial_id,
                    "spec": run_spec.model_dump(mode="json"),
                }
            )
        )
        threads = int(os.environ.get("LITBENCH_NUM_THREADS") or os.cpu_count() or 1)
        env = {**base_env(), "LITBENCH_NUM_THREADS": str(max(1, threads // run_spec.trainer.devices))}
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "experiments.tune_trial", str(task_path), str(outcome_path)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            try:
                code = process.wait()
            except BaseException:  # Ctrl-C: rank 0 ends its run KILLED, then this trial fails
                process.terminate()
                process.wait(timeout=60)
                raise
        if not outcome_path.exists():
            tail = " | ".join(log_path.read_text(errors="replace").strip().splitlines()[-3:])
            raise fail(trial, f"the DDP trial process exited {code} without an outcome: {tail}")
        return json.loads(outcome_path.read_text())


def _tell(
    trial: optuna.Trial,
    outcome: dict[str, Any],
    client,
    metric: str,
    fail: Callable[..., TrialFailedError],
) -> float:
    """The trial's value from its outcome, or the exception that tells Optuna it was pruned or failed;
    the run gets the trial's state as a tag."""
    run_id = outcome.get("run_id")
    if run_id:
        trial.set_user_attr(ATTR_RUN_ID, run_id)
    if outcome["status"] == "pruned":
        client.set_tag(run_id, TAG_TRIAL_STATE, "pruned")
        raise optuna.TrialPruned(outcome["message"])
    if outcome["status"] == "failed":
        raise fail(trial, outcome["failure"], run_id)
    if outcome["value"] is None:
        raise fail(trial, f"{metric} was never logged with a finite value", run_id)
    client.set_tag(run_id, TAG_TRIAL_STATE, "complete")
    client.log_metric(run_id, "study/objective", outcome["value"])
    return outcome["value"]


def failures_since(study: optuna.Study, first_number: int) -> int:
    """Trials this command started that failed by their own fault (not a killed worker's)."""
    return sum(
        t.number >= first_number and not t.user_attrs.get(ATTR_ORPHANED)
        for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    )


def optimize(task: dict[str, Any], n_trials: int, on_trial: Callable[[FrozenTrial], None] | None) -> None:
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
    client = tracking.client_for(task["tracking_uri"])

    def stop_after_failures(study: optuna.Study, trial: FrozenTrial) -> None:
        if failures_since(study, task["first_number"]) >= spec.max_failures:
            study.stop()

    def after(study: optuna.Study, trial: FrozenTrial) -> None:
        update_parent(client, task["parent_run_id"], study, trial.number)
        if on_trial:
            on_trial(trial)

    study.optimize(
        _objective(task, spec),
        n_trials=n_trials,
        catch=(TrialFailedError,),
        callbacks=[MaxTrialsCallback(task["target"], states=FINISHED), stop_after_failures, after],
        gc_after_trial=False,
    )


def _worker(task: dict[str, Any], n_trials: int, env: dict[str, str], log_path: str) -> None:
    """A worker process, forked from the fork server: its threads, its log, its share of the trials."""
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.environ.update(env)
    import torch

    torch.set_num_threads(int(env["LITBENCH_NUM_THREADS"]))
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # the run ends KILLED, the trial FAIL
    from experiments.environment import quiet_libraries

    quiet_libraries()
    optimize(task, n_trials, on_trial=None)


def _run_workers(
    task: dict[str, Any],
    shares: list[int],
    study: optuna.Study,
    on_trial: Callable[[FrozenTrial], None] | None,
    gpus: list[int],
    on_gpu: bool,
) -> list[str]:
    """K worker processes on the study; reports each trial as it ends. Returns problems of dead workers."""
    from experiments.devices import DevicePool
    from experiments.scheduler import fork_context

    pool = DevicePool(
        workers=len(shares), gpus=gpus, runs_per_gpu=max(1, -(-len(shares) // max(1, len(gpus))))
    )
    seen = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
    problems = []
    with tempfile.TemporaryDirectory(prefix="litbench-tune-") as scratch:
        workers = []
        try:
            for i, share in enumerate(shares):
                allocation = pool.acquire(task["devices"] if on_gpu else 1, gpu=on_gpu)
                seed = None if task["seed"] is None else task["seed"] + 1000 * i
                log_path = str(Path(scratch) / f"worker{i}.log")
                process = fork_context().Process(
                    target=_worker, args=({**task, "seed": seed}, share, allocation.environment(), log_path)
                )
                process.start()
                workers.append((process, log_path))
            while True:
                alive = any(p.exitcode is None for p, _ in workers)
                for trial in study.get_trials(deepcopy=False):
                    if trial.state.is_finished() and trial.number not in seen:
                        seen.add(trial.number)
                        if on_trial:
                            on_trial(trial)
                if not alive:
                    break
                time.sleep(POLL_S)
        except BaseException:
            for process, _ in workers:  # Ctrl-C: the workers end their runs KILLED, their trials FAIL
                if process.exitcode is None:
                    process.terminate()
            for process, _ in workers:
                process.join(timeout=60)
            raise
        for process, log_path in workers:
            if process.exitcode:
                tail = " | ".join(Path(log_path).read_text(errors="replace").strip().splitlines()[-3:])
                problems.append(f"worker pid {process.pid} exited with {process.exitcode}: {tail}")
    return problems


def check_data(spec: StudySpec, data_dir: Path) -> None:
    """The base's data set is there (downloaded if it can be) before any trial starts."""
    from datamodules import create_datamodule
    from experiments.specs import options_model

    base = spec.base_spec()
    options = options_model("data", base.data.name).model_validate(base.data.options)
    create_datamodule(base.data.name, data_dir=str(data_dir), seed=base.seed, **dict(options)).prepare_data()


def run_study(
    spec: StudySpec,
    *,
    tracking_uri: str,
    data_dir: Path,
    trials: int | None = None,
    workers: int = 1,
    storage: str | None = None,
    on_trial: Callable[[FrozenTrial], None] | None = None,
    on_problem: Callable[[str], None] | None = None,
) -> TuneOutcome:
    """Work the study until ``trials`` (default: the file's) trials finished, or too many failed."""
    quiet_optuna()
    objective = resolve_objective(spec)
    target = trials or spec.trials
    if spec.sampler.name == "grid":  # a grid has so many points; beyond them it would only repeat
        target = min(target, math.prod(len(values) for values in grid_space(spec.space).values()))
    location = resolve_storage(storage, tracking_uri)
    if is_ddp(spec.base_spec()) and "://" not in location:
        raise SpecError(
            f"study {spec.name!r} trains each trial with DDP (trainer.devices = "
            f"{spec.base_spec().trainer.devices}), and its pruning needs an RDB storage that every rank "
            f"opens (optuna-integration's DDP contract); the journal file {location} is not one. Drop "
            "--storage for the default SQLite storage, or give sqlite:///path.db or postgresql://..."
        )
    study = prepare_study(spec, location)
    client = tracking.client_for(tracking_uri)
    experiment_id = tracking.experiment_id_for(client, spec.name, tracking_uri)
    parent_run_id = parent_run(client, experiment_id, spec, location)
    outcome = TuneOutcome(study, target, parent_run_id, objective.metric, objective.direction)
    try:
        check_data(spec, data_dir)
        base = spec.base_spec()
        first_number = len(study.get_trials(deepcopy=False))
        task = {
            "study": spec.model_dump(mode="json"),
            "storage": location,
            "tracking_uri": tracking_uri,
            "data_dir": str(Path(data_dir).resolve()),
            "parent_run_id": parent_run_id,
            "objective": objective.metric,
            "direction": objective.direction,
            "target": target,
            "first_number": first_number,
            "devices": base.trainer.devices if is_ddp(base) else 1,
        }
        while True:
            retire_stale(study, client, experiment_id)
            done = sum(t.state in FINISHED for t in study.get_trials(deepcopy=False))
            failed = failures_since(study, first_number)
            if done >= target or failed >= spec.max_failures:
                break
            existing = len(study.get_trials(deepcopy=False))
            # a fresh single-worker study samples with the file's seed; later rounds and resumes move on
            seed = None if spec.sampler.seed is None else spec.sampler.seed + existing
            remaining = target - done
            if workers == 1:
                optimize({**task, "seed": seed}, remaining, on_trial)
            else:
                k = min(workers, remaining)
                shares = [remaining // k + (i < remaining % k) for i in range(k)]
                gpus = _visible_gpus() if base.trainer.accelerator != "cpu" else []
                problems = _run_workers(
                    {**task, "seed": seed}, shares, study, on_trial, gpus, base.trainer.accelerator != "cpu"
                )
                for problem in problems:
                    if on_problem:
                        on_problem(problem)
            if len(study.get_trials(deepcopy=False)) == existing:
                break  # no trial even started (dead workers): stop rather than spin
    except BaseException:
        client.set_terminated(parent_run_id, "KILLED")
        raise
    outcome.trials = study.get_trials(deepcopy=False)
    client.set_terminated(parent_run_id, "FINISHED" if outcome.reached else "FAILED")
    return outcome


def _visible_gpus() -> list[int]:
    from experiments.devices import visible_gpus

    return visible_gpus()


# ---------------------------------------------------------------- export


def export_best(outcome: TuneOutcome, spec: StudySpec, path: str | Path) -> Path:
    """The best trial's complete spec as a grid over three seeds, which `litbench grid` runs unchanged."""
    from experiments.grid import expand, load_grid

    best = outcome.best
    if best is None or ATTR_SPEC not in best.user_attrs:
        raise SpecError(f"study {spec.name!r} has no completed trial yet; nothing to export")
    base = {k: v for k, v in best.user_attrs[ATTR_SPEC].items() if k != "seed"}
    grid = {
        "name": f"{spec.name}-best",
        "description": f"the best trial ({best.number}) of study {spec.name}: {outcome.objective} = "
        f"{best.value:.6g}",
        "base": base,
        "seeds": [0, 1, 2],
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (
        f"# Exported by `litbench tune` from study {spec.name!r}: trial {best.number}, "
        f"{outcome.objective} = {best.value:.6g}, params {json.dumps(best.params, sort_keys=True)}.\n"
        f"# Run it over three seeds: litbench grid {path}\n"
    )
    path.write_text(header + yaml.safe_dump(grid, sort_keys=False))
    expand(load_grid(path))  # what `litbench grid` does first: it must accept the file
    return path
