"""Batched image augmentation: one policy, applied to a whole batch with tensor ops on its device.

Every random draw comes from the global torch RNG of the batch's device, so ``torch.manual_seed``
(called by the runner) makes a run's augmentation reproducible. No Python loop runs over samples.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator

ERASE_ASPECT = (0.5, 2.0)  # height/width ratio range of erased rectangles, drawn log-uniformly


class AugmentationPolicy(BaseModel):
    """What the training batches go through when augmentation is on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    shift: int = Field(2, ge=0)  # max translation in whole pixels (= zero-pad + random crop)
    rotate: float = Field(10.0, ge=0, le=180)  # max rotation in degrees, either direction
    erase: float = Field(0.0, ge=0, le=1)  # probability of erasing one rectangle per image
    erase_scale: tuple[float, float] = (0.02, 0.15)  # erased area as a fraction of the image
    flip: bool = False  # horizontal flip with p=0.5; wrong for digits and characters

    @model_validator(mode="after")
    def _check_scale(self) -> AugmentationPolicy:
        low, high = self.erase_scale
        if not 0 < low <= high <= 1:
            raise ValueError(f"erase_scale must satisfy 0 < low <= high <= 1, got {self.erase_scale}")
        return self


def augment_batch(x: torch.Tensor, policy: AugmentationPolicy) -> torch.Tensor:
    """Augment float images ``[B, C, H, W]`` in [0, 1]; the result has the same shape, dtype and device."""
    if policy.rotate > 0 or policy.shift > 0:
        x = _rotate_and_shift(x, policy.rotate, policy.shift)
    if policy.erase > 0:
        x = _erase(x, policy.erase, policy.erase_scale)
    if policy.flip:
        flip = torch.rand(x.shape[0], device=x.device) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    return x


def _rotate_and_shift(x: torch.Tensor, max_degrees: float, max_shift: int) -> torch.Tensor:
    b, _, h, w = x.shape
    angle = (torch.rand(b, device=x.device) * 2 - 1) * math.radians(max_degrees)
    # integer shifts land sampling points on pixel centres, so a pure shift interpolates nothing
    shift = torch.randint(-max_shift, max_shift + 1, (b, 2), device=x.device).to(x.dtype)
    cos, sin = torch.cos(angle).to(x.dtype), torch.sin(angle).to(x.dtype)
    # affine_grid works in [-1, 1] per axis; scaling by h/w keeps the rotation rigid on non-square images
    theta = torch.stack(
        [
            torch.stack([cos, -sin * (h / w), -shift[:, 0] * (2 / w)], dim=1),
            torch.stack([sin * (w / h), cos, -shift[:, 1] * (2 / h)], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _erase(x: torch.Tensor, p: float, scale: tuple[float, float]) -> torch.Tensor:
    b, _, h, w = x.shape
    device = x.device
    area = (torch.rand(b, device=device) * (scale[1] - scale[0]) + scale[0]) * (h * w)
    log_lo, log_hi = math.log(ERASE_ASPECT[0]), math.log(ERASE_ASPECT[1])
    aspect = torch.exp(torch.rand(b, device=device) * (log_hi - log_lo) + log_lo)
    eh = torch.sqrt(area * aspect).round().clamp(1, h)
    ew = (area / eh).round().clamp(1, w)
    top = (torch.rand(b, device=device) * (h - eh + 1)).floor()
    left = (torch.rand(b, device=device) * (w - ew + 1)).floor()
    rows = torch.arange(h, device=device)[None, :]
    cols = torch.arange(w, device=device)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < (top + eh)[:, None])
    in_cols = (cols >= left[:, None]) & (cols < (left + ew)[:, None])
    chosen = torch.rand(b, device=device) < p
    mask = in_rows[:, :, None] & in_cols[:, None, :] & chosen[:, None, None]
    return x.masked_fill(mask[:, None], 0.0)
