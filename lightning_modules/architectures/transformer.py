"""A small pre-LN transformer encoder for sentence (pair) classification, BERT-style on the joint
``a [SEP] b`` sequence, that can hand back its attention weights for heatmaps."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from lightning_modules.architectures.registry import MODELS
from lightning_modules.architectures.text_encoders import (
    check_text_args,
    classifier_head,
    embedding_std,
    masked_mean,
    require,
    sinusoidal_table,
    valid_mask,
)

POSITIONALS = ("sinusoidal", "learned")
POOLINGS = ("mean", "first")


class PreNormEncoderLayer(nn.Module):
    """x + Attn(LN(x)), then x + FF(LN(x)) (pre-LN: trains without warm-up at small scale).

    Written around ``nn.MultiheadAttention`` rather than ``nn.TransformerEncoderLayer`` so the
    per-head attention weights are one flag away."""

    def __init__(self, d_model: int, heads: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm_attn = nn.LayerNorm(d_model)
        self.attn = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True)
        self.norm_ff = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(
            nn.Linear(d_model, ff_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff_dim, d_model)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, padding: Tensor, need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """``padding`` [B, T] is True at pad keys. Every row has a real token, so every query row
        (padded ones too) has a key to attend to and the softmax never sees only -inf: no NaN.
        Returns the new x and, with ``need_weights``, the per-head weights [B, heads, T, T]."""
        h = self.norm_attn(x)
        attended, weights = self.attn(
            h, h, h, key_padding_mask=padding, need_weights=need_weights, average_attn_weights=False
        )
        x = x + self.dropout(attended)
        x = x + self.dropout(self.ff(self.norm_ff(x)))
        return x, weights


class TransformerClassifier(nn.Module):
    """Token (x sqrt(d)) + position (+ segment, for pairs) embeddings -> pre-LN layers -> final LN
    -> masked mean (or first-token) pooling -> head."""

    def __init__(
        self,
        vocab_size: int,
        pad_id: int,
        pair: bool,
        num_classes: int,
        max_len: int,
        d_model: int,
        heads: int,
        layers: int,
        ff_dim: int,
        positional: str,
        pooling: str,
        head_hidden: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.pad_id = pad_id
        self.pair = pair
        self.pooling = pooling
        self.positional = positional
        self.max_len = max_len
        self.scale = math.sqrt(d_model)
        self.token = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        nn.init.normal_(self.token.weight, std=embedding_std(d_model))  # x sqrt(d): unit variance
        with torch.no_grad():
            self.token.weight[pad_id].zero_()
        if positional == "learned":
            self.position = nn.Embedding(max_len, d_model)
            nn.init.normal_(self.position.weight, std=0.02)  # BERT's init
        else:
            # not a parameter and not saved: it is a function of (max_len, d_model) alone
            self.register_buffer("sinusoid", sinusoidal_table(max_len, d_model), persistent=False)
        self.segment = nn.Embedding(2, d_model) if pair else None
        if self.segment is not None:
            nn.init.normal_(self.segment.weight, std=0.02)
        self.embed_dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            PreNormEncoderLayer(d_model, heads, ff_dim, dropout) for _ in range(layers)
        )
        self.norm = nn.LayerNorm(d_model)  # pre-LN leaves the residual stream unnormalized
        self.head = classifier_head(d_model, num_classes, head_hidden, dropout)

    def _positions(self, width: int, device: torch.device) -> Tensor:
        if self.positional == "learned":
            if width > self.max_len:
                raise ValueError(
                    f"a batch of {width} tokens exceeds the {self.max_len} learned positions "
                    "(input_shape[0]); shorten the sequences or use positional='sinusoidal'"
                )
            return self.position(torch.arange(width, device=device))
        if width > self.sinusoid.shape[0]:  # the formula extends to any length
            return sinusoidal_table(width, self.sinusoid.shape[1]).to(
                device=device, dtype=self.sinusoid.dtype
            )
        return self.sinusoid[:width]

    def _embed(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Input vectors [B, T, d] and the pad mask [B, T] (True at padding)."""
        keys = ("tokens", "segments") if self.pair else ("tokens",)
        require(batch, keys, "TransformerClassifier")
        tokens = batch["tokens"]
        x = self.token(tokens) * self.scale + self._positions(tokens.shape[1], tokens.device)
        if self.segment is not None:
            x = x + self.segment(batch["segments"])
        return self.embed_dropout(x), ~valid_mask(tokens, self.pad_id)

    def features(self, batch: dict[str, Tensor]) -> Tensor:
        """The pooled sentence (pair) vector [B, d] that the head reads."""
        x, padding = self._embed(batch)
        for layer in self.layers:
            x, _ = layer(x, padding)
        x = self.norm(x)
        if self.pooling == "first":
            return x[:, 0]  # [CLS] when the datamodule prepends it, else the first word
        return masked_mean(x, ~padding)

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        return self.head(self.features(batch))

    def attention_maps(self, batch: dict[str, Tensor]) -> list[Tensor]:
        """Per layer, the attention weights [B, heads, T, T] (query rows, key columns), NOT averaged
        over heads (average with ``.mean(1)`` for one map per layer).

        Each row sums to 1 and weights on pad keys are exactly 0; rows of pad queries are real
        distributions over the real keys (mask them when plotting). Computed in eval mode, so
        attention dropout does not blank entries, and without gradients; the module's mode is restored.
        """
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                x, padding = self._embed(batch)
                maps = []
                for layer in self.layers:
                    x, weights = layer(x, padding, need_weights=True)
                    maps.append(weights)
        finally:
            self.train(was_training)
        return maps


@MODELS.register("transformer")
def transformer(
    input_shape: tuple[int, ...],
    num_classes: int,
    dropout: float = 0.0,
    vocab_size: int = 0,
    pad_id: int = 0,
    pair: bool = False,
    d_model: int = 128,  # embedding and residual width
    heads: int = 4,  # d_model must be divisible by heads
    layers: int = 2,
    ff_dim: int = 256,  # hidden width of each layer's feed-forward block
    positional: Literal["sinusoidal", "learned"] = "sinusoidal",  # learned: input_shape[0] positions
    pooling: Literal["mean", "first"] = "mean",  # masked mean over real tokens, or position 0
    head_hidden: int = 0,  # 0: Dropout + Linear head; > 0: one hidden ReLU layer
) -> nn.Module:
    """Pre-LN transformer encoder; pairs are read as the joint ``a [SEP] b`` with segment embeddings,
    so attention crosses sentences (unlike the siamese encoders)."""
    check_text_args("transformer", vocab_size, pad_id, num_classes)
    if positional not in POSITIONALS:
        raise ValueError(f"unknown positional {positional!r}; known: {', '.join(POSITIONALS)}")
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; known: {', '.join(POOLINGS)}")
    if d_model % heads:
        raise ValueError(f"transformer: d_model={d_model} is not divisible by heads={heads}")
    max_len = int(input_shape[0]) if input_shape else 512
    return TransformerClassifier(
        vocab_size=vocab_size,
        pad_id=pad_id,
        pair=pair,
        num_classes=num_classes,
        max_len=max_len,
        d_model=d_model,
        heads=heads,
        layers=layers,
        ff_dim=ff_dim,
        positional=positional,
        pooling=pooling,
        head_hidden=head_hidden,
        dropout=dropout,
    )
