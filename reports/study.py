"""``litbench report STUDY``: an Optuna study's trials, read from its storage, joined to their MLflow runs.

A study is an MLflow experiment whose parent run carries ``litbench.study.role = parent`` (written by
``litbench tune``, see experiments/tuning/). Its trials are read, read-only, from the Optuna storage
that run records, and written to ``reports/<study>/`` by default:

- ``summary.md``: objective and direction, sampler and pruner, trials by state, the best trial.
- ``trials.csv``: every trial: number, state, value, params, duration, start, MLflow run id, reason.
- ``best_trials.md``: the 10 best complete trials.
- ``optimization_history.png``, ``param_importances.png`` (fANOVA), ``intermediate_values.png``.
- ``report.html``: all of the above on one self-contained page.

This module makes the tables and writes the files; reports/study_record.py reads the study and
reports/study_plots.py draws the figures.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import pandas as pd
from optuna.trial import TrialState

from reports import formatting
from reports.study_plots import plot_history, plot_importances, plot_intermediate
from reports.study_record import (
    ATTR_FAILURE,
    StudyRecord,
    best_trial_or_none,
    load_study_record,
    redacted,
)

STATES = {  # Optuna's state -> the word the trial runs' litbench.trial.state tag uses
    TrialState.COMPLETE: "complete",
    TrialState.PRUNED: "pruned",
    TrialState.FAIL: "failed",
    TrialState.RUNNING: "running",
    TrialState.WAITING: "waiting",
}
TOP = 10  # rows of best_trials.md
PLOTS = {  # file -> its title in report.html
    "optimization_history.png": "Optimization history",
    "param_importances.png": "Parameter importances (fANOVA)",
    "intermediate_values.png": "Intermediate values (learning curves)",
}


@dataclass
class StudyReport:
    out_dir: Path
    trials: pd.DataFrame
    files: list[Path] = field(default_factory=list)


# ---------------------------------------------------------------- tables


def trials_frame(record: StudyRecord) -> pd.DataFrame:
    """One row per trial, by number; a parameter a trial did not sample (a ``when``) is empty."""
    trials = record.study.get_trials(deepcopy=False)
    params = list(dict.fromkeys(name for t in trials for name in t.params))  # first-sampled order
    rows = []
    for t in trials:
        rows.append(
            {
                "number": t.number,
                "state": STATES.get(t.state, t.state.name.lower()),
                "value": t.value,  # a pruned trial's is Optuna's: its last intermediate value
                **{name: t.params.get(name) for name in params},
                "duration_s": t.duration.total_seconds() if t.duration else math.nan,
                "started": t.datetime_start.isoformat(timespec="seconds") if t.datetime_start else "",
                "run_id": record.run_ids.get(t.number, ""),
                "reason": str(t.user_attrs.get(ATTR_FAILURE, "")) if t.state == TrialState.FAIL else "",
            }
        )
    return pd.DataFrame(rows).sort_values("number", kind="stable").reset_index(drop=True)


def param_columns(frame: pd.DataFrame) -> list[str]:
    fixed = {"number", "state", "value", "duration_s", "started", "run_id", "reason"}
    return [c for c in frame.columns if c not in fixed]


def best_trials(frame: pd.DataFrame, direction: str, top: int = TOP) -> pd.DataFrame:
    """The complete trials, best first (ties: the earlier trial), as rounded display strings."""
    complete = frame[frame["state"] == "complete"]
    ranked = complete.sort_values(
        ["value", "number"], ascending=[direction == "minimize", True], kind="stable"
    ).head(top)
    shown = pd.DataFrame({"rank": range(1, len(ranked) + 1), "trial": ranked["number"].to_numpy()})
    shown["value"] = [formatting.number(v, 4) for v in ranked["value"]]
    for name in param_columns(frame):
        shown[name] = [_param(v) for v in ranked[name]]
    shown["duration_s"] = [formatting.number(v, 1) for v in ranked["duration_s"]]
    shown["run id"] = ranked["run_id"].to_numpy()
    return shown.astype(str)


def _param(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def param_importances(study: optuna.Study) -> tuple[dict[str, float], str | None]:
    """fANOVA importances over the complete trials (seeded: the same study, the same numbers), or a
    note saying why there are none; a note may also come with them (a parameter left out)."""
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2:
        return {}, (
            f"Parameter importances need at least two complete trials to compare; this study has "
            f"{len(complete)}."
        )
    searched = list(dict.fromkeys(name for t in complete for name in t.params))
    shared = [name for name in searched if all(name in t.params for t in complete)]
    if len(searched) == 1:
        return {}, (
            f"Only one parameter, `{searched[0]}`, was searched: it accounts for all the variation by "
            "definition, so an importance would say nothing."
        )
    if len(shared) < 2:  # fANOVA compares only what every complete trial sampled
        which = f"only `{shared[0]}` was (the others" if shared else "no parameter was (each"
        return {}, (
            "Parameter importances need two parameters that every complete trial sampled; "
            f"{which} depend on a `when`)."
        )
    left_out = [name for name in searched if name not in shared]
    note = (
        f"Left out (not sampled in every complete trial): {', '.join(f'`{n}`' for n in left_out)}."
        if left_out
        else None
    )
    try:
        values = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0), params=shared)
    except (ValueError, RuntimeError, ZeroDivisionError) as err:  # e.g. every complete value equal
        return {}, f"Parameter importances could not be computed: {err}."
    return {name: float(v) for name, v in values.items()}, note


# ---------------------------------------------------------------- writing


def summary_markdown(
    record: StudyRecord,
    frame: pd.DataFrame,
    importances: dict[str, float],
    note: str | None,
    files: list[str],
) -> str:
    counts = frame["state"].value_counts()
    states = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("complete", "pruned", "failed", "running"))
    how = " and ".join(
        f"the {v} {k}" for k, v in (("sampler", record.sampler), ("pruner", record.pruner)) if v
    )
    lines = [
        f"# {record.name}: study summary",
        "",
        f"Study `{record.name}` {record.direction}s `{record.objective}`"
        + (f" with {how}" if how else "")
        + f"; Optuna storage `{redacted(record.storage)}`, parent run `{record.parent_run_id}`.",
        "",
        f"{len(frame)} trials: {states}.",
        "",
    ]
    best = best_trial_or_none(record.study)
    if best is None:
        lines += ["No trial has completed yet, so there is no best value.", ""]
    else:
        params = ", ".join(f"`{k}` = {_param(v)}" for k, v in best.params.items())
        run = record.run_ids.get(best.number)
        lines += [
            f"**Best: trial {best.number}, `{record.objective}` = {formatting.number(best.value, 4)}** "
            f"with {params}; "
            + (f"its MLflow run is `{run}`." if run else "no MLflow run is recorded for it."),
            "",
        ]
    if importances:
        ranked = sorted(importances.items(), key=lambda kv: (-kv[1], kv[0]))
        shown = ", ".join(f"`{name}` {value:.2f}" for name, value in ranked)
        lines += [
            f"Parameter importances (fANOVA over the complete trials): {shown}."
            + (f" {note}" if note else "")
        ]
    else:
        lines += [note or "No parameter importances."]
    lines += ["", "Files: " + ", ".join(f"`{name}`" for name in files) + "."]
    return "\n".join(lines) + "\n"


def best_markdown(record: StudyRecord, best: pd.DataFrame, complete: int) -> str:
    title = f"# {record.name}: best trials\n\n"
    if best.empty:
        return title + "No trial has completed yet.\n"
    intro = (
        f"The {len(best)} best of {complete} complete trials by `{record.objective}` ({record.direction}); "
        "pruned and failed trials are in `trials.csv`.\n\n"
    )
    return title + intro + best.to_markdown(index=False, disable_numparse=True) + "\n"


def write_study_report(
    tracking_uri: str,
    experiment: str,
    out_dir: Path | None = None,
    progress: Callable[[str], None] = lambda step: None,
) -> StudyReport:
    progress("reading the study's trials")
    record = load_study_record(tracking_uri, experiment)
    out_dir = Path(out_dir) if out_dir is not None else Path("reports") / _safe(record.name)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = trials_frame(record)
    report = StudyReport(out_dir, frame)
    frame.to_csv(out_dir / "trials.csv", index=False, lineterminator="\n")  # floats with every digit
    best = best_trials(frame, record.direction)
    complete = int((frame["state"] == "complete").sum())
    report.files += [
        out_dir / "trials.csv",
        _write(out_dir / "best_trials.md", best_markdown(record, best, complete)),
    ]

    progress("computing parameter importances")
    importances, note = param_importances(record.study)
    progress("drawing plots")
    figures = {
        PLOTS["optimization_history.png"]: plot_history(frame, record, out_dir / "optimization_history.png"),
        PLOTS["param_importances.png"]: plot_importances(
            importances, note, out_dir / "param_importances.png"
        ),
        PLOTS["intermediate_values.png"]: plot_intermediate(record, out_dir / "intermediate_values.png"),
    }
    report.files += figures.values()

    progress("writing the summary and HTML")
    names = sorted(["summary.md", "report.html", *(p.name for p in report.files)])
    summary = summary_markdown(record, frame, importances, note, names)
    report.files.append(_write(out_dir / "summary.md", summary))
    sections = [formatting.html_table(f"Best {TOP} trials ({record.objective}, {record.direction})", best)]
    sections += [formatting.html_figure(title, p) for title, p in figures.items()]
    sections.append(formatting.html_table("Every trial", _displayed(frame)))
    page = formatting.html_page(f"{record.name} (Optuna study)", summary, sections)
    report.files.append(_write(out_dir / "report.html", page))
    report.files.sort()
    return report


def _displayed(frame: pd.DataFrame) -> pd.DataFrame:
    shown = frame.drop(columns=["started"]).copy()
    shown["value"] = [formatting.number(v, 4) for v in frame["value"]]
    for name in param_columns(frame):
        shown[name] = [_param(v) for v in frame[name]]
    shown["duration_s"] = [formatting.number(v, 1) for v in frame["duration_s"]]
    return shown.astype(str)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)  # as the grid report names its folder


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
