"""Optimizers and learning-rate schedules by name, and the factories a task module builds them with.

Optimizer builders are ``(params, lr, weight_decay, <options>)`` and schedule builders
``(optimizer, steps_per_epoch, total_steps, <options>)``: the leading arguments are injected, the
options are typed with defaults and become the schema of the spec's ``optimizer`` and ``schedule``
sections. Every schedule is stepped once per optimizer step.

A task module receives an ``OptimizerFactory`` and a ``ScheduleFactory`` (plain frozen data: a name
and its options), never the engine's spec types; ``configure_optimizers`` turns them into Lightning's
optimizer config once the trainer knows how many steps the run has.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import (
    ConstantLR,
    LambdaLR,
    LinearLR,
    LRScheduler,
    OneCycleLR,
    SequentialLR,
    StepLR,
)

from core.registry import Registry
from lightning_modules.regularization import decay_param_groups

Params = Iterable[Tensor] | Iterable[dict[str, Any]]

OPTIMIZERS: Registry[Callable[..., Optimizer]] = Registry(
    "optimizer", injected=("params", "lr", "weight_decay", "fused")
)
SCHEDULES: Registry[Callable[..., LRScheduler | None]] = Registry(
    "schedule", injected=("optimizer", "steps_per_epoch", "total_steps")
)

WARMUP_START_FACTOR = 1e-3  # the warm-up's first step runs at this fraction of the lr


@OPTIMIZERS.register("sgd")
def sgd(
    params: Params,
    lr: float,
    weight_decay: float,
    momentum: float = 0.0,
    nesterov: bool = False,
    fused: bool = False,
) -> Optimizer:
    if nesterov and momentum <= 0:
        raise ValueError(
            "optimizer sgd: nesterov=True needs momentum; set optimizer.momentum > 0 (e.g. 0.9) "
            "or optimizer.nesterov: false"
        )
    return torch.optim.SGD(
        params, lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov, fused=fused or None
    )


@OPTIMIZERS.register("adam")
def adam(
    params: Params,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    fused: bool = False,
) -> Optimizer:
    """Adam with L2 decay added to the gradient (coupled), as in the original paper."""
    return torch.optim.Adam(
        params, lr=lr, weight_decay=weight_decay, betas=tuple(betas), eps=eps, fused=fused or None
    )


@OPTIMIZERS.register("adamw")
def adamw(
    params: Params,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    fused: bool = False,
) -> Optimizer:
    """Adam with decoupled weight decay (Loshchilov & Hutter)."""
    return torch.optim.AdamW(
        params, lr=lr, weight_decay=weight_decay, betas=tuple(betas), eps=eps, fused=fused or None
    )


@OPTIMIZERS.register("rmsprop")
def rmsprop(
    params: Params,
    lr: float,
    weight_decay: float,
    alpha: float = 0.99,
    momentum: float = 0.0,
    eps: float = 1e-8,
    centered: bool = False,
) -> Optimizer:
    return torch.optim.RMSprop(
        params, lr=lr, weight_decay=weight_decay, alpha=alpha, momentum=momentum, eps=eps, centered=centered
    )


@SCHEDULES.register("none")
def none(optimizer: Optimizer, steps_per_epoch: int, total_steps: int) -> LRScheduler | None:
    """A constant learning rate."""
    return None


@SCHEDULES.register("step")
def step(
    optimizer: Optimizer,
    steps_per_epoch: int,
    total_steps: int,
    step_epochs: float = 10.0,  # multiply the lr by gamma every this many epochs
    gamma: float = 0.1,
) -> LRScheduler | None:
    return StepLR(optimizer, step_size=max(1, round(step_epochs * steps_per_epoch)), gamma=gamma)


class _CosineFactor:
    """A picklable lr multiplier (so the scheduler's state_dict keeps it) from 1 down to min_ratio."""

    def __init__(self, total_steps: int, min_ratio: float) -> None:
        self.total_steps = max(1, total_steps)
        self.min_ratio = min_ratio

    def __call__(self, step: int) -> float:
        progress = min(step, self.total_steps) / self.total_steps
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


@SCHEDULES.register("cosine")
def cosine(
    optimizer: Optimizer,
    steps_per_epoch: int,
    total_steps: int,
    min_lr_ratio: float = 0.0,  # final lr as a fraction of the initial one
) -> LRScheduler | None:
    # relative to each group's own lr, which CosineAnnealingLR's absolute eta_min cannot express
    return LambdaLR(optimizer, _CosineFactor(total_steps, min_lr_ratio))


@SCHEDULES.register("onecycle")
def onecycle(
    optimizer: Optimizer,
    steps_per_epoch: int,
    total_steps: int,
    pct_start: float = 0.3,  # fraction of the steps spent rising to the peak
    div_factor: float = 25.0,  # start at peak / div_factor
    final_div_factor: float = 1e4,  # end at start / final_div_factor
) -> LRScheduler | None:
    """Smith's one-cycle policy peaking at the optimizer's lr."""
    return OneCycleLR(
        optimizer,
        max_lr=[group["lr"] for group in optimizer.param_groups],
        total_steps=max(1, total_steps),
        pct_start=pct_start,
        div_factor=div_factor,
        final_div_factor=final_div_factor,
        # cycling momentum would override the optimizer's own momentum/betas, confounding comparisons
        cycle_momentum=False,
    )


@dataclass(frozen=True)
class OptimizerFactory:
    """An optimizer by name: its learning rate, weight decay (on matrices and kernels only) and the
    registered builder's own options."""

    name: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)

    def __call__(
        self, named_parameters: Iterable[tuple[str, nn.Parameter]], fused: bool = False
    ) -> Optimizer:
        return build_optimizer(self, named_parameters, fused=fused)

    def check(self) -> None:
        """Build it once over one parameter: a bad option combination raises ValueError now, cheaply,
        instead of when the trainer first configures it."""
        probe = nn.Parameter(torch.zeros(1, 1))
        build_optimizer(self, [("probe", probe)])


