"""Which input pixels a prediction depends on: vanilla gradient saliency, Integrated Gradients, and a
figure of both."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from lightning_modules.attributions import pixel_attributions


def saliency_maps(network: nn.Module, images: Tensor, target: Tensor | None = None) -> Tensor:
    """|d logit[target] / d input| (target: the predicted class when None), max over channels.

    ``images`` is [B, C, H, W] (or [B, H, W]); the result is [B, H, W], non-negative, on the images'
    device. The network is evaluated in eval mode and left in the mode it was in; the gradients are
    taken with respect to the input only, so the parameters' ``.grad`` are untouched.
    """
    was_training = network.training
    param = next(network.parameters(), None)
    device = param.device if param is not None else images.device
    network.eval()
    try:
        # callers may sit inside Lightning's inference_mode; clone to get a tensor autograd accepts
        with torch.inference_mode(False), torch.enable_grad():
            inputs = images.detach().clone().to(device).requires_grad_(True)
            logits = network(inputs)
            if target is None:
                target = logits.argmax(dim=1)
            chosen = logits.gather(1, target.detach().clone().to(device).long().view(-1, 1)).sum()
            (grad,) = torch.autograd.grad(chosen, inputs)
    finally:
        network.train(was_training)
    saliency = grad.abs()
    if saliency.ndim == 4:
        saliency = saliency.amax(dim=1)
    return saliency.detach().to(images.device)


def integrated_gradients_maps(
    network: nn.Module, images: Tensor, target: Tensor | None = None, n_steps: int = 32
) -> Tensor:
    """Integrated Gradients of logit[target] (the predicted class when None) against the all-zero
    (normalized: the mean-colour) image, summed over channels: [B, H, W], signed, on the images' device.

    Unlike the saliency's |gradient|, each map sums to logit(x) - logit(baseline) up to the delta
    that ``lightning_modules.attributions.pixel_attributions`` also returns."""
    attributions = pixel_attributions(network, images, target, n_steps=n_steps).attributions
    return attributions.sum(dim=1) if attributions.ndim == 4 else attributions


def _displayable(image: Tensor) -> tuple[Tensor, str | None]:
    """An image as [H, W] (grey) or [H, W, 3] in [0, 1]: inputs arrive normalized, so rescale."""
    image = image.detach().float().cpu()
    if image.ndim == 3 and image.shape[0] == 3:
        image = image.permute(1, 2, 0)
    elif image.ndim == 3:
        image = image.mean(dim=0)
    low, high = image.min(), image.max()
    image = (image - low) / (high - low) if high > low else torch.zeros_like(image)
    return image, ("gray" if image.ndim == 2 else None)


CELL_PX = 96  # each image drawn this many pixels across
GAP_PX, TITLE_PX = 8, 18


def save_saliency_figure(
    images: Tensor,
    saliency: Tensor,
    labels: Sequence[int] | Tensor,
    predictions: Sequence[int] | Tensor,
    path: str | Path,
    integrated: Tensor | None = None,
) -> Path:
    """A PNG with the inputs on the top row and their saliency heatmaps below, titled "y=3 ŷ=3";
    with ``integrated`` ([B, H, W] or [B, C, H, W], summed over C) a third row of Integrated Gradients
    maps, green where a pixel raises the predicted logit and pink where it lowers it, on a scale
    symmetric about 0 per image so that white is no attribution.

    Each image is placed on the canvas as pixels (``figimage``), magnified by whole pixels, with no
    axes: a grid of Axes costs about a second per figure in tick set-up alone, on every run."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    count = len(images)
    if count == 0:
        raise ValueError("save_saliency_figure needs at least one image")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if integrated is not None and integrated.ndim == 4:
        integrated = integrated.sum(dim=1)
    rows = [[_displayable(image) for image in images]]
    rows.append([(s.detach().float().cpu(), "hot") for s in saliency[:count]])
    if integrated is not None:
        rows.append([(ig.detach().float().cpu(), "PiYG") for ig in integrated[:count]])
    height, width = rows[0][0][0].shape[:2]
    zoom = max(1, CELL_PX // max(height, width))
    cell_w, cell_h = width * zoom, height * zoom
    fig_w = count * (cell_w + GAP_PX) + GAP_PX
    fig_h = len(rows) * (cell_h + GAP_PX) + TITLE_PX + GAP_PX
    dpi = 100
    fig = Figure(figsize=(fig_w / dpi, fig_h / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    for r, row in enumerate(rows):
        y = fig_h - TITLE_PX - GAP_PX - (r + 1) * cell_h - r * GAP_PX  # figimage counts from the bottom
        for i, (image, cmap) in enumerate(row):
            pixels = image.numpy().repeat(zoom, axis=0).repeat(zoom, axis=1)
            scale = {}
            if cmap == "PiYG":
                limit = float(image.abs().max()) or 1.0
                scale = {"vmin": -limit, "vmax": limit}
            fig.figimage(pixels, xo=GAP_PX + i * (cell_w + GAP_PX), yo=y, cmap=cmap, origin="upper", **scale)
    for i in range(count):
        x = (GAP_PX + i * (cell_w + GAP_PX) + cell_w / 2) / fig_w
        title = f"y={int(labels[i])} ŷ={int(predictions[i])}"
        fig.text(x, 1 - (TITLE_PX - 4) / fig_h, title, fontsize=9, ha="center", va="center")
    fig.savefig(path, format="png", dpi=dpi)
    return path
