"""Image classification: whole image sets in memory (``datamodules.base``), a tensor model from
``MODELS``, cross-entropy training (``ClassificationModule``); the artifact is a saliency figure."""

from __future__ import annotations

import torch

from lightning_modules.architectures import MODELS
from lightning_modules.interpret import integrated_gradients_maps, saliency_maps, save_saliency_figure
from tasks.base import ArtifactSink, Built
from tasks.classification import Classification
from tasks.registry import register_task


class ImageClassification(Classification):
    name = "image_classification"
    reads_tokens = False
    inputs = "tensor data"

    def mismatch(self, model: str) -> str:
        if model in MODELS:
            return f"{model!r} is a text model but the data gives tensors (images)"
        return f"{model!r} is not a classifier of images (an encoder-decoder reads a translation corpus)"

    def log_artifacts(self, built: Built, sink: ArtifactSink, heatmaps: int) -> None:
        if not heatmaps:
            return
        network = built.network.cpu()
        images, labels = built.datamodule.sample_batch(heatmaps)
        images, labels = images.cpu(), labels.cpu()
        with torch.no_grad():
            predictions = network.eval()(images).argmax(dim=1)
        maps = saliency_maps(network, images)
        # a third row of the same figure, not a second file: the IG map reads best under its saliency
        integrated = integrated_gradients_maps(network, images, predictions, n_steps=32)
        figure = save_saliency_figure(
            images, maps, labels, predictions, sink.workdir / "saliency.png", integrated=integrated
        )
        sink.log(figure, "heatmaps")


register_task(ImageClassification())
