"""Kim (2014) convolutional sentence classifier: n-gram detectors of several widths, max over time."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_modules.architectures.registry import MODELS
from lightning_modules.architectures.text_encoders import (
    SentenceClassifier,
    TokenEmbedding,
    check_text_args,
    masked_max,
    valid_mask,
)


class ConvEncoder(nn.Module):
    """Embedding -> parallel Conv1d (one per kernel size) -> ReLU -> max over valid windows -> concat.

    A window counts when it lies inside the real tokens; a sentence shorter than a kernel keeps only
    its first window, which reads the sentence plus zero padding (the pad embedding is zeroed). The
    input is right-padded to the widest kernel, so any length works and extra padding changes nothing.
    """

    def __init__(
        self,
        vocab_size: int,
        pad_id: int,
        embed_dim: int,
        kernel_sizes: tuple[int, ...],
        channels: int,
        dropout: float,
    ) -> None:
        super().__init__()
        if not kernel_sizes or min(kernel_sizes) < 1 or channels < 1:
            raise ValueError(
                f"textcnn needs kernel sizes >= 1 and channels >= 1; got {tuple(kernel_sizes)}, {channels}"
            )
        self.pad_id = pad_id
        self.kernel_sizes = tuple(int(k) for k in kernel_sizes)
        self.out_features = channels * len(self.kernel_sizes)
        self.embedding = TokenEmbedding(vocab_size, embed_dim, pad_id, dropout)
        self.convs = nn.ModuleList(nn.Conv1d(embed_dim, channels, k) for k in self.kernel_sizes)

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        mask = valid_mask(tokens, self.pad_id)
        x = self.embedding(tokens).transpose(1, 2)  # [B, E, T]: Conv1d convolves the last axis
        shortfall = max(self.kernel_sizes) - x.shape[2]
        if shortfall > 0:
            x = F.pad(x, (0, shortfall))
        real = mask.sum(dim=1, keepdim=True)  # [B, 1]
        pooled = []
        for conv, k in zip(self.convs, self.kernel_sizes, strict=True):
            feature = F.relu(conv(x))  # [B, C, windows]; window i reads positions i .. i+k-1
            windows = torch.arange(feature.shape[2], device=tokens.device)
            # windows wholly inside the sentence, and always the first so short sentences still count
            keep = windows.unsqueeze(0) < (real - k + 1).clamp(min=1)
            pooled.append(masked_max(feature.transpose(1, 2), keep))
        return torch.cat(pooled, dim=1)


@MODELS.register("textcnn")
def textcnn(
    input_shape: tuple[int, ...],
    num_classes: int,
    dropout: float = 0.0,
    vocab_size: int = 0,
    pad_id: int = 0,
    pair: bool = False,
    embed_dim: int = 128,
    kernel_sizes: tuple[int, ...] = (3, 4, 5),  # n-gram widths, one Conv1d each (Kim 2014)
    channels: int = 100,  # feature maps per kernel size (Kim 2014)
    head_hidden: int = 0,  # 0: Dropout + Linear head, as in Kim; > 0: one hidden ReLU layer
) -> nn.Module:
    """Kim's CNN-rand: the sentence vector is ``channels * len(kernel_sizes)`` max-pooled features."""
    check_text_args("textcnn", vocab_size, pad_id, num_classes)
    encoder = ConvEncoder(vocab_size, pad_id, embed_dim, kernel_sizes, channels, dropout)
    return SentenceClassifier(encoder, num_classes, pair, head_hidden=head_hidden, dropout=dropout)
