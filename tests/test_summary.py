"""The grid's closing table: each configuration on its own task's metric."""

from __future__ import annotations

import math

import pandas as pd

from core import tags as tag
from reports.grid_summary import summarize


def _run(config: str, metric: str, mode: str, value: float, seconds: float = 1.0) -> dict:
    return {
        f"tags.{tag.CONFIG}": config,
        f"tags.{tag.TASK_METRIC}": metric,
        f"tags.{tag.TASK_MODE}": mode,
        f"metrics.test/{metric}": value,
        "metrics.perf/fit_time_s": seconds,
    }


def test_each_task_is_ranked_on_its_own_metric() -> None:
    runs = pd.DataFrame(
        [
            _run("sst2-lstm", "acc", "max", 0.80),
            _run("sst2-lstm", "acc", "max", 0.82),
            _run("sst2-cbow", "acc", "max", 0.85),
            _run("mrpc-lstm", "f1", "max", 0.70, 3.0),
            _run("mrpc-cbow", "f1", "max", 0.75),
        ]
    )
    table = summarize(runs)
    assert table[["config", "metric", "n"]].values.tolist() == [
        ["sst2-cbow", "test/acc", 1],
        ["sst2-lstm", "test/acc", 2],
        ["mrpc-cbow", "test/f1", 1],
        ["mrpc-lstm", "test/f1", 1],
    ]
    lstm = table[table["config"] == "sst2-lstm"].iloc[0]
    assert math.isclose(lstm["mean"], 0.81) and math.isclose(lstm["std"], math.sqrt(2 * 0.01**2))
    assert math.isnan(table.iloc[0]["std"])  # one seed: no spread


def test_lower_is_better_sorts_ascending() -> None:
    runs = pd.DataFrame([_run("a", "mse", "min", 0.5), _run("b", "mse", "min", 0.2)])
    assert summarize(runs)["config"].tolist() == ["b", "a"]
