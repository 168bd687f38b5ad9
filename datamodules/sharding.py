"""How an epoch's sample order is split across DDP ranks, shared by every loader and sampler.

Rank ``r`` of ``world_size`` takes every ``world_size``-th index of the order. With ``pad_shards``
the order first wraps around to a multiple of ``world_size``, so every rank runs the same number of
steps (DDP needs that; up to ``world_size - 1`` samples appear twice); without it every sample counts
exactly once (right for evaluation) and shard sizes may differ by one.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor


def trainer_rank(trainer: Any) -> tuple[int, int]:
    """``(global_rank, world_size)`` of a datamodule's trainer; ``(0, 1)`` outside a Trainer."""
    return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)


def shard_size(n: int, rank: int, world_size: int, pad_shards: bool) -> int:
    """The number of samples rank ``rank`` gets of ``n``."""
    if world_size == 1:
        return n
    if pad_shards:
        return math.ceil(n / world_size)
    return len(range(rank, n, world_size))


def shard(order: Tensor, rank: int, world_size: int, pad_shards: bool) -> Tensor:
    """Rank ``rank``'s part of ``order`` (a permutation or ``arange`` of the sample indices)."""
    if world_size == 1:
        return order
    n = len(order)
    if pad_shards and n:
        order = order[torch.arange(math.ceil(n / world_size) * world_size) % n]
    return order[rank::world_size]
