"""``litbench report STUDY``: an Optuna study's trials, read from its storage, joined to their MLflow runs.

A study is an MLflow experiment whose parent run carries ``litbench.study.role = parent`` (written by
``litbench tune``, see experiments/tune.py). Its trials are read, read-only, from the Optuna storage
that run records, and written to ``reports/<study>/`` by default:

- ``summary.md``: objective and direction, sampler and pruner, trials by state, the best trial.
- ``trials.csv``: every trial: number, state, value, params, duration, start, MLflow run id, reason.
- ``best_trials.md``: the 10 best complete trials.
- ``optimization_history.png``, ``param_importances.png`` (fANOVA), ``intermediate_values.png``.
- ``report.html``: all of the above on one self-contained page.
"""

from __future__ import annotations

import math
import re
import sqlite3
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.request import pathname2url

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import optuna
import pandas as pd
from matplotlib.ticker import MaxNLocator
from optuna.trial import FrozenTrial, TrialState

from experiments import tracking
from reports import formatting
from reports.collect import ReportInputError

# the tags and user attrs experiments/tune.py writes; named here so a report does not import
# torch and Lightning (seconds) to read them
TAG_STUDY = "litbench.study"
TAG_ROLE = "litbench.study.role"
TAG_STORAGE = "litbench.study.storage"
TAG_TRIAL_NUMBER = "litbench.trial.number"
TAG_PARENT = "mlflow.parentRunId"
ATTR_RUN_ID = "litbench.run_id"
ATTR_FAILURE = "litbench.failure"

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
_SAVE = {"dpi": 110, "bbox_inches": "tight", "metadata": {"Software": None}}  # as reports/plots.py


class StudyInputError(ReportInputError):
    """The study's storage cannot be read, or it holds nothing to report yet."""


@dataclass(frozen=True)
class StudyRecord:
    name: str
    objective: str  # the tracked metric the trials' values are, e.g. val/acc
    direction: str  # maximize or minimize, as the storage says
    sampler: str | None
    pruner: str | None
    storage: str
    parent_run_id: str
    study: optuna.Study
    run_ids: dict[int, str]  # trial number -> its MLflow run


@dataclass
class StudyReport:
    out_dir: Path
    trials: pd.DataFrame
    files: list[Path] = field(default_factory=list)


# ---------------------------------------------------------------- reading


