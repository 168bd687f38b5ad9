"""Statistics over seeds: mean, spread, Student-t confidence intervals, and comparisons with the best.

Pure functions of pandas frames (one row per run), so every number a report prints can be recomputed
by hand from the runs it came from.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

CONFIDENCE = 0.95


def over_seeds(
    runs: pd.DataFrame, by: str | list[str], value: str, mode: str = "max", confidence: float = CONFIDENCE
) -> pd.DataFrame:
    """One row per configuration: n, mean, std, and the Student-t CI of the mean; best first, ranked.

    A configuration with one seed has no spread: its std and CI are NaN, not zero.
    """
    keys = [by] if isinstance(by, str) else list(by)
    # a canonical row order makes the floating-point sums, and so every digit, independent of input order
    values = runs.dropna(subset=[value]).sort_values([*keys, value], kind="stable")
    grouped = values.groupby(keys, sort=True)[value]
    table = grouped.agg(n="count", mean="mean", std="std").reset_index()
    half = _ci_half_width(table["std"], table["n"], confidence)
    table["ci_low"], table["ci_high"] = table["mean"] - half, table["mean"] + half
    ascending = mode == "min"
    table = table.sort_values(["mean", *keys], ascending=[ascending] + [True] * len(keys), kind="stable")
    table["rank"] = table["mean"].rank(method="min", ascending=ascending).astype(int)
    return table.reset_index(drop=True)


def _ci_half_width(std: pd.Series, n: pd.Series, confidence: float) -> pd.Series:
    dof = (n - 1).where(n > 1)
    quantile = pd.Series(stats.t.ppf((1 + confidence) / 2, dof), index=std.index)
    return quantile * std / np.sqrt(n)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment of p-values for multiple comparisons (family-wise error rate)."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    scaled = (len(p) - np.arange(len(p))) * p[order]
    adjusted = np.minimum(np.maximum.accumulate(scaled), 1.0)
    result = np.empty_like(adjusted)
    result[order] = adjusted
    return result


def versus_best(
    runs: pd.DataFrame, by: str, value: str, mode: str = "max", alpha: float = 1 - CONFIDENCE
) -> pd.DataFrame:
    """Every configuration against the best one: Welch's t-test, Holm-adjusted, and a verdict in words."""
    table = over_seeds(runs, by, value, mode)
    best = table[by].iloc[0]
    best_values = np.sort(runs.loc[runs[by] == best, value].dropna().to_numpy())  # order-free digits
    rows = []
    for config in table[by].iloc[1:]:
        values = np.sort(runs.loc[runs[by] == config, value].dropna().to_numpy())
        if len(values) < 2 or len(best_values) < 2:
            p = float("nan")  # a t-test needs two seeds on each side
        else:
            with warnings.catch_warnings():  # identical seeds on both sides: scipy warns, p is still right
                warnings.simplefilter("ignore", RuntimeWarning)
                p = float(stats.ttest_ind(values, best_values, equal_var=False).pvalue)
        rows.append({by: config, "p_value": p})
    compared = pd.DataFrame(rows, columns=[by, "p_value"])
    tested = compared["p_value"].notna()
    compared["p_holm"] = np.nan
    if tested.any():
        compared.loc[tested, "p_holm"] = holm(compared.loc[tested, "p_value"].to_numpy())
    compared["verdict"] = [_verdict(p, alpha) for p in compared["p_holm"]]
    best_row = pd.DataFrame([{by: best, "p_value": np.nan, "p_holm": np.nan, "verdict": "best"}])
    return pd.concat([best_row, compared], ignore_index=True)


def _verdict(p_holm: float, alpha: float) -> str:
    level = f"{1 - alpha:.0%}"
    if np.isnan(p_holm):
        return "not tested (fewer than two seeds)"
    if p_holm < alpha:
        return f"worse than best at {level}"
    return f"indistinguishable from best at {level}"
