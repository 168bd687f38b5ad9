"""The report's tables as raw pandas frames (unrounded; rounding belongs to the formats).

Every statistic is over seeds, from ``reports.stats``; a row is a configuration (the grid's axes
that vary), a marginal row is one level of one factor pooled over the other factors and the seeds
(its ``pooled_over`` column, and ``ReportTables.pooled``, say over which and how many values). Every
table with an interval has the method that made it beside it (``ci_method``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from core.metrics import UnknownMetricError, direction_of
from reports import stats
from reports.collect import GridRuns, ReportInputError, factor_keys

# tracked metrics the configuration table summarizes beside the primary one, when the runs have them
PERF_METRICS = (
    "perf/best_epoch",
    "perf/time_to_target_s",
    "perf/epochs_to_target",
    "perf/fit_time_s",
    "perf/train_samples_per_s",
)
NOT_SUMMARIZED = ("epoch",)  # Lightning's epoch counter is a step index, not a result


@dataclass(frozen=True)
class Metric:
    """The column a report ranks by and which direction is better."""

    name: str  # a tracked metric, e.g. "test/acc"
    mode: str  # "max" or "min"


@dataclass(frozen=True)
class ReportTables:
    metric: Metric
    # rank, config, factors, n, then <metric> mean/std/ci_low/ci_high/ci_method per metric
    configurations: pd.DataFrame
    versus_best: pd.DataFrame  # config, mean, delta, p_value, p_holm, verdict
    # factor -> rank, level, n_configs, n, mean, std, ci_low, ci_high, ci_method, pooled_over
    marginals: dict[str, pd.DataFrame]
    unfinished: pd.DataFrame  # run_id, run_name, config, status, reason
    runs: pd.DataFrame  # one row per finished run: the raw numbers every statistic came from
    # factor -> what each of its marginal rows pools, for a caption: "optimizer (2 values) and seed
    # (3 values): 6 runs per row"
    pooled: dict[str, str] = field(default_factory=dict)


def choose_metric(grid: GridRuns, name: str | None = None, mode: str | None = None) -> Metric:
    """The task's test metric by default; ``name`` may be a bare metric ("loss") or a tracked one."""
    if name is None:
        candidates = [f"test/{grid.metric}", f"val/{grid.metric}"]
        found = next((c for c in candidates if c in grid.finished), None)
        if found is None:
            raise ReportInputError(f"the runs track neither {' nor '.join(candidates)}; pass --metric")
        return Metric(found, mode or grid.mode)
    tracked = name if name in grid.finished else f"test/{name}"
    if tracked not in grid.finished:
        available = ", ".join(metric_columns(grid.finished)) or "none"
        raise ReportInputError(f"no tracked metric {name!r} in the runs; tracked metrics: {available}")
    if mode is None:
        try:
            mode = direction_of(tracked)  # declared once for every metric (core.metrics)
        except UnknownMetricError as err:
            raise ReportInputError(f"{err}; pass --mode max or --mode min") from None
    return Metric(tracked, mode)


def metric_columns(runs: pd.DataFrame) -> list[str]:
    """The tracked metrics among the frame's columns (they hold a slash: val/acc, perf/fit_time_s)."""
    numeric = runs.select_dtypes("number").columns
    return sorted(c for c in numeric if "/" in c and c not in NOT_SUMMARIZED)


def build_tables(grid: GridRuns, metric: Metric) -> ReportTables:
    runs = grid.finished
    configurations = _configurations(grid, metric)
    compared = stats.versus_best(runs, "config", metric.name, metric.mode)
    means = configurations.set_index("config")[f"{metric.name} mean"]
    compared.insert(1, "mean", compared["config"].map(means))
    compared.insert(2, "delta", compared["mean"] - compared["mean"].iloc[0])
    marginals, pooled = {}, {}
    scored = runs.dropna(subset=[metric.name])  # the runs a marginal row pools
    for factor in grid.factors:
        others = [f for f in grid.factors if f != factor]
        marginals[factor] = _marginal(scored, factor, others, metric)
        pooled[factor] = pooled_caption(scored, factor, others)
    raw = _raw_runs(grid)
    return ReportTables(metric, configurations, compared, marginals, grid.unfinished, raw, pooled)


