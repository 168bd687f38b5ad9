"""Text classification (GLUE and your own corpora): token batches from a text datamodule, a text model
from ``MODELS`` (one that takes the tokenizer's ``vocab_size``), ``ClassificationModule`` (a regression
head for one output); the artifacts are an attention figure for attention models and, for every
model, Integrated Gradients token attributions (``attributions.html``); the unlabelled split can be
predicted into submission files."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from core.errors import SpecError
from datamodules.glue import GlueDataModule
from datamodules.glue_files import write_submission
from lightning_modules.architectures import MODELS
from lightning_modules.attention_figures import save_attention_figure
from lightning_modules.attributions import save_attributions_html, token_attributions
from lightning_modules.metrics import predictions as predictions_of
from tasks.base import ArtifactSink, Built
from tasks.classification import Classification
from tasks.registry import register_task


@runtime_checkable
class AttentionModel(Protocol):
    """A text model that can show its last layers' attention (the transformers; not the bag, CNN or
    recurrent encoders)."""

    def attention_maps(self, batch: dict[str, Tensor]) -> list[Tensor]: ...


@dataclass(frozen=True)
class Submission:
    split: str
    path: Path
    rows: int


class TextClassification(Classification):
    name = "text_classification"
    reads_tokens = True
    inputs = "text"

    def mismatch(self, model: str) -> str:
        if model in MODELS:
            return f"model {model!r} reads tensors (images) but the data gives token batches (text)"
        return f"{model!r} is not a text classifier (an encoder-decoder reads a translation corpus)"

    def token_inputs(self, datamodule: Any) -> dict[str, Any]:
        # the datamodule tells a text model its vocabulary and whether inputs are sentence pairs
        return datamodule.token_inputs()

    def test_stages(self, datamodule: Any) -> tuple[str, ...]:
        return datamodule.eval_splits  # MNLI tests on matched and mismatched dev

    def tracking_params(self, datamodule: Any) -> dict[str, Any]:
        return datamodule.tracking_params()  # the fitted vocabulary and its cache entry

    def fit_metrics(self, datamodule: Any) -> dict[str, float]:
        return {} if datamodule.tokenize_s is None else {"perf/tokenize_s": datamodule.tokenize_s}

    def log_artifacts(self, built: Built, sink: ArtifactSink, heatmaps: int) -> None:
        if not heatmaps:
            return
        network, datamodule = built.network.cpu(), built.datamodule
        names = datamodule.label_names
        shown = lambda v: names[int(v)] if names else f"{float(v):.2f}"  # noqa: E731  (scores for STS-B)
        if isinstance(network, AttentionModel):
            inputs, labels, tokens = datamodule.sample_batch(min(heatmaps, 4))
            with torch.no_grad():
                predictions = predictions_of(network.eval()(inputs))
            titles = [f"y={shown(y)}  ŷ={shown(p)}" for y, p in zip(labels, predictions, strict=True)]
            figure = save_attention_figure(
                network.attention_maps(inputs), tokens, titles, sink.workdir / "attention.png"
            )
            sink.log(figure, "heatmaps")
        # every text model, attention or not; 32 steps keep this well under a second on a CPU
        inputs, labels, tokens = datamodule.sample_batch(min(heatmaps, 6))
        found = token_attributions(network, inputs, datamodule.token_inputs()["vocab_size"], n_steps=32)
        page = save_attributions_html(
            tokens,
            found.scores,
            [shown(y) for y in labels],
            [shown(p) for p in predictions_of(found.outputs)],
            found.delta,
            sink.workdir / "attributions.html",
        )
        sink.log(page, "attributions")

    def write_predictions(self, built: Built, out_dir: Path) -> list[Submission]:
        """One submission file per unlabelled split in ``out_dir`` (GLUE: the TSV its leaderboard expects)."""
        datamodule, network = built.datamodule, built.network.eval()
        if not datamodule.prediction_splits:
            raise SpecError(
                f"the data ({datamodule.name}) has no unlabelled split to predict; GLUE tasks need their "
                "test.tsv, a text_classification corpus its predict_file"
            )
        written = []
        for split in datamodule.prediction_splits:
            outputs = []
            with torch.no_grad():
                for inputs, _ in datamodule.prediction_loader(split):
                    outputs.append(predictions_of(network(inputs)))
            predicted = torch.cat(outputs)
            path = out_dir / datamodule.submission_file(split)
            if isinstance(datamodule, GlueDataModule):
                write_submission(path, datamodule.task.name, datamodule.ids[split], predicted)
            else:
                _write_plain(path, datamodule.ids[split], predicted, datamodule.label_names)
            written.append(Submission(split, path, len(predicted)))
        return written


def _write_plain(path: Path, ids: Sequence[str], predicted: Tensor, label_names: tuple[str, ...]) -> None:
    """``index<TAB>prediction`` with class names (or scores for regression), like a GLUE submission."""
    lines = ["index\tprediction"]
    for index, value in zip(ids, predicted.tolist(), strict=True):
        shown = label_names[int(value)] if label_names else f"{float(value):.4f}"
        lines.append(f"{index}\t{shown}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


register_task(TextClassification())
