"""Orphan detection against a real SQLite MLflow store: a live run is never retired, a dead one is."""

from __future__ import annotations

import subprocess
import sys

from mlflow import MlflowClient

from experiments import claims, tracking


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _running_run(client: MlflowClient, experiment_id: str, pid: int):
    tags = {**claims.worker_tags(attempt=0), claims.TAG_PID: str(pid)}
    return client.create_run(experiment_id, tags=tags)


def test_a_run_that_finished_after_the_snapshot_is_not_retired(tracking_uri: str) -> None:
    client = tracking.client_for(tracking_uri)
    experiment_id = client.create_experiment("claims")
    run = _running_run(client, experiment_id, _dead_pid())
    snapshot = client.search_runs([experiment_id])  # taken while the run was RUNNING
    client.set_terminated(run.info.run_id, "FINISHED")  # its worker finished, then exited

    assert claims.is_orphaned(snapshot[0])  # the stale view alone would call it an orphan
    assert claims.retire_orphans(client, snapshot) == 0
    assert client.get_run(run.info.run_id).info.status == "FINISHED"


def test_a_running_run_whose_process_is_gone_is_killed_with_a_reason(tracking_uri: str) -> None:
    client = tracking.client_for(tracking_uri)
    experiment_id = client.create_experiment("claims")
    dead = _running_run(client, experiment_id, _dead_pid())
    alive = _running_run(client, experiment_id, pid=1)  # init: alive for the whole test

    assert claims.retire_orphans(client, client.search_runs([experiment_id])) == 1
    assert client.get_run(dead.info.run_id).info.status == "KILLED"
    assert client.get_run(dead.info.run_id).data.tags[tracking.TAG_FAILURE].startswith("orphaned")
    assert client.get_run(alive.info.run_id).info.status == "RUNNING"


def test_a_claimed_attempt_is_won_once(tracking_uri: str) -> None:
    client = tracking.client_for(tracking_uri)
    experiment_id = client.create_experiment("claims")
    assert claims.claim(client, experiment_id, "abc", runs=[]) == 0
    assert claims.claim(client, experiment_id, "abc", runs=[]) is None  # fresh claim: not abandoned
    assert {e.name for e in client.search_experiments()} == {"claims", "Default"}
