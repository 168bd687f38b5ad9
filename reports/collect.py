"""A grid's runs, read from MLflow into pandas: the only source a report has (no folder parsing)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pandas as pd

from core import tags as tag
from core.errors import InputError
from core.store import client_for

# params that describe the data or the model's size rather than a choice a grid varies
_NOT_FACTORS = ("seed", "model.num_params", "task")
_NOT_FACTOR_PREFIXES = ("data.size.", "tracking.", "axis/")  # axis/: the factor tags again, for the UI


@dataclass(frozen=True)
class GridRuns:
    experiment: str
    finished: pd.DataFrame  # one row per cell: run_id, config, seed, spec_hash, the params, the metrics
    unfinished: pd.DataFrame  # every run that did not finish: run_id, run_name, config, status, reason
    metric: str  # the task's primary metric, e.g. "acc" (tracked as val/acc and test/acc)
    mode: str  # "max" or "min"
    target: float | None
    # the grid's axes that vary (from the runs' factor tags); for untagged runs, the params every
    # finished run has and that vary across them, seed excluded. Axes that vary together (a zip group:
    # a model with its learning rate and epochs) are one factor, "model+optimizer.lr" (see
    # ``group_confounded``)
    factors: list[str]
    # task ("glue/sst2", "mnist") -> its protocol (metric, mode, target); finished and unfinished have
    # a "task" column. A grid over several tasks is reported task by task (see ``split_by_task``).
    tasks: dict[str, tuple[str, str, float | None]] = field(default_factory=dict)
    # every run of the whole experiment (all tasks, any status; see ``FACT_COLUMNS``): a run's
    # parent or teacher may sit in another task's part, or have been run again since
    facts: pd.DataFrame = field(default_factory=pd.DataFrame)


TASK_PARAMS = ("data.name", "data.task")  # what makes two runs the same task (scored the same way)


def split_by_task(grid: GridRuns) -> dict[str, GridRuns]:
    """One GridRuns per task, each with its own metric and only the factors that vary within it;
    empty when the grid has a single task."""
    if len(grid.tasks) < 2:
        return {}
    parts = {}
    for task, (metric, mode, target) in sorted(grid.tasks.items()):
        finished = grid.finished[grid.finished["task"] == task].reset_index(drop=True)
        finished = finished.dropna(axis=1, how="all")  # the other tasks' metrics (SST-2 has no f1)
        unfinished = grid.unfinished[grid.unfinished["task"] == task].reset_index(drop=True)
        factors = [f for f in grid.factors if f in finished and finished[f].nunique() > 1]
        parts[task] = replace(
            grid,
            finished=finished,
            unfinished=unfinished,
            metric=metric,
            mode=mode,
            target=target,
            factors=factors,
            tasks={task: (metric, mode, target)},
        )
    return parts


class ReportInputError(InputError):
    """A report cannot be made from what was asked: the message says what to change."""


class NoRunsError(ReportInputError):
    """The experiment does not exist or holds no litbench runs."""


def load_grid_runs(tracking_uri: str, experiment: str) -> GridRuns:
    import mlflow

    client = client_for(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = ", ".join(sorted(e.name for e in client.search_experiments())) or "none"
        raise NoRunsError(f"no experiment {experiment!r} in {tracking_uri}; experiments there: {names}")
    mlflow.set_tracking_uri(tracking_uri)
    runs = mlflow.search_runs([found.experiment_id], max_results=100_000, output_format="pandas")
    hash_column = f"tags.{tag.SPEC_HASH}"
    if runs.empty or hash_column not in runs:
        raise NoRunsError(f"experiment {experiment!r} holds no litbench runs; run `litbench grid` first")
    runs = runs[runs[hash_column].notna()].sort_values(["start_time", "run_id"], kind="stable")
    finished = runs[runs["status"] == "FINISHED"]
    # a cell run again with --force counts once: its latest FINISHED run
    finished = finished.drop_duplicates(subset=[hash_column], keep="last")
    unfinished = runs[(runs["status"] != "FINISHED") & ~runs[hash_column].isin(finished[hash_column])]
    runs = runs.assign(task=_task_names(runs))
    tasks = {task: _protocol(group.iloc[-1]) for task, group in runs.groupby("task", sort=True)}
    metric, mode, target = _protocol(runs.iloc[-1])
    tidy = _tidy(finished)
    tidy.insert(3, "task", tidy["run_id"].map(runs.set_index("run_id")["task"]).to_numpy())
    params = [c.removeprefix("params.") for c in finished if c.startswith("params.")]
    axes = _axis_factors(runs, tidy)
    left = _unfinished(unfinished)
    left.insert(3, "task", left["run_id"].map(runs.set_index("run_id")["task"]).to_numpy())
    return GridRuns(
        experiment=experiment,
        finished=tidy,
        unfinished=left,
        metric=metric,
        mode=mode,
        target=target,
        factors=axes if axes is not None else group_confounded(tidy, _factors(tidy, params), tidy),
        tasks=tasks,
        facts=_facts(runs),
    )


# what ``GridRuns.facts`` holds per run beside every tracked metric (by its tracked name), from its tags
FACT_TAGS = {
    "run_name": "mlflow.runName",
    "config": tag.CONFIG,
    "task_kind": tag.TASK_KIND,
    "task_metric": tag.TASK_METRIC,
    "stage": tag.STAGE,
    "parent_run": tag.PARENT_RUN,
    "parent_part": tag.PARENT_PART,
    "teacher_run": tag.TEACHER_RUN,
}
FACT_COLUMNS = ("run_id", "status", *FACT_TAGS)


def _facts(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run: FACT_COLUMNS ("" where a tag is absent), then the metrics."""
    facts = pd.DataFrame({"run_id": runs["run_id"].to_numpy(), "status": runs["status"].to_numpy()})
    for name, key in FACT_TAGS.items():
        column = runs.get(f"tags.{key}")
        facts[name] = "" if column is None else column.fillna("").astype(str).to_numpy()
    metrics = runs[[c for c in runs if c.startswith("metrics.")]]
    metrics = metrics.rename(columns=lambda c: c.removeprefix("metrics.")).reset_index(drop=True)
    return pd.concat([facts, metrics], axis=1)


