"""The classification task as a LightningModule: it receives a network and the optimizer, schedule
and regularization specs, and owns the steps, metrics and logging only."""

from __future__ import annotations

import math
from typing import Any

import lightning
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from experiments.specs import OptimizerSpec, RegularizationSpec, ScheduleSpec
from lightning_modules.errors import NonFiniteLossError
from lightning_modules.optim import build_optimizer, build_scheduler
from lightning_modules.regularization import l1_penalty

METRICS = ("acc",)  # the task metrics this module can log as <stage>/<metric>


class ClassificationModule(lightning.LightningModule):
    """Cross-entropy training of ``network`` (logits of shape [B, num_classes]) on ``(x, y)`` batches.

    Gradient clipping, early stopping and dropout are applied elsewhere (Trainer and architecture);
    label smoothing and the L1 penalty act on the training loss here, L2 through the optimizer.
    """

    def __init__(
        self,
        network: nn.Module,
        num_classes: int,
        optimizer: OptimizerSpec,
        schedule: ScheduleSpec,
        regularization: RegularizationSpec,
        metric: str = "acc",
    ) -> None:
        super().__init__()
        if metric not in METRICS:
            raise ValueError(f"unknown classification metric {metric!r}; known: {', '.join(METRICS)}")
        self.network = network
        self.num_classes = num_classes
        self.optimizer_spec = optimizer
        self.schedule_spec = schedule
        self.regularization = regularization
        self.metric = metric
        # Training loss and accuracy are running sums on the device, logged once an epoch: self.log()
        # and a torchmetrics update() each cost more per step than a small network's forward pass.
        self.register_buffer("_train_sums", torch.zeros(3), persistent=False)  # loss * n, correct, n
        # one metric instance per evaluation stage: their running states must not mix
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")

    def forward(self, x: Tensor) -> Tensor:
        return self.network(x)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        logits = self.network(x)
        data_loss = F.cross_entropy(logits, y, label_smoothing=self.regularization.label_smoothing)
        loss = data_loss
        if self.regularization.l1 > 0:
            loss = loss + self.regularization.l1 * l1_penalty(self.network)
        value = loss.item()
        if not math.isfinite(value):
            # raised before backward so the weights stay as they were when the run diverged
            raise NonFiniteLossError(
                f"non-finite loss ({value}) at epoch {self.current_epoch}, step {self.global_step}"
            )
        with torch.no_grad():
            self._train_sums[0] += data_loss * len(y)
            self._train_sums[1] += (logits.argmax(dim=1) == y).sum()
            self._train_sums[2] += len(y)
        self._log_step_loss(data_loss.item() if data_loss is not loss else value)
        return loss

    def _log_step_loss(self, value: float) -> None:
        trainer = self._trainer
        if trainer is None or not trainer.loggers or self.global_step % trainer.log_every_n_steps:
            return
        for logger in trainer.loggers:
            logger.log_metrics({"train/loss_step": value}, step=self.global_step)

    def on_train_epoch_end(self) -> None:
        loss_sum, correct, count = self.trainer.strategy.reduce(self._train_sums, reduce_op="sum")
        self.log("train/loss", loss_sum / count.clamp_min(1))
        self.log(f"train/{self.metric}", correct / count.clamp_min(1))
        self._train_sums.zero_()

    def _evaluate(self, batch: tuple[Tensor, Tensor], stage: str, accuracy: MulticlassAccuracy) -> Tensor:
        x, y = batch
        logits = self.network(x)
        # plain cross-entropy, so runs with different label smoothing report comparable losses
        loss = F.cross_entropy(logits, y)
        accuracy(logits, y)
        batch_size = len(y)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, sync_dist=True, batch_size=batch_size)
        self.log(
            f"{stage}/{self.metric}",
            accuracy,
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=batch_size,
        )
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._evaluate(batch, "val", self.val_acc)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._evaluate(batch, "test", self.test_acc)

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.network(x).argmax(dim=1)

    def configure_optimizers(self) -> Any:
        optimizer = build_optimizer(
            self.optimizer_spec, self.network.named_parameters(), weight_decay=self.regularization.l2
        )
        total_steps = self.trainer.estimated_stepping_batches
        if not math.isfinite(total_steps):
            raise ValueError("learning-rate schedules need a finite run: set trainer max_epochs or max_steps")
        total_steps = int(total_steps)
        max_epochs = self.trainer.max_epochs
        steps_per_epoch = max(1, total_steps // max_epochs) if max_epochs and max_epochs > 0 else total_steps
        scheduler = build_scheduler(optimizer, self.schedule_spec, steps_per_epoch, total_steps)
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
