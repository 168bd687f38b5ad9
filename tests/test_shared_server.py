"""Two grid (and tune) commands sharing a real `mlflow server` backed by PostgreSQL, as a team would run
them; a study's Optuna storage on PostgreSQL too."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.servers import fresh_database

REPO = Path(__file__).resolve().parents[1]


def run_two_commands_at_once(args: list[str], cwd: Path, tracking_uri: str) -> None:
    """Two `litbench` commands started together on one tracking server, as on two machines."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": tracking_uri}
    command = [sys.executable, "-m", "cli", *args]
    processes = [
        subprocess.Popen(
            command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs


def test_two_grid_commands_share_a_tracking_server(mlflow_server: str, tmp_path: Path) -> None:
    (tmp_path / "team.yaml").write_text(
        "name: team\nbase:\n  data: {name: digits, batch_size: 32}\n  model: {name: mlp, hidden: [16]}\n"
        "  trainer: {max_epochs: 1, limit_train_batches: 3, limit_val_batches: 2, accelerator: cpu}\n"
        "  tracking: {heatmaps: 2}\naxes:\n  optimizer.lr: [0.001, 0.01]\nseeds: [0, 1]\n"
    )
    run_two_commands_at_once(["grid", "team.yaml"], tmp_path, mlflow_server)

    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("team")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * 4
    assert len({r.data.tags["litbench.spec_hash"] for r in runs}) == 4  # every cell exactly once
    # the runs went through the server: params, metrics and artifacts are all there
    for run in runs:
        assert run.data.params["model.name"] == "mlp" and "test/acc" in run.data.metrics
        assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"spec.yaml", "heatmaps", "model"}
    # the claims are deleted experiments: the UI lists only the grid
    assert {e.name for e in client.search_experiments()} == {"team", "Default"}


def test_two_tune_commands_share_a_postgres_study_and_a_tracking_server(
    mlflow_server: str, optuna_database: str, tmp_path: Path
) -> None:
    """Two machines on one study: one parent run, unique trial numbers, each trial's run nested."""
    (tmp_path / "team_study.yaml").write_text(
        "name: team_study\nbase:\n  data: {name: digits, batch_size: 32}\n"
        "  model: {name: mlp, hidden: [16]}\n"
        "  trainer: {max_epochs: 1, limit_train_batches: 3, limit_val_batches: 2, accelerator: cpu}\n"
        "  tracking: {heatmaps: 0, log_checkpoint: false}\n"
        "space:\n  optimizer.lr: {type: float, low: 1.0e-3, high: 0.05, log: true}\npruner: none\ntrials: 3\n"
    )
    run_two_commands_at_once(
        ["tune", "team_study.yaml", "--storage", optuna_database], tmp_path, mlflow_server
    )

    import optuna
    from mlflow import MlflowClient

    study = optuna.load_study(study_name="team_study", storage=optuna_database)
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers)) and len(numbers) >= 3
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert 3 <= len(complete) <= 4, "at most one trial past the target per command"
    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("team_study")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("litbench.study.role") == "parent"]
    assert len(parents) == 1, "the two commands share one parent run"
    assert parents[0].data.tags["litbench.study.storage"] == optuna_database
    trial_runs = [r for r in runs if r not in parents]
    assert sorted(int(r.data.tags["litbench.trial.number"]) for r in trial_runs) == sorted(numbers)
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in trial_runs)
    assert {t.user_attrs["litbench.run_id"] for t in complete} <= {r.info.run_id for r in trial_runs}


def test_two_processes_open_one_fresh_postgres_study_storage_at_once() -> None:
    """Both create Optuna's tables; on PostgreSQL the slower one hits a duplicate type and retries."""
    code = (
        "import sys, optuna; from experiments.tuning.storage import open_storage; "
        "optuna.create_study(study_name='s', storage=open_storage(sys.argv[1]), load_if_exists=True)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for _ in range(3):  # without the retry, one of the two failed in 6 of 6 rounds here
        with fresh_database() as url:
            processes = [
                subprocess.Popen(
                    [sys.executable, "-c", code, url],
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                )
                for _ in range(2)
            ]
            outputs = [p.communicate(timeout=120)[0].decode()[-1500:] for p in processes]
            assert [p.returncode for p in processes] == [0, 0], outputs
