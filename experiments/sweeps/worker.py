"""One grid cell in its own process: claim it, run it, write the outcome. Started by the scheduler,
forked from the fork server (``run_cell``), or for a DDP cell as a command line of its own:

    python -m experiments.sweeps.worker TASK.json OUTCOME.json

A process per run isolates failures (an exception, an out-of-memory kill, a segfault ends only this
cell), gives each run its own ``CUDA_VISIBLE_DEVICES`` and thread count, and lets Lightning's DDP
launcher start the other ranks by running this same command again.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from core import tags as tag
from core.context import Context
from experiments import tracking
from experiments.processes import bootstrap


def main(argv: list[str]) -> int:
    """The entry point of a worker started as a fresh interpreter (DDP runs)."""
    bootstrap()
    task = json.loads(Path(argv[0]).read_text())
    outcome = run_task(task)
    if outcome is not None:
        write_outcome(Path(argv[1]), outcome)
    return 0


def run_cell(task: dict[str, Any], outcome_path: str) -> None:
    """The entry point of a worker forked from the fork server (``experiments.processes``)."""
    outcome = run_task(task)
    if outcome is not None:
        write_outcome(Path(outcome_path), outcome)


def write_outcome(path: Path, outcome: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(outcome))
    tmp.replace(path)


def run_task(task: dict[str, Any]) -> dict[str, Any] | None:
    """Claim the cell and run it; the outcome as data (None on a DDP rank other than 0).

    ``task["spec"]`` is the validated RunSpec itself in a forked worker, its JSON in a command line.
    """
    from experiments import claims
    from experiments.environment import launched_rank
    from experiments.run.runner import RunFailedError, execute, one_line
    from experiments.specs import RunSpec, validate_run_spec

    tracking.adopt_command(task.get("command"))
    spec = task["spec"]
    if not isinstance(spec, RunSpec):
        spec = validate_run_spec(spec, where=task["run_name"])
    ctx = Context(task["tracking_uri"], Path(task["data_dir"]))
    if launched_rank() > 0:  # a DDP rank started by Lightning's launcher: rank 0 owns claim and run
        execute(spec, ctx, experiment=task["experiment"])
        return None
    client = ctx.client
    experiment_id = task["experiment_id"]
    state = claims.settled_cell_states(client, experiment_id, [spec.spec_hash])[spec.spec_hash]
    wanted = {"missing"} | ({"failed"} if task["retry_failed"] or task["force"] else set())
    if task["force"]:
        wanted.add("done")
    if state.status not in wanted:
        return {"status": "SKIPPED", "reason": state.status, "run_id": state.finished_run_id}
    attempt = claims.claim(client, experiment_id, spec.spec_hash, state.runs)
    if attempt is None:
        return {"status": "SKIPPED", "reason": "running", "run_id": None}
    ctx.experiment_ids[task["experiment"]] = experiment_id
    try:
        result = execute(
            spec,
            ctx,
            experiment=task["experiment"],
            run_name=task["run_name"],
            tags={
                tag.GRID: task["experiment"],
                tag.CONFIG: task["config"],
                **tag.factor_tags(task.get("factors", {})),
                **task.get("tags", {}),  # e.g. the study a tuned grid's cell came from
            },
            attempt=attempt,
        )
    except RunFailedError as err:
        return {"status": "FAILED", "run_id": err.result.run_id, "failure": err.result.failure}
    except Exception as err:  # before the run was created (the data, the model, a parent's weights)
        failure = one_line(err)
        run_id = _record_failure(client, experiment_id, spec.spec_hash, task, attempt, failure)
        return {"status": "FAILED", "run_id": run_id, "failure": failure}
    return {"status": "FINISHED", "run_id": result.run_id, "metrics": result.metrics}


def _record_failure(
    client: Any, experiment_id: str, spec_hash: str, task: dict[str, Any], attempt: int, failure: str
) -> str:
    """A FAILED run for a cell that failed before its run existed: the store, ``litbench ls`` and the
    UI then say why, and the claimed attempt has its run (a later command claims the next one)."""
    tags = {
        tag.SPEC_HASH: spec_hash,
        tag.CONFIG: task["config"],
        tag.GRID: task["experiment"],
        tag.ATTEMPT: str(attempt),
        tag.FAILURE: failure,
        **task.get("tags", {}),
    }
    run = client.create_run(experiment_id, run_name=task["run_name"], tags=tags)
    client.set_terminated(run.info.run_id, "FAILED")
    return run.info.run_id


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
