"""The strategies view of a report: pretrain-then-fine-tune, distillation and quantized or bf16 variants
compared on the task metric, size, latency and whole training cost.

Written beside the other files only when the runs carry such facts (a stage, parent or teacher tag, or
a ``test_<variant>/`` size or latency); a grid without them gets exactly the report it always had.

- ``strategies.md``, ``strategies.csv``: one row per (configuration, stage, variant) of the scored runs.
- ``lineage.md``, ``lineage.csv``: one row per parent or teacher link of a run.
- ``pareto_size.png``, ``pareto_latency.png``: the metric against size_mb (log x) and latency_ms_example,
  the Pareto front drawn as a step line; its members are listed in ``strategies.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from core.metrics import UnknownMetricError, direction_of
from reports import formatting, plots
from reports.collect import FACT_COLUMNS, GridRuns, fetch_run_facts
from reports.lineage import (
    PRETRAIN_KIND,
    lineage_table,
    pareto_front,
    strategies_table,
    training_cost,
    variants,
)

LINK_FACTS = ("stage", "parent_run", "teacher_run")  # a tag any of these: the grid has strategies to compare
# x axis -> (file, log scale): sizes span orders of magnitude (int8 is ~4x smaller), latencies less so
FRONTS = {"size_mb": ("pareto_size", True), "latency_ms_example": ("pareto_latency", False)}
MAX_FETCH_ROUNDS = 16  # links outside the experiment are followed this many levels up, at most


@dataclass
class StrategiesView:
    metric: str  # the tracked task metric the rows score, e.g. "test/acc"
    mode: str  # its direction: "max" or "min"
    table: pd.DataFrame  # strategies.csv
    lineage: pd.DataFrame  # lineage.csv
    fronts: dict[str, list[str]]  # x ("size_mb") -> the front's members' labels, in order of x
    files: list[Path] = field(default_factory=list)
    figures: dict[str, Path] = field(default_factory=dict)  # title -> PNG, for report.html
    displayed: dict[str, pd.DataFrame] = field(default_factory=dict)  # title -> rounded table
    note: str = ""  # a paragraph for summary.md


def applies(grid: GridRuns) -> bool:
    """Whether the runs carry a lineage or variant fact, so the report gets the strategies view."""
    facts = _own_facts(grid)
    linked = any((facts[name] != "").any() for name in LINK_FACTS if name in facts)
    return linked or len(variants(list(grid.finished.columns))) > 1


def build_view(tracking_uri: str, grid: GridRuns) -> StrategiesView:
    """The view's tables and fronts, nothing written: costs follow parent and teacher links through the
    whole experiment, and into the store beyond it for a parent from another grid."""
    facts = _with_outside_links(tracking_uri, grid.facts)
    scored = _scored(grid, facts)
    metric = _task_metric(scored, grid.metric)
    mode = _direction(metric, grid.mode)
    table = strategies_table(scored, metric, mode, training_cost(facts))
    table["label"] = table["config"] + " [" + table["variant"] + "]"
    fronts = {}
    for x in FRONTS:
        placed = table.dropna(subset=[x, "mean"])
        members = placed.index[pareto_front(list(zip(placed[x], placed["mean"], strict=True)), mode == "max")]
        table[f"pareto_{x}"] = table.index.isin(members)
        if len(placed):
            fronts[x] = table.loc[members, "label"].tolist()
    lineage = lineage_table(facts, grid.finished["run_id"].tolist())
    return StrategiesView(f"test/{metric}", mode, table, lineage, fronts)


def write_strategies(tracking_uri: str, grid: GridRuns, out_dir: Path) -> StrategiesView:
    """Build the view and write its files (those with something to show) to ``out_dir``."""
    view = build_view(tracking_uri, grid)
    table, metric = view.table, view.metric
    if len(table):
        view.files.append(_csv(table.drop(columns="label"), out_dir / "strategies.csv"))
        for x, (name, log_x) in FRONTS.items():
            if x not in view.fronts:
                continue
            placed = table.dropna(subset=[x, "mean"]).reset_index(drop=True)
            front = placed.index[placed[f"pareto_{x}"]].tolist()
            front.sort(key=lambda i: (placed.at[i, x], i))
            path = plots.pareto(placed, x, metric, front, out_dir / f"{name}.png", log_x)
            view.figures[f"Pareto front: {metric} against {x}"] = path
            view.files.append(path)
        shown = _displayed(table, metric)
        view.displayed[f"Strategies: {metric} by configuration and variant"] = shown
        view.files.append(_text(out_dir / "strategies.md", _strategies_markdown(grid, view, shown)))
    if len(view.lineage):
        view.files.append(_csv(view.lineage, out_dir / "lineage.csv"))
        shown = _displayed_lineage(view.lineage)
        view.displayed["Lineage: the runs each run's weights or logits came from"] = shown
        view.files.append(_text(out_dir / "lineage.md", _lineage_markdown(grid, shown)))
    view.note = _note(view)
    return view


def _own_facts(grid: GridRuns) -> pd.DataFrame:
    if grid.facts.empty:
        return grid.facts
    return grid.facts[grid.facts["run_id"].isin(grid.finished["run_id"])]


def _with_outside_links(tracking_uri: str, facts: pd.DataFrame) -> pd.DataFrame:
    """``facts`` plus every run its links reach that is not in the experiment, read from the store."""
    if facts.empty:
        return pd.DataFrame(columns=list(FACT_COLUMNS))
    tried: set[str] = set()
    for _ in range(MAX_FETCH_ROUNDS):
        linked = {r for name in ("parent_run", "teacher_run") if name in facts for r in facts[name] if r}
        missing = sorted(linked - set(facts["run_id"]) - tried)
        if not missing:
            break
        tried |= set(missing)
        fetched = fetch_run_facts(tracking_uri, missing)
        if fetched.empty:
            break
        facts = pd.concat([facts, fetched], ignore_index=True)
    return facts


def _scored(grid: GridRuns, facts: pd.DataFrame) -> pd.DataFrame:
    """The part's finished runs scored on the task metric: every task kind but pretraining."""
    tagged = ["stage", "task_kind", "task_metric"]
    finished = grid.finished.drop(columns=tagged, errors="ignore")
    if facts.empty:
        return finished.assign(stage="", task_kind="", task_metric="")
    finished = finished.merge(facts[["run_id", *tagged]].drop_duplicates("run_id"), on="run_id", how="left")
    finished[tagged] = finished[tagged].fillna("")
    return finished[finished["task_kind"] != PRETRAIN_KIND].reset_index(drop=True)


