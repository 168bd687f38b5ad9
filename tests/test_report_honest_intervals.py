"""Honest report tables: intervals stay inside a metric's range and name their method, a zip group is one
factor, a marginal says what it pools, and the same store gives the same bytes. Real MLflow stores
under tmp_path, filled through MLflow's own API with the tags `litbench grid` writes (no training)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from core import tags as tag
from core.metrics import bounds_of, declare, is_declared
from core.store import client_for, experiment_id_for
from experiments.sweeps.grid import GridCell, expand, load_grid
from reports.build import write_report
from reports.collect import load_grid_runs
from reports.stats import over_seeds

ZIP_GRID = """\
name: zipped
base:
  data: {name: digits, batch_size: 32}
  trainer: {accelerator: cpu}
axes:
  regularization.dropout: [0.0, 0.5]
zip:  # three models, each with its own learning rate and epochs; two share a learning rate
  - model: [{name: mlp, hidden: [16]}, {name: mlp, hidden: [32]}, {name: cnn}]
    optimizer.lr: [0.01, 0.01, 0.003]
    trainer.max_epochs: [1, 2, 1]
seeds: [0, 1, 2]
"""
GROUP = "model+optimizer.lr+trainer.max_epochs"


def _log(client, experiment_id: str, name: str, config: str, seed: int, factors: dict, metrics: dict) -> None:
    """One FINISHED run tagged as the grid worker tags it (experiments/sweeps/worker.py)."""
    run_tags = {
        tag.SPEC_HASH: f"{config}-s{seed}",
        tag.CONFIG: config,
        tag.GRID: name,
        tag.TASK_METRIC: "acc",
        tag.TASK_MODE: "max",
        tag.TASK_TARGET: "0.9",
        **tag.factor_tags(factors),
    }
    run = client.create_run(experiment_id, run_name=f"{config}-s{seed}", tags=run_tags)
    client.log_param(run.info.run_id, "seed", seed)
    for key, value in metrics.items():
        client.log_metric(run.info.run_id, key, value)
    client.set_terminated(run.info.run_id, "FINISHED")


def _zip_cells(tmp_path: Path) -> list[GridCell]:
    (tmp_path / "zipped.yaml").write_text(ZIP_GRID)
    return expand(load_grid(tmp_path / "zipped.yaml"))


@pytest.fixture(scope="module")
def zipped(
    shared_tracking_uri: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Path, list[GridCell]]:
    """The zip grid's 18 cells (2 dropouts x 3 zipped models x 3 seeds), each with a known accuracy."""
    root = tmp_path_factory.mktemp("zipped")
    uri = shared_tracking_uri  # one store for the module: creating one takes seconds
    client = client_for(uri)
    experiment_id = experiment_id_for(client, "honest_zipped", uri)
    cells = _zip_cells(root)
    for i, cell in enumerate(cells):
        accuracy = 0.80 + 0.01 * (i // 3) + 0.002 * cell.spec.seed
        _log(
            client,
            experiment_id,
            "honest_zipped",
            cell.config,
            cell.spec.seed,
            cell.factors,
            {"test/acc": accuracy},
        )
    return uri, root, cells


def test_bounds_are_declared_beside_the_direction() -> None:
    assert bounds_of("test/acc") == (0.0, 1.0) and bounds_of("val/mlm_acc") == (0.0, 1.0)
    assert bounds_of("test/mcc") == (-1.0, 1.0) and bounds_of("test/bleu") == (0.0, 100.0)
    assert bounds_of("train/loss") == (0.0, math.inf) and bounds_of("perf/fit_time_s") == (0.0, math.inf)
    if not is_declared("honest_score"):
        # the old three-argument call still declares a metric: no bounds
        assert declare("honest_score", "max", "a metric declared without a range").bounds is None
    assert bounds_of("test/honest_score") is None
    with pytest.raises(ValueError, match="low < high"):
        declare("honest_backwards", "max", "a range the wrong way round", bounds=(1.0, 0.0))


def test_an_accuracy_interval_stays_inside_zero_and_one(shared_tracking_uri: str, tmp_path: Path) -> None:
    tracking_uri = shared_tracking_uri
    client = client_for(tracking_uri)
    experiment_id = experiment_id_for(client, "honest_near_one", tracking_uri)
    for seed, (acc, margin) in enumerate([(0.99, 1.0), (1.0, 3.0)]):  # test/margin: declared nowhere
        _log(
            client, experiment_id, "honest_near_one", "a", seed, {}, {"test/acc": acc, "test/margin": margin}
        )
    _log(client, experiment_id, "honest_near_one", "b", 0, {}, {"test/acc": 0.5, "test/margin": 0.0})
    out = write_report(tracking_uri, "honest_near_one", tmp_path / "out").out_dir

    row = pd.read_csv(out / "configurations.csv").set_index("config").loc["a"]
    values = np.array([0.99, 1.0])
    half = stats.t.ppf(0.975, 1) * values.std(ddof=1) / math.sqrt(2)  # 12.7 * s / sqrt(2)
    assert values.mean() + half > 1.05  # the unclipped Student-t interval leaves [0, 1]
    assert row["test/acc ci_low"] == pytest.approx(values.mean() - half, rel=1e-12)
    assert row["test/acc ci_high"] == 1.0
    assert row["test/acc ci_method"] == "Student-t, clipped to [0, 1]"
    margins = np.array([1.0, 3.0])  # no declared range: the whole Student-t interval, named as such
    margin_half = stats.t.ppf(0.975, 1) * margins.std(ddof=1) / math.sqrt(2)
    assert row["test/margin ci_low"] == pytest.approx(margins.mean() - margin_half, rel=1e-12)
    assert row["test/margin ci_low"] < 0
    assert row["test/margin ci_method"] == "Student-t"
    single = pd.read_csv(out / "configurations.csv").set_index("config").loc["b"]
    assert (
        single["n"] == 1 and math.isnan(single["test/acc ci_low"]) and math.isnan(single["test/acc ci_high"])
    )

    tables = (out / "tables.md").read_text()
    assert "95% CI (Student-t, clipped to [0, 1])" in tables and "[0.9315, 1.0000]" in tables
    assert "95% CI (Student-t, clipped to [0, 1])" in (out / "report.html").read_text()
    assert "95\\% CI (Student-t, clipped to [0, 1])" in (out / "tables.tex").read_text()
    summary = (out / "summary.md").read_text()
    assert (
        "95% Student-t confidence intervals of the mean clipped to [0, 1], the range of test/acc" in summary
    )
    assert "95% CI [0.9315, 1.0000]" in summary and "1.0585" not in summary


def test_values_outside_the_declared_range_are_not_clipped() -> None:
    percent = pd.DataFrame({"config": ["a", "a"], "test/acc": [99.0, 100.0]})  # accuracy logged in percent
    row = over_seeds(percent, "config", "test/acc").iloc[0]
    assert row["ci_high"] > 100 and row["ci_method"] == "Student-t (not clipped: values outside [0, 1])"


def test_a_zip_group_is_one_factor(zipped) -> None:
    uri, root, cells = zipped
    assert load_grid_runs(uri, "honest_zipped").factors == [GROUP, "regularization.dropout"]
    out = write_report(uri, "honest_zipped", root / "report").out_dir
    marginals = sorted(p.name for p in out.glob("marginal_*.csv"))
    assert marginals == [
        "marginal_model_optimizer.lr_trainer.max_epochs.csv",
        "marginal_regularization.dropout.csv",
    ]
    tables = (out / "tables.md").read_text()
    assert tables.count("## Marginal:") == 2 and f"## Marginal: {GROUP} (" in tables
    group = pd.read_csv(out / "marginal_model_optimizer.lr_trainer.max_epochs.csv").set_index("level")
    levels = {" / ".join(c.factors[k] for k in GROUP.split("+")) for c in cells}
    assert (
        set(group.index)
        == levels
        == {"mlp-hidden16 / 0.01 / 1", "mlp-hidden32 / 0.01 / 2", "cnn / 0.003 / 1"}
    )
    # each level pools both dropouts and three seeds: six runs, their mean recomputed by hand
    for i, level in enumerate(["mlp-hidden16 / 0.01 / 1", "mlp-hidden32 / 0.01 / 2", "cnn / 0.003 / 1"]):
        accs = [0.80 + 0.01 * (block * 3 + i) + 0.002 * seed for block in (0, 1) for seed in range(3)]
        assert group.loc[level, "n"] == 6 and group.loc[level, "n_configs"] == 2
        assert group.loc[level, "mean"] == pytest.approx(np.mean(accs), rel=1e-12)
    configurations = pd.read_csv(out / "configurations.csv")
    assert GROUP in configurations and "optimizer.lr" not in configurations
    runs = pd.read_csv(out / "runs.csv")
    assert {GROUP, "model", "optimizer.lr", "trainer.max_epochs"} <= set(runs)  # the keys stay per run


def test_a_marginal_says_what_it_pools(zipped) -> None:
    uri, root, _ = zipped
    out = write_report(uri, "honest_zipped", root / "pooled").out_dir
    by_group = "pooled over regularization.dropout (2 values) and seed (3 values): 6 runs per row"
    by_dropout = f"pooled over {GROUP} (3 values) and seed (3 values): 9 runs per row"
    tables = (out / "tables.md").read_text()
    assert f"## Marginal: {GROUP} ({by_group})" in tables
    assert f"## Marginal: regularization.dropout ({by_dropout})" in tables
    assert "\\caption{Marginal: regularization.dropout (pooled over" in (out / "tables.tex").read_text()
    assert by_dropout in (out / "report.html").read_text()
    dropout = pd.read_csv(out / "marginal_regularization.dropout.csv")
    assert set(dropout["pooled_over"]) == {f"{GROUP} (3 values) and seed (3 values)"}
    assert list(dropout["n"]) == [9, 9]
    summary = (out / "summary.md").read_text()
    assert f"By **regularization.dropout** ({by_dropout})" in summary
    assert f"By **{GROUP}** ({by_group})" in summary


def test_regenerating_gives_byte_identical_tables(zipped) -> None:
    uri, root, _ = zipped
    first = write_report(uri, "honest_zipped", root / "first").out_dir
    second = write_report(uri, "honest_zipped", root / "second").out_dir
    names = sorted(p.name for p in first.iterdir() if p.suffix in (".csv", ".md", ".tex"))
    assert {"tables.md", "summary.md", "configurations.csv", "marginal_regularization.dropout.csv"} <= set(
        names
    )
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
