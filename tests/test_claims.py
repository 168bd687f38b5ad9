"""Orphan detection against a real SQLite MLflow store: a live run is never retired, a dead one is."""

from __future__ import annotations

import subprocess
import sys

from mlflow import MlflowClient

from core import tags as tag
from core.store import client_for
from experiments import claims


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _running_run(client: MlflowClient, experiment_id: str, pid: int):
    tags = {**claims.worker_tags(attempt=0), tag.PID: str(pid)}
    return client.create_run(experiment_id, tags=tags)


def test_a_run_that_finished_after_the_snapshot_is_not_retired(tracking_uri: str) -> None:
    client = client_for(tracking_uri)
    experiment_id = client.create_experiment("claims")
    run = _running_run(client, experiment_id, _dead_pid())
    snapshot = client.search_runs([experiment_id])  # taken while the run was RUNNING
    client.set_terminated(run.info.run_id, "FINISHED")  # its worker finished, then exited

    assert claims.is_orphaned(snapshot[0])  # the stale view alone would call it an orphan
    assert claims.retire_orphans(client, snapshot) == 0
    assert client.get_run(run.info.run_id).info.status == "FINISHED"


def test_a_running_run_whose_process_is_gone_is_killed_with_a_reason(tracking_uri: str) -> None:
    client = client_for(tracking_uri)
    experiment_id = client.create_experiment("claims")
    dead = _running_run(client, experiment_id, _dead_pid())
    alive = _running_run(client, experiment_id, pid=1)  # init: alive for the whole test

    assert claims.retire_orphans(client, client.search_runs([experiment_id])) == 1
    assert client.get_run(dead.info.run_id).info.status == "KILLED"
    assert client.get_run(dead.info.run_id).data.tags[tag.FAILURE].startswith("orphaned")
    assert client.get_run(alive.info.run_id).info.status == "RUNNING"


def test_a_claimed_attempt_is_won_once(tracking_uri: str) -> None:
    client = client_for(tracking_uri)
    experiment_id = client.create_experiment("claims")
    assert claims.claim(client, experiment_id, "abc", runs=[]) == 0
    assert claims.claim(client, experiment_id, "abc", runs=[]) is None  # fresh claim: not abandoned
    assert {e.name for e in client.search_experiments()} == {"claims", "Default"}


def test_a_worker_that_finishes_and_exits_after_the_read_leaves_its_cell_done(tracking_uri: str) -> None:
    # The race behind a cell run twice by two grid commands: the status was read while the worker
    # lived, the worker then finished the run and exited, and only then was its process checked.
    client = client_for(tracking_uri)
    experiment_id = client.create_experiment("claims")
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    run = _running_run(client, experiment_id, worker.pid)
    read_while_alive = client.get_run(run.info.run_id)
    client.set_terminated(run.info.run_id, "FINISHED")
    worker.kill()
    worker.wait()

    state = claims.cell_state([claims.settle(client, read_while_alive)])
    assert state.status == "done"
    assert state.finished_run_id == run.info.run_id
    assert client.get_run(run.info.run_id).info.status == "FINISHED"


def test_a_live_workers_run_stays_running_and_a_dead_ones_is_killed_with_tags(tracking_uri: str) -> None:
    client = client_for(tracking_uri)
    experiment_id = client.create_experiment("claims")
    live = _running_run(client, experiment_id, pid=1)
    dead = _running_run(client, experiment_id, _dead_pid())

    assert claims.cell_state([claims.settle(client, live)]).status == "running"
    settled = claims.settle(client, dead, tags={"litbench.trial.state": "failed"})
    assert settled.info.status == "KILLED"
    assert settled.data.tags["litbench.trial.state"] == "failed"
    assert claims.cell_state([settled]).status == "missing"  # so the next attempt may claim it


def test_a_claim_whose_worker_died_on_this_host_is_taken_over_at_once(tracking_uri: str) -> None:
    """A worker that claimed an attempt and died before creating its run: the next worker takes the
    next attempt at once (its process is gone), not after the 120 s grace for other hosts."""
    from pathlib import Path

    client = client_for(tracking_uri)
    experiment_id = client.create_experiment("dead-claimer")
    code = (
        "from core.store import client_for; from experiments import claims; "
        f"print(claims.claim(client_for({tracking_uri!r}), {experiment_id!r}, 'abc', runs=[]))"
    )
    repo = str(Path(__file__).resolve().parents[1])
    done = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "0"  # the dead worker had attempt 0
    assert claims.claim(client, experiment_id, "abc", runs=[]) == 1
    assert claims.claim(client, experiment_id, "abc", runs=[]) is None  # ours is alive: not taken over


def test_after_a_taken_over_claim_the_next_attempt_is_past_the_gap(tracking_uri: str) -> None:
    """Runs of attempts 0 and 2 (attempt 1 was claimed by a worker that died before its run): the
    next claim is attempt 3, not attempt 2 again, which its run holds (a grid looped on it)."""
    client = client_for(tracking_uri)
    experiment_id = client.create_experiment("gap")
    runs = [client.create_run(experiment_id, tags={tag.ATTEMPT: str(a)}) for a in (0, 2)]
    assert claims.claim(client, experiment_id, "abc", runs=runs) == 3
