"""Continuous bag of words: GLUE's bag baseline, the floor every sequence model should beat."""

from __future__ import annotations

from torch import Tensor, nn

from lightning_modules.architectures.registry import MODELS
from lightning_modules.architectures.text_encoders import (
    SentenceClassifier,
    TokenEmbedding,
    check_text_args,
    masked_mean,
    valid_mask,
)


class BagEncoder(nn.Module):
    """Mean of the token embeddings over the real tokens; word order is deliberately ignored."""

    def __init__(self, vocab_size: int, embed_dim: int, pad_id: int, dropout: float) -> None:
        super().__init__()
        self.pad_id = pad_id
        self.out_features = embed_dim
        self.embedding = TokenEmbedding(vocab_size, embed_dim, pad_id, dropout)

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        return masked_mean(self.embedding(tokens), valid_mask(tokens, self.pad_id))


@MODELS.register("cbow")
def cbow(
    input_shape: tuple[int, ...],
    num_classes: int,
    dropout: float = 0.0,
    vocab_size: int = 0,
    pad_id: int = 0,
    pair: bool = False,
    embed_dim: int = 128,
    hidden: int = 256,  # width of the MLP head's hidden layer; 0 gives a linear head
) -> nn.Module:
    """Mean-of-embeddings encoder, then an MLP head; pairs read ``[u, v, |u-v|, u*v]``."""
    check_text_args("cbow", vocab_size, pad_id, num_classes)
    encoder = BagEncoder(vocab_size, embed_dim, pad_id, dropout)
    return SentenceClassifier(encoder, num_classes, pair, head_hidden=hidden, dropout=dropout)