def fetch_run_facts(tracking_uri: str, run_ids: list[str]) -> pd.DataFrame:
    """``GridRuns.facts`` rows for runs outside the experiment (a parent from another grid); a run id
    the store does not know is left out, so its child's cost shows as unknown rather than failing."""
    from mlflow.exceptions import MlflowException

    client = client_for(tracking_uri)
    rows = []
    for run_id in sorted(set(run_ids)):
        try:
            run = client.get_run(run_id)
        except MlflowException:
            continue
        row = {"run_id": run_id, "status": run.info.status}
        row |= {name: run.data.tags.get(key, "") for name, key in FACT_TAGS.items()}
        rows.append(row | run.data.metrics)
    return pd.DataFrame(rows, columns=list(FACT_COLUMNS)) if not rows else pd.DataFrame(rows)


def _protocol(run: pd.Series) -> tuple[str, str, float | None]:
    target = run.get(f"tags.{tag.TASK_TARGET}")
    return (
        str(run[f"tags.{tag.TASK_METRIC}"]),
        str(run[f"tags.{tag.TASK_MODE}"]),
        # "inf" on runs from before a task could say it has no target
        float(target) if isinstance(target, str) and target not in ("", "None", "inf") else None,
    )


def _task_names(runs: pd.DataFrame) -> pd.Series:
    """ "glue/sst2" from the params data.name and data.task; the data name alone where no task."""
    names = pd.Series("", index=runs.index, dtype=object)
    for param in TASK_PARAMS:
        column = runs.get(f"params.{param}")
        if column is not None:
            part = column.fillna("").astype(str)
            names = names.where(part == "", names.where(names == "", names + "/") + part)
    return names.where(names != "", "task")


def _tidy(runs: pd.DataFrame) -> pd.DataFrame:
    params = {c: c.removeprefix("params.") for c in runs if c.startswith("params.")}
    metrics = {c: c.removeprefix("metrics.") for c in runs if c.startswith("metrics.")}
    tidy = runs[["run_id", *params, *metrics]].rename(columns={**params, **metrics})
    tidy.insert(1, "config", runs[f"tags.{tag.CONFIG}"].to_numpy())
    tidy.insert(2, "spec_hash", runs[f"tags.{tag.SPEC_HASH}"].to_numpy())
    if "seed" in tidy:
        tidy["seed"] = pd.to_numeric(tidy["seed"])
    return tidy.sort_values(["config", "seed", "run_id"], kind="stable").reset_index(drop=True)


def _unfinished(runs: pd.DataFrame) -> pd.DataFrame:
    reason = runs.get(f"tags.{tag.FAILURE}", pd.Series(index=runs.index, dtype=object))
    table = pd.DataFrame(
        {
            "run_id": runs["run_id"].to_numpy(),
            "run_name": runs["tags.mlflow.runName"].to_numpy(),
            "config": runs[f"tags.{tag.CONFIG}"].to_numpy(),
            "status": runs["status"].to_numpy(),
            "reason": reason.fillna("").to_numpy(),
        }
    )
    return table.sort_values(["config", "run_name", "run_id"], kind="stable").reset_index(drop=True)


