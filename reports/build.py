"""``litbench report``: read a grid's runs from MLflow and write every table, plot and summary.

Outputs (in ``reports/<grid>/`` by default):

- ``summary.md``: the result in words: what won, by how much, how sure.
- ``tables.md``, ``tables.tex`` (booktabs), ``report.html`` (one page, styled, plots inlined): the
  rounded tables.
- ``configurations.csv``, ``versus_best.csv``, ``marginal_<factor>.csv``, ``unfinished.csv``,
  ``runs.csv``: the same tables unrounded, plus the per-run numbers they came from.
- ``learning_curves.png``, ``factors.png``, ``heatmap.png`` (where the grid varies both the model
  and the optimizer).
- where the runs carry lineage or variant facts (a stage, a parent or teacher run, a test_int8/ size
  or latency): ``strategies.md``, ``strategies.csv``, ``lineage.md``, ``lineage.csv``,
  ``pareto_size.png``, ``pareto_latency.png`` (see ``reports.strategies``).

A grid over several tasks (``data.task: [sst2, mrpc]``) gets all of that per task, in
``<out>/<data name>_<task>/``, and a top ``summary.md`` with each task's summary.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from reports import formatting, plots, strategies
from reports.collect import GridRuns, NoRunsError, load_grid_runs, metric_histories, split_by_task
from reports.narrative import summary_markdown
from reports.tables import ReportTables, build_tables, choose_metric


@dataclass
class Report:
    out_dir: Path
    tables: ReportTables
    files: list[Path] = field(default_factory=list)


def write_report(
    tracking_uri: str,
    experiment: str,
    out_dir: Path | None = None,
    metric: str | None = None,
    mode: str | None = None,
    progress: Callable[[str], None] = lambda step: None,
) -> Report:
    progress("reading runs from MLflow")
    grid = load_grid_runs(tracking_uri, experiment)
    if grid.finished.empty:
        raise NoRunsError(
            f"experiment {experiment!r} has no FINISHED run to compare ({len(grid.unfinished)} did not "
            "finish); run `litbench grid ... --retry-failed` first"
        )
    out_dir = Path(out_dir) if out_dir is not None else Path("reports") / _safe(experiment)
    parts = split_by_task(grid)
    if parts:
        return _write_per_task(tracking_uri, experiment, parts, out_dir, metric, mode, progress)
    return _write_one(tracking_uri, experiment, grid, out_dir, metric, mode, progress)


def _write_per_task(
    tracking_uri: str,
    experiment: str,
    parts: dict[str, GridRuns],
    out_dir: Path,
    metric: str | None,
    mode: str | None,
    progress: Callable[[str], None],
) -> Report:
    """A grid over several tasks: a whole report per task in ``<out>/<task>/`` (each on its own metric:
    averaging SST-2 accuracy with MRPC F1 would mean nothing) and a top ``summary.md`` joining them."""
    reports = {}
    for task, part in parts.items():
        if part.finished.empty:
            continue
        progress(f"task {task}")
        reports[task] = _write_one(
            tracking_uri, f"{experiment} / {task}", part, out_dir / _safe(task), metric, mode, progress
        )
    if not reports:
        raise NoRunsError(f"experiment {experiment!r} has no FINISHED run to compare")
    lines = [
        f"# {experiment}: summary",
        "",
        f"The grid spans {len(parts)} tasks, each scored by its own metric; each has a whole report in its "
        "folder (tables in Markdown, LaTeX, HTML and CSV, plots).",
        "",
    ]
    for task, report in reports.items():
        folder = report.out_dir.name
        text = (report.out_dir / "summary.md").read_text()
        body = text.split("\n", 1)[1].strip()  # the part's own title line is replaced by this heading
        body = body.rsplit("\n\nFiles:", 1)[0]
        lines += [f"## {task} (`{folder}/`)", "", body, ""]
    top = Report(out_dir, next(iter(reports.values())).tables)
    top.files = [_write_text(out_dir / "summary.md", "\n".join(lines))]
    top.files += [path for report in reports.values() for path in report.files]
    top.files.sort()
    return top


def _write_one(
    tracking_uri: str,
    experiment: str,
    grid: GridRuns,
    out_dir: Path,
    metric: str | None,
    mode: str | None,
    progress: Callable[[str], None],
) -> Report:
    tables = build_tables(grid, choose_metric(grid, metric, mode))
    out_dir.mkdir(parents=True, exist_ok=True)
    report = Report(out_dir, tables)

    progress("writing tables")
    for name, frame in _csv_tables(tables).items():
        report.files.append(_write_csv(frame, out_dir / f"{name}.csv"))
    displayed = _displayed(tables, grid.factors, grid.target)

    progress("drawing plots")
    figures = _draw(tracking_uri, grid, tables, out_dir)
    report.files += figures.values()
    notes, page = [], dict(displayed)  # page: the tables report.html shows
    if strategies.applies(grid):  # a grid without lineage or variants keeps exactly its old files
        progress("comparing strategies: lineage, costs, Pareto fronts")
        view = strategies.write_strategies(tracking_uri, grid, out_dir)
        report.files += view.files
        figures.update(view.figures)
        page.update(view.displayed)
        notes = [view.note] if view.note else []

    progress("writing Markdown, LaTeX and HTML")
    names = ["summary.md", "tables.md", "tables.tex", "report.html"] + [p.name for p in report.files]
    summary = summary_markdown(experiment, tables, sorted(names), notes)
    report.files.append(_write_text(out_dir / "summary.md", summary))
    report.files.append(_write_text(out_dir / "tables.md", _markdown(experiment, displayed)))
    report.files.append(_write_text(out_dir / "tables.tex", _latex(experiment, displayed)))
    report.files.append(_write_text(out_dir / "report.html", _html(experiment, summary, page, figures)))
    report.files.sort()
    return report


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _csv_tables(tables: ReportTables) -> dict[str, pd.DataFrame]:
    csvs = {
        "configurations": tables.configurations,
        "versus_best": tables.versus_best,
        "unfinished": tables.unfinished,
        "runs": tables.runs,
    }
    for factor, table in tables.marginals.items():
        csvs[f"marginal_{_safe(factor)}"] = table
    return csvs


def _write_csv(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False, lineterminator="\n")  # floats as repr: every digit, same every time
    return path


def _write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _displayed(tables: ReportTables, factors: list[str], target: float | None) -> dict[str, pd.DataFrame]:
    """Title -> rounded table, in the order every format prints them."""
    configurations = formatting.configurations(tables, factors)
    if target is not None:  # say which target: the metric's name alone does not
        configurations = configurations.rename(
            columns={"perf/time_to_target_s": f"perf/time_to_target_s (to {target:g})"}
        )
    shown = {
        "Configurations (mean ± std over seeds, best first)": configurations,
        f"Every configuration against the best ({tables.metric.name})": formatting.versus_best(tables),
    }
    for factor in tables.marginals:
        shown[formatting.marginal_title(tables, factor)] = formatting.marginal(tables, factor)
    shown["Failed and unfinished runs (left out of every statistic)"] = formatting.unfinished(tables)
    return shown


def _draw(tracking_uri: str, grid: GridRuns, tables: ReportTables, out_dir: Path) -> dict[str, Path]:
    figures: dict[str, Path] = {}
    curve_metric = _curve_metric(tables.metric.name, grid.finished)
    if curve_metric:
        best = tables.configurations["config"].head(plots.MAX_CURVES).tolist()
        run_ids = grid.finished.loc[grid.finished["config"].isin(best), "run_id"].tolist()
        histories = metric_histories(tracking_uri, run_ids, curve_metric)
        if not histories.empty:
            figures["Learning curves"] = plots.learning_curves(
                histories, grid.finished, best, curve_metric, out_dir / "learning_curves.png"
            )
    if tables.marginals:
        figures["Factors"] = plots.factor_bars(tables, out_dir / "factors.png")
    pair = _architecture_and_optimizer(list(tables.marginals))
    if pair:
        figures["Architecture × optimizer"] = plots.heatmap(tables, *pair, out_dir / "heatmap.png")
    return figures


def _curve_metric(metric: str, runs: pd.DataFrame) -> str | None:
    """Validation is what a run tracks every epoch: its twin of the report's metric."""
    name = metric.partition("/")[2]
    for candidate in (f"val/{name}", metric):
        if candidate in runs:
            return candidate
    return None


