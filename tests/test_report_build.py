"""`litbench report` end to end: a real grid trained and tracked, then the report checked against MLflow."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cli import main
from core.store import client_for
from reports import synthetic
from reports.build import write_report

REPORT_FILES = {
    "summary.md",
    "tables.md",
    "tables.tex",
    "report.html",
    "configurations.csv",
    "versus_best.csv",
    "unfinished.csv",
    "runs.csv",
    "marginal_model.name.csv",
    "marginal_optimizer.csv",
    "learning_curves.png",
    "factors.png",
    "heatmap.png",
}


@pytest.fixture(scope="module")
def trained_grid(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A real 2 models x 2 optimizers x 3 seeds grid on the digits, trained by `litbench grid`."""
    root = tmp_path_factory.mktemp("trained")
    (root / "tiny.yaml").write_text(
        "name: tiny\nbase:\n  data: {name: digits, batch_size: 64}\n"
        "  trainer: {max_epochs: 3, limit_train_batches: 4, limit_val_batches: 2, accelerator: cpu}\n"
        "  tracking: {heatmaps: 0}\n"
        "axes:\n  model.name: [mlp, cnn]\n  optimizer:\n    - {name: sgd, lr: 0.05, momentum: 0.9}\n"
        "    - {name: adam, lr: 0.003}\nseeds: [0, 1, 2]\n"
    )
    uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    assert main(["grid", str(root / "tiny.yaml"), "--tracking-uri", uri, "--workers", "2"]) == 0
    return uri, root


