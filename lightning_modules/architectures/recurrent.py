"""Recurrent sentence encoders (Elman RNN, GRU, LSTM) over packed sequences, so padding never
enters the recurrence: the backward direction starts at each row's last real token, not at a pad."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from lightning_modules.architectures.registry import MODELS
from lightning_modules.architectures.text_encoders import (
    SentenceClassifier,
    TokenEmbedding,
    check_text_args,
    masked_max,
    masked_mean,
)

CELLS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}
POOLINGS = ("last", "max", "mean")


class RecurrentEncoder(nn.Module):
    """Embedding -> (bi)RNN/GRU/LSTM -> a sentence vector of ``hidden * directions`` features.

    ``pooling="last"`` concatenates the last layer's final hidden state of each direction (forward:
    after the last real token; backward: after the first); ``"max"``/``"mean"`` pool the last layer's
    outputs over the real positions (max is the GLUE/InferSent baseline)."""

    def __init__(
        self,
        cell: str,
        vocab_size: int,
        pad_id: int,
        embed_dim: int,
        hidden: int,
        layers: int,
        bidirectional: bool,
        pooling: str,
        dropout: float,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; known: {', '.join(POOLINGS)}")
        if layers < 1 or hidden < 1:
            raise ValueError(
                f"{cell} needs layers >= 1 and hidden >= 1; got layers={layers}, hidden={hidden}"
            )
        self.pad_id = pad_id
        self.pooling = pooling
        self.directions = 2 if bidirectional else 1
        self.out_features = hidden * self.directions
        self.embedding = TokenEmbedding(vocab_size, embed_dim, pad_id, dropout)
        self.rnn = CELLS[cell](
            embed_dim,
            hidden,
            num_layers=layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if layers > 1 else 0.0,  # between stacked layers; PyTorch warns on 1 layer
        )

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        batch, width = tokens.shape
        # pack_padded_sequence wants the lengths on the CPU (one small device sync)
        packed = pack_padded_sequence(
            self.embedding(tokens), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        outputs, state = self.rnn(packed)
        if self.pooling == "last":
            final = state[0] if isinstance(state, tuple) else state  # LSTM: (h, c)
            # [layers * directions, B, H], layer-major: the last `directions` rows are the top layer;
            # PyTorch has already put them back in the batch's (unsorted) order
            return final[-self.directions :].transpose(0, 1).reshape(batch, self.out_features)
        padded, _ = pad_packed_sequence(outputs, batch_first=True, total_length=width)
        mask = torch.arange(width, device=tokens.device) < lengths.to(tokens.device).unsqueeze(1)
        return masked_max(padded, mask) if self.pooling == "max" else masked_mean(padded, mask)


def _recurrent_builder(cell: Literal["rnn", "gru", "lstm"], doc: str):
    """The registry entry of one recurrent cell; the three share their options (the signature the
    options schema is read from) and differ only in the cell."""

    def build(
        input_shape: tuple[int, ...],
        num_classes: int,
        dropout: float = 0.0,
        vocab_size: int = 0,
        pad_id: int = 0,
        pair: bool = False,
        embed_dim: int = 128,
        hidden: int = 128,  # per direction
        layers: int = 1,
        bidirectional: bool = True,
        pooling: Literal["last", "max", "mean"] = "max",  # max over time: the GLUE baseline's choice
        head_hidden: int = 0,  # 0: Dropout + Linear head; > 0: one hidden ReLU layer (GLUE's MLP)
    ) -> nn.Module:
        check_text_args(cell, vocab_size, pad_id, num_classes)
        encoder = RecurrentEncoder(
            cell, vocab_size, pad_id, embed_dim, hidden, layers, bidirectional, pooling, dropout
        )
        return SentenceClassifier(encoder, num_classes, pair, head_hidden=head_hidden, dropout=dropout)

    build.__name__ = build.__qualname__ = cell
    build.__doc__ = doc
    return MODELS.register(cell)(build)


rnn = _recurrent_builder(
    "rnn", "Elman RNN (tanh) encoder: the plainest recurrence, prone to vanishing gradients by design."
)
gru = _recurrent_builder(
    "gru", "GRU encoder: gated like the LSTM with one state vector and three quarters of its weights."
)
lstm = _recurrent_builder(
    "lstm", "LSTM encoder; bidirectional with max pooling is the GLUE (InferSent-style) BiLSTM baseline."
)
