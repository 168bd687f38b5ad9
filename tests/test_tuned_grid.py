"""`litbench grid` with a `tune:` block: a study per configuration, then each best over the seeds.

A real SQLite MLflow store and Optuna storage under tmp_path; tiny runs on the bundled digits.
"""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from cli import main
from core.store import client_for
from experiments.specs import SpecError
from experiments.sweeps.grid import expand, load_grid
from experiments.tuning.storage import open_storage

REPO = Path(__file__).resolve().parents[1]
TINY_BASE = """\
base:
  data: {name: digits, batch_size: 32}
  model: {name: mlp, hidden: [16]}
  trainer: {max_epochs: 1, limit_train_batches: 2, limit_val_batches: 2, accelerator: cpu}
  tracking: {heatmaps: 0, log_checkpoint: false}
"""
TUNE = """\
tune:
  space:
    optimizer.lr: {type: float, low: 1.0e-3, high: 0.1, log: true}
  trials: 3
  sampler: {name: random, seed: 0}
  pruner: none
"""


def grid_file(tmp_path: Path, text: str, name: str = "tg") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"name: {name}\n{text}")
    return path


def line_of(path: Path, text: str) -> int:
    """The 1-based line of the first line of ``path`` that contains ``text``."""
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_tuned_grid_reruns_each_configurations_best_over_the_seeds(tmp_path: Path, capsys) -> None:
    axes = "axes:\n  optimizer.name: [sgd, adam]\n"
    path = grid_file(tmp_path, TINY_BASE + axes + TUNE + "seeds: [0, 1]\n")
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    command = ["grid", str(path), "--tracking-uri", uri, "--data-dir", str(tmp_path)]
    assert main(command) == 0
    out = capsys.readouterr().out
    assert "study tg-sgd: best val/acc" in out and "study tg-adam: best val/acc" in out

    storage = open_storage(f"sqlite:///{tmp_path / 'mlruns' / 'optuna.db'}")  # the default: beside the store
    assert sorted(optuna.get_all_study_names(storage)) == ["tg-adam", "tg-sgd"]
    studies = {name: optuna.load_study(study_name=name, storage=storage) for name in ("tg-sgd", "tg-adam")}
    for study in studies.values():
        assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE] * 3
        assert {t.user_attrs["litbench.spec"]["seed"] for t in study.trials} == {0}  # tune.seed

    client = client_for(uri)
    experiment = client.get_experiment_by_name("tg")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * 4
    seeds: dict[str, set[int]] = {}
    for run in runs:
        name = run.data.params["optimizer.name"]
        best = studies[f"tg-{name}"].best_trial
        assert float(run.data.params["optimizer.lr"]) == best.params["optimizer.lr"]
        assert run.data.tags["litbench.tuned.study"] == f"tg-{name}"
        assert run.data.tags["litbench.tuned.trial"] == str(best.number)
        assert '"optimizer.lr"' in run.data.tags["litbench.tuned.params"]
        assert run.data.tags["litbench.config"] == name
        seeds.setdefault(name, set()).add(int(run.data.params["seed"]))
    assert seeds == {"sgd": {0, 1}, "adam": {0, 1}}

    # the dry run reports both studies done and the four tuned cells done
    assert main(["grid", str(path), "--dry-run", "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    assert re.search(r"tg-sgd\s+│ 3/3 .* done", out) and re.search(r"tg-adam\s+│ 3/3 .* done", out)
    assert out.count(" done ") == 2 + 4

    # the same command again: the studies are reused, every cell was run before, nothing runs
    assert main(command) == 0
    assert capsys.readouterr().out.count("FINISHED (before)") == 4
    assert {r.info.run_id for r in client.search_runs([experiment.experiment_id])} == {
        r.info.run_id for r in runs
    }
    for name in studies:
        assert len(optuna.load_study(study_name=name, storage=storage).trials) == 3


def test_a_study_that_stops_short_runs_no_rerun(tmp_path: Path, capsys) -> None:
    """Every trial diverges: the study stops after max_failures, and the grid runs nothing."""
    tune = TUNE.replace("low: 1.0e-3, high: 0.1", "low: 1.0e+20, high: 1.0e+30").replace(
        "trials: 3", "trials: 3\n  max_failures: 2"
    )
    path = grid_file(tmp_path, TINY_BASE + "axes:\n  optimizer.name: [adam]\n" + tune)
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    assert main(["grid", str(path), "--tracking-uri", uri, "--data-dir", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "non-finite loss" in captured.out
    assert "1 of 1 studies stopped short: tg-adam (0 of 3 finished, 2 trials failed)" in captured.err
    experiment = client_for(uri).get_experiment_by_name("tg")
    assert experiment is None or not client_for(uri).search_runs([experiment.experiment_id])


@pytest.mark.parametrize(
    ("axes", "tune", "at", "expected"),
    [
        (
            "  optimizer.name: [sgd, adam]\n",
            TUNE.replace("pruner: none", "pruner: none\n  trails: 5"),
            "trails",
            "unknown key 'tune.trails' (valid keys here: space, objective, direction, sampler, pruner, "
            "trials, max_failures, seed; did you mean 'trials'?)",
        ),
        (
            "  optimizer.lr: [0.01, 0.1]\n",
            TUNE,
            "optimizer.lr: {type",
            "tune.space.optimizer.lr: 'optimizer.lr' is also set by the grid's axes.optimizer.lr[0] "
            "(line 8); a study tunes what its configuration holds fixed",
        ),
        (
            "  optimizer:\n    - {name: sgd, lr: 0.1}\n    - {name: adam}\n",
            TUNE,
            "optimizer.lr: {type",
            "'optimizer.lr' is also set by the grid's axes.optimizer[0].lr (line 9)",
        ),
        (
            "  optimizer.name: [sgd, adam]\n",
            TUNE.replace("optimizer.lr:", "optimizer.lrr:"),
            "optimizer.lrr",
            "tune.space.optimizer.lrr: not a field of any cell's RunSpec",
        ),
        (
            "  optimizer.name: [sgd, adam]\n",
            TUNE.replace("high: 0.1", "hihg: 0.1"),
            "optimizer.lr: {type",
            "unknown key 'tune.space.optimizer.lr.hihg' (valid keys here: when, low, high, log, step",
        ),
        (
            "  optimizer:\n    - {name: sgd, momentum: 0.9}\n    - {name: adam}\n",
            TUNE.replace("optimizer.lr:", "optimizer.nesterov: [false, true]\n    optimizer.lr:"),
            "optimizer.nesterov",
            "space.optimizer.nesterov: the value False gives an invalid run",
        ),
    ],
    ids=["unknown-key", "axis", "axis-entry", "no-such-field", "param-key", "one-config-only"],
)
def test_tune_block_errors_name_the_line_and_key(
    tmp_path: Path, capsys, axes: str, tune: str, at: str, expected: str
) -> None:
    path = grid_file(tmp_path, TINY_BASE + f"axes:\n{axes}" + tune)
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    assert main(["grid", str(path), "--dry-run", "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"litbench: error: {path}:{line_of(path, at)}: "), err
    assert expected in err
    assert len(err.strip().splitlines()) == 1, "one paragraph"


def test_one_config_only_names_the_configuration(tmp_path: Path) -> None:
    from experiments.tuning.tuned_grid import studies_for

    axes = "  optimizer:\n    - {name: sgd, momentum: 0.9}\n    - {name: adam}\n"
    tune = TUNE.replace("optimizer.lr:", "optimizer.nesterov: [false, true]\n    optimizer.lr:")
    grid = load_grid(grid_file(tmp_path, TINY_BASE + f"axes:\n{axes}" + tune))
    with pytest.raises(SpecError, match=r"\(found in the study of configuration 'adam'\)\.$"):
        studies_for(grid, expand(grid))


def test_a_changed_configuration_does_not_continue_its_old_study(tmp_path: Path, capsys) -> None:
    """A study of the same name made from another base would mix trials that are not comparable."""
    from experiments.tuning.storage import prepare_study
    from experiments.tuning.study_spec import StudySpec
    from experiments.tuning.tuned_grid import studies_for

    path = grid_file(tmp_path, TINY_BASE + "axes:\n  optimizer.name: [sgd]\n" + TUNE)
    grid = load_grid(path)
    (study,) = studies_for(grid, expand(grid))
    raw = study.spec.model_dump(mode="json")
    raw["base"]["trainer"]["max_epochs"] = 2  # the grid's base as it was before an edit
    prepare_study(StudySpec.model_validate(raw), f"sqlite:///{tmp_path / 'mlruns' / 'optuna.db'}")
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    assert main(["grid", str(path), "--dry-run", "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err
    assert "study 'tg-sgd'" in err and "another base, space or objective" in err


def test_shipped_tuned_grid_is_valid_without_the_data(tmp_path: Path, capsys) -> None:
    from experiments.tuning.tuned_grid import studies_for

    path = REPO / "experiments/grids/mnist_tuned_optimizers.yaml"
    grid = load_grid(path)
    cells = expand(grid)
    studies = studies_for(grid, cells)
    assert len(cells) == 20 and [c.spec.seed for c in cells[:5]] == [0, 1, 2, 3, 4]
    assert [s.spec.name for s in studies] == [
        "mnist_tuned_optimizers-sgd-momentum0.9",
        "mnist_tuned_optimizers-adam",
        "mnist_tuned_optimizers-rmsprop",
        "mnist_tuned_optimizers-adamw-l20.01",
    ]
    for study in studies:
        assert study.spec.trials == 10 and study.spec.pruner.name == "median"
        assert study.spec.base["data"]["name"] == "mnist" and study.spec.base["seed"] == 0
        assert list(study.spec.space) == ["optimizer.lr"] and len(study.cells) == 5
    assert studies[0].spec.base["optimizer"]["momentum"] == 0.9
    assert studies[3].spec.base["optimizer"]["name"] == "adamw"
    assert studies[3].spec.base["regularization"]["l2"] == 0.01  # decoupled: without it adamw is adam

    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    assert main(["grid", str(path), "--dry-run", "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    assert out.count("0/10") == 4 and "20 runs wait for their configuration's study" in out
