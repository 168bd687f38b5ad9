"""The report's figures, as PNG files: learning curves, factor bar charts with CIs, an arch x optimizer map,
and Pareto fronts of the metric against size or latency.

Drawn with matplotlib's Agg backend (no display needed) and saved without timestamps, so the same
store draws the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from reports.tables import ReportTables

MAX_CURVES = 8  # more lines than this on one axis cannot be told apart; the best ones are drawn
DPI = 110
MAX_INCHES = 30.0  # a grid with hundreds of levels still draws a figure a browser can show
MAX_ANNOTATED_CELLS = 150  # beyond this the numbers in a heatmap's cells overlap
_SAVE = {"dpi": DPI, "bbox_inches": "tight", "metadata": {"Software": None}}


def learning_curves(
    histories: pd.DataFrame, runs: pd.DataFrame, configs: list[str], metric: str, path: Path
) -> Path:
    """Mean over seeds per epoch, with a band of one standard deviation, for each of ``configs``."""
    by_run = histories.merge(runs[["run_id", "config"]], on="run_id")
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for color, config in zip(plt.cm.tab10.colors, configs, strict=False):
        curve = by_run[by_run["config"] == config].groupby("epoch")["value"].agg(["mean", "std", "count"])
        if curve.empty:
            continue
        std = curve["std"].fillna(0.0)
        ax.plot(curve.index, curve["mean"], color=color, label=config, linewidth=1.6)
        ax.fill_between(curve.index, curve["mean"] - std, curve["mean"] + std, color=color, alpha=0.18)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric}: mean over seeds, band ±1 std")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


def factor_bars(tables: ReportTables, path: Path) -> Path:
    """One panel per factor: each level's mean with its 95% CI as an error bar (the method in the axis
    label), titled with what the level pools."""
    factors = list(tables.marginals)
    height = min(0.5 + 1.4 * len(factors) + 0.3 * _levels(tables), MAX_INCHES)
    fig, axes = plt.subplots(len(factors), 1, figsize=(7.5, height), squeeze=False)
    axes = axes[:, 0]
    for ax, factor in zip(axes, factors, strict=True):
        table = tables.marginals[factor].iloc[::-1]  # best at the top
        errors = np.vstack([table["mean"] - table["ci_low"], table["ci_high"] - table["mean"]])
        ax.barh(
            table["level"].astype(str), table["mean"], xerr=np.nan_to_num(errors), color="#4c72b0", capsize=3
        )
        low = np.nanmin(np.r_[table["ci_low"].to_numpy(), table["mean"].to_numpy()])
        high = np.nanmax(np.r_[table["ci_high"].to_numpy(), table["mean"].to_numpy()])
        pad = max((high - low) * 0.15, 1e-6)
        ax.set_xlim(low - pad, high + pad)  # the differences, not the distance from zero, are the point
        pooled = tables.pooled.get(factor, "pooled over the other factors")
        ax.set_title(f"{factor} ({pooled})", fontsize=9, loc="left")
        ax.grid(axis="x", alpha=0.3)
    methods = sorted({m for t in tables.marginals.values() for m in t["ci_method"].astype(str)})
    label = f"{tables.metric.name}: mean and 95% CI over runs ({'; '.join(methods)}; axis not from 0)"
    axes[-1].set_xlabel(label)
    fig.tight_layout()
    return _save(fig, path)


def _levels(tables: ReportTables) -> int:
    return sum(len(t) for t in tables.marginals.values())


def heatmap(tables: ReportTables, rows: str, columns: str, path: Path) -> Path:
    """Mean of the primary metric for each (rows, columns) pair, averaged over the other factors."""
    runs = tables.runs
    metric = tables.metric.name
    grid = runs.pivot_table(index=rows, columns=columns, values=metric, aggfunc="mean", sort=True)
    size = (min(1.6 + 1.5 * grid.shape[1], MAX_INCHES), min(1.2 + 0.6 * grid.shape[0], MAX_INCHES))
    fig, ax = plt.subplots(figsize=size)
    cmap = "viridis" if tables.metric.mode == "max" else "viridis_r"
    image = ax.imshow(grid.to_numpy(dtype=float), cmap=cmap, aspect="auto")
    ax.set_xticks(range(grid.shape[1]), [str(c) for c in grid.columns], rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(grid.shape[0]), [str(r) for r in grid.index], fontsize=8)
    ax.set_xlabel(columns)
    ax.set_ylabel(rows)
    for (i, j), value in np.ndenumerate(grid.to_numpy(dtype=float)):
        if not np.isnan(value) and grid.size <= MAX_ANNOTATED_CELLS:
            red, green, blue, _ = image.cmap(image.norm(value))
            light = 0.299 * red + 0.587 * green + 0.114 * blue > 0.5  # dark text on the light cells
            ax.text(
                j,
                i,
                f"{value:.4f}",
                ha="center",
                va="center",
                color="black" if light else "white",
                fontsize=8,
            )
    fig.colorbar(image, ax=ax, label=f"{metric} (mean over seeds and other axes)")
    ax.set_title(f"{metric}: {rows} × {columns}", fontsize=9)
    return _save(fig, path)


def pareto(points: pd.DataFrame, x: str, metric: str, front: list[int], path: Path, log_x: bool) -> Path:
    """One labelled point per row of ``points`` (columns label, ``x``, mean, ci_low, ci_high) with its 95%
    CI as an error bar; the Pareto front ``front`` (row positions, in order of x) as a step line."""
    points = points.reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    errors = np.vstack([points["mean"] - points["ci_low"], points["ci_high"] - points["mean"]])
    on_front = np.isin(np.arange(len(points)), front)
    for members, color, label in ((~on_front, "#999999", "dominated"), (on_front, "#c44e52", "Pareto front")):
        if members.any():
            ax.errorbar(
                points[x][members],
                points["mean"][members],
                yerr=np.nan_to_num(errors[:, members]),  # one seed: no interval, a bare point
                fmt="o",
                color=color,
                capsize=3,
                label=label,
            )
    for label, at, mean in zip(points["label"], points[x], points["mean"], strict=True):
        ax.annotate(label, (at, mean), xytext=(4, 4), textcoords="offset points", fontsize=7)
    members = points.iloc[front]
    # a budget between two members' x reaches the cheaper member's value: hold it until the next member
    ax.step(members[x], members["mean"], where="post", color="#c44e52", linewidth=1.2, alpha=0.7)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(f"{x} (lower is better{', log scale' if log_x else ''})")
    ax.set_ylabel(f"{metric}: mean and 95% CI over seeds")
    ax.set_title(f"{metric} against {x}: one point per (configuration, variant)", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.savefig(path, **_SAVE)
    plt.close(fig)
    return path
