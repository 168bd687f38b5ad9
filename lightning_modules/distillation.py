"""Knowledge distillation (Hinton et al., 2015): a student learns from a teacher's softened outputs.

``loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(student, y)``

The ``T^2`` keeps the soft term's gradients on the scale of the hard term's as ``T`` grows, so
``alpha`` means the same at every temperature. The teacher's logits are inputs here (computed once
per training set and cached by the engine), so a distilled step costs what a plain step costs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class SoftTargets:
    """The teacher's logits for every training example ``[N, classes]`` and how to mix them in."""

    logits: Tensor
    temperature: float
    alpha: float

    def __post_init__(self) -> None:
        if self.logits.ndim != 2:
            raise ValueError(f"teacher logits must be [examples, classes], got {list(self.logits.shape)}")
        if self.temperature <= 0 or not 0 <= self.alpha <= 1:
            raise ValueError(
                f"need temperature > 0 and alpha in [0, 1], got {self.temperature}, {self.alpha}"
            )


def distillation_loss(
    student: Tensor,
    teacher: Tensor,
    labels: Tensor,
    temperature: float,
    alpha: float,
    label_smoothing: float = 0.0,
) -> Tensor:
    """The mean over the batch of ``alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE``."""
    t = temperature
    soft = F.kl_div(
        F.log_softmax(student / t, dim=-1),
        F.log_softmax(teacher.to(student.dtype) / t, dim=-1),
        reduction="batchmean",
        log_target=True,
    )
    hard = F.cross_entropy(student, labels, label_smoothing=label_smoothing)
    return alpha * t * t * soft + (1 - alpha) * hard
