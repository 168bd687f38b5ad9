"""Reading a grid's runs back from a real MLflow store, logged through MLflow's own API."""

from __future__ import annotations

import pytest

from core import tags as tag
from core.store import client_for, experiment_id_for
from reports.collect import NoRunsError, load_grid_runs


def _log_run(client, experiment_id, *, config, seed, lr, acc=None, status="FINISHED", failure=None):
    tags = {
        tag.SPEC_HASH: f"{config}-{seed}",
        tag.CONFIG: config,
        tag.TASK_METRIC: "acc",
        tag.TASK_MODE: "max",
        tag.TASK_TARGET: "0.95",
        "mlflow.runName": f"{config}-s{seed}",
    }
    if failure:
        tags[tag.FAILURE] = failure
    run = client.create_run(experiment_id, tags=tags)
    run_id = run.info.run_id
    for key, value in {
        "seed": seed,
        "optimizer.lr": lr,
        "optimizer.name": "adam",
        "data.size.train": 100,
    }.items():
        client.log_param(run_id, key, value)
    if acc is not None:
        client.log_metric(run_id, "test/acc", acc)
    client.set_terminated(run_id, status)
    return run_id


def test_finished_runs_become_one_row_per_cell_and_failures_their_own_table(tracking_uri) -> None:
    client = client_for(tracking_uri)
    experiment_id = experiment_id_for(client, "g", tracking_uri)
    _log_run(client, experiment_id, config="lr0.1", seed=0, lr=0.1, acc=0.90)
    _log_run(client, experiment_id, config="lr0.1", seed=1, lr=0.1, acc=0.92)
    _log_run(client, experiment_id, config="lr0.01", seed=0, lr=0.01, acc=0.95)
    _log_run(
        client,
        experiment_id,
        config="lr0.01",
        seed=1,
        lr=0.01,
        status="FAILED",
        failure="NonFiniteLossError: x",
    )
    redone = _log_run(client, experiment_id, config="lr0.1", seed=0, lr=0.1, acc=0.91)  # --force again

    runs = load_grid_runs(tracking_uri, "g")
    assert (runs.metric, runs.mode, runs.target) == ("acc", "max", 0.95)
    assert runs.factors == ["optimizer.lr"]  # seed, sizes and constant params are not factors
    finished = runs.finished
    assert len(finished) == 3 and list(finished["config"]) == ["lr0.01", "lr0.1", "lr0.1"]
    assert finished.loc[(finished["config"] == "lr0.1") & (finished["seed"] == 0), "run_id"].item() == redone
    assert sorted(finished["test/acc"]) == pytest.approx([0.91, 0.92, 0.95])
    failed = runs.unfinished
    assert failed[["config", "status", "reason"]].values.tolist() == [
        ["lr0.01", "FAILED", "NonFiniteLossError: x"]
    ]


def test_missing_experiment_is_a_clear_error(tracking_uri) -> None:
    client_for(tracking_uri)
    with pytest.raises(NoRunsError, match="no experiment 'nope'"):
        load_grid_runs(tracking_uri, "nope")
