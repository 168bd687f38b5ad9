"""Pieces every text architecture shares: argument checks, embeddings, masks, pooling, the GLUE pair
combination, the classifier head and the siamese wrapper that turns a sentence encoder into a model.

A batch is a ``dict[str, Tensor]`` (the contract with the text datamodules):

- ``tokens`` [B, T] right-padded with ``pad_id``; for pair tasks the joint ``a + [SEP] + b``;
- ``lengths`` [B] non-pad tokens per row (>= 1); ``segments`` [B, T] 0 for ``a [SEP]``, 1 for ``b``;
- pair tasks also ``tokens_a`` [B, Ta], ``lengths_a``, ``tokens_b`` [B, Tb], ``lengths_b``.

A sentence encoder maps ``(tokens [B, T], lengths [B])`` to ``[B, out_features]`` and must give the
same vector for a row whatever padding follows it: masks, never the padded width, decide what counts.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[SEP]", "[CLS]")  # ids 0..3 in every litbench vocabulary


def check_text_args(builder: str, vocab_size: int, pad_id: int, num_classes: int) -> None:
    """Fail at build time, naming the builder, rather than with an index error inside a forward."""
    if vocab_size < len(SPECIAL_TOKENS):
        raise ValueError(
            f"{builder} needs vocab_size >= {len(SPECIAL_TOKENS)} (the special tokens "
            f"{', '.join(SPECIAL_TOKENS)} plus words); got vocab_size={vocab_size}. "
            "Text models take vocab_size from a text datamodule's tokenizer."
        )
    if not 0 <= pad_id < vocab_size:
        raise ValueError(f"{builder}: pad_id={pad_id} is not an id of a vocabulary of {vocab_size}")
    if num_classes < 1:
        raise ValueError(f"{builder}: num_classes must be >= 1 (1 is regression); got {num_classes}")


def require(batch: dict[str, Tensor], keys: tuple[str, ...], model: str) -> None:
    """A batch missing a key the model reads is a datamodule/model mismatch (pair=True on single
    sentences, say): say so instead of raising a bare KeyError."""
    missing = [key for key in keys if key not in batch]
    if missing:
        raise KeyError(
            f"{model} reads batch keys {', '.join(keys)} but the batch lacks {', '.join(missing)} "
            f"(it has {', '.join(sorted(batch))}); is `pair` set to match the task?"
        )


def valid_mask(tokens: Tensor, pad_id: int) -> Tensor:
    """[B, T] bool, True on real tokens: the single definition of padding for every model here."""
    return tokens != pad_id


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x`` [B, T, D] over the positions where ``mask`` [B, T] is True -> [B, D]."""
    weights = mask.unsqueeze(-1).to(x.dtype)
    return (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def masked_max(x: Tensor, mask: Tensor) -> Tensor:
    """Max of ``x`` [B, T, D] over the positions where ``mask`` [B, T] is True -> [B, D].

    Padding is set to -inf, not 0, so that it never wins against negative activations; a row with no
    valid position (outside the contract) gives 0 rather than -inf."""
    filled = x.masked_fill(~mask.unsqueeze(-1), float("-inf"))
    pooled = filled.max(dim=1).values
    return pooled.masked_fill(~mask.any(dim=1, keepdim=True), 0.0)


def pair_features(u: Tensor, v: Tensor) -> Tensor:
    """GLUE baseline (InferSent) combination ``[u, v, |u - v|, u * v]`` of two sentence vectors.

    The last two blocks are symmetric in (u, v), the first two swap: the head sees the order of the
    pair but also order-free similarity features."""
    return torch.cat([u, v, (u - v).abs(), u * v], dim=-1)


def pad_to(tokens: Tensor, length: int, pad_id: int) -> Tensor:
    """Right-pad ``tokens`` [B, T] with ``pad_id`` to ``length`` columns (no-op when already there)."""
    return F.pad(tokens, (0, length - tokens.shape[1]), value=pad_id)


class TokenEmbedding(nn.Module):
    """Token embedding followed by the injected dropout; the pad row is zero and gets no gradient
    (``padding_idx``), and padded positions are zeroed explicitly as well, so weight decay or a loaded
    checkpoint with a non-zero pad row cannot leak into convolutions or sums."""

    def __init__(self, vocab_size: int, dim: int, pad_id: int, dropout: float, std: float = 1.0) -> None:
        super().__init__()
        self.pad_id = pad_id
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=pad_id)
        nn.init.normal_(self.embedding.weight, std=std)
        with torch.no_grad():
            self.embedding.weight[pad_id].zero_()
        self.dropout = nn.Dropout(dropout)

    def forward(self, tokens: Tensor) -> Tensor:
        x = self.embedding(tokens) * valid_mask(tokens, self.pad_id).unsqueeze(-1)
        return self.dropout(x)


