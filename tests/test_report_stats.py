"""Report statistics recomputed by hand: means, Student-t intervals, Welch tests, Holm's adjustment."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from reports.stats import holm, over_seeds, versus_best

RUNS = pd.DataFrame(
    {
        "config": ["a"] * 3 + ["b"] * 3 + ["c"] * 3 + ["d"],
        "acc": [0.90, 0.92, 0.91, 0.80, 0.82, 0.81, 0.90, 0.91, 0.905, 0.70],
    }
)


def test_mean_std_and_student_t_interval() -> None:
    table = over_seeds(RUNS, "config", "acc", mode="max")
    assert list(table["config"]) == ["a", "c", "b", "d"]  # best first
    assert list(table["rank"]) == [1, 2, 3, 4]
    a = table.iloc[0]
    values = np.array([0.90, 0.92, 0.91])
    assert a["n"] == 3 and a["mean"] == pytest.approx(values.mean())
    assert a["std"] == pytest.approx(values.std(ddof=1))
    half = stats.t.ppf(0.975, 2) * values.std(ddof=1) / math.sqrt(3)  # 4.303 * s / sqrt(3)
    assert a["ci_low"] == pytest.approx(values.mean() - half)
    assert a["ci_high"] == pytest.approx(values.mean() + half)
    single = table.set_index("config").loc["d"]
    assert single["n"] == 1 and math.isnan(single["std"]) and math.isnan(single["ci_low"])


def test_min_mode_puts_the_lowest_first() -> None:
    table = over_seeds(RUNS.rename(columns={"acc": "loss"}), "config", "loss", mode="min")
    assert list(table["config"]) == ["d", "b", "c", "a"]


def test_holm_matches_a_hand_computation() -> None:
    # sorted 0.01, 0.03, 0.04 -> x3, x2, x1 = 0.03, 0.06, 0.04 -> monotone 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([]).size == 0


def test_versus_best_uses_welch_and_holm() -> None:
    compared = versus_best(RUNS, "config", "acc", mode="max").set_index("config")
    assert compared.loc["a", "verdict"] == "best"
    raw_c = stats.ttest_ind([0.90, 0.91, 0.905], [0.90, 0.92, 0.91], equal_var=False).pvalue
    raw_b = stats.ttest_ind([0.80, 0.82, 0.81], [0.90, 0.92, 0.91], equal_var=False).pvalue
    assert compared.loc["c", "p_value"] == pytest.approx(raw_c)
    assert compared.loc["b", "p_value"] == pytest.approx(raw_b)
    assert list(compared.loc[["c", "b"], "p_holm"]) == pytest.approx(list(holm([raw_c, raw_b])))
    assert compared.loc["c", "verdict"] == "indistinguishable from best at 95%"
    assert compared.loc["b", "verdict"] == "worse than best at 95%"
    assert compared.loc["d", "verdict"] == "not tested (fewer than two seeds)"


def test_tables_are_deterministic_under_row_order() -> None:
    shuffled = RUNS.sample(frac=1.0, random_state=3)
    pd.testing.assert_frame_equal(over_seeds(RUNS, "config", "acc"), over_seeds(shuffled, "config", "acc"))
    pd.testing.assert_frame_equal(versus_best(RUNS, "config", "acc"), versus_best(shuffled, "config", "acc"))
