"""The grid's first comparison table: the task metric per configuration, mean ± std over seeds."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from core import tags as tag
from core.store import client_for


def finished_runs_frame(tracking_uri: str, experiment: str, run_ids: Sequence[str]) -> pd.DataFrame:
    """The FINISHED runs among ``run_ids`` as MLflow's own pandas frame (metrics.*, params.*, tags.*)."""
    import mlflow

    client = client_for(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None or not run_ids:
        return pd.DataFrame()
    mlflow.set_tracking_uri(tracking_uri)
    runs = mlflow.search_runs(
        [found.experiment_id], filter_string="attributes.status = 'FINISHED'", output_format="pandas"
    )
    return runs[runs["run_id"].isin(set(run_ids))] if not runs.empty else runs


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration: its task's test metric (n seeds, mean, std) and fit time.

    A grid over several tasks (SST-2 scored by accuracy, MRPC by F1) compares each configuration on
    its own task's metric: rows are grouped by metric, best first within each group.
    """
    if runs.empty:
        return pd.DataFrame()
    metric_tag, mode_tag = f"tags.{tag.TASK_METRIC}", f"tags.{tag.TASK_MODE}"
    tables = []
    for (metric, mode), group in runs.groupby([metric_tag, mode_tag], sort=True):
        column = f"metrics.test/{metric}"
        if column not in group:
            continue
        table = (
            group.groupby(f"tags.{tag.CONFIG}")
            .agg(
                n=(column, "count"),
                mean=(column, "mean"),
                std=(column, "std"),
                fit_time_s=("metrics.perf/fit_time_s", "mean"),
            )
            .rename_axis("config")
            .reset_index()
        )
        table.insert(1, "metric", f"test/{metric}")
        tables.append(table.sort_values(["mean", "config"], ascending=[mode == "min", True], kind="stable"))
    return pd.concat(tables).reset_index(drop=True) if tables else pd.DataFrame()