def classifier_head(in_features: int, num_classes: int, hidden: int, dropout: float) -> nn.Sequential:
    """Dropout then Linear (``hidden=0``), or GLUE's MLP: Dropout, Linear, ReLU, Dropout, Linear.

    ``num_classes == 1`` is a regression head (STS-B): one unbounded output, no special casing."""
    if hidden < 0:
        raise ValueError(f"head hidden width must be >= 0 (0: a linear head); got {hidden}")
    if hidden == 0:
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, num_classes))
    return nn.Sequential(
        nn.Dropout(dropout),
        nn.Linear(in_features, hidden),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, num_classes),
    )


class SentenceClassifier(nn.Module):
    """A sentence encoder plus a head. With ``pair=True`` both sentences go through the SAME encoder
    (siamese, shared weights, as in the GLUE baselines) and the head reads ``pair_features(u, v)``;
    otherwise the head reads the encoding of ``tokens``.

    ``encoder`` maps ``(tokens [B, T], lengths [B])`` to ``[B, encoder.out_features]``.
    """

    def __init__(
        self, encoder: nn.Module, num_classes: int, pair: bool, head_hidden: int, dropout: float
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.pair = pair
        self.pad_id: int = encoder.pad_id
        width = int(encoder.out_features) * (4 if pair else 1)
        self.head = classifier_head(width, num_classes, head_hidden, dropout)

    def features(self, batch: dict[str, Tensor]) -> Tensor:
        """What the head reads: [B, D] for single sentences, [B, 4D] ``[u, v, |u-v|, u*v]`` for pairs."""
        name = type(self.encoder).__name__
        if not self.pair:
            require(batch, ("tokens", "lengths"), name)
            return self.encoder(batch["tokens"], batch["lengths"])
        require(batch, ("tokens_a", "lengths_a", "tokens_b", "lengths_b"), name)
        # one encoder call on a and b stacked along the batch: half the kernel launches, and exact
        # because encoders are padding-invariant (b may be padded to a's width or vice versa)
        tokens_a, tokens_b = batch["tokens_a"], batch["tokens_b"]
        width = max(tokens_a.shape[1], tokens_b.shape[1])
        tokens = torch.cat([pad_to(tokens_a, width, self.pad_id), pad_to(tokens_b, width, self.pad_id)])
        lengths = torch.cat([batch["lengths_a"], batch["lengths_b"]])
        u, v = self.encoder(tokens, lengths).chunk(2, dim=0)
        return pair_features(u, v)

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        return self.head(self.features(batch))


def sinusoidal_table(length: int, dim: int) -> Tensor:
    """Vaswani et al. positional encodings, [length, dim]:
    PE(pos, 2i) = sin(pos / 10000^(2i/dim)), PE(pos, 2i+1) = cos(pos / 10000^(2i/dim)).

    Computed in float64 then cast, so long tables stay accurate; an odd ``dim`` drops the last cosine."""
    position = torch.arange(length, dtype=torch.float64).unsqueeze(1)
    even = torch.arange(0, dim, 2, dtype=torch.float64)  # the 2i of the formula
    angle = position / torch.pow(10000.0, even / dim)
    table = torch.zeros(length, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angle)
    table[:, 1::2] = torch.cos(angle[:, : dim // 2])
    return table.to(torch.get_default_dtype())


def embedding_std(dim: int) -> float:
    """N(0, 1/dim) init: scaled by sqrt(dim) in the transformer it gives unit-variance inputs."""
    return 1.0 / math.sqrt(dim)
