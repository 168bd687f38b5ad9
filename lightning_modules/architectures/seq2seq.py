"""Sequence-to-sequence (encoder-decoder) architectures, registered by name in ``SEQ2SEQ_MODELS``
(``lightning_modules.architectures.registry``) and built by ``create_seq2seq_model``; a registry of
their own because their injected arguments differ from the classifiers' (``MODELS``).

Every builder has the signature ``(src_vocab_size, tgt_vocab_size, pad_id, bos_id, eos_id,
dropout=0.0, <typed options with defaults>) -> nn.Module``: the first six are injected from the
tokenizers, the options are the schema of the ``model`` section of a run spec.

The model protocol (every seq2seq model implements it; ``Seq2Seq`` is the base class). All tensors are
batch-first; ``src`` [B, S] long is right-padded with ``pad_id`` and ``src_lengths`` [B] (>= 1) says
how many of its tokens are real: the lengths, not the token values, decide what is padding.

- ``forward(src, src_lengths, tgt_in, teacher_forcing=1.0) -> logits [B, T, V]``: ``tgt_in`` [B, T]
  is the target shifted right (``bos y1 y2 ...``), logits[:, t] predict the token after tgt_in[:, t]
  and never depend on tgt_in[:, t + 1:]. ``teacher_forcing < 1`` (recurrent models only) feeds, at
  each step after the first and independently per row, the gold token with that probability and the
  model's own previous argmax otherwise; the transformer decodes in parallel and requires 1.0.
- ``encode(src, src_lengths) -> memory``: a dict of batch-first tensors, always with ``src_mask``
  [B, S] bool (True on real source tokens).
- ``start(memory) -> state``: the decoder state before the first step, a dict of batch-first tensors.
- ``step(memory, state, prev_tokens [B]) -> (logits [B, V], state, attention [B, S] or None)``: one
  decoding step; ``attention`` is the distribution over source positions this step attended with
  (zero on padding), or None for models without one.
- ``reorder(memory, state, index [B']) -> (memory, state)``: the rows ``index`` of every tensor in
  both dicts (beam search: repeat, permute or drop rows; B' may differ from B).

``forward`` with teacher forcing 1.0 and a loop over ``step`` fed with ``tgt_in`` give the same logits.
"""

from __future__ import annotations

import fnmatch
import inspect
from typing import Any

import torch
from torch import Tensor, nn

from lightning_modules.architectures.registry import SEQ2SEQ_INJECTED as INJECTED
from lightning_modules.architectures.registry import SEQ2SEQ_MODELS

Memory = dict[str, Tensor]
State = dict[str, Tensor]


def select_rows(tensors: dict[str, Tensor], index: Tensor) -> dict[str, Tensor]:
    """The rows ``index`` (along the batch, dim 0) of every tensor in a memory or state dict."""
    return {key: value.index_select(0, index.to(value.device)) for key, value in tensors.items()}


def source_mask(lengths: Tensor, width: int) -> Tensor:
    """[B, width] bool, True on the first ``lengths[b]`` positions of each row (the real tokens)."""
    return torch.arange(width, device=lengths.device) < lengths.unsqueeze(1)


class Seq2Seq(nn.Module):
    """Base class of the protocol above: subclasses implement ``forward``, ``encode``, ``start`` and
    ``step``; ``reorder`` is generic because memory and state are dicts of batch-first tensors."""

    pad_id: int
    bos_id: int
    eos_id: int

    def encode(self, src: Tensor, src_lengths: Tensor) -> Memory:
        raise NotImplementedError

    def start(self, memory: Memory) -> State:
        raise NotImplementedError

    def step(self, memory: Memory, state: State, prev_tokens: Tensor) -> tuple[Tensor, State, Tensor | None]:
        raise NotImplementedError

    def reorder(self, memory: Memory, state: State, index: Tensor) -> tuple[Memory, State]:
        return select_rows(memory, index), select_rows(state, index)


def check_seq2seq_args(
    builder: str, src_vocab_size: int, tgt_vocab_size: int, pad_id: int, bos_id: int, eos_id: int
) -> None:
    """Fail at build time, naming the builder, rather than with an index error inside a forward."""
    if len({pad_id, bos_id, eos_id}) < 3:
        raise ValueError(f"{builder}: pad_id, bos_id, eos_id must differ; got {pad_id}, {bos_id}, {eos_id}")
    if not 0 <= pad_id < src_vocab_size:
        raise ValueError(
            f"{builder}: pad_id={pad_id} is not an id of a source vocabulary of {src_vocab_size}"
        )
    for name, value in (("pad_id", pad_id), ("bos_id", bos_id), ("eos_id", eos_id)):
        if not 0 <= value < tgt_vocab_size:
            raise ValueError(
                f"{builder}: {name}={value} is not an id of a target vocabulary of {tgt_vocab_size}"
            )


def create_seq2seq_model(
    name: str,
    *,
    src_vocab_size: int,
    tgt_vocab_size: int,
    pad_id: int,
    bos_id: int,
    eos_id: int,
    dropout: float = 0.0,
    **options: Any,
) -> nn.Module:
    """Build the registered seq2seq model ``name``; an option it does not take is a TypeError that
    lists the ones it does."""
    builder = SEQ2SEQ_MODELS.get(name)
    accepted = seq2seq_options(name)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(
            f"seq2seq model {name!r} takes no option(s) {', '.join(map(repr, unknown))}; "
            f"its options are: {', '.join(accepted) or 'none'}"
        )
    return builder(
        src_vocab_size=src_vocab_size,
        tgt_vocab_size=tgt_vocab_size,
        pad_id=pad_id,
        bos_id=bos_id,
        eos_id=eos_id,
        dropout=dropout,
        **options,
    )


def seq2seq_options(name: str) -> list[str]:
    """The option names (not injected) that seq2seq model ``name`` takes, in signature order."""
    parameters = inspect.signature(SEQ2SEQ_MODELS.get(name)).parameters
    return [p for p in parameters if p not in INJECTED]


def available_seq2seq_models(pattern: str = "*") -> list[str]:
    """Registered seq2seq model names, optionally filtered by a shell-style pattern (``"*attention"``)."""
    return [name for name in SEQ2SEQ_MODELS.names() if fnmatch.fnmatchcase(name, pattern)]
