"""The classification task as a LightningModule: it receives a network, the optimizer and schedule
factories and the loss options, and owns the steps, metrics and logging only.

A network with one output is a regression (STS-B's similarity score): mean squared error instead of
cross-entropy, correlation metrics instead of accuracy. Inputs are whatever the network takes (an image
tensor, or the dict of token tensors of a text batch); targets are the second element of the batch.
"""

from __future__ import annotations

from typing import Any

import lightning
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MetricCollection

from lightning_modules.distillation import SoftTargets, distillation_loss
from lightning_modules.metrics import TASK_METRICS, metric_collection, predictions
from lightning_modules.optim import OptimizerFactory, ScheduleFactory
from lightning_modules.regularization import LossOptions, checked_training_loss
from lightning_modules.stepping import SteppingModule


class ClassificationModule(SteppingModule):
    """Cross-entropy training of ``network`` (logits of shape [B, num_classes]) on ``(x, y)`` batches,
    or mean-squared-error training when ``num_classes`` is 1.

    Label smoothing and the L1 penalty act on the training loss here, L2 through the optimizer,
    gradient clipping at the step (``SteppingModule``), dropout in the network and early stopping in
    the Trainer. A distilled student (``distill_from``) trains on the distillation loss instead of
    cross-entropy.
    """

    def __init__(
        self,
        network: nn.Module,
        num_classes: int,
        optimizer: OptimizerFactory,
        schedule: ScheduleFactory,
        loss: LossOptions = LossOptions(),  # noqa: B008  (frozen: one shared default is safe)
        metric: str = "acc",
        extra_metrics: tuple[str, ...] = (),
        test_stages: tuple[str, ...] = ("test",),
        grad_clip: float = 0.0,
    ) -> None:
        super().__init__(optimizer, schedule, loss, grad_clip)
        if metric not in TASK_METRICS:
            raise ValueError(f"unknown task metric {metric!r}; known: {', '.join(TASK_METRICS.names())}")
        self.network = network
        self.num_classes = num_classes
        self.metric = metric
        self.regression = num_classes == 1
        # Training loss and accuracy are running sums, logged once an epoch: self.log() and a torchmetrics
        # update() each cost more per step than a small network's forward pass. The loss sum and the
        # count are host floats (the finiteness check has read the loss already); only the count of
        # correct predictions stays on the device, one in-place add a step.
        self._train_loss_sum, self._train_count = 0.0, 0
        self.register_buffer("_train_correct", torch.zeros(()), persistent=False)
        # one collection per evaluation stage: their running states must not mix
        names = (metric, *extra_metrics)
        self.val_metrics = metric_collection(names, num_classes)
        # one per test dataloader, e.g. MNLI's matched ("test") and mismatched ("test_mismatched") dev sets
        self.test_stages = tuple(test_stages)
        self.test_metrics = nn.ModuleList(metric_collection(names, num_classes) for _ in self.test_stages)
        self.soft_targets: SoftTargets | None = None  # set by distill_from

    def _loss(self, outputs: Tensor, y: Tensor, label_smoothing: float = 0.0) -> Tensor:
        if self.regression:
            return F.mse_loss(outputs.squeeze(-1), y.to(outputs.dtype))
        return F.cross_entropy(outputs, y, label_smoothing=label_smoothing)

    def forward(self, x: Any) -> Tensor:
        return self.network(x)

    def distill_from(self, soft_targets: SoftTargets) -> None:
        """Train on ``soft_targets`` beside the labels; training batches must then carry the examples'
        indices as a third element (the datamodule's ``index_train_batches``)."""
        if self.regression:
            raise ValueError("distillation needs class logits; a one-output regression head has none")
        if soft_targets.logits.shape[1] != self.num_classes:
            raise ValueError(
                f"the teacher has {soft_targets.logits.shape[1]} classes, this model {self.num_classes}"
            )
        self.soft_targets = soft_targets
        self.register_buffer("_teacher_logits", soft_targets.logits.float(), persistent=False)

    def training_loss(self, batch: tuple[Any, ...], batch_idx: int) -> Tensor:
        x, y, *index = batch
        logits = self.network(x)
        if self.soft_targets is None:
            data_loss = self._loss(logits, y, label_smoothing=self.loss_options.label_smoothing)
        else:
            teacher = self._teacher_logits[index[0]]
            options = self.soft_targets
            data_loss = distillation_loss(
                logits, teacher, y, options.temperature, options.alpha, self.loss_options.label_smoothing
            )
        loss, value = checked_training_loss(self, data_loss, self.loss_options.l1)
        data_value = value if data_loss is loss else data_loss.item()
        self._train_loss_sum += data_value * len(y)
        self._train_count += len(y)
        if not self.regression:
            with torch.no_grad():
                self._train_correct.add_((logits.argmax(dim=1) == y).sum())
        self._log_step_loss(data_value)
        return loss

    def _log_step_loss(self, value: float) -> None:
        log_step_loss(self, value)

    def on_train_epoch_end(self) -> None:
        sums = torch.stack(
            (
                torch.tensor(self._train_loss_sum, device=self.device),
                self._train_correct.float(),
                torch.tensor(float(self._train_count), device=self.device),
            )
        )
        loss_sum, correct, count = self.trainer.strategy.reduce(sums, reduce_op="sum")
        self.log("train/loss", loss_sum / count.clamp_min(1))
        if not self.regression:  # accuracy is what a running sum gives cheaply; the dev metrics are exact
            self.log("train/acc", correct / count.clamp_min(1))
        self._train_loss_sum, self._train_count = 0.0, 0
        self._train_correct.zero_()

    def _evaluate(self, batch: tuple[Any, Tensor], stage: str, metrics: MetricCollection) -> Tensor:
        x, y = batch
        logits = self.network(x)
        # plain cross-entropy, so runs with different label smoothing report comparable losses
        loss = self._loss(logits, y)
        metrics.update(predictions(logits), y)
        batch_size = len(y)
        # add_dataloader_idx=False: several test sets log under their own names, not ".../dataloader_idx_1"
        self.log(
            f"{stage}/loss",
            loss,
            on_step=False,
            on_epoch=True,
            sync_dist=True,
            batch_size=batch_size,
            add_dataloader_idx=False,
        )
        for name, metric in metrics.items():
            self.log(
                f"{stage}/{name}",
                metric,
                on_step=False,
                on_epoch=True,
                prog_bar=name == self.metric,
                batch_size=batch_size,
                add_dataloader_idx=False,
            )
        return loss

    def validation_step(self, batch: tuple[Any, Tensor], batch_idx: int) -> Tensor:
        return self._evaluate(batch, "val", self.val_metrics)

    def test_step(self, batch: tuple[Any, Tensor], batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        return self._evaluate(batch, self.test_stages[dataloader_idx], self.test_metrics[dataloader_idx])

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return predictions(self.network(x))


def log_step_loss(module: lightning.LightningModule, value: float) -> None:
    """``train/loss_step`` straight to the loggers every ``log_every_n_steps`` optimizer steps: a
    float the caller already has, so no device sync and none of ``self.log``'s per-call overhead."""
    trainer = module._trainer
    if trainer is None or not trainer.loggers or module.global_step % trainer.log_every_n_steps:
        return
    for logger in trainer.loggers:
        logger.log_metrics({"train/loss_step": value}, step=module.global_step)