def _architecture_and_optimizer(factors: list[str]) -> tuple[str, str] | None:
    def first(prefix: str) -> str | None:
        """The whole entry (``optimizer``), else its name, else any of its fields."""
        preferred = [prefix, f"{prefix}.name", *(f for f in factors if f.startswith(f"{prefix}."))]
        return next((f for f in preferred if f in factors), None)

    model, optimizer = first("model"), first("optimizer")
    return (model, optimizer) if model and optimizer else None


def _markdown(experiment: str, tables: dict[str, pd.DataFrame]) -> str:
    parts = [f"# {experiment}: tables", ""]
    for title, frame in tables.items():
        parts += [f"## {title}", ""]
        parts.append(frame.to_markdown(index=False, disable_numparse=True) if len(frame) else "_none_")
        parts.append("")
    return "\n".join(parts)


_LATEX_SYMBOLS = {"±": r"$\pm$", "Δ": r"$\Delta$", "–": "--", "×": r"$\times$"}


def _latex(experiment: str, tables: dict[str, pd.DataFrame]) -> str:
    """One booktabs table per section; needs \\usepackage{booktabs} in the paper's preamble."""
    parts = [f"% {experiment}: tables generated by litbench report; requires \\usepackage{{booktabs}}", ""]
    for title, frame in tables.items():
        if frame.empty:
            continue
        escaped = frame.map(_latex_escape).rename(columns=_latex_escape)
        body = escaped.to_latex(index=False, escape=False, column_format="l" * len(frame.columns))
        parts += [f"% {title}", "\\begin{table}[ht]", "\\centering", "\\small", body.rstrip()]
        parts += [f"\\caption{{{_latex_escape(title)}}}", "\\end{table}", ""]
    return "\n".join(parts)


def _latex_escape(text: object) -> str:
    text = str(text)
    for char in "\\&%$#_{}":
        text = text.replace(char, "\\" + char if char != "\\" else r"\textbackslash{}")
    text = text.replace("~", r"\textasciitilde{}").replace("^", r"\textasciicircum{}")
    text = text.replace("<", r"$<$")
    for symbol, command in _LATEX_SYMBOLS.items():
        text = text.replace(symbol, command)
    return text


def _html(experiment: str, summary: str, tables: dict[str, pd.DataFrame], figures: dict[str, Path]) -> str:
    sections = [formatting.html_table(title, frame) for title, frame in tables.items()]
    sections += [formatting.html_figure(title, path) for title, path in figures.items()]
    return formatting.html_page(experiment, summary, sections)
