"""One DDP tuning trial in a process of its own, started by ``litbench tune``:

    python -m experiments.tuning.trial_process TASK.json OUTCOME.json

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
import sys
from pathlib import Path
from typing import Any

from experiments.processes import bootstrap


def main(argv: list[str]) -> int:
    bootstrap()
    task = json.loads(Path(argv[0]).read_text())
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

    from experiments.specs import validate_run_spec
    from experiments.tuning.storage import open_storage, quiet_optuna
    from experiments.tuning.study_spec import StudySpec, make_pruner
    from experiments.tuning.trials import train_trial

    quiet_optuna()
    # the pruner decides in rank 0's process: the study must carry the file's, not Optuna's default
    pruner = make_pruner(StudySpec.model_validate(task["study"]))
    study = optuna.load_study(
        study_name=task["study_name"], storage=open_storage(task["storage"]), pruner=pruner
    )
    trial = optuna.trial.Trial(study, task["trial_id"])
    spec = validate_run_spec(task["spec"], where=f"trial {trial.number}")
    return train_trial(trial, spec, task, ddp=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