def _task_metric(scored: pd.DataFrame, default: str) -> str:
    """The scored runs' own task metric (their ``litbench.metric`` tag), else the part's."""
    named = scored["task_metric"][scored["task_metric"] != ""]
    return str(named.value_counts().sort_index().idxmax()) if len(named) else default


def _direction(metric: str, default: str) -> str:
    try:
        return direction_of(f"test/{metric}")  # declared once for every metric (core.metrics)
    except UnknownMetricError:
        return default  # a plugin's metric nobody declared: the direction the runs were tagged with


def _displayed(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    digits = formatting.digits_for(metric)
    half = table["ci_high"] - table["mean"]
    shown = pd.DataFrame(
        {
            "rank": table["rank"].astype(str),
            "config": table["config"],
            "stage": table["stage"].replace("", "–"),
            "variant": table["variant"],
            "n": table["n"].astype(str),
            f"{metric} (mean ± 95% CI)": [
                formatting.number(m, digits) + ("" if pd.isna(h) else " ± " + formatting.number(h, digits))
                for m, h in zip(table["mean"], half, strict=True)
            ],
        }
    )
    for name in ("size_mb", "latency_ms_batch", "latency_ms_example"):
        shown[name] = [formatting.number(v, formatting.digits_for(name)) for v in table[name]]
    for name in ("fit_time_s", "parent_cost_s", "teacher_cost_s", "cost_s"):
        shown[name] = [formatting.number(v, 1) for v in table[name]]
    for x in FRONTS:
        shown[f"front ({x})"] = ["yes" if v else "" for v in table[f"pareto_{x}"]]
    return shown


def _displayed_lineage(lineage: pd.DataFrame) -> pd.DataFrame:
    shown = lineage.copy()
    shown["source_value"] = [
        formatting.number(v, formatting.digits_for(m))
        for v, m in zip(lineage["source_value"], lineage["source_metric"], strict=True)
    ]
    return shown


def _strategies_markdown(grid: GridRuns, view: StrategiesView, shown: pd.DataFrame) -> str:
    metric = view.metric
    name = metric.partition("/")[2]
    lines = [
        f"# {grid.experiment}: strategies",
        "",
        f"One row per (configuration, stage, variant) of the scored runs, best first. Pretraining runs "
        f"(task kind `{PRETRAIN_KIND}`) are not scored on {metric}: they are parents, in `lineage.md`. "
        f"A variant's value is `test_<variant>/{name}`; fp32 uses `{metric}` where a run has no "
        f"`test_fp32/{name}`. Mean over seeds with its 95% Student-t CI (clipped to "
        f"the metric's declared range); size_mb and the latencies "
        "(ms, CPU medians) are means over seeds.",
        "",
        "Costs are means over seeds, in seconds. `fit_time_s` is the run's own fit; `parent_cost_s` the "
        "whole cost of the run its weights came from (`model.init_from`, followed up the chain); "
        "`teacher_cost_s` the teacher's whole cost plus the run's `perf/teacher_logits_s`; `cost_s` the "
        "sum. **A pretraining or teacher run shared by k children is counted in full for each child**: "
        "`cost_s` is what reproducing that one run would take, so the costs do not add up to the grid's "
        "total. A variant is the same weights tested another way: it costs no further training. "
        "`–`: unknown (a link to a run the store lacks, or a time it did not log).",
        "",
        shown.to_markdown(index=False, disable_numparse=True),
        "",
    ]
    for x, members in view.fronts.items():
        lines += [f"## Pareto front: {metric} against {x}", ""]
        better = "higher" if view.mode == "max" else "lower"
        lines.append(
            f"No other row is both {better} on {metric} and lower on {x} (`{FRONTS[x][0]}.png`); "
            f"in order of {x}:"
        )
        lines.append("")
        rows = view.table.set_index("label")
        digits = formatting.digits_for(metric)
        lines += [
            f"- `{label}`: {formatting.number(rows.at[label, 'mean'], digits)} at "
            f"{formatting.number(rows.at[label, x], 2)} {'MB' if x == 'size_mb' else 'ms'}"
            for label in members
        ]
        lines.append("")
    return "\n".join(lines)


def _lineage_markdown(grid: GridRuns, shown: pd.DataFrame) -> str:
    return "\n".join(
        [
            f"# {grid.experiment}: lineage",
            "",
            "One row per link: `parent` is the run whose weights `model.init_from` loaded (`part`: all, or "
            "encoder), `teacher` the run whose logits `distill.teacher` learned from. `source_value` is the "
            "source run's final validation value of its own task metric (`val/mlm_loss` for pretraining). "
            "`chain`: the runs the weights (a teacher: the logits) came through, newest first.",
            "",
            shown.to_markdown(index=False, disable_numparse=True),
            "",
        ]
    )


def _note(view: StrategiesView) -> str:
    if view.table.empty:  # a part of pretraining runs only: nothing is scored on the task metric
        return (
            ""
            if view.lineage.empty
            else f"Lineage: {len(view.lineage)} parent or teacher links (`lineage.md`)."
        )
    parts = [
        f"Strategies (`strategies.md`): {len(view.table)} (configuration, variant) rows on {view.metric}"
    ]
    for x, members in view.fronts.items():
        parts.append(f"the Pareto front against {x} is " + ", ".join(f"`{m}`" for m in members))
    return "; ".join(parts) + "."


def _csv(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False, lineterminator="\n")  # every digit, as build.py's tables
    return path


def _text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
