"""Masked-language-model pretraining: unlabelled text (``datamodules.masked_text``), a model from
``MODELS`` that has an MLM head (``MLM_MODELS``: the transformer), BERT masking and the cross-entropy
at the masked positions (``MaskedLMModule``), scored by ``val/mlm_loss``.

The ``model`` section is the classifier's (validated against the ``transformer`` builder), so a
pretraining cell and the fine-tuning cell that loads its encoder share it. The artifact is
``samples/mlm_samples.txt``: a few test sentences, what the model read and what it predicted.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from core.metrics import TaskProtocol
from core.registry import Registry
from datamodules.masked_text import MaskedTextDataModule
from lightning_modules.architectures import MODELS
from lightning_modules.architectures.transformer import MLM_MODELS, mlm_network
from lightning_modules.masked_lm import EVAL_METRICS, MaskedLMModule, seeded_generator
from tasks.base import ArtifactSink, Built, TaskKind, Training
from tasks.registry import register_task

SAMPLES = 3  # test sentences written to mlm_samples.txt
LEGEND = (
    "input: [MASK] where the model read its mask vector, ~word~ where a random word replaced the original\n"
    "predicted: at each chosen position [prediction] when right, [prediction != original] when wrong\n"
)


class MaskedLM(TaskKind):
    name = "masked_lm"
    inputs = "masked-LM pretraining"

    def model_registry(self) -> Registry:
        return MODELS  # the classifier's options are the schema: pretraining and fine-tuning share them

    def fits_model(self, name: str) -> bool:
        return name in MODELS and name in MLM_MODELS

    def mismatch(self, model: str) -> str:
        return (
            f"{model!r} has no masked-language-model head (a prediction at every position); the models "
            f"with one are {', '.join(MLM_MODELS.names())}"
        )

    def logged_metrics(self, scoring: TaskProtocol) -> tuple[str, ...]:
        return EVAL_METRICS

    def build_network(
        self, datamodule: Any, model: str, options: dict[str, Any], dropout: float
    ) -> nn.Module:
        token_inputs = datamodule.token_inputs()
        return mlm_network(
            model,
            options,
            vocab_size=token_inputs["vocab_size"],
            pad_id=token_inputs["pad_id"],
            pair=token_inputs["pair"],
            max_len=datamodule.input_shape[0],
            dropout=dropout,
        )

    def build_module(
        self, datamodule: Any, network: nn.Module, training: Training, settings: Any
    ) -> MaskedLMModule:
        return MaskedLMModule(
            network,
            vocab_size=datamodule.token_inputs()["vocab_size"],
            optimizer=training.optimizer,
            schedule=training.schedule,
            loss=training.loss,
            mask_rate=datamodule.mask_rate,
            seed=datamodule.seed,
            test_stages=datamodule.eval_splits,
            grad_clip=training.grad_clip,
        )

    def batch_size(self, batch: Any) -> int:
        return len(batch[0]["lengths"])  # (inputs, placeholder labels): one length per example

    def tracking_params(self, datamodule: Any) -> dict[str, Any]:
        return datamodule.tracking_params()  # the fitted vocabulary and its cache entry

    def fit_metrics(self, datamodule: Any) -> dict[str, float]:
        return {} if datamodule.tokenize_s is None else {"perf/tokenize_s": datamodule.tokenize_s}

    def log_artifacts(self, built: Built, sink: ArtifactSink, heatmaps: int) -> None:
        path = sink.workdir / "mlm_samples.txt"
        path.write_text(LEGEND + "".join(f"\n{text}" for text in masked_samples(built, SAMPLES)))
        sink.log(path, "samples")


def masked_samples(built: Built, count: int) -> list[str]:
    """The first ``count`` test sentences, each masked alone (so each has a chosen position) by a fixed
    generator: the text, what the model read, and its top prediction at the chosen positions."""
    datamodule: MaskedTextDataModule = built.datamodule
    module: MaskedLMModule = built.module  # type: ignore[assignment]
    network = built.network.cpu().eval()
    inputs, _, _ = datamodule.sample_batch(count)
    samples = []
    with torch.no_grad():
        for row in range(len(inputs["lengths"])):
            length = int(inputs["lengths"][row])
            one = {key: value[row : row + 1, :length] for key, value in inputs.items() if value.ndim == 2}
            one |= {key: value[row : row + 1] for key, value in inputs.items() if value.ndim == 1}
            batch, corrupted = module.mask_batch(one, seeded_generator(torch.device("cpu"), "samples", row))
            predicted = network(batch).argmax(dim=-1)[0].tolist()
            original, read = one["tokens"][0].tolist(), corrupted.inputs[0].tolist()
            names, read_names, predicted_names = (
                datamodule.token_names(ids) for ids in (original, read, predicted)
            )
            shown_input, shown_prediction = [], []
            for i, name in enumerate(names):
                chosen, masked = bool(corrupted.chosen[0, i]), bool(corrupted.masked[0, i])
                shown_input.append(
                    "[MASK]" if masked else f"~{read_names[i]}~" if read[i] != original[i] else name
                )
                if not chosen:
                    shown_prediction.append(name)
                elif predicted[i] == original[i]:
                    shown_prediction.append(f"[{predicted_names[i]}]")
                else:
                    shown_prediction.append(f"[{predicted_names[i]} != {name}]")
            samples.append(
                f"text:      {' '.join(names)}\ninput:     {' '.join(shown_input)}\n"
                f"predicted: {' '.join(shown_prediction)}\n"
            )
    return samples


register_task(MaskedLM())
