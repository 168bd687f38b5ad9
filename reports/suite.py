"""``litbench report SUITE.yaml``: the methods of a suite compared across its workloads.

Outputs (in ``reports/<suite>/`` by default):

- ``summary.md``: in plain words, which methods are ahead, on how many workloads, and which cannot
  be told apart (Friedman, then Nemenyi's critical difference).
- ``tables.md``: every table below, rounded.
- ``scores.csv`` (workload x method, mean test score over seeds), ``time_to_target.csv`` (runs,
  how many reached the target, the median with the others counted at their budget, the
  Kaplan-Meier median), ``profile.csv`` (tau x method) and ``profile_summary.csv``, ``ranks.csv``
  (mean ranks, Friedman's statistic, the CD), ``pairs.csv`` (every pair against the CD), ``iqm.csv``
  (IQM of normalized scores with a stratified bootstrap CI), ``runs.csv`` (the per-run numbers).
- ``performance_profiles.png`` and ``cd_diagram.png``.

The same store gives byte-identical tables: rows and columns are sorted, the bootstrap is seeded.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from reports import suite_plots
from reports.suite_collect import SuitePlan, load_suite_runs
from reports.suite_tables import SuiteTables, build_suite_tables


@dataclass
class SuiteReport:
    out_dir: Path
    tables: SuiteTables
    files: list[Path] = field(default_factory=list)


def write_suite_report(
    tracking_uri: str,
    plan: SuitePlan,
    out_dir: Path | None = None,
    progress: Callable[[str], None] = lambda step: None,
) -> SuiteReport:
    progress(f"reading the runs of {len(plan.workloads)} workloads")
    runs = load_suite_runs(tracking_uri, plan)
    progress("ranks, profiles and bootstrap intervals")
    tables = build_suite_tables(runs)
    out_dir = Path(out_dir) if out_dir is not None else Path("reports") / re.sub(r"[^\w.\-]", "_", plan.name)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = SuiteReport(out_dir, tables)
    csvs = {
        "scores.csv": tables.scores,
        "time_to_target.csv": tables.time_to_target,
        "profile.csv": tables.profile,
        "profile_summary.csv": tables.profile_summary,
        "ranks.csv": _ranks_frame(tables),
        "pairs.csv": tables.pairs,
        "iqm.csv": tables.iqm,
        "runs.csv": runs.drop(columns=["mode"]),
    }
    for name, frame in csvs.items():
        index = name in ("scores.csv", "profile.csv", "profile_summary.csv")
        report.files.append(_write(out_dir / name, frame.to_csv(index=index, lineterminator="\n")))
    report.files.append(_write(out_dir / "tables.md", tables_markdown(plan, tables)))
    report.files.append(_write(out_dir / "summary.md", summary_markdown(plan, tables, runs)))
    progress("drawing the figures")
    report.files.append(
        suite_plots.performance_profiles(
            tables.profile, len(tables.scores), out_dir / "performance_profiles.png"
        )
    )
    if tables.friedman is not None:
        report.files.append(suite_plots.critical_difference(tables.friedman, out_dir / "cd_diagram.png"))
    return report


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _ranks_frame(tables: SuiteTables) -> pd.DataFrame:
    test = tables.friedman
    if test is None:
        return pd.DataFrame(columns=["method", "mean_rank"])
    frame = test.mean_ranks.rename("mean_rank").rename_axis("method").reset_index()
    frame["workloads_best"] = [int(tables.wins[m]) for m in frame["method"]]
    frame["friedman_chi2"] = test.statistic
    frame["friedman_p"] = test.p_value
    frame["nemenyi_cd"] = test.critical_difference
    return frame


def _seconds(value: float) -> str:
    return "not reached" if math.isinf(value) else f"{value:.2f}"


def _md(frame: pd.DataFrame, index: bool = False) -> str:
    return frame.to_markdown(index=index, disable_numparse=True) if len(frame) else "_none_"


def tables_markdown(plan: SuitePlan, tables: SuiteTables) -> str:
    scores = tables.scores.map(lambda v: f"{v:.4f}")
    ttt = tables.time_to_target.assign(
        reached=lambda f: f["reached"].astype(str) + "/" + f["runs"].astype(str),
        median_s=lambda f: f["median_s"].map(_seconds),
        km_median_s=lambda f: f["km_median_s"].map(_seconds),
        target=lambda f: f["target"].map(lambda v: f"{v:g}"),
    ).drop(columns=["runs"])
    profile = tables.profile_summary.map(lambda v: f"{v:.3f}")
    iqm = tables.iqm.assign(
        **{c: tables.iqm[c].map(lambda v: f"{v:.3f}") for c in ("iqm", "ci_low", "ci_high")}
    )
    parts = [
        f"# Suite {plan.name}: {plan.method} across {len(tables.scores)} workloads\n",
        f"## Mean test score over seeds ({tables.mode} is better)\n",
        _md(scores, index=True),
        "\n## Time-to-target (seconds of fit until val/<metric> first met the target)\n",
        "A run that never reached the target counts at its budget (its whole fit, or the workload's "
        "`budget_s`): `median_s` is then a lower bound; `km_median_s` is the Kaplan-Meier median, "
        "'not reached' where half the runs or more never reached the target.\n",
        _md(ttt),
        "\n## Performance profiles (fraction of workloads within tau x the fastest Kaplan-Meier median)\n",
        _md(profile, index=True),
    ]
    if tables.friedman is not None:
        test = tables.friedman
        ranks = _ranks_frame(tables)[["method", "mean_rank", "workloads_best"]]
        ranks["mean_rank"] = ranks["mean_rank"].map(lambda v: f"{v:.2f}")
        pairs = tables.pairs.assign(rank_gap=tables.pairs["rank_gap"].map(lambda v: f"{v:.2f}"))
        parts += [
            f"\n## Ranks: Friedman chi2 = {test.statistic:.3f}, p = {test.p_value:.4g}; Nemenyi CD = "
            f"{test.critical_difference:.3f} at alpha 0.05 ({test.methods} methods, {test.workloads} "
            "workloads)\n",
            _md(ranks),
            "\n### Pairs: told apart when their mean ranks differ by more than the CD\n",
            _md(pairs),
        ]
    parts += [
        "\n## Interquartile mean of normalized scores (0: a workload's worst run, 1: its best), 95% "
        "percentile bootstrap interval stratified by workload (2,000 resamples, seed 0)\n",
        _md(iqm),
    ]
    return "\n".join(parts) + "\n"


def summary_markdown(plan: SuitePlan, tables: SuiteTables, runs: pd.DataFrame) -> str:
    n_workloads = len(tables.scores)
    seeds = runs.groupby(["workload", "method"]).size()
    lines = [
        f"# Suite {plan.name}",
        "",
        f"{len(tables.scores.columns)} values of `{plan.method}` on {n_workloads} workloads "
        f"({', '.join(tables.scores.index)}), {_seed_count(seeds)} seeds each, {len(runs)} runs.",
        "",
    ]
    test = tables.friedman
    if test is not None:
        verdict = "differ" if test.p_value < 0.05 else "cannot be told apart"
        lines.append(
            f"**Ranks by test score**: Friedman's test over the {n_workloads} workloads gives chi2 = "
            f"{test.statistic:.2f}, p = {test.p_value:.3g}: at the 5% level the methods' ranks {verdict}."
        )
        order = ", ".join(f"{m} {r:.2f}" for m, r in test.mean_ranks.items())
        lines.append(
            f"Mean ranks (1 is best): {order}; Nemenyi's critical difference is "
            f"{test.critical_difference:.2f}."
        )
        apart = tables.pairs[tables.pairs["told_apart"]]
        if len(apart) and test.p_value < 0.05:
            lines.append(
                "Ahead beyond the critical difference: "
                + "; ".join(f"{a} over {b}" for a, b in zip(apart["ahead"], apart["behind"], strict=True))
                + ". Every other pair cannot be told apart."
            )
        else:
            lines.append(
                "No pair's ranks differ by more than the critical difference: none can be told apart."
            )
        lines.append("")
    wins = ", ".join(
        f"{m} on {int(w)}" for m, w in tables.wins.sort_values(ascending=False, kind="stable").items()
    )
    lines += [f"**Best mean test score**, by workload (ties count for none): {wins} of {n_workloads}.", ""]
    reached = tables.time_to_target.groupby("method")[["reached", "runs"]].sum()
    reach = "; ".join(f"{m} {int(r.reached)}/{int(r.runs)}" for m, r in reached.iterrows())
    lines.append(f"**Time-to-target**: runs that reached their workload's target: {reach}.")
    fastest = tables.profile_summary
    first = fastest.index[0]
    most_often = fastest["rho@1"].idxmax()
    lines.append(
        f"By the performance profiles, {first} is the fastest or within tau of it most often (profile "
        f"score {fastest['profile_score'].iloc[0]:.3f}; 1 would be fastest on every workload); it is "
        f"the fastest on {fastest['rho@1'].iloc[0] * n_workloads:.0f} of {n_workloads} workloads"
        + (
            f"; {most_often} is the fastest on the most, "
            f"{fastest.loc[most_often, 'rho@1'] * n_workloads:.0f}."
            if most_often != first and fastest.loc[most_often, "rho@1"] > fastest["rho@1"].iloc[0]
            else "."
        )
    )
    lines += [
        "",
        _iqm_sentence(tables.iqm),
        "",
        "Tables: tables.md; figures: performance_profiles.png, cd_diagram.png.",
    ]
    return "\n".join(lines) + "\n"


def _seed_count(seeds: pd.Series) -> str:
    """``3``, or ``2-3`` where some (workload, method) pairs have fewer finished seeds."""
    low, high = int(seeds.min()), int(seeds.max())
    return str(low) if low == high else f"{low}-{high}"


def _iqm_sentence(iqm: pd.DataFrame) -> str:
    """The best IQM, and which methods' intervals overlap its interval (not told apart) or lie below."""
    best = iqm.iloc[0]
    rest = iqm.iloc[1:]
    overlap = rest[rest["ci_high"] >= best["ci_low"]]
    below = rest[rest["ci_high"] < best["ci_low"]]

    def listed(rows: pd.DataFrame) -> str:
        return ", ".join(
            f"{r.method} {r.iqm:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]" for r in rows.itertuples()
        )

    text = (
        "**Normalized scores** (interquartile mean, stratified bootstrap 95% CI): best "
        f"{best['method']} {best['iqm']:.3f} [{best['ci_low']:.3f}, {best['ci_high']:.3f}]"
    )
    if len(overlap):
        text += f"; its interval overlaps those of {listed(overlap)}, so these are not told apart from it"
    if len(below):
        text += f"; entirely below it: {listed(below)}"
    return text + "."
