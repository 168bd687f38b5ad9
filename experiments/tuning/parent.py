"""A study's tracking: one MLflow experiment (the study's name) with one parent run that carries the
best value and params so far, and trial runs nested under it; trials whose process died are retired.

The parent run is found again by its ``litbench.study.role = parent`` tag on resume. It carries tags
``litbench.best.*`` and metrics ``study/best_value``, ``study/complete``, ... per trial number. Each
trial is a run nested under it (``mlflow.parentRunId``) with tags ``litbench.study``,
``litbench.trial.number`` and ``litbench.trial.state`` (complete, pruned, failed).
"""

from __future__ import annotations

import json
import socket
import tempfile
import time
from pathlib import Path

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from core import tags as tag
from experiments import claims
from experiments.processes import process_alive
from experiments.tuning.storage import best_trial, open_storage, trial_id
from experiments.tuning.study_spec import StudySpec, resolve_objective

POLL_S = 1.0


def parent_run(client, experiment_id: str, spec: StudySpec, location: str) -> str:
    """The study's parent run: found by its tags, else created with the study file as an artifact.

    Commands started together on a fresh study (several machines, one tracking server) would each
    create one; the one that wins the claim (``claims.claim``) creates it and the others wait for it.
    """
    while True:
        found = client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{tag.STUDY_ROLE}` = 'parent' and tags.`{tag.STUDY}` = '{spec.name}'",
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
    run_tags = {
        tag.STUDY: spec.name,
        tag.STUDY_ROLE: "parent",
        tag.STUDY_OBJECTIVE: objective.metric,
        tag.STUDY_DIRECTION: objective.direction,
        tag.STUDY_SAMPLER: spec.sampler.name,
        tag.STUDY_PRUNER: spec.pruner.name,
        tag.STUDY_STORAGE: location,
    }
    run = client.create_run(experiment_id, run_name=spec.name, tags=run_tags)
    with tempfile.TemporaryDirectory(prefix="litbench-study-") as folder:
        path = Path(folder) / "study.yaml"
        path.write_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
        client.log_artifact(run.info.run_id, str(path))
    return run.info.run_id


def update_parent(client, parent_run_id: str, study: optuna.Study, number: int) -> None:
    """Counts and the best trial so far, after trial ``number`` ended."""
    from mlflow.entities import Metric, RunTag

    trials = study.get_trials(deepcopy=False)
    now = int(time.time() * 1000)
    counts = {
        "study/complete": sum(t.state == TrialState.COMPLETE for t in trials),
        "study/pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "study/failed": sum(t.state == TrialState.FAIL for t in trials),
    }
    metrics = [Metric(key, float(value), now, number) for key, value in counts.items()]
    best = best_trial(study)
    best_tags = {}
    if best is not None:
        metrics.append(Metric("study/best_value", float(best.value), now, number))
        best_tags = {
            tag.BEST_VALUE: f"{best.value:.6g}",
            tag.BEST_TRIAL: str(best.number),
            tag.BEST_PARAMS: json.dumps(best.params, sort_keys=True),
            tag.BEST_RUN_ID: str(best.user_attrs.get(tag.ATTR_RUN_ID, "")),
        }
    client.log_batch(parent_run_id, metrics=metrics, tags=[RunTag(k, v) for k, v in best_tags.items()])


def retire_stale(study: optuna.Study, location: str, client, experiment_id: str) -> int:
    """Trials RUNNING in the storage whose process is gone become FAIL; their runs become KILLED."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{tag.STUDY}` = '{study.study_name}' and attributes.status = 'RUNNING'",
        max_results=5000,
    )
    runs = [r for r in runs if r.data.tags.get(tag.STUDY_ROLE) != "parent"]
    run_of = {r.data.tags.get(tag.TRIAL_NUMBER): r for r in runs}
    storage, retired = open_storage(location), 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = _orphaned(trial, run_of.get(str(trial.number)))
        if reason is None:
            continue
        key = trial_id(storage, study.study_name, trial.number)
        try:
            storage.set_trial_user_attr(key, tag.ATTR_FAILURE, reason)
            storage.set_trial_user_attr(key, tag.ATTR_ORPHANED, True)
            storage.set_trial_state_values(key, TrialState.FAIL)
            retired += 1
        except optuna.exceptions.UpdateFinishedTrialError:  # another process ended it just now
            continue
    optuna.storages.fail_stale_trials(study)  # Optuna's own heartbeat, where the storage has one
    for run in run_of.values():  # a run outlives its trial only when their worker died
        claims.settle(client, run, tags={tag.TRIAL_STATE: "failed"})
    return retired


def _orphaned(trial: FrozenTrial, run) -> str | None:
    host, pid = trial.user_attrs.get(tag.ATTR_HOST), trial.user_attrs.get(tag.ATTR_PID)
    if host == socket.gethostname() and isinstance(pid, int):
        alive = process_alive(pid)
        return None if alive else f"orphaned: its worker (pid {pid} on {host}) is gone"
    if run is not None:
        return "orphaned: its run's heartbeat stopped" if claims.is_orphaned(run) else None
    started = trial.datetime_start.timestamp() if trial.datetime_start else time.time()
    if time.time() - started > claims.ORPHAN_AFTER_S:
        return "orphaned: no sign of its worker since it started"
    return None
