"""The optimizer step of every task module, taken by the module itself (Lightning's manual optimization).

Lightning's automatic optimization wraps each step in a closure that runs the training step, zeroes
the gradients and calls backward from inside ``optimizer.step``, with a dozen hooks around it. On the
2-core CPU that machinery costs about 0.5 ms a step beyond what the step itself does, a tenth of a
small model's step (``benchmarks/overhead.py``). Here a task module's ``training_step`` computes its
loss and hands it to ``step_on``: zero the gradients, backward, step, then the schedule's per-step
update. The precision plugin still scales and unscales (``manual_backward``, the optimizer's ``step``),
DDP still reduces the gradients, and ``global_step`` still counts optimizer steps.

Gradient clipping cannot be Lightning's (the Trainer refuses ``gradient_clip_val`` under manual
optimization), so it happens in ``on_before_optimizer_step``: the precision plugin calls that hook
after it unscaled the gradients of a mixed-precision step, where the Trainer would have clipped.
"""

from __future__ import annotations

from typing import Any

import lightning
from torch import Tensor

from lightning_modules.optim import OptimizerFactory, ScheduleFactory, configure_optimizers
from lightning_modules.regularization import LossOptions


class SteppingModule(lightning.LightningModule):
    """A task module that steps its own optimizer: subclasses hold ``self.network`` and compute a
    batch's loss in ``training_loss``; ``training_step`` steps on it."""

    def __init__(
        self,
        optimizer: OptimizerFactory,
        schedule: ScheduleFactory,
        loss: LossOptions,
        grad_clip: float = 0.0,  # clip the global gradient norm at this value; 0 disables
    ) -> None:
        super().__init__()
        if grad_clip < 0:
            raise ValueError(f"grad_clip must be >= 0 (0 disables), got {grad_clip}")
        self.automatic_optimization = False
        self.optimizer_factory = optimizer
        self.schedule_factory = schedule
        self.loss_options = loss
        self.grad_clip = grad_clip

    def training_loss(self, batch: Any, batch_idx: int) -> Tensor:
        """The loss to step on for ``batch`` (what the task module trains on, penalties included)."""
        raise NotImplementedError

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        loss = self.training_loss(batch, batch_idx)
        self.step_on(loss)
        return loss.detach()

    def step_on(self, loss: Tensor) -> None:
        """One optimizer step on ``loss``, as Lightning's automatic optimization would take it."""
        optimizer = self.optimizers()
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        optimizer.step()
        scheduler = self.lr_schedulers()
        if scheduler is not None:  # every schedule of ours is per optimizer step ("interval": "step")
            scheduler.step()

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        if self.grad_clip > 0:
            self.clip_gradients(optimizer, gradient_clip_val=self.grad_clip, gradient_clip_algorithm="norm")

    def configure_optimizers(self) -> Any:
        return configure_optimizers(
            self.trainer, self.network.named_parameters(), self.optimizer_factory, self.schedule_factory
        )
