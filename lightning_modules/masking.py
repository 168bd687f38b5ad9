"""BERT's input corruption for masked-language-model pretraining, on a batch of token ids.

Of the maskable tokens (real words: never padding, never one of the four special ids), each is chosen
with probability ``rate``; a chosen token is masked (80%), replaced by a random word (10%) or kept
(10%), and the model must predict the original at every chosen position. litbench vocabularies have no
[MASK] id (adding one would shift every id), so a masked position is marked in a bool tensor, where
the network substitutes its learned mask vector, and its id becomes [UNK]: an embedding lookup that
reads it still gets a valid id that tells nothing of the word.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lightning_modules.architectures.text_encoders import SPECIAL_TOKENS

IGNORE_INDEX = -100  # cross_entropy's default ignore_index: no loss where nothing was chosen
NUM_SPECIAL = len(SPECIAL_TOKENS)  # ids below this are [PAD], [UNK], [SEP], [CLS]
UNK_ID = SPECIAL_TOKENS.index("[UNK]")


@dataclass(frozen=True)
class MaskedTokens:
    """One corrupted batch: what the network reads and what it must predict, all [B, T]."""

    inputs: Tensor  # long: the ids the network reads ([UNK] where masked, a random word where replaced)
    masked: Tensor  # bool: where the network substitutes its mask vector for the token vector
    targets: Tensor  # long: the original id where chosen, IGNORE_INDEX elsewhere

    @property
    def chosen(self) -> Tensor:
        """bool [B, T]: the positions the loss is computed on (masked, replaced or kept)."""
        return self.targets != IGNORE_INDEX


def maskable_positions(tokens: Tensor) -> Tensor:
    """bool [B, T]: the real words of ``tokens``; padding (id 0) and the other specials are excluded."""
    return tokens >= NUM_SPECIAL


def mask_tokens(
    tokens: Tensor,
    vocab_size: int,
    generator: torch.Generator,
    rate: float = 0.15,
    maskable: Tensor | None = None,
    mask_fraction: float = 0.8,
    random_fraction: float = 0.1,
) -> MaskedTokens:
    """BERT-corrupt ``tokens`` [B, T] (long); ``maskable`` defaults to ``maskable_positions(tokens)``.

    ``generator`` lives on ``tokens``' device and alone decides the result, so a seeded one reproduces
    the corruption. When no position is chosen by chance, the maskable position with the smallest draw
    is, so a batch with any word has a defined loss; this is decided on the device, with no sync.
    Random replacements are words (ids ``NUM_SPECIAL .. vocab_size - 1``), never specials.
    """
    if not 0 < rate <= 1:
        raise ValueError(f"mask rate must be in (0, 1], got {rate}")
    if mask_fraction < 0 or random_fraction < 0 or mask_fraction + random_fraction > 1:
        raise ValueError(
            f"mask_fraction and random_fraction must be >= 0 with a sum <= 1, got {mask_fraction} "
            f"and {random_fraction}"
        )
    if vocab_size <= NUM_SPECIAL:
        raise ValueError(f"a vocabulary of {vocab_size} ids has no words beyond the {NUM_SPECIAL} specials")
    if maskable is None:
        maskable = maskable_positions(tokens)
    device = tokens.device
    draw = torch.rand(tokens.shape, generator=generator, device=device)
    chosen = maskable & (draw < rate)
    # the fallback: the maskable position of the smallest draw, added only when nothing was chosen
    fallback = draw.masked_fill(~maskable, 2.0).flatten().argmin()
    at_fallback = torch.arange(tokens.numel(), device=device).view_as(tokens) == fallback
    chosen = chosen | (at_fallback & maskable & ~chosen.any())
    kind = torch.rand(tokens.shape, generator=generator, device=device)
    masked = chosen & (kind < mask_fraction)
    replaced = chosen & (kind >= mask_fraction) & (kind < mask_fraction + random_fraction)
    words = torch.randint(NUM_SPECIAL, vocab_size, tokens.shape, generator=generator, device=device)
    inputs = tokens.masked_fill(masked, UNK_ID)
    inputs = torch.where(replaced, words, inputs)
    targets = tokens.masked_fill(~chosen, IGNORE_INDEX)
    return MaskedTokens(inputs=inputs, masked=masked, targets=targets)
