"""Attention-weight heatmaps of a few dev sentences, one panel per sentence, as a run artifact."""

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
    import matplotlib

    matplotlib.use("Agg")  # headless: runs write figures on machines without a display
    import matplotlib.pyplot as plt

    if not maps:
        raise ValueError("save_attention_figure needs the attention maps of at least one layer")
    last = maps[-1].detach().float().cpu().mean(dim=1)  # [B, T, T]
    count = len(tokens)
    if count == 0 or count > len(last):
        raise ValueError(f"{count} token rows for {len(last)} attention maps")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, count, figsize=(4.2 * count, 4.6), squeeze=False)
    try:
        for i, (row, title) in enumerate(zip(tokens, titles, strict=True)):
            n = min(len(row), max_tokens, last.shape[-1])
            ax = axes[0, i]
            image = ax.imshow(last[i, :n, :n].numpy(), cmap="viridis", vmin=0.0)
            ax.set_xticks(range(n), row[:n], rotation=90, fontsize=6)
            ax.set_yticks(range(n), row[:n], fontsize=6)
            ax.set_title(title, fontsize=8)
            fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        fig.tight_layout()
        fig.savefig(path, format="png", dpi=110, metadata={"Software": None})
    finally:
        plt.close(fig)
    return path
