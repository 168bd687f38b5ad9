"""Regularizers that act on the loss or the parameters: label smoothing and the L1 penalty (what a task
module's training loss adds), weight-decay parameter groups (what the optimizer gets)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from lightning_modules.errors import NonFiniteLossError

# Their weights scale activations rather than mix features; penalizing them fights the normalization.
_NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.RMSNorm, nn.LocalResponseNorm)


@dataclass(frozen=True)
class LossOptions:
    """What a task module adds to its training loss; L2 reaches the optimizer, dropout the network."""

    label_smoothing: float = 0.0  # cross-entropy against (1 - s) one-hot + s uniform; 0 disables
    l1: float = 0.0  # coefficient of the sum of |w| over weight matrices and kernels; 0 disables


def l1_penalty(module: nn.Module) -> Tensor:
    """Sum of |w| over the weight matrices and kernels of ``module``; biases and normalization
    parameters are left out."""
    weights = [
        param
        for sub in module.modules()
        if not isinstance(sub, _NORM_LAYERS)
        for param in sub.parameters(recurse=False)
        if param.requires_grad and param.ndim >= 2
    ]
    if not weights:
        device = next(module.parameters(), torch.empty(0)).device
        return torch.zeros((), device=device)
    return torch.stack([w.abs().sum() for w in weights]).sum()


def decay_param_groups(
    named_parameters: Iterable[tuple[str, nn.Parameter]], weight_decay: float
) -> list[dict[str, Any]]:
    """Optimizer parameter groups with ``weight_decay`` on matrices and kernels (ndim >= 2) and none
    on biases and normalization scales, which decay would only pull towards a degenerate zero."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for _, param in named_parameters:
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": float(weight_decay)},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return [group for group in groups if group["params"]]


def checked_training_loss(module, data_loss: Tensor, l1: float) -> tuple[Tensor, float]:
    """The loss to step on (``data_loss`` plus ``l1`` times the L1 penalty of ``module.network``) and
    its value; a non-finite one raises NonFiniteLossError before backward, so the weights stay as they
    were when the run diverged."""
    loss = data_loss + l1 * l1_penalty(module.network) if l1 > 0 else data_loss
    value = loss.item()
    if not math.isfinite(value):
        raise NonFiniteLossError(
            f"non-finite loss ({value}) at epoch {module.current_epoch}, step {module.global_step}"
        )
    return loss, value
