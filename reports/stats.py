"""Statistics over seeds: mean, spread, confidence intervals kept inside each metric's range, and
comparisons with the best.

Pure functions of pandas frames (one row per run), so every number a report prints can be recomputed
by hand from the runs it came from.

Every interval of a mean is Student-t, ``mean ± t(0.975, n-1) · std / √n``, and a metric with a
declared range (``core.metrics.bounds_of``: accuracy in [0, 1], MCC in [-1, 1], BLEU in [0, 100], a
loss or a duration in [0, inf)) gets it intersected with that range: over two seeds at 0.99 and 1.0
the accuracy interval is [0.9315, 1] rather than [0.9315, 1.0585]. Why clipping, and not another
method: the true mean lies inside the range, so it lies in the clipped interval exactly when it lies
in the whole one; the coverage stays the Student-t's, and so does its honest width with few seeds. A
percentile bootstrap would stay inside too, but over two or three seeds it is just their range, which
holds the mean half or three quarters of the time rather than 95%; a t interval on the logit scale
breaks on a value at the bound (a seed at accuracy 1.0) and fits no half-open range. Clipping draws
nothing at random, so the same store always gives the same digits. ``ci_method`` names the method on
every row, e.g. "Student-t, clipped to [0, 1]".

A configuration with one seed has no spread: its std and interval are NaN.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from core.metrics import Bounds, bounds_of, is_declared

CONFIDENCE = 0.95
STUDENT_T = "Student-t"
CLIPPED = f"{STUDENT_T}, clipped to"  # the method of a metric with a declared range


def over_seeds(
    runs: pd.DataFrame,
    by: str | list[str],
    value: str,
    mode: str = "max",
    confidence: float = CONFIDENCE,
    bounds: Bounds | None = None,
) -> pd.DataFrame:
    """One row per configuration: n, mean, std, the CI of the mean (ci_low, ci_high) and how it was made
    (ci_method); best first, ranked.

    ``bounds``: the range the CI is clipped to; by default the declared one when ``value`` is a declared
    tracked metric (``test/acc``), else none. A value outside the range (accuracy logged in percent)
    leaves the interval unclipped, and ``ci_method`` says so. One seed: std and CI are NaN.
    """
    keys = [by] if isinstance(by, str) else list(by)
    if bounds is None and is_declared(value):
        bounds = bounds_of(value)
    # a canonical row order makes the floating-point sums, and so every digit, independent of input order
    values = runs.dropna(subset=[value]).sort_values([*keys, value], kind="stable")
    grouped = values.groupby(keys, sort=True)[value]
    table = grouped.agg(n="count", mean="mean", std="std").reset_index()
    half = _ci_half_width(table["std"], table["n"], confidence)
    low, high = table["mean"] - half, table["mean"] + half
    method = ci_method(bounds, values[value])
    if method.startswith(CLIPPED):
        low, high = low.clip(*bounds), high.clip(*bounds)
    table["ci_low"], table["ci_high"], table["ci_method"] = low, high, method
    ascending = mode == "min"
    table = table.sort_values(["mean", *keys], ascending=[ascending] + [True] * len(keys), kind="stable")
    table["rank"] = table["mean"].rank(method="min", ascending=ascending).astype(int)
    return table.reset_index(drop=True)


def ci_method(bounds: Bounds | None, values: pd.Series | None = None) -> str:
    """How ``over_seeds`` makes the interval of a metric with range ``bounds`` from ``values``: "Student-t";
    "Student-t, clipped to [0, 1]" for a range with a finite end; "Student-t (not clipped: values
    outside [0, 1])" where the values leave it (clipping would then cut the mean out)."""
    if bounds is None or not any(math.isfinite(b) for b in bounds):
        return STUDENT_T
    if values is not None and not values.between(*bounds).all():
        return f"{STUDENT_T} (not clipped: values outside {range_text(bounds)})"
    return f"{CLIPPED} {range_text(bounds)}"


def range_text(bounds: Bounds) -> str:
    """``[0, 1]``, ``[0, inf)``, ``(-inf, 0]``."""
    low, high = bounds
    left = "(-inf" if math.isinf(low) else f"[{low:g}"
    right = "inf)" if math.isinf(high) else f"{high:g}]"
    return f"{left}, {right}"


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