def _configurations(grid: GridRuns, metric: Metric) -> pd.DataFrame:
    runs = grid.finished
    primary = stats.over_seeds(runs, "config", metric.name, metric.mode)
    table = primary[["rank", "config"]].copy()
    if grid.factors:
        levels = runs.drop_duplicates("config").set_index("config")[grid.factors]
        table = table.join(levels, on="config")
    table["n"] = primary["n"].to_numpy()
    others = [m for m in metric_columns(runs) if m != metric.name]
    for name in [metric.name, *others]:
        summary = primary if name == metric.name else stats.over_seeds(runs, "config", name)
        summary = summary.set_index("config")[["mean", "std", "ci_low", "ci_high", "ci_method"]]
        table = table.join(summary.add_prefix(f"{name} "), on="config")
    if "model.num_params" in runs:
        params = pd.to_numeric(runs.drop_duplicates("config").set_index("config")["model.num_params"])
        table["model.num_params"] = table["config"].map(params)
    return table.reset_index(drop=True)


def _marginal(runs: pd.DataFrame, factor: str, others: list[str], metric: Metric) -> pd.DataFrame:
    """Each level of ``factor`` with every run that has it, whatever the other factors: n is runs."""
    table = stats.over_seeds(runs, factor, metric.name, metric.mode)
    configs = runs.groupby(factor)["config"].nunique()
    table.insert(1, "n_configs", table[factor].map(configs).astype(int))
    counts = _pooled_counts(runs, factor, others)
    table["pooled_over"] = [
        _pooled_text({k: (v, v) for k, v in counts.loc[level].items()}) for level in table[factor]
    ]
    return table.rename(columns={factor: "level"})[
        ["rank", "level", "n_configs", "n", "mean", "std", "ci_low", "ci_high", "ci_method", "pooled_over"]
    ]


def pooled_caption(runs: pd.DataFrame, factor: str, others: list[str]) -> str:
    """What a marginal row of ``factor`` pools, over all its rows: "pooled over optimizer (2 values) and
    seed (3 values): 6 runs per row"; a count that differs between rows shows as its range ("1–2")."""
    counts = _pooled_counts(runs, factor, others)
    spans = {k: (int(counts[k].min()), int(counts[k].max())) for k in counts}
    sizes = runs.groupby(factor).size()
    low, high = int(sizes.min()), int(sizes.max())
    return f"pooled over {_pooled_text(spans)}: {_span(low, high)} run{'s' if high != 1 else ''} per row"


def _pooled_counts(runs: pd.DataFrame, factor: str, others: list[str]) -> pd.DataFrame:
    """Per level of ``factor`` (the index): how many values each other factor, and the seed, take."""
    pooled = [*others, "seed"] if "seed" in runs else others
    if not pooled:
        return pd.DataFrame(index=pd.Index(runs[factor].unique()))
    return runs.groupby(factor)[pooled].nunique()


def _pooled_text(spans: dict[str, tuple[int, int]]) -> str:
    parts = [f"{key} ({_span(*span)} value{'s' if span[1] != 1 else ''})" for key, span in spans.items()]
    if not parts:
        return "nothing"
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _span(low: int, high: int) -> str:
    return str(low) if low == high else f"{low}–{high}"


def _raw_runs(grid: GridRuns) -> pd.DataFrame:
    runs = grid.finished
    keys = [key for factor in grid.factors for key in factor_keys(factor)]  # a group's own keys too
    keep = ["run_id", "config", *grid.factors, *keys, "seed", *metric_columns(runs)]
    return runs[[c for c in dict.fromkeys(keep) if c in runs]].reset_index(drop=True)