@dataclass(frozen=True)
class ScheduleFactory:
    """A learning-rate schedule by name, an optional linear warm-up and the builder's own options."""

    name: str = "none"
    warmup_epochs: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)

    def __call__(self, optimizer: Optimizer, steps_per_epoch: int, total_steps: int) -> dict[str, Any] | None:
        return build_scheduler(optimizer, self, steps_per_epoch, total_steps)


def build_optimizer(
    spec: OptimizerFactory,
    named_parameters: Iterable[tuple[str, nn.Parameter]],
    fused: bool = False,
) -> Optimizer:
    """The optimizer ``spec`` names, with weight decay on matrices and kernels only.

    ``fused``: one kernel for the whole update where the optimizer has one (sgd, adam, adamw) and
    every parameter is a float32/bfloat16 tensor on the CPU or a CUDA device. On the CPU that is 6x
    faster than the per-parameter loop for an embedding table of 2M weights. Callers must not ask for
    it with mixed precision plus gradient clipping, which Lightning forbids for fused optimizers.
    """
    builder = OPTIMIZERS.get(spec.name)
    groups = decay_param_groups(named_parameters, spec.weight_decay)
    extra = {}
    if fused and "fused" in inspect.signature(builder).parameters:
        tensors = [p for group in groups for p in group["params"]]
        devices = {p.device.type for p in tensors}
        extra["fused"] = (
            len(devices) == 1
            and devices <= {"cpu", "cuda"}
            and all(p.dtype in (torch.float32, torch.bfloat16) for p in tensors)
        )
    return builder(groups, lr=spec.lr, weight_decay=spec.weight_decay, **extra, **spec.options)


def build_scheduler(
    optimizer: Optimizer, spec: ScheduleFactory, steps_per_epoch: int, total_steps: int
) -> dict[str, Any] | None:
    """Lightning's lr-scheduler config for ``spec``, stepped every optimizer step, or None for a
    constant lr without warm-up. A warm-up rises linearly to the main schedule's starting lr."""
    builder = SCHEDULES.get(spec.name)
    warmup_steps = round(spec.warmup_epochs * steps_per_epoch)
    if warmup_steps <= 0:
        scheduler = builder(
            optimizer, steps_per_epoch=steps_per_epoch, total_steps=total_steps, **spec.options
        )
        return None if scheduler is None else {"scheduler": scheduler, "interval": "step"}
    # The main schedule is built first: it must read the untouched lr (onecycle takes it as its peak).
    main = builder(
        optimizer,
        steps_per_epoch=steps_per_epoch,
        total_steps=max(1, total_steps - warmup_steps),
        **spec.options,
    )
    if main is None:
        main = ConstantLR(optimizer, factor=1.0, total_iters=0)
    warmup = LinearLR(optimizer, start_factor=WARMUP_START_FACTOR, end_factor=1.0, total_iters=warmup_steps)
    scheduler = SequentialLR(optimizer, [warmup, main], milestones=[warmup_steps])
    return {"scheduler": scheduler, "interval": "step"}


def configure_optimizers(
    trainer: Any,
    named_parameters: Iterable[tuple[str, nn.Parameter]],
    optimizer: OptimizerFactory,
    schedule: ScheduleFactory,
) -> Optimizer | dict[str, Any]:
    """What a task module's ``configure_optimizers`` returns: the optimizer and, unless the schedule is
    a constant lr, its per-step scheduler sized from the ``trainer``'s run."""
    # fused kernels unscale gradients themselves, which Lightning's mixed precision cannot clip
    built = optimizer(named_parameters, fused="mixed" not in str(trainer.precision))
    total_steps = trainer.estimated_stepping_batches
    if not math.isfinite(total_steps):
        raise ValueError("learning-rate schedules need a finite run: set trainer max_epochs or max_steps")
    total_steps = int(total_steps)
    max_epochs = trainer.max_epochs
    steps_per_epoch = max(1, total_steps // max_epochs) if max_epochs and max_epochs > 0 else total_steps
    scheduler = schedule(built, steps_per_epoch, total_steps)
    if scheduler is None:
        return built
    return {"optimizer": built, "lr_scheduler": scheduler}
