"""Suite files: loading (names, the method axis, seeds), their bad inputs as one clear error, and
`litbench suite` then `litbench report` on a tiny real suite."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import SpecError
from experiments.sweeps.grid import expand
from experiments.sweeps.suite import is_suite_file, load_suite
from tests.test_grid_runner import litbench, runs_by_status

REPO = Path(__file__).resolve().parents[1]
TINY_GRID = """base:
  data: {name: digits, batch_size: 64}
  model: {name: MODEL}
  trainer: {max_epochs: 2, limit_train_batches: 4, limit_val_batches: 2, accelerator: cpu}
  tracking: {heatmaps: 0}
"""
SUITE = """name: tiny
method: optimizer
methods: [{name: sgd, lr: 0.05}, {name: adam, lr: 0.001}, {name: adamw, lr: 0.001}]
with: {regularization.l2: [0.0, 0.0, 0.01]}
seeds: [0]
workloads:
  mlp: {grid: mlp.yaml, target: 0.5}
  cnn: {grid: cnn.yaml, budget_s: 30}
"""


def _suite(tmp_path: Path, text: str = SUITE) -> Path:
    for model in ("mlp", "cnn"):
        (tmp_path / f"{model}.yaml").write_text(TINY_GRID.replace("MODEL", model))
    path = tmp_path / "tiny.yaml"
    path.write_text(text)
    return path


def test_a_suite_names_its_grids_and_adds_the_methods_with_their_keys(tmp_path: Path) -> None:
    suite = load_suite(_suite(tmp_path))
    assert is_suite_file(tmp_path / "tiny.yaml") and not is_suite_file(tmp_path / "mlp.yaml")
    assert [w.experiment for w in suite.workloads] == ["tiny-mlp", "tiny-cnn"]
    assert [(w.target, w.budget_s) for w in suite.workloads] == [(0.5, None), (None, 30)]
    cells = expand(suite.workloads[0].grid)
    assert len(cells) == 3
    decay = {c.spec.optimizer.name: c.spec.regularization.l2 for c in cells}
    assert decay == {"sgd": 0.0, "adam": 0.0, "adamw": 0.01}  # adamw's decoupled decay goes with it
    assert {c.factors["optimizer"] for c in cells} == {"sgd-lr0.05", "adam-lr0.001", "adamw-lr0.001"}


@pytest.mark.parametrize(
    ("change", "culprit"),
    [
        (("workloads:", "workload:"), "workload"),  # a typo in a key
        (("mlp.yaml, target", "nope.yaml, target"), "nope.yaml' does not exist"),
        (("[0.0, 0.0, 0.01]", "[0.0, 0.01]"), "with.regularization.l2 has 2 values for 3 methods"),
        (("  cnn: {grid: cnn.yaml, budget_s: 30}\n", ""), "workloads"),  # one workload compares nothing
        (("budget_s: 30", "budget_s: -1"), "budget_s"),
    ],
)
def test_a_bad_suite_is_one_clear_error(tmp_path: Path, change: tuple[str, str], culprit: str) -> None:
    path = _suite(tmp_path, SUITE.replace(*change))
    with pytest.raises(SpecError, match=culprit.replace(".", r"\.").replace("[", r"\[")):
        load_suite(path)


def test_a_grid_that_varies_the_method_itself_is_refused(tmp_path: Path) -> None:
    path = _suite(tmp_path)
    (tmp_path / "cnn.yaml").write_text(TINY_GRID.replace("MODEL", "cnn") + "axes:\n  optimizer.name: [sgd]\n")
    with pytest.raises(SpecError, match=r"varies 'optimizer\.name', which suite 'tiny' varies"):
        load_suite(path)


def test_suite_runs_every_workload_then_reports_and_resumes(tmp_path: Path) -> None:
    path = _suite(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    command = ("suite", str(path), "--workers", "2", "--tracking-uri", uri)
    first = litbench(*command, cwd=tmp_path)
    output, _ = first.communicate(timeout=600)
    assert first.returncode == 0, output
    assert "litbench suite tiny: 2 workloads, 6 runs" in output
    for experiment in ("tiny-mlp", "tiny-cnn"):
        assert len(runs_by_status(uri, experiment)["FINISHED"]) == 3
    again = litbench(*command, cwd=tmp_path)  # finished cells are not run again
    output, _ = again.communicate(timeout=600)
    assert again.returncode == 0, output
    assert output.count("FINISHED (before)") == 6
    report = litbench("report", str(path), "--tracking-uri", uri, "--out", str(tmp_path / "r"), cwd=tmp_path)
    output, _ = report.communicate(timeout=300)
    assert report.returncode == 0, output
    assert "Friedman's test over the 2 workloads" in output
    assert (tmp_path / "r" / "cd_diagram.png").is_file()
    bad = litbench("suite", str(tmp_path / "mlp.yaml"), "--tracking-uri", uri, cwd=tmp_path)
    output, _ = bad.communicate(timeout=300)
    assert bad.returncode == 2 and "Traceback" not in output, output
