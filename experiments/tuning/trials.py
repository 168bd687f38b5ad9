"""One tuning trial: sample the space, validate the spec, train it as a tracked run with Optuna's
pruning callback, and tell the study its value (or that it was pruned, or failed).

A trial's value is the objective's best validation value over the epochs (the epoch whose checkpoint
the run keeps, for the default objective); the test split is evaluated and tracked as for any run, and
never read by the study. A PRUNED trial's run ends KILLED with ``litbench.failure = "TrialPruned:
..."``; a failed trial's run is FAILED (an exception) or KILLED (its process died).
"""

from __future__ import annotations

import json
import math
import os
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import optuna

from core import tags as tag
from core.context import Context
from core.errors import SpecError
from core.metrics import better
from experiments import tracking
from experiments.processes import THREADS_ENV, start_command
from experiments.specs import validate_run_spec
from experiments.sweeps.grid import label
from experiments.tuning.search_space import sample
from experiments.tuning.storage import open_storage, trial_id
from experiments.tuning.study_spec import StudySpec


class TrialFailedError(Exception):
    """A trial that could not give a value (its run failed, or its spec was invalid)."""


class BestValue(L.Callback):
    """The objective's best validation value over the epochs: the trial's value."""

    def __init__(self, monitor: str, direction: str) -> None:
        self.monitor, self.direction = monitor, "max" if direction == "maximize" else "min"
        self.value: float | None = None

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        current = trainer.callback_metrics.get(self.monitor)
        if current is None or not math.isfinite(float(current)):
            return
        if self.value is None or better(self.direction, float(current), self.value):
            self.value = float(current)


def run_name_of(number: int, chosen: dict[str, Any]) -> str:
    return "-".join([f"t{number:03d}", *(label(key, value) for key, value in chosen.items())])


def is_ddp(spec) -> bool:
    """Whether the run trains on several processes (Lightning's launcher starts the other ranks)."""
    return isinstance(spec.trainer.devices, int) and spec.trainer.devices > 1


def objective_of(task: dict[str, Any], spec: StudySpec) -> Callable[[optuna.Trial], float]:
    """Optuna's objective for the study in ``task`` (its storage, store, data, parent run)."""
    tracking.adopt_command(task.get("command"))
    ctx = Context(task["tracking_uri"], Path(task["data_dir"]))
    client = ctx.client
    metric, direction = task["objective"], task["direction"]

    def fail(trial: optuna.Trial, reason: str, run_id: str | None = None) -> TrialFailedError:
        trial.set_user_attr(tag.ATTR_FAILURE, reason)
        if run_id:
            client.set_tag(run_id, tag.TRIAL_STATE, "failed")
        return TrialFailedError(reason)

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr(tag.ATTR_HOST, socket.gethostname())
        trial.set_user_attr(tag.ATTR_PID, os.getpid())
        extra_tags = task.get("run_tags", {})  # e.g. the Ray node under the Ray executor
        if tag.RAY_NODE in extra_tags:
            trial.set_user_attr(tag.ATTR_RAY_NODE, extra_tags[tag.RAY_NODE])
        try:
            raw, chosen = sample(trial, spec.space, spec.base)
            run_spec = validate_run_spec(raw, where=f"trial {trial.number}")
        except SpecError as err:
            raise fail(trial, str(err)) from None
        trial.set_user_attr(tag.ATTR_SPEC, run_spec.model_dump(mode="json"))
        run_name = run_name_of(trial.number, chosen)
        run_tags = {
            tag.STUDY: spec.name,
            tag.PARENT: task["parent_run_id"],
            tag.TRIAL_NUMBER: str(trial.number),
            tag.TRIAL_STATE: "running",
            tag.CONFIG: run_name,
            **tag.factor_tags(
                {k: label(k, v) if isinstance(v, dict | list) else str(v) for k, v in chosen.items()}
            ),
            **extra_tags,
        }
        job = {
            "objective": metric,
            "direction": direction,
            "experiment": spec.name,  # the study is its own experiment
            "tracking_uri": task["tracking_uri"],
            "data_dir": task["data_dir"],
            "run_name": run_name,
            "tags": run_tags,
        }
        try:
            if is_ddp(run_spec):
                outcome = _ddp_trial(trial, run_spec, job, task, fail)
            else:
                outcome = train_trial(trial, run_spec, job, ddp=False)
        except (KeyboardInterrupt, SystemExit):  # Lightning turns Ctrl-C into SystemExit; Optuna wants this
            trial.set_user_attr(tag.ATTR_FAILURE, "interrupted")
            raise KeyboardInterrupt from None
        return _tell(trial, outcome, client, metric, fail)

    return objective


