"""One grid cell in its own process: claim it, run it, write the outcome. Started by the scheduler.

    python -m experiments.worker TASK.json OUTCOME.json

A process per run isolates failures (an exception, an out-of-memory kill, a segfault ends only this
cell), gives each run its own ``CUDA_VISIBLE_DEVICES`` and thread count, and lets Lightning's DDP
launcher start the other ranks by running this same command again.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

EXIT_DONE = 0  # an outcome file was written, whatever the run's status


PRELOAD = ["torch", "lightning", "mlflow", "experiments.runner"]  # what the fork server imports once


def main(argv: list[str]) -> int:
    """The entry point of a worker started as a fresh interpreter (DDP runs)."""
    run_file_task(Path(argv[0]), Path(argv[1]))
    return EXIT_DONE


def run_forked(task_path: str, outcome_path: str, log_path: str, env: dict[str, str]) -> None:
    """The entry point of a worker forked from the scheduler's fork server, imports already done."""
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.environ.update(env)  # before anything touches CUDA, so CUDA_VISIBLE_DEVICES takes effect
    run_file_task(Path(task_path), Path(outcome_path))


def run_file_task(task_path: Path, outcome_path: Path) -> None:
    task = json.loads(task_path.read_text())
    threads = os.environ.get("LITBENCH_NUM_THREADS")
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    # The scheduler stops workers with SIGTERM; as KeyboardInterrupt the run is recorded as KILLED.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    outcome = run_task(task)
    if outcome is not None:
        tmp = outcome_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(outcome))
        tmp.replace(outcome_path)


def run_task(task: dict[str, Any]) -> dict[str, Any] | None:
    from experiments import claims, tracking
    from experiments.environment import launched_rank
    from experiments.runner import RunFailedError, execute
    from experiments.specs import validate_run_spec

    spec = validate_run_spec(task["spec"], where=task["run_name"])
    data_dir = Path(task["data_dir"])
    if launched_rank() > 0:  # a DDP rank started by Lightning's launcher: rank 0 owns claim and run
        execute(spec, experiment=task["experiment"], tracking_uri=task["tracking_uri"], data_dir=data_dir)
        return None
    client = tracking.client_for(task["tracking_uri"])
    experiment_id = tracking.experiment_id_for(client, task["experiment"], task["tracking_uri"])
    state = claims.settled_cell_states(client, experiment_id, [spec.spec_hash])[spec.spec_hash]
    wanted = {"missing"} | ({"failed"} if task["retry_failed"] or task["force"] else set())
    if task["force"]:
        wanted.add("done")
    if state.status not in wanted:
        return {"status": "SKIPPED", "reason": state.status, "run_id": state.finished_run_id}
    attempt = claims.claim(client, experiment_id, spec.spec_hash, state.runs)
    if attempt is None:
        return {"status": "SKIPPED", "reason": "running", "run_id": None}
    try:
        result = execute(
            spec,
            experiment=task["experiment"],
            tracking_uri=task["tracking_uri"],
            data_dir=data_dir,
            run_name=task["run_name"],
            tags={
                tracking.TAG_GRID: task["experiment"],
                tracking.TAG_CONFIG: task["config"],
                **tracking.factor_tags(task.get("factors", {})),
                **task.get("tags", {}),  # e.g. the study a tuned grid's cell came from
            },
            attempt=attempt,
        )
    except RunFailedError as err:
        return {"status": "FAILED", "run_id": err.result.run_id, "failure": err.result.failure}
    except Exception as err:  # before the run was created (the data, the model): no run to mark
        return {"status": "FAILED", "run_id": None, "failure": f"{type(err).__name__}: {err}"}
    return {"status": "FINISHED", "run_id": result.run_id, "metrics": result.metrics}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
