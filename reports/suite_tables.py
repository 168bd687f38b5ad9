"""The tables of a suite report, computed from its runs (``reports.suite_collect``) by
``reports.suite_stats``: scores, censored time-to-target, profiles, ranks and IQMs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from reports import suite_stats as st

PROFILE_TAUS = (1.0, 1.5, 2.0, 3.0, 4.0)  # the profile's values shown in the tables


@dataclass
class SuiteTables:
    mode: str
    metric: str  # e.g. test/acc (each workload's own task metric; named per workload in `scores`)
    scores: pd.DataFrame  # workload x method: mean test score over seeds
    time_to_target: pd.DataFrame  # one row per workload and method
    profile: pd.DataFrame  # tau x method
    profile_summary: pd.DataFrame  # method: the profile at PROFILE_TAUS and its score
    friedman: st.Friedman | None  # None with fewer than 3 methods
    pairs: pd.DataFrame
    iqm: pd.DataFrame  # method: IQM of normalized scores and its stratified bootstrap CI
    wins: pd.Series  # method: workloads where it has the best mean score


def build_suite_tables(runs: pd.DataFrame) -> SuiteTables:
    mode = str(runs["mode"].iloc[0])
    scores = runs.pivot_table(index="workload", columns="method", values="score", aggfunc="mean")
    scores = scores.sort_index().sort_index(axis=1)
    ttt = time_to_target_table(runs)
    medians = (
        ttt.pivot(index="workload", columns="method", values="km_median_s").sort_index().sort_index(axis=1)
    )
    profile = st.performance_profile(medians)
    summary = profile.loc[list(PROFILE_TAUS)].T
    summary.columns = [f"rho@{t:g}" for t in PROFILE_TAUS]
    summary["profile_score"] = st.profile_score(profile)
    summary = summary.sort_values(["profile_score"], ascending=False, kind="stable")
    summary.index.name = "method"
    test = st.friedman(scores, mode) if scores.shape[1] >= 3 and scores.shape[0] >= 2 else None
    pairs = st.nemenyi_pairs(test) if test else pd.DataFrame()
    best = st.ranks(scores, mode).eq(1.0)  # a tie for first counts for neither
    wins = best.sum(axis=0).astype(int).reindex(scores.columns).rename("workloads_best")
    return SuiteTables(
        mode,
        str(runs["metric"].iloc[0]),
        scores,
        ttt,
        profile,
        summary,
        test,
        pairs,
        iqm_table(runs, mode),
        wins,
    )


def time_to_target_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per workload and method: runs, how many reached the target, the median time with the others
    counted at their budget, and the Kaplan-Meier median (inf: half or more never reached it)."""
    rows = []
    for (workload, method), group in runs.groupby(["workload", "method"], sort=True):
        times, reached = group["time_s"].to_numpy(), group["reached"].to_numpy()
        rows.append(
            {
                "workload": workload,
                "method": method,
                "target": float(group["target"].iloc[0]),
                "runs": len(group),
                "reached": int(reached.sum()),
                "median_s": st.censored_median(np.sort(times)),
                "km_median_s": st.km_median(times, reached),
            }
        )
    return pd.DataFrame(rows)


def iqm_table(runs: pd.DataFrame, mode: str) -> pd.DataFrame:
    """Each method's IQM of normalized scores over all its runs, with a 95% percentile interval from
    a bootstrap stratified by workload (rliable's recipe)."""
    scaled = runs.assign(normalized=st.normalized_scores(runs, mode))
    rows = []
    for method, group in scaled.groupby("method", sort=True):
        strata = [np.sort(g["normalized"].to_numpy()) for _, g in group.groupby("workload", sort=True)]
        point, low, high = st.stratified_bootstrap_iqm(strata)
        rows.append({"method": method, "runs": len(group), "iqm": point, "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows).sort_values(["iqm", "method"], ascending=[False, True], kind="stable")