def _axis_factors(runs: pd.DataFrame, tidy: pd.DataFrame) -> list[str] | None:
    """The grid's own axes, from the runs' factor tags, as columns of ``tidy``; None when untagged.

    ``runs``: every litbench run of the experiment, finished or not: which axes vary together is read
    from all the cells the store knows, not only those that finished. A cell from an ``include``
    entry leaves the other axes at the base: it shows as "base" there.
    """
    prefix = f"tags.{tag.FACTOR_PREFIX}"
    columns = sorted(c for c in runs if c.startswith(prefix))
    if not columns or tidy.empty:
        return None
    by_run = runs.set_index("run_id")
    axes = []
    for column in columns:
        axis = column.removeprefix(prefix)
        tidy[axis] = tidy["run_id"].map(by_run[column]).fillna("base").astype(str)
        if tidy[axis].nunique() > 1:
            axes.append(axis)
    tagged = runs[runs[columns].notna().any(axis=1)]
    design = tagged[columns].rename(columns=lambda c: c.removeprefix(prefix)).fillna("base").astype(str)
    return group_confounded(tidy, axes, design)


FACTOR_JOIN = "+"  # a group of axes is named by its keys joined: model+optimizer.lr+trainer.max_epochs
LEVEL_JOIN = " / "  # and its levels by their labels joined, in the same order: gru / 0.002 / 3


def factor_keys(factor: str) -> list[str]:
    """The axes a factor stands for: ``["model", "optimizer.lr"]`` for ``model+optimizer.lr``."""
    return factor.split(FACTOR_JOIN)


def group_confounded(tidy: pd.DataFrame, factors: list[str], design: pd.DataFrame) -> list[str]:
    """``factors`` with the ones that vary together merged into one, its column added to ``tidy``.

    The runs carry one factor tag per key, and nothing says which keys a ``zip`` group paired; but a
    zip group shows in the cells: one of its keys (the model) determines the others (its learning rate,
    its epochs), in every cell of ``design`` (one row per cell, a column per factor). A factor that is
    a function of exactly one other (directly or through others) is merged into it, as are two that
    determine each other. That is also what the data can tell apart: a marginal of the learning rate
    alone would be the model's marginal with its levels relabelled. A group whose keys all repeat
    values ({lr: [0.1, 0.1, 0.01], epochs: [1, 2, 1]}) shows no such pattern and stays separate axes.
    """

    def determines(a: str, b: str) -> bool:
        return bool(design.groupby(a)[b].nunique().max() <= 1)

    classes: list[list[str]] = []  # factors that determine one another: the same partition of the cells
    for factor in factors:
        same = next((c for c in classes if determines(c[0], factor) and determines(factor, c[0])), None)
        if same is None:
            classes.append([factor])
        else:
            same.append(factor)
    roots = [c for c in classes if not any(d is not c and determines(d[0], c[0]) for d in classes)]
    groups = {id(root): list(root) for root in roots}
    for members in classes:
        if any(members is root for root in roots):
            continue
        owners = [root for root in roots if determines(root[0], members[0])]
        if len(owners) == 1:
            groups[id(owners[0])] += members
        else:  # coarser than several independent factors: no one factor it belongs to
            groups[id(members)] = list(members)
    merged = []
    for members in sorted(sorted(g) for g in groups.values()):
        name = members[0] if len(members) == 1 else FACTOR_JOIN.join(members)
        if len(members) > 1:
            tidy[name] = tidy[members].astype(str).agg(LEVEL_JOIN.join, axis=1)
        merged.append(name)
    return merged


def _factors(finished: pd.DataFrame, params: list[str]) -> list[str]:
    candidates = [c for c in params if c not in _NOT_FACTORS and not c.startswith(_NOT_FACTOR_PREFIXES)]
    # an option only some entries have (betas for adam, not sgd) follows its entry's name: not a factor
    return sorted(c for c in candidates if finished[c].notna().all() and finished[c].nunique() > 1)


def metric_histories(tracking_uri: str, run_ids: list[str], metric: str) -> pd.DataFrame:
    """Every value of ``metric`` each run logged, with its epoch: columns run_id, epoch, value.

    Lightning logs its epoch counter at the same step as every epoch-level metric; where a run has no
    such counter, the values are numbered in step order.
    """
    from concurrent.futures import ThreadPoolExecutor

    client = client_for(tracking_uri)

    def history(run_id: str) -> pd.DataFrame:
        values = sorted(client.get_metric_history(run_id, metric), key=lambda m: (m.step, m.timestamp))
        epochs = {m.step: m.value for m in client.get_metric_history(run_id, "epoch")}
        return pd.DataFrame(
            {
                "run_id": run_id,
                "epoch": [int(epochs.get(m.step, i)) + 1 for i, m in enumerate(values)],
                "value": [m.value for m in values],
            }
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        frames = [f for f in pool.map(history, sorted(run_ids)) if not f.empty]
    if not frames:
        return pd.DataFrame({"run_id": [], "epoch": [], "value": []})
    # a re-logged epoch (a resumed fit) keeps its last value
    return pd.concat(frames, ignore_index=True).drop_duplicates(["run_id", "epoch"], keep="last")
