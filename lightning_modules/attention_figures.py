"""Attention-weight heatmaps of a few sentences, one panel per sentence, as a run artifact: a classifier's
self-attention, or a translation model's attention over the source at each target token."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import Tensor


def save_attention_figure(
    maps: Sequence[Tensor],
    tokens: Sequence[Sequence[str]],
    titles: Sequence[str],
    path: str | Path,
    max_tokens: int = 40,
) -> Path:
    """A PNG with one heatmap per sentence: the last layer's attention averaged over heads.

    ``maps`` are per layer ``[B, heads, T, T]`` (queries as rows, keys as columns) as an attention
    model's ``attention_maps(batch)`` returns them; ``tokens[i]`` labels sentence ``i``'s real
    positions (pads are cut off), at most ``max_tokens`` of them so the labels stay legible.
    """
    if not maps:
        raise ValueError("save_attention_figure needs the attention maps of at least one layer")
    last = maps[-1].detach().float().cpu().mean(dim=1)  # [B, T, T]
    if len(tokens) == 0 or len(tokens) > len(last):
        raise ValueError(f"{len(tokens)} token rows for {len(last)} attention maps")
    panels = []
    for i, (row, title) in enumerate(zip(tokens, titles, strict=True)):
        n = min(len(row), max_tokens, last.shape[-1])
        panels.append((last[i, :n, :n], row[:n], row[:n], title))
    return _save_panels(panels, path)


def save_alignment_figure(
    maps: Sequence[Tensor],
    sources: Sequence[Sequence[str]],
    targets: Sequence[Sequence[str]],
    titles: Sequence[str],
    path: str | Path,
    max_tokens: int = 40,
) -> Path:
    """A PNG with one heatmap per sentence pair: a translation model's attention over the source
    tokens (columns) at each target token it wrote (rows); ``maps[i]`` is ``[T, S]``."""
    if len(maps) == 0 or not (len(maps) == len(sources) == len(targets) == len(titles)):
        raise ValueError(f"{len(maps)} maps for {len(sources)} sources and {len(targets)} targets")
    panels = []
    for matrix, source, target, title in zip(maps, sources, targets, titles, strict=True):
        rows, cols = (
            min(len(target), max_tokens, matrix.shape[0]),
            min(len(source), max_tokens, matrix.shape[1]),
        )
        panels.append((matrix.detach().float().cpu()[:rows, :cols], source[:cols], target[:rows], title))
    return _save_panels(panels, path)


def _save_panels(
    panels: Sequence[tuple[Tensor, Sequence[str], Sequence[str], str]], path: str | Path
) -> Path:
    """One heatmap per (matrix, column labels, row labels, title), side by side."""
    import matplotlib

    matplotlib.use("Agg")  # headless: runs write figures on machines without a display
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.6), squeeze=False)
    try:
        for ax, (matrix, columns, rows, title) in zip(axes[0], panels, strict=True):
            image = ax.imshow(matrix.numpy(), cmap="viridis", vmin=0.0)
            ax.set_xticks(range(len(columns)), columns, rotation=90, fontsize=6)
            ax.set_yticks(range(len(rows)), rows, fontsize=6)
            ax.set_title(title, fontsize=8)
            fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        fig.tight_layout()
        fig.savefig(path, format="png", dpi=110, metadata={"Software": None})
    finally:
        plt.close(fig)
    return path
