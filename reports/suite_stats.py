"""Statistics across the workloads of a suite: censored time-to-target, performance profiles, ranks
with the Friedman test and Nemenyi's critical difference, and interquartile means with stratified
bootstrap intervals.

Pure functions of numpy arrays and pandas frames, so a test can recompute every number by hand.
The methods are the field's: Kaplan-Meier for right-censored times (a run that never reached the
target is observed up to its budget), AlgoPerf's performance profiles (Dehghani et al. 2023,
Dolan & Moré 2002), Demšar (2006) for Friedman, Nemenyi and the critical-difference diagram, and
Agarwal et al. (2021, rliable) for the interquartile mean and the stratified bootstrap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

ALPHA = 0.05
TAUS = np.round(np.linspace(1.0, 4.0, 301), 2)  # AlgoPerf's profile range, in steps of 0.01
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


def kaplan_meier(times: Sequence[float], reached: Sequence[bool]) -> pd.DataFrame:
    """The product-limit estimate of P(not reached by t): one row per distinct event time.

    A run that reached the target at ``t`` is an event; one that did not is censored at its
    ``t`` (its budget). At a time with both, events count first (the usual convention).
    """
    t = np.asarray(times, dtype=float)
    hit = np.asarray(reached, dtype=bool)
    rows, survival = [], 1.0
    for when in np.unique(t[hit]):
        at_risk = int(np.sum(t >= when))
        events = int(np.sum((t == when) & hit))
        survival *= 1.0 - events / at_risk
        rows.append({"time_s": float(when), "at_risk": at_risk, "events": events, "survival": survival})
    return pd.DataFrame(rows, columns=["time_s", "at_risk", "events", "survival"])


def km_median(times: Sequence[float], reached: Sequence[bool]) -> float:
    """The first time the Kaplan-Meier estimate falls to 0.5 or below; inf when it never does (half
    the runs or more never reached the target within their budget)."""
    curve = kaplan_meier(times, reached)
    below = curve[curve["survival"] <= 0.5 + 1e-12]
    return float(below["time_s"].iloc[0]) if len(below) else math.inf


def censored_median(times: Sequence[float]) -> float:
    """The plain median with each run that never reached counted at its budget: a lower bound of
    the true median where runs were censored."""
    return float(np.median(np.asarray(times, dtype=float)))


def performance_profile(ttt: pd.DataFrame, taus: np.ndarray = TAUS) -> pd.DataFrame:
    """AlgoPerf's profile: for each method (column), the fraction of workloads (rows) whose
    time-to-target is within tau times the fastest method's on that workload. inf: never reached;
    a workload no method reached counts against every method."""
    times = ttt.to_numpy(dtype=float)
    fastest = times.min(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratios = np.where(np.isfinite(times) & np.isfinite(fastest), times / fastest, np.inf)
    within = ratios[None, :, :] <= np.asarray(taus, dtype=float)[:, None, None]  # tau x workload x method
    return pd.DataFrame(within.mean(axis=1), index=pd.Index(taus, name="tau"), columns=ttt.columns)


def profile_score(profile: pd.DataFrame) -> pd.Series:
    """The area under each method's profile over [1, tau_max], divided by its length: 1 means the
    fastest on every workload; AlgoPerf's benchmark score."""
    taus = profile.index.to_numpy(dtype=float)
    area = np.trapezoid(profile.to_numpy(dtype=float), taus, axis=0)
    return pd.Series(area / (taus[-1] - taus[0]), index=profile.columns, name="profile_score")


def ranks(scores: pd.DataFrame, mode: str) -> pd.DataFrame:
    """Each method's rank on each workload (1 = best, ties share the average rank)."""
    signed = -scores if mode == "max" else scores
    return signed.rank(axis=1, method="average")


@dataclass(frozen=True)
class Friedman:
    statistic: float  # chi-square, as scipy.stats.friedmanchisquare gives it
    p_value: float
    mean_ranks: pd.Series  # best (lowest) first
    critical_difference: float  # Nemenyi's, at ALPHA
    workloads: int
    methods: int


def friedman(scores: pd.DataFrame, mode: str, alpha: float = ALPHA) -> Friedman:
    """Friedman's test over workloads (rows) x methods (columns), and Nemenyi's critical
    difference of mean ranks: q_alpha * sqrt(k (k + 1) / (6 N)), with q_alpha the studentized
    range quantile over sqrt(2) (Demšar 2006)."""
    n, k = scores.shape
    if k < 3 or n < 2:
        raise ValueError(f"Friedman's test needs 3+ methods on 2+ workloads, got {k} on {n}")
    columns = [scores[c].to_numpy(dtype=float) for c in scores.columns]
    result = stats.friedmanchisquare(*columns)
    mean_ranks = ranks(scores, mode).mean(axis=0)
    order = sorted(mean_ranks.index, key=lambda m: (mean_ranks[m], str(m)))
    q_alpha = stats.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2)
    cd = q_alpha * math.sqrt(k * (k + 1) / (6 * n))
    return Friedman(float(result.statistic), float(result.pvalue), mean_ranks[order], float(cd), n, k)


def nemenyi_pairs(test: Friedman) -> pd.DataFrame:
    """Every pair of methods: the difference of their mean ranks and whether it exceeds the CD."""
    names = list(test.mean_ranks.index)
    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            gap = float(test.mean_ranks[b] - test.mean_ranks[a])
            rows.append(
                {"ahead": a, "behind": b, "rank_gap": gap, "told_apart": gap > test.critical_difference}
            )
    return pd.DataFrame(rows, columns=["ahead", "behind", "rank_gap", "told_apart"])


def normalized_scores(runs: pd.DataFrame, mode: str) -> pd.Series:
    """Each run's score scaled within its workload: 0 the workload's worst run, 1 its best (so every
    workload weighs the same whatever its metric's scale)."""
    grouped = runs.groupby("workload")["score"]
    low, high = grouped.transform("min"), grouped.transform("max")
    span = (high - low).where(high > low)
    scaled = (runs["score"] - low) / span if mode == "max" else (high - runs["score"]) / span
    return scaled.fillna(1.0)  # a workload where every run scored the same: all equally best


def iqm(values: np.ndarray) -> float:
    """The interquartile mean: the mean of the middle 50% (rliable's aggregate)."""
    return float(stats.trim_mean(np.sort(np.asarray(values, dtype=float)), 0.25))


def stratified_bootstrap_iqm(
    strata: Sequence[np.ndarray],
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    confidence: float = 1 - ALPHA,
) -> tuple[float, float, float]:
    """IQM of all values and its percentile bootstrap interval, resampling runs with replacement
    within each stratum (workload), so every resample keeps each workload's number of runs."""
    rng = np.random.default_rng(seed)
    point = iqm(np.concatenate(strata))
    draws = np.empty(resamples)
    for r in range(resamples):
        draws[r] = iqm(np.concatenate([s[rng.integers(0, len(s), len(s))] for s in strata]))
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return point, float(low), float(high)