def study_parent(tracking_uri: str, experiment: str):
    """The study's parent run, or None when ``experiment`` is no study (or does not exist)."""
    client = tracking.client_for(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    runs = client.search_runs(
        [found.experiment_id],
        filter_string=f"tags.`{TAG_ROLE}` = 'parent'",
        order_by=["attributes.start_time ASC"],
        max_results=1,
    )
    return runs[0] if runs else None


def is_study(tracking_uri: str, experiment: str) -> bool:
    return study_parent(tracking_uri, experiment) is not None


def load_study_record(tracking_uri: str, experiment: str) -> StudyRecord:
    parent = study_parent(tracking_uri, experiment)
    if parent is None:
        raise StudyInputError(f"experiment {experiment!r} in {tracking_uri} has no study parent run")
    tags = parent.data.tags
    name = tags.get(TAG_STUDY, experiment)
    location = tags.get(TAG_STORAGE) or _default_storage(tracking_uri)
    study = _load(name, location, parent.info.run_id)
    trials = study.get_trials(deepcopy=False)
    if not trials:
        raise StudyInputError(
            f"study {name!r} has no trials yet (its storage {_shown(location)} holds the study, but no "
            f"trial has started); run `litbench tune STUDY.yaml --tracking-uri {tracking_uri}` with its "
            "study file first, then report again"
        )
    return StudyRecord(
        name=name,
        objective=tags.get("litbench.study.objective", "objective"),
        direction="maximize" if study.direction == optuna.study.StudyDirection.MAXIMIZE else "minimize",
        sampler=tags.get("litbench.study.sampler"),
        pruner=tags.get("litbench.study.pruner"),
        storage=location,
        parent_run_id=parent.info.run_id,
        study=study,
        run_ids=_run_ids(tracking_uri, parent, trials),
    )


def _default_storage(tracking_uri: str) -> str:
    from experiments.tune import default_storage  # only for parent runs older than their storage tag

    return default_storage(tracking_uri)


def _load(name: str, location: str, parent_run_id: str) -> optuna.Study:
    """The study, opened read-only: a report must never create, migrate or repair a storage."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    fix = (
        f"put the storage back there, or point the parent run {parent_run_id} at where it is now: "
        f"`MlflowClient(URI).set_tag('{parent_run_id}', '{TAG_STORAGE}', 'sqlite:////new/path/optuna.db')`"
    )
    path = _file_of(location)
    if path is not None and not path.is_file():
        raise StudyInputError(
            f"the Optuna storage of study {name!r} is missing: its parent run records {location} (tag "
            f"{TAG_STORAGE}) and there is no file {path}. If it was moved, {fix}; if it is lost, the "
            "trials' MLflow runs remain, and `litbench tune` with the study file starts the study afresh"
        )
    try:
        if "://" not in location:  # a journal file, as `litbench tune --storage x.journal` writes
            from optuna.storages.journal import JournalFileBackend, JournalStorage

            storage = JournalStorage(JournalFileBackend(location))
        elif path is not None:
            storage = optuna.storages.RDBStorage(
                "sqlite://", skip_table_creation=True, engine_kwargs={"creator": _read_only(path)}
            )
        else:
            storage = optuna.storages.RDBStorage(location, skip_table_creation=True)
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = ", ".join(optuna.get_all_study_names(storage)) or "none"
        raise StudyInputError(
            f"the Optuna storage {_shown(location)} holds no study {name!r} (studies there: {names}); {fix}"
        ) from None
    except Exception as err:  # SQLAlchemy, a corrupt journal, a server that is down: all one message
        cause = " ".join(str(err.__cause__ or err).split())[:300]
        raise StudyInputError(
            f"cannot read the Optuna storage {_shown(location)} of study {name!r}: {type(err).__name__}: "
            f"{cause}. Check that it is an Optuna storage this user can read; if it moved, {fix}"
        ) from None


def _file_of(location: str) -> Path | None:
    """The file behind a SQLite URL or a journal path; None for a server."""
    if location.startswith("sqlite:///"):
        return Path(location.removeprefix("sqlite:///"))
    return None if "://" in location else Path(location)


def _read_only(path: Path) -> Callable[[], sqlite3.Connection]:
    """SQLite connections that cannot write (``mode=ro``), whatever characters the path holds."""

    def connect() -> sqlite3.Connection:
        # a running `litbench tune` may hold a write lock: wait for it rather than fail the report
        return sqlite3.connect(f"file:{pathname2url(str(path))}?mode=ro", uri=True, timeout=60)

    return connect


def _shown(location: str) -> str:
    """A storage URL without its password: error messages end up in CI logs."""
    if "://" not in location or location.startswith("sqlite:"):
        return location
    from sqlalchemy.engine import make_url

    return make_url(location).render_as_string(hide_password=True)


def _run_ids(tracking_uri: str, parent, trials: list[FrozenTrial]) -> dict[int, str]:
    """From each trial's ``litbench.run_id``; a trial still running has none yet: its nested run's."""
    client = tracking.client_for(tracking_uri)
    nested = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`{TAG_PARENT}` = '{parent.info.run_id}'",
        order_by=["attributes.start_time ASC"],  # a number run twice (never, but) keeps its latest
        max_results=50_000,
    )
    found = {
        int(run.data.tags[TAG_TRIAL_NUMBER]): run.info.run_id
        for run in nested
        if run.data.tags.get(TAG_TRIAL_NUMBER, "").isdigit()
    }
    for trial in trials:
        if trial.user_attrs.get(ATTR_RUN_ID):
            found[trial.number] = str(trial.user_attrs[ATTR_RUN_ID])
    return found


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


# ---------------------------------------------------------------- plots


def plot_history(frame: pd.DataFrame, record: StudyRecord, path: Path) -> Path:
    """Each trial's value by number; pruned ones at their last intermediate value; the best so far."""
    complete = frame[frame["state"] == "complete"]
    pruned = frame[(frame["state"] == "pruned") & frame["value"].notna()]
    if complete.empty and pruned.empty:
        return _note_figure("No trial has a value yet (none complete or pruned after an epoch).", path)
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    ax.scatter(complete["number"], complete["value"], color="#4c72b0", label="complete", zorder=3)
    if not pruned.empty:
        ax.scatter(
            pruned["number"], pruned["value"], marker="x", color="#999999", label="pruned (last value)"
        )
    if not complete.empty:
        best = complete["value"].cummax() if record.direction == "maximize" else complete["value"].cummin()
        last = frame["number"].max()  # the line runs on to the latest trial: nothing beat it since
        numbers, values = [*complete["number"], last], [*best, best.iloc[-1]]
        ax.step(numbers, values, where="post", color="#c44e52", label="best so far")
    ax.set_xlabel("trial number")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(record.objective)
    ax.set_title(f"{record.name}: {record.objective} per trial ({record.direction})", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


def plot_importances(importances: dict[str, float], note: str | None, path: Path) -> Path:
    if not importances:
        return _note_figure(note or "No parameter importances.", path)
    names = sorted(importances, key=lambda n: (importances[n], n))  # largest at the top
    fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.4 * len(names)))
    ax.barh(names, [importances[n] for n in names], color="#4c72b0")
    for y, name in enumerate(names):
        ax.text(importances[name], y, f" {importances[name]:.2f}", va="center", fontsize=8)
    ax.set_xlim(0, 1.1)
    ax.set_xlabel("importance (fANOVA, share of the objective's variance; sums to 1)")
    if note:
        ax.set_title(note.replace("`", ""), fontsize=8, loc="left")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def plot_intermediate(record: StudyRecord, path: Path) -> Path:
    """The objective per epoch as the pruner saw it; complete trials in color, the rest greyed."""
    trials = [t for t in record.study.get_trials(deepcopy=False) if t.intermediate_values]
    if not trials:
        return _note_figure("No trial reported an intermediate value yet (none finished an epoch).", path)
    best = _best(record.study)
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for t in trials:
        steps = sorted(t.intermediate_values)
        epochs, values = [s + 1 for s in steps], [t.intermediate_values[s] for s in steps]
        if best is not None and t.number == best.number:
            ax.plot(
                epochs, values, color="#c44e52", linewidth=2.2, zorder=4, label=f"best (trial {t.number})"
            )
        elif t.state == TrialState.COMPLETE:
            ax.plot(epochs, values, color="#4c72b0", linewidth=1.2, alpha=0.8)
        elif t.state == TrialState.PRUNED:  # an x where the pruner stopped it
            ax.plot(epochs, values, color="#aaaaaa", linewidth=1.0, marker="x", markevery=[-1])
        else:
            ax.plot(epochs, values, color="#cccccc", linewidth=1.0, linestyle=":")
    present = {t.state for t in trials}
    handles = [  # one legend entry per kind of line drawn
        plt.Line2D([], [], color=color, marker=marker, linestyle=style, label=label)
        for states, color, marker, style, label in (
            ({TrialState.COMPLETE}, "#4c72b0", None, "-", "complete"),
            ({TrialState.PRUNED}, "#aaaaaa", "x", "-", "pruned"),
            ({TrialState.FAIL, TrialState.RUNNING}, "#cccccc", None, ":", "failed or running"),
        )
        if states & present
    ]
    ax.legend(handles=ax.get_legend_handles_labels()[0] + handles, fontsize=8, loc="best")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(record.objective)
    ax.set_title(f"{record.name}: {record.objective} per epoch of each trial", fontsize=10)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _note_figure(text: str, path: Path) -> Path:
    """A figure that says why there is no plot: report.html keeps its layout, and the reader sees why."""
    fig, ax = plt.subplots(figsize=(7.5, 1.6))
    ax.axis("off")
    ax.text(0.5, 0.5, textwrap.fill(text.replace("`", ""), 80), ha="center", va="center", fontsize=10)
    return _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.savefig(path, **_SAVE)
    plt.close(fig)
    return path


def _best(study: optuna.Study) -> FrozenTrial | None:
    try:
        return study.best_trial
    except ValueError:  # no complete trial
        return None


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
        + f"; Optuna storage `{_shown(record.storage)}`, parent run `{record.parent_run_id}`.",
        "",
        f"{len(frame)} trials: {states}.",
        "",
    ]
    best = _best(record.study)
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
