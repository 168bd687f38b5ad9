"""Masked-language-model pretraining as a LightningModule: it receives a network with an MLM head, the
optimizer and schedule factories and the loss options, and owns the masking, steps and logging only.

Batches are the text datamodules' ``(inputs, labels)``; the labels are ignored. Each batch is corrupted
by ``lightning_modules.masking.mask_tokens`` and the loss is the cross-entropy at the chosen positions
(``mlm_loss``, reported also as ``loss``), with ``mlm_acc`` the share of them predicted exactly.

Training masks are drawn from a generator seeded by (seed, global step, rank), so a run repeats its
corruption; evaluation masks by (stage, dataloader, batch index, rank) alone, so every epoch, and every
run of any seed, is scored on the same masked positions of the same split.
"""

from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric

from lightning_modules.classification import log_step_loss
from lightning_modules.masking import MaskedTokens, mask_tokens
from lightning_modules.optim import OptimizerFactory, ScheduleFactory
from lightning_modules.regularization import LossOptions, checked_training_loss
from lightning_modules.stepping import SteppingModule

EVAL_METRICS = (
    "loss",
    "mlm_loss",
    "mlm_acc",
)  # loss is mlm_loss: the engine logs <stage>/loss for every task
PAIR_PARTS = ("tokens_a", "tokens_b")  # a pair's sentences apart, unmasked: a network must not read them


def seeded_generator(device: torch.device, *parts: object) -> torch.Generator:
    """A generator on ``device`` seeded by a hash of ``parts``: distinct parts never share a seed."""
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest()
    return torch.Generator(device=device).manual_seed(int.from_bytes(digest, "little") >> 1)


class MaskedLMModule(SteppingModule):
    """Cross-entropy at BERT-masked positions of ``network`` (``network(batch, positions)`` gives the
    logits [N, vocab_size] at the N positions where ``positions`` is True).

    Label smoothing and the L1 penalty act on the training loss, L2 through the optimizer, dropout in
    the network; evaluation reports the plain cross-entropy, so runs with any smoothing compare.
    """

    def __init__(
        self,
        network: nn.Module,
        vocab_size: int,
        optimizer: OptimizerFactory,
        schedule: ScheduleFactory,
        loss: LossOptions = LossOptions(),  # noqa: B008  (frozen: one shared default is safe)
        mask_rate: float = 0.15,
        seed: int = 0,
        test_stages: tuple[str, ...] = ("test",),
        grad_clip: float = 0.0,
    ) -> None:
        super().__init__(optimizer, schedule, loss, grad_clip)
        if not 0 < mask_rate <= 1:
            raise ValueError(f"mask_rate must be in (0, 1], got {mask_rate}")
        self.network = network
        self.vocab_size = vocab_size
        self.mask_rate = mask_rate
        self.seed = seed
        # running sums on the device, logged once an epoch (self.log per step costs more than it tells)
        self.register_buffer("_train_sums", torch.zeros(3), persistent=False)  # loss * n, correct, n
        self.test_stages = tuple(test_stages)
        self.eval_metrics = nn.ModuleDict({stage: _stage_metrics() for stage in ("val", *self.test_stages)})

    def mask_batch(
        self, inputs: dict[str, Tensor], generator: torch.Generator
    ) -> tuple[dict[str, Tensor], MaskedTokens]:
        """The batch the network reads (``tokens`` corrupted, ``masked`` added, a pair's separate
        sentences dropped) and the corruption itself."""
        corrupted = mask_tokens(inputs["tokens"], self.vocab_size, generator, rate=self.mask_rate)
        batch = {k: v for k, v in inputs.items() if k not in PAIR_PARTS}
        batch["tokens"], batch["masked"] = corrupted.inputs, corrupted.masked
        return batch, corrupted

    def _predict(self, inputs: dict[str, Tensor], generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Logits [N, vocab_size] and targets [N] at the N chosen positions of a masked batch."""
        batch, corrupted = self.mask_batch(inputs, generator)
        chosen = corrupted.chosen
        return self.network(batch, chosen), corrupted.targets[chosen]

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        return self.network(batch)

    def training_loss(self, batch: tuple[dict[str, Tensor], Tensor], batch_idx: int) -> Tensor:
        inputs, _ = batch
        generator = seeded_generator(self.device, "train", self.seed, self.global_step, self.global_rank)
        logits, targets = self._predict(inputs, generator)
        count = max(len(targets), 1)  # a batch of specials only has nothing to predict: a zero loss
        smoothing = self.loss_options.label_smoothing
        data_loss = F.cross_entropy(logits, targets, reduction="sum", label_smoothing=smoothing) / count
        loss, value = checked_training_loss(self, data_loss, self.loss_options.l1)
        with torch.no_grad():
            plain = data_loss if not smoothing else F.cross_entropy(logits, targets, reduction="sum") / count
            self._train_sums[0] += plain * len(targets)
            self._train_sums[1] += (logits.argmax(dim=-1) == targets).sum()
            self._train_sums[2] += len(targets)
        log_step_loss(self, value)
        return loss

    def on_train_epoch_end(self) -> None:
        loss_sum, correct, count = self.trainer.strategy.reduce(self._train_sums, reduce_op="sum")
        mean = loss_sum / count.clamp_min(1)
        self.log("train/mlm_loss", mean)
        self.log("train/loss", mean)
        self.log("train/mlm_acc", correct / count.clamp_min(1))
        self._train_sums.zero_()

    def _evaluate(self, inputs: dict[str, Tensor], stage: str, dataloader_idx: int, batch_idx: int) -> None:
        generator = seeded_generator(self.device, "eval", stage, dataloader_idx, batch_idx, self.global_rank)
        logits, targets = self._predict(inputs, generator)
        if not len(targets):
            return
        metrics = self.eval_metrics[stage]
        loss = F.cross_entropy(logits, targets)
        metrics["loss"].update(loss, len(targets))  # weighted by positions: the mean over the split's
        metrics["mlm_loss"].update(loss, len(targets))
        metrics["mlm_acc"].update((logits.argmax(dim=-1) == targets).float().mean(), len(targets))
        for name in EVAL_METRICS:
            self.log(
                f"{stage}/{name}",
                metrics[name],
                on_step=False,
                on_epoch=True,
                prog_bar=name == "mlm_loss",
                add_dataloader_idx=False,  # several test sets log under their own names
            )

    def validation_step(self, batch: tuple[dict[str, Tensor], Tensor], batch_idx: int) -> None:
        self._evaluate(batch[0], "val", 0, batch_idx)

    def test_step(
        self, batch: tuple[dict[str, Tensor], Tensor], batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._evaluate(batch[0], self.test_stages[dataloader_idx], dataloader_idx, batch_idx)


def _stage_metrics() -> nn.ModuleDict:
    return nn.ModuleDict({name: MeanMetric() for name in EVAL_METRICS})
