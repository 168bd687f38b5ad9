"""Multi-layer perceptron on flattened inputs: the baseline every task can run."""

from __future__ import annotations

import math
from typing import Literal

from torch import nn

from lightning_modules.architectures.registry import MODELS

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


@MODELS.register("mlp")
def mlp(
    input_shape: tuple[int, ...],
    num_classes: int,
    dropout: float = 0.0,
    hidden: tuple[int, ...] = (256, 128),  # one Linear-activation-Dropout block per width; () is linear
    activation: Literal["relu", "gelu", "tanh"] = "relu",
) -> nn.Module:
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; known: {', '.join(ACTIVATIONS)}")
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(input_shape)
    for out in hidden:
        layers += [nn.Linear(width, out), ACTIVATIONS[activation](), nn.Dropout(dropout)]
        width = out
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)