def test_report_numbers_equal_a_recomputation_from_mlflow(trained_grid, capsys) -> None:
    uri, root = trained_grid
    out = root / "report"
    assert main(["report", "tiny", "--tracking-uri", uri, "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == REPORT_FILES
    assert "Best: `" in capsys.readouterr().out

    # the same numbers, straight from MLflow's client: test/acc of each FINISHED run by configuration
    client = client_for(uri)
    experiment = client.get_experiment_by_name("tiny")
    values: dict[str, list[float]] = {}
    for run in client.search_runs([experiment.experiment_id], "attributes.status = 'FINISHED'"):
        values.setdefault(run.data.tags["litbench.config"], []).append(run.data.metrics["test/acc"])
    assert len(values) == 4 and all(len(v) == 3 for v in values.values())

    configurations = pd.read_csv(out / "configurations.csv").set_index("config")
    for config, accs in values.items():
        row = configurations.loc[config]
        mean, sem = np.mean(accs), stats.sem(accs)
        low, high = stats.t.interval(0.95, len(accs) - 1, loc=mean, scale=sem)
        low, high = max(low, 0.0), min(high, 1.0)  # accuracy's declared range bounds its interval
        assert row["test/acc ci_method"] == "Student-t, clipped to [0, 1]"
        assert row["n"] == 3
        assert row["test/acc mean"] == pytest.approx(mean, rel=1e-12)
        assert row["test/acc std"] == pytest.approx(np.std(accs, ddof=1), rel=1e-9, abs=1e-15)
        assert row["test/acc ci_low"] == pytest.approx(low, rel=1e-9)
        assert row["test/acc ci_high"] == pytest.approx(high, rel=1e-9)
    best = max(values, key=lambda c: (np.mean(values[c]), c == configurations.index[0]))
    assert configurations.index[0] == best and configurations.loc[best, "rank"] == 1

    compared = pd.read_csv(out / "versus_best.csv").set_index("config")
    others = [c for c in compared.index if c != best]
    expected_p = {c: stats.ttest_ind(values[c], values[best], equal_var=False).pvalue for c in others}
    for config in others:
        got = compared.loc[config, "p_value"]
        if math.isnan(expected_p[config]):  # identical seeds on both sides: no test possible
            assert math.isnan(got)
        else:
            assert got == pytest.approx(expected_p[config], rel=1e-9)
    # Holm by hand over the tested ones: sort, scale by the number left, carry the maximum, cap at 1
    tested = sorted((p, c) for c, p in expected_p.items() if not math.isnan(p))
    running = 0.0
    for k, (p, config) in enumerate(tested):
        running = max(running, (len(tested) - k) * p)
        assert compared.loc[config, "p_holm"] == pytest.approx(min(running, 1.0), rel=1e-9)

    # the marginal of a factor pools every run of its level
    marginal = pd.read_csv(out / "marginal_model.name.csv").set_index("level")
    cnn = [v for config, accs in values.items() if config.startswith("cnn") for v in accs]
    assert marginal.loc["cnn", "n"] == 6 and marginal.loc["cnn", "mean"] == pytest.approx(np.mean(cnn))


def test_regenerating_gives_byte_identical_tables(trained_grid) -> None:
    uri, root = trained_grid
    first = write_report(uri, "tiny", root / "first").out_dir
    second = write_report(uri, "tiny", root / "second").out_dir
    compared = [p.name for p in first.iterdir() if p.suffix in (".csv", ".md", ".tex", ".html")]
    assert len(compared) == 10
    for name in compared:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_failed_runs_are_listed_not_averaged(tracking_uri: str, tmp_path: Path) -> None:
    grid = list(synthetic.cells(configs_per_pair=1, seeds=3))[:6]  # mlp-sgd x3 seeds, mlp-adam x3
    synthetic.log_grid(tracking_uri, "mixed", grid, failed=2)  # the last two mlp-adam seeds fail
    report = write_report(tracking_uri, "mixed", tmp_path / "out")

    unfinished = pd.read_csv(report.out_dir / "unfinished.csv")
    assert list(unfinished["status"]) == ["FAILED", "FAILED"]
    assert unfinished["reason"].str.startswith("NonFiniteLossError").all()
    configurations = pd.read_csv(report.out_dir / "configurations.csv").set_index("config")
    adam = configurations.loc["mlp-adam-lr0.0001"]
    assert adam["n"] == 1 and math.isnan(adam["test/acc std"])  # one seed left: no spread, no CI
    client = client_for(tracking_uri)
    finished = client.search_runs(
        [client.get_experiment_by_name("mixed").experiment_id],
        "attributes.status = 'FINISHED' and tags.`litbench.config` = 'mlp-adam-lr0.0001'",
    )
    assert adam["test/acc mean"] == finished[0].data.metrics["test/acc"]
    tables = (report.out_dir / "tables.md").read_text()
    assert tables.count("NonFiniteLossError") == 2
    summary = (report.out_dir / "summary.md").read_text()
    assert "2 runs did not finish (2 FAILED)" in summary
    verdicts = pd.read_csv(report.out_dir / "versus_best.csv")["verdict"]
    assert "not tested (fewer than two seeds)" in set(verdicts)


def test_metric_flag_ranks_by_another_metric(tracking_uri: str, tmp_path: Path) -> None:
    synthetic.log_grid(tracking_uri, "g", list(synthetic.cells(configs_per_pair=2, seeds=2))[:8])
    report = write_report(tracking_uri, "g", tmp_path / "out", metric="loss")
    assert report.tables.metric.name == "test/loss" and report.tables.metric.mode == "min"
    means = report.tables.configurations["test/loss mean"]
    assert means.is_monotonic_increasing  # lower is better: best first


def test_unknown_grid_and_metric_are_one_line_errors(tracking_uri: str, tmp_path: Path, capsys) -> None:
    synthetic.log_grid(tracking_uri, "g", list(synthetic.cells(configs_per_pair=1, seeds=2))[:4])
    assert main(["report", "nope", "--tracking-uri", tracking_uri, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no experiment 'nope'" in err and "experiments there: Default, g" in err
    assert main(["report", "g", "--tracking-uri", tracking_uri, "--metric", "bleu"]) == 2
    err = capsys.readouterr().err
    assert "no tracked metric 'bleu'" in err and "test/acc" in err
    assert not (tmp_path / "nope").exists()


def test_report_accepts_the_grid_file(tracking_uri: str, tmp_path: Path) -> None:
    synthetic.log_grid(tracking_uri, "fromfile", list(synthetic.cells(configs_per_pair=1, seeds=2))[:4])
    (tmp_path / "grid.yaml").write_text("name: fromfile\nbase: {}\n")
    out = tmp_path / "out"
    assert (
        main(["report", str(tmp_path / "grid.yaml"), "--tracking-uri", tracking_uri, "--out", str(out)]) == 0
    )
    assert "# fromfile: summary" in (out / "summary.md").read_text()
