"""What image and text classification share: models from ``MODELS`` and ``ClassificationModule``
(cross-entropy, or MSE for a one-output regression head) scored by the data's protocol."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import nn

from core.registry import Registry
from lightning_modules.architectures import MODELS, create_model, reads_token_batches
from lightning_modules.classification import ClassificationModule
from tasks.base import TaskKind, Training


class Classification(TaskKind):
    """A classifier over ``MODELS``; subclasses say whether its models read token batches."""

    reads_tokens: ClassVar[bool]
    strategies = frozenset({"distill", "variants"})

    def model_registry(self) -> Registry:
        return MODELS

    def fits_model(self, name: str) -> bool:
        return name in MODELS and reads_token_batches(name) == self.reads_tokens

    def token_inputs(self, datamodule: Any) -> dict[str, Any] | None:
        """What the data tells a text model (its vocabulary, pad id, pairs); None for tensor data."""
        return None

    def test_stages(self, datamodule: Any) -> tuple[str, ...]:
        """The test splits, each logged as ``<split>/<metric>``."""
        return ("test",)

    def build_network(
        self, datamodule: Any, model: str, options: dict[str, Any], dropout: float
    ) -> nn.Module:
        return create_model(
            model,
            input_shape=datamodule.input_shape,
            num_classes=datamodule.num_classes,
            dropout=dropout,
            token_inputs=self.token_inputs(datamodule),
            **options,
        )

    def build_module(self, datamodule: Any, network: nn.Module, training: Training, settings: Any):
        protocol = self.scoring(datamodule)
        return ClassificationModule(
            network,
            num_classes=datamodule.num_classes,
            optimizer=training.optimizer,
            schedule=training.schedule,
            loss=training.loss,
            metric=protocol.metric,
            extra_metrics=protocol.metrics,
            test_stages=self.test_stages(datamodule),
            grad_clip=training.grad_clip,
        )