def train_trial(trial, spec, job: dict[str, Any], ddp: bool) -> dict[str, Any] | None:
    """Train one trial's run with the pruning callback; its outcome as data: complete (with the
    objective's best value), pruned or failed, and the run's id. None on a DDP rank other than 0.

    ``job`` holds objective, direction, experiment, tracking_uri, data_dir, run_name and tags. Under
    DDP the callback does not raise during fit; ``check_pruned`` raises after it, on every rank.
    Ctrl-C (KeyboardInterrupt, SystemExit) is left to the caller.
    """
    from optuna_integration import PyTorchLightningPruningCallback

    from experiments.run.runner import RunFailedError, RunStoppedError, execute

    pruning = PyTorchLightningPruningCallback(trial, monitor=job["objective"])
    best = BestValue(job["objective"], job["direction"])
    try:
        result = execute(
            spec,
            Context(job["tracking_uri"], Path(job["data_dir"])),
            experiment=job["experiment"],
            run_name=job["run_name"],
            tags=job["tags"],
            extra_callbacks=[best, pruning],
            stop_on=(optuna.TrialPruned,),
            after_fit=pruning.check_pruned if ddp else None,
        )
    except optuna.TrialPruned:  # a DDP rank other than 0 (rank 0's pruning comes as RunStoppedError)
        return None
    except RunStoppedError as err:
        return {"status": "pruned", "run_id": err.result.run_id, "message": str(err.__cause__)}
    except RunFailedError as err:
        return {"status": "failed", "run_id": err.result.run_id, "failure": err.result.failure or "failed"}
    except Exception as err:  # before its run existed: the data, the model
        failure = f"{type(err).__name__}: {' '.join(str(err).split())}"
        return {"status": "failed", "run_id": None, "failure": failure}
    if not result.run_id:  # a DDP rank other than 0
        return None
    return {"status": "complete", "run_id": result.run_id, "value": best.value}


def _ddp_trial(
    trial: optuna.Trial,
    run_spec,
    job: dict[str, Any],
    task: dict[str, Any],
    fail: Callable[..., TrialFailedError],
) -> dict[str, Any]:
    """A DDP trial's outcome: trained by ``experiments.tuning.trial_process`` in a process of its own
    (Lightning's launcher re-runs a command line for the other ranks); this process keeps the trial."""
    storage = open_storage(task["storage"])
    with tempfile.TemporaryDirectory(prefix="litbench-trial-") as scratch:
        task_path, outcome_path = Path(scratch) / "task.json", Path(scratch) / "outcome.json"
        task_path.write_text(
            json.dumps(
                {
                    **job,
                    "study_name": trial.study.study_name,
                    "study": task["study"],
                    "storage": task["storage"],
                    "trial_id": trial_id(storage, trial.study.study_name, trial.number),
                    "spec": run_spec.model_dump(mode="json"),
                }
            )
        )
        threads = int(os.environ.get(THREADS_ENV) or os.cpu_count() or 1)
        env = {THREADS_ENV: str(max(1, threads // run_spec.trainer.devices))}
        process = start_command(
            "experiments.tuning.trial_process",
            [str(task_path), str(outcome_path)],
            env,
            Path(scratch) / "trial.log",
        )
        try:
            code = process.wait()
        except BaseException:  # Ctrl-C: rank 0 ends its run KILLED, then this trial fails
            process.terminate()
            process.wait(timeout=60)
            raise
        if not outcome_path.exists():
            raise fail(
                trial, f"the DDP trial process exited {code} without an outcome: {process.exit_reason()}"
            )
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
        trial.set_user_attr(tag.ATTR_RUN_ID, run_id)
    if outcome["status"] == "pruned":
        client.set_tag(run_id, tag.TRIAL_STATE, "pruned")
        raise optuna.TrialPruned(outcome["message"])
    if outcome["status"] == "failed":
        raise fail(trial, outcome["failure"], run_id)
    if outcome["value"] is None:
        raise fail(trial, f"{metric} was never logged with a finite value", run_id)
    client.set_tag(run_id, tag.TRIAL_STATE, "complete")
    client.log_metric(run_id, "study/objective", outcome["value"])
    return outcome["value"]
