"""Every metric's direction is declared once (core.metrics); reports, checkpoints, early stopping,
tuning objectives and time-to-target all read it, so nothing guesses from a metric's name."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from mlflow.entities import Metric

from cli import main
from core.metrics import METRICS, TaskProtocol, UnknownMetricError, direction_of
from core.store import client_for
from reports import synthetic


@pytest.mark.parametrize(
    ("tracked", "direction"),
    [
        ("test/ppl", "min"),
        ("val/ppl", "min"),
        ("test/loss", "min"),
        ("test_mismatched/acc", "max"),
        ("val/bleu", "max"),
        ("test/mse", "min"),
        ("perf/train_samples_per_s", "max"),  # it contains "_s", which the old guess took for seconds
        ("perf/fit_time_s", "min"),
        ("perf/time_to_target_s", "min"),
        ("perf/epochs_to_target", "min"),
    ],
)
def test_directions_are_declared(tracked: str, direction: str) -> None:
    assert direction_of(tracked) == direction


def test_an_undeclared_metric_says_how_to_declare_it() -> None:
    with pytest.raises(UnknownMetricError, match=r"'val/wer'.*--mode max.*core\.metrics\.declare"):
        direction_of("val/wer")


def test_a_task_protocol_takes_its_direction_from_the_declaration() -> None:
    assert TaskProtocol(metric="mse", target=None, max_epochs=3).mode == "min"
    assert TaskProtocol(metric="bleu", target=None, max_epochs=3).mode == "max"
    with pytest.raises(UnknownMetricError):
        TaskProtocol(metric="wer", target=None, max_epochs=3)
    no_target = TaskProtocol(metric="acc", target=None, max_epochs=3)
    assert not no_target.reached(1.0)  # "no target" is None, never reached (it was math.inf)
    assert TaskProtocol(metric="mse", target=0.1, max_epochs=3).reached(0.05)


def _grid_with_perf_metrics(uri: str) -> dict[str, float]:
    """Synthetic runs, each with a test/ppl and a throughput per configuration that differ by config."""
    cells = list(synthetic.cells(configs_per_pair=2, seeds=2))[:8]
    run_ids = synthetic.log_grid(uri, "g", cells)
    client = client_for(uri)
    configs = sorted({c.config for c in cells})
    ppl = {config: 10.0 + 5 * i for i, config in enumerate(configs)}  # the first config is best (lowest)
    speed = {config: 100.0 * (i + 1) for i, config in enumerate(configs)}  # the last is fastest
    for run_id, cell in zip(run_ids, cells, strict=True):
        jitter = 0.01 * cell.seed
        client.log_batch(
            run_id,
            metrics=[
                Metric("test/ppl", ppl[cell.config] + jitter, 0, 50),
                Metric("perf/train_samples_per_s", speed[cell.config] + jitter, 0, 50),
            ],
        )
    return {"best_ppl": min(ppl, key=ppl.get), "fastest": max(speed, key=speed.get)}


def test_report_ranks_ppl_lowest_first_and_throughput_highest_first(
    tracking_uri: str, tmp_path: Path
) -> None:
    expected = _grid_with_perf_metrics(tracking_uri)
    for metric, best in (
        ("test/ppl", expected["best_ppl"]),
        ("perf/train_samples_per_s", expected["fastest"]),
    ):
        out = tmp_path / metric.replace("/", "_")
        assert (
            main(["report", "g", "--tracking-uri", tracking_uri, "--metric", metric, "--out", str(out)]) == 0
        )
        table = pd.read_csv(out / "configurations.csv")
        ranked = table.sort_values("rank")
        assert ranked.iloc[0]["config"] == best, metric
        means = ranked[f"{metric} mean"]
        if direction_of(metric) == "min":
            assert means.is_monotonic_increasing
        else:
            assert means.is_monotonic_decreasing
    assert METRICS.get("ppl").direction == "min"
