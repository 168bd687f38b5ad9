"""The runs of a suite, read from the tracker: one row per FINISHED run of every workload, with its
method, score and time-to-target under the workload's target and budget."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core import tags as tag
from core.errors import InputError
from core.store import client_for
from reports.collect import metric_histories

ELAPSED = "perf/val_elapsed_s"  # logged beside every validation: seconds of fit until it ended
COLUMNS = [
    "workload",
    "method",
    "seed",
    "run_id",
    "metric",
    "score",
    "target",
    "reached",
    "time_s",
    "fit_time_s",
]


class SuiteReportError(InputError):
    """A suite whose runs cannot be compared: a workload without runs, methods missing somewhere."""


@dataclass(frozen=True)
class WorkloadPlan:
    name: str
    experiment: str  # the MLflow experiment its grid ran in
    target: float | None  # overrides the task's target of val/<metric>
    budget_s: float | None  # seconds of fit within which the target counts as reached


@dataclass(frozen=True)
class SuitePlan:
    name: str
    method: str  # the factor compared: runs carry it as the tag litbench.factor.<method>
    workloads: list[WorkloadPlan]


def load_suite_runs(tracking_uri: str, plan: SuitePlan) -> pd.DataFrame:
    """Every FINISHED run of every workload: ``COLUMNS``, sorted. ``time_s`` is the first time the
    run's val/<metric> met the target, or where it never did (``reached`` false) the time it was
    observed for: its whole fit, or the budget where that is shorter."""
    client = client_for(tracking_uri)
    frames = [_workload_runs(client, tracking_uri, plan, w) for w in plan.workloads]
    runs = pd.concat(frames, ignore_index=True)
    modes = runs["mode"].unique()
    if len(modes) != 1:
        raise SuiteReportError(
            f"suite {plan.name!r} mixes metrics of both directions ({', '.join(sorted(modes))}); "
            "compare workloads whose metrics all rise (accuracy, F1) or all fall"
        )
    _check_methods(plan, runs)
    return runs.sort_values(["workload", "method", "seed"], kind="stable").reset_index(drop=True)


def _workload_runs(client, tracking_uri: str, plan: SuitePlan, workload: WorkloadPlan) -> pd.DataFrame:
    found = client.get_experiment_by_name(workload.experiment)
    runs = (
        client.search_runs([found.experiment_id], "attributes.status = 'FINISHED'", max_results=50_000)
        if found
        else []
    )
    factor = f"{tag.FACTOR_PREFIX}{plan.method}"
    runs = [r for r in runs if factor in r.data.tags]
    if not runs:
        raise SuiteReportError(
            f"workload {workload.name!r} has no FINISHED run with a {plan.method!r} in experiment "
            f"{workload.experiment!r} of {tracking_uri}; run `litbench suite` on the suite file first"
        )
    metric = runs[0].data.tags[tag.TASK_METRIC]
    target = workload.target
    if target is None:
        text = runs[0].data.tags.get(tag.TASK_TARGET)
        if text is None:
            raise SuiteReportError(
                f"workload {workload.name!r}: its task declares no target for val/{metric}; give the "
                f"workload a `target:` in the suite file"
            )
        target = float(text)
    mode = runs[0].data.tags[tag.TASK_MODE]
    reached = _times_to_target(tracking_uri, [r.info.run_id for r in runs], metric, target, mode)
    rows = []
    for run in runs:
        fit = float(run.data.metrics.get("perf/fit_time_s", math.nan))
        horizon = min(fit, workload.budget_s) if workload.budget_s else fit
        hit = reached.get(run.info.run_id, math.inf)
        rows.append(
            {
                "workload": workload.name,
                "method": run.data.tags[factor],
                "seed": int(run.data.params.get("seed", -1)),
                "run_id": run.info.run_id,
                "metric": f"test/{metric}",
                "mode": mode,
                "score": float(run.data.metrics.get(f"test/{metric}", math.nan)),
                "target": target,
                "reached": bool(hit <= horizon),
                "time_s": float(hit if hit <= horizon else horizon),
                "fit_time_s": fit,
            }
        )
    return pd.DataFrame(rows, columns=[*COLUMNS, "mode"])


def _times_to_target(
    tracking_uri: str, run_ids: list[str], metric: str, target: float, mode: str
) -> dict[str, float]:
    """Seconds of fit until each run's val/<metric> first met ``target`` (runs that never did are
    left out), from the elapsed time logged beside each validation."""
    values = metric_histories(tracking_uri, run_ids, f"val/{metric}")
    elapsed = metric_histories(tracking_uri, run_ids, ELAPSED)
    if elapsed.empty and not values.empty:
        raise SuiteReportError(
            f"these runs logged no {ELAPSED} (they predate it), so no time-to-target can be found for "
            "a target; run them again (`litbench suite ... --force`)"
        )
    both = values.merge(elapsed, on=["run_id", "epoch"], suffixes=("", "_s")).sort_values(["run_id", "epoch"])
    met = both["value"] >= target if mode == "max" else both["value"] <= target
    first = both[met & np.isfinite(both["value"])].groupby("run_id")["value_s"].first()
    return {str(k): float(v) for k, v in first.items()}


def _check_methods(plan: SuitePlan, runs: pd.DataFrame) -> None:
    """Every workload must have run every method: a comparison with holes ranks nothing fairly."""
    methods = sorted(runs["method"].unique())
    for workload, group in runs.groupby("workload"):
        missing = sorted(set(methods) - set(group["method"]))
        if missing:
            raise SuiteReportError(
                f"workload {workload!r} has no FINISHED run of {', '.join(missing)}; run `litbench "
                "suite` again (with --retry-failed for failed cells) so every method ran everywhere"
            )
