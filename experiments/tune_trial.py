"""One DDP tuning trial in a process of its own, started by ``litbench tune``:

    python -m experiments.tune_trial TASK.json OUTCOME.json

The tune command samples the trial (the trial stays its own: Optuna's heartbeat, its state) and
starts this command; Lightning's DDP launcher starts the other ranks by running the same command
again. Every rank opens the study's RDB storage, builds the trial from its id and attaches
optuna-integration's ``PyTorchLightningPruningCallback``, following the library's DDP contract:
rank 0 reports each epoch's value and asks the pruner; the ranks stop together; after fit every
rank calls ``check_pruned``, which raises ``TrialPruned`` from what rank 0 stored. Rank 0 writes
the outcome (complete with its value, pruned, or failed) for the tune command to tell Optuna.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any


def main(argv: list[str]) -> int:
    task = json.loads(Path(argv[0]).read_text())
    threads = os.environ.get("LITBENCH_NUM_THREADS")
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    from experiments.environment import launched_rank

    outcome = run_trial(task)
    if outcome is not None and launched_rank() == 0:  # the other ranks' failures show in rank 0's
        out = Path(argv[1])
        out.with_suffix(".tmp").write_text(json.dumps(outcome))
        out.with_suffix(".tmp").replace(out)
    return 0


def run_trial(task: dict[str, Any]) -> dict[str, Any] | None:
    """Rank 0: the outcome. Other ranks: None (they train, rank 0 records)."""
    import optuna

    from experiments.environment import quiet_libraries
    from experiments.specs import validate_run_spec
    from experiments.study import StudySpec, make_pruner
    from experiments.tune import open_storage, quiet_optuna

    quiet_libraries()
    quiet_optuna()
    # the pruner decides in rank 0's process: the study must carry the file's, not Optuna's default
    pruner = make_pruner(StudySpec.model_validate(task["study"]))
    study = optuna.load_study(
        study_name=task["study_name"], storage=open_storage(task["storage"]), pruner=pruner
    )
    trial = optuna.trial.Trial(study, task["trial_id"])
    spec = validate_run_spec(task["spec"], where=f"trial {trial.number}")
    return train_trial(trial, spec, task, ddp=True)


def train_trial(trial, spec, job: dict[str, Any], ddp: bool) -> dict[str, Any] | None:
    """Train one trial's run with the pruning callback; its outcome as data: complete (with the
    objective's best value), pruned or failed, and the run's id. None on a DDP rank other than 0.

    ``job`` holds objective, direction, experiment, tracking_uri, data_dir, run_name and tags. Under
    DDP the callback does not raise during fit; ``check_pruned`` raises after it, on every rank.
    Ctrl-C (KeyboardInterrupt, SystemExit) is left to the caller.
    """
    import optuna
    from optuna_integration import PyTorchLightningPruningCallback

    from experiments.runner import RunFailedError, RunStoppedError, execute
    from experiments.tune import BestValue

    pruning = PyTorchLightningPruningCallback(trial, monitor=job["objective"])
    best = BestValue(job["objective"], job["direction"])
    try:
        result = execute(
            spec,
            experiment=job["experiment"],
            tracking_uri=job["tracking_uri"],
            data_dir=Path(job["data_dir"]),
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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
