"""The study report's figures, as PNG files: the optimization history, the fANOVA importances and the
trials' learning curves (the intermediate values the pruner saw).

Drawn with matplotlib's Agg backend (no display needed) and saved without timestamps, as reports/plots.py.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import MaxNLocator
from optuna.trial import TrialState

from reports.study_record import StudyRecord, best_trial_or_none

_SAVE = {"dpi": 110, "bbox_inches": "tight", "metadata": {"Software": None}}  # as reports/plots.py


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
    best = best_trial_or_none(record.study)
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
