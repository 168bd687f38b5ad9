"""A suite report's figures: performance profiles and a critical-difference diagram (Demšar 2006),
drawn with matplotlib's Agg backend and saved without timestamps."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd

from reports.suite_stats import Friedman

_SAVE = {"dpi": 110, "bbox_inches": "tight", "metadata": {"Software": None}}


def performance_profiles(profile: pd.DataFrame, workloads: int, path: Path) -> Path:
    """One step curve per method: the fraction of workloads it reaches the target on within tau times
    the fastest method's time."""
    fig, ax = plt.subplots(figsize=(7.0, 4.2))
    order = profile.mean(axis=0).sort_values(ascending=False, kind="stable").index
    for color, method in zip(plt.cm.tab10.colors, order, strict=False):
        ax.step(profile.index, profile[method], where="post", color=color, label=method, linewidth=1.6)
    ax.set_xlim(profile.index.min(), profile.index.max())
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("tau: time-to-target within tau x the fastest method's")
    ax.set_ylabel(f"fraction of the {workloads} workloads")
    ax.set_title("performance profiles (higher is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.savefig(path, **_SAVE)
    plt.close(fig)
    return path


def critical_difference(test: Friedman, path: Path) -> Path:
    """Methods on the mean-rank axis (1 = best, on the left); a bar joins each maximal group whose
    ranks lie within Nemenyi's critical difference: those cannot be told apart."""
    ranks = test.mean_ranks
    k = len(ranks)
    fig, ax = plt.subplots(figsize=(7.0, 1.6 + 0.28 * k))
    ax.set_xlim(k + 0.3, 0.7)  # rank 1 on the left
    ax.set_ylim(-(k + 2) * 0.5, 1.2)
    ax.hlines(0, 1, k, color="black", linewidth=1)
    for r in range(1, k + 1):
        ax.vlines(r, 0, 0.12, color="black", linewidth=1)
        ax.text(r, 0.25, str(r), ha="center", va="bottom", fontsize=9)
    half = (k + 1) // 2
    for i, (method, rank) in enumerate(ranks.items()):
        left = i < half
        y = -0.5 * (i + 1) if left else -0.5 * (k - i)
        end = 0.7 if left else k + 0.3
        ax.plot([rank, rank, end], [0, y, y], color="black", linewidth=0.8)
        ax.text(
            end, y + 0.06, f"{method} ({rank:.2f})", ha="left" if left else "right", va="bottom", fontsize=8
        )
    for j, (low, high) in enumerate(_cliques(ranks, test.critical_difference)):
        y = -0.2 - 0.18 * j
        ax.hlines(y, low - 0.03, high + 0.03, color="tab:red", linewidth=3)
    ax.hlines(0.95, 1, 1 + test.critical_difference, color="tab:blue", linewidth=2)
    ax.text(
        1 + test.critical_difference / 2, 1.0, f"CD = {test.critical_difference:.2f}", ha="center", fontsize=8
    )
    ax.set_title(
        f"mean ranks over {test.workloads} workloads; Friedman p = {test.p_value:.3g}", fontsize=9, pad=12
    )
    ax.axis("off")
    fig.savefig(path, **_SAVE)
    plt.close(fig)
    return path


def _cliques(ranks: pd.Series, cd: float) -> list[tuple[float, float]]:
    """Maximal runs of consecutive methods (by rank) spanning at most ``cd``, two or more each."""
    values = list(ranks.to_numpy())
    spans = []
    for i in range(len(values)):
        j = i
        while j + 1 < len(values) and values[j + 1] - values[i] <= cd:
            j += 1
        if j > i and not any(a <= i and j <= b for a, b in spans):
            spans.append((i, j))
    return [(values[a], values[b]) for a, b in spans]
