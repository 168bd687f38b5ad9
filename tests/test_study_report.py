"""`litbench report` on an Optuna study: a real tiny study tuned by `litbench tune` on the digits, then
its report checked against the Optuna storage and the MLflow runs. No mocks: real SQLite stores."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from cli import main
from core.store import client_for, experiment_id_for
from core.store import default_optuna_storage as default_storage
from experiments.tuning.parent import parent_run
from experiments.tuning.storage import prepare_study
from experiments.tuning.study_spec import load_study_spec
from reports import study_record as study_report
from reports.study import param_importances, write_study_report
from reports.study_record import StudyInputError

REPO = Path(__file__).resolve().parents[1]
STUDY = """name: tiny
base:
  data: {name: digits, batch_size: 32}
  model: {name: mlp, hidden: [32]}
  optimizer: {name: adam, lr: 0.01}
  trainer: {max_epochs: 2, limit_train_batches: 6, limit_val_batches: 2, accelerator: cpu}
  tracking: {heatmaps: 0, log_checkpoint: false}
space:
  optimizer.name: [adam, rmsprop]
  optimizer.lr: {type: float, low: 1.0e-8, high: 0.05, log: true}
sampler: {name: tpe, seed: 0}
pruner: {name: median, n_startup_trials: 2, n_warmup_steps: 0}
trials: 4
"""
# two that learn (the pruner's startup trials, never pruned), one that cannot: pruned at its first epoch
ENQUEUED = [
    {"optimizer.name": "adam", "optimizer.lr": 0.02},
    {"optimizer.name": "rmsprop", "optimizer.lr": 0.01},
    {"optimizer.name": "adam", "optimizer.lr": 1e-8},
    {"optimizer.name": "adam", "optimizer.lr": 0.03},
]
STUDY_FILES = {
    "summary.md",
    "trials.csv",
    "best_trials.md",
    "report.html",
    "optimization_history.png",
    "param_importances.png",
    "intermediate_values.png",
}


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """Study `tiny`, 4 trials, tuned by the real `litbench tune` into a fresh store (storage: optuna.db)."""
    root = tmp_path_factory.mktemp("study")
    path = root / "tiny.yaml"
    path.write_text(STUDY)
    uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    study = prepare_study(load_study_spec(path), default_storage(uri))
    for params in ENQUEUED:
        study.enqueue_trial(params)
    assert main(["tune", str(path), "--tracking-uri", uri, "--data-dir", str(root)]) == 0
    return uri, root


def stored(uri: str) -> optuna.Study:
    return optuna.load_study(study_name="tiny", storage=default_storage(uri))


def test_study_report_matches_the_storage_and_the_runs(tuned) -> None:
    uri, root = tuned
    storage_file = root / "mlruns" / "optuna.db"
    before = storage_file.read_bytes()
    report = write_study_report(uri, "tiny", root / "report")
    assert storage_file.read_bytes() == before, "a report opens the storage read-only"
    assert {p.name for p in report.out_dir.iterdir()} == STUDY_FILES == {p.name for p in report.files}

    study = stored(uri)
    trials = pd.read_csv(report.out_dir / "trials.csv")
    assert list(trials["number"]) == [t.number for t in study.trials] == [0, 1, 2, 3]
    words = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned"}
    assert list(trials["state"]) == [words[t.state] for t in study.trials]
    assert trials.loc[2, "state"] == "pruned" and list(trials["state"][:2]) == ["complete", "complete"]
    for row, trial in zip(trials.itertuples(), study.trials, strict=True):
        assert row.value == trial.value  # every digit: a pruned trial's is its last intermediate value
        assert row.duration_s == pytest.approx(trial.duration.total_seconds())
    assert list(trials["optimizer.name"]) == [p["optimizer.name"] for p in ENQUEUED]
    assert list(trials["optimizer.lr"]) == [p["optimizer.lr"] for p in ENQUEUED]

    # the run ids are the nested runs', trial by trial
    client = client_for(uri)
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    by_number = {
        r.data.tags["litbench.trial.number"]: r.info.run_id
        for r in runs
        if r.data.tags.get("litbench.trial.number")
    }
    assert list(trials["run_id"]) == [by_number[str(n)] for n in range(4)]

    best = study.best_trial
    summary = (report.out_dir / "summary.md").read_text()
    assert f"**Best: trial {best.number}, `val/acc` = {best.value:.4f}**" in summary
    assert by_number[str(best.number)] in summary and "maximizes `val/acc`" in summary
    complete = sum(t.state == TrialState.COMPLETE for t in study.trials)
    assert f"4 trials: {complete} complete, {4 - complete} pruned, 0 failed, 0 running." in summary
    assert "with the tpe sampler and the median pruner" in summary
    assert "Parameter importances (fANOVA" in summary  # two params, at least two complete trials

    best_rows = (report.out_dir / "best_trials.md").read_text().splitlines()
    first = next(line for line in best_rows if line.startswith("| 1 "))
    assert f"| {best.number} " in first and by_number[str(best.number)] in first

    page = (report.out_dir / "report.html").read_text()
    for name in ("optimization_history.png", "param_importances.png", "intermediate_values.png"):
        encoded = base64.b64encode((report.out_dir / name).read_bytes()).decode("ascii")
        assert f'src="data:image/png;base64,{encoded}"' in page, name
    assert "<h1>tiny (Optuna study)</h1>" in page and page.count("<table") == 2


def test_cli_reports_a_study_by_name_and_by_its_file(tuned, tmp_path: Path, capsys) -> None:
    uri, root = tuned
    command = [sys.executable, "-m", "cli", "report", "tiny", "--tracking-uri", uri]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "# tiny: study summary" in done.stdout and "wrote 7 files to reports/tiny/" in done.stdout
    assert {p.name for p in (tmp_path / "reports" / "tiny").iterdir()} == STUDY_FILES

    out = tmp_path / "from_file"
    assert main(["report", str(root / "tiny.yaml"), "--tracking-uri", uri, "--out", str(out)]) == 0
    assert (out / "trials.csv").read_text() == (tmp_path / "reports" / "tiny" / "trials.csv").read_text()
    capsys.readouterr()
    assert main(["report", "tiny", "--tracking-uri", uri, "--metric", "test/acc"]) == 2
    assert "--metric and --mode apply to grids only" in capsys.readouterr().err


def test_a_study_without_trials_is_a_one_paragraph_error(tmp_path: Path, tracking_uri: str, capsys) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text(STUDY.replace("name: tiny", "name: empty"))
    spec = load_study_spec(path)
    location = default_storage(tracking_uri)
    prepare_study(spec, location)  # what `litbench tune` does before its first trial
    client = client_for(tracking_uri)
    parent_run(client, experiment_id_for(client, "empty", tracking_uri), spec, location)

    with pytest.raises(StudyInputError, match="study 'empty' has no trials yet"):
        write_study_report(tracking_uri, "empty", tmp_path / "out")
    assert main(["report", "empty", "--tracking-uri", tracking_uri, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "no trials yet" in err and "litbench tune" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_missing_or_unreadable_storage_names_the_path_and_the_fix(
    tmp_path: Path, tracking_uri: str
) -> None:
    path = tmp_path / "gone.yaml"
    path.write_text(STUDY.replace("name: tiny", "name: gone"))
    spec = load_study_spec(path)
    database = tmp_path / "moved" / "optuna.db"
    client = client_for(tracking_uri)
    parent = parent_run(
        client, experiment_id_for(client, "gone", tracking_uri), spec, f"sqlite:///{database}"
    )

    with pytest.raises(StudyInputError) as err:
        write_study_report(tracking_uri, "gone", tmp_path / "out")
    message = str(err.value)
    assert "is missing" in message and str(database) in message and "litbench.study.storage" in message
    assert parent in message, "the fix names the parent run whose tag to change"
    assert not database.exists(), "a report never creates a storage"

    database.parent.mkdir()
    database.write_bytes(b"not a database" * 100)
    with pytest.raises(StudyInputError, match=f"cannot read the Optuna storage sqlite:///{database}"):
        write_study_report(tracking_uri, "gone", tmp_path / "out")


def _study_of(values: list[float], params: int) -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    for value in values:
        trial = study.ask()
        for p in range(params):
            trial.suggest_float(f"p{p}", 0.0, 1.0)
        study.tell(trial, value)
    return study


def test_importances_explain_why_when_there_are_none() -> None:
    importances, note = param_importances(_study_of([0.5], params=2))
    assert importances == {} and "at least two complete trials" in note and "has 1" in note
    importances, note = param_importances(_study_of([0.1, 0.5, 0.9], params=1))
    assert importances == {} and "Only one parameter, `p0`" in note
    importances, note = param_importances(_study_of([0.5, 0.5, 0.5], params=2))
    assert importances == {} and "could not be computed" in note
    conditional = _study_of([0.1, 0.5, 0.9], params=1)
    trial = conditional.ask()  # a parameter only some trials sample (a `when`) is left out
    trial.suggest_float("p0", 0.0, 1.0)
    trial.suggest_float("momentum", 0.0, 0.9)
    conditional.tell(trial, 0.3)
    importances, note = param_importances(conditional)
    assert importances == {} and "only `p0` was (the others depend on a `when`)" in note
    importances, note = param_importances(_study_of([0.1, 0.9, 0.4, 0.7], params=2))
    assert set(importances) == {"p0", "p1"} and sum(importances.values()) == pytest.approx(1.0)
    assert note is None


def test_tag_names_are_the_ones_tune_writes() -> None:
    """`litbench tune` writes and the report reads the same names: both take them from core.tags."""
    from core import tags as tag

    written = {
        "TAG_STUDY": tag.STUDY,
        "TAG_ROLE": tag.STUDY_ROLE,
        "TAG_TRIAL_NUMBER": tag.TRIAL_NUMBER,
        "TAG_PARENT": tag.PARENT,
        "ATTR_RUN_ID": tag.ATTR_RUN_ID,
        "ATTR_FAILURE": tag.ATTR_FAILURE,
    }
    assert {n: getattr(study_report, n) for n in written} == written
