"""A pre-LN transformer encoder-decoder (Vaswani et al. 2017, with the pre-LN placement that trains
without warm-up at small scale): sinusoidal positions, causal decoder self-attention, padding masks
from the source lengths, optional shared source/target embeddings and tied output projection.

The layers are written around ``nn.MultiheadAttention`` (the encoder layer is the classifier's
``PreNormEncoderLayer``) rather than ``nn.TransformerDecoderLayer``, which does not expose the
cross-attention weights: ``step`` returns the last layer's cross-attention averaged over heads."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from lightning_modules.architectures.registry import SEQ2SEQ_MODELS
from lightning_modules.architectures.seq2seq import (
    Memory,
    Seq2Seq,
    State,
    check_seq2seq_args,
    source_mask,
)
from lightning_modules.architectures.text_encoders import embedding_std, sinusoidal_table
from lightning_modules.architectures.transformer import PreNormEncoderLayer

TABLE_LEN = 512  # positions precomputed; longer sequences extend the formula on the fly


class PreNormDecoderLayer(nn.Module):
    """x + SelfAttn(LN(x)) (causal), x + CrossAttn(LN(x), memory), x + FF(LN(x))."""

    def __init__(self, d_model: int, heads: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm_self = nn.LayerNorm(d_model)
        self.self_attn = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True)
        self.norm_cross = nn.LayerNorm(d_model)
        self.cross_attn = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True)
        self.norm_ff = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(
            nn.Linear(d_model, ff_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff_dim, d_model)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        causal: Tensor,
        tgt_padding: Tensor,
        src_padding: Tensor,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Masks are True where attention is forbidden; position 0 (bos) is never padding, so no query
        row is fully masked. Returns x and, with ``need_weights``, cross-attention [B, T, S] (head mean)."""
        h = self.norm_self(x)
        attended, _ = self.self_attn(
            h, h, h, attn_mask=causal, key_padding_mask=tgt_padding, need_weights=False
        )
        x = x + self.dropout(attended)
        h = self.norm_cross(x)
        attended, weights = self.cross_attn(
            h, memory, memory, key_padding_mask=src_padding, need_weights=need_weights
        )
        x = x + self.dropout(attended)
        x = x + self.dropout(self.ff(self.norm_ff(x)))
        return x, weights


def _embedding(vocab_size: int, d_model: int, pad_id: int) -> nn.Embedding:
    embedding = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
    nn.init.normal_(embedding.weight, std=embedding_std(d_model))  # x sqrt(d): unit variance
    with torch.no_grad():
        embedding.weight[pad_id].zero_()
    return embedding


class TransformerSeq2Seq(Seq2Seq):
    """Token (x sqrt(d)) + sinusoidal embeddings -> pre-LN encoder -> final LN = memory; the decoder
    reads the target prefix causally and the memory through cross-attention -> final LN -> output.

    ``step`` keeps the fed prefix in its state and re-runs the decoder over it (no key/value cache:
    O(T^2) per sentence, simple and exactly equal to ``forward``)."""

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        pad_id: int,
        bos_id: int,
        eos_id: int,
        d_model: int,
        heads: int,
        layers: int,
        ff_dim: int,
        share_embeddings: bool,
        tie_output: bool,
        dropout: float,
    ) -> None:
        super().__init__()
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.scale = math.sqrt(d_model)
        self.src_embed = _embedding(src_vocab_size, d_model, pad_id)
        self.tgt_embed = self.src_embed if share_embeddings else _embedding(tgt_vocab_size, d_model, pad_id)
        # not a parameter and not saved: a function of d_model alone
        self.register_buffer("sinusoid", sinusoidal_table(TABLE_LEN, d_model), persistent=False)
        self.embed_dropout = nn.Dropout(dropout)
        self.encoder_layers = nn.ModuleList(
            PreNormEncoderLayer(d_model, heads, ff_dim, dropout) for _ in range(layers)
        )
        self.encoder_norm = nn.LayerNorm(d_model)  # pre-LN leaves the residual stream unnormalized
        self.decoder_layers = nn.ModuleList(
            PreNormDecoderLayer(d_model, heads, ff_dim, dropout) for _ in range(layers)
        )
        self.decoder_norm = nn.LayerNorm(d_model)
        self.output = nn.Linear(d_model, tgt_vocab_size)
        if tie_output:
            self.output.weight = self.tgt_embed.weight

    def _embed(self, embedding: nn.Embedding, tokens: Tensor) -> Tensor:
        width = tokens.shape[1]
        if width > self.sinusoid.shape[0]:
            positions = sinusoidal_table(width, self.sinusoid.shape[1]).to(self.sinusoid)
        else:
            positions = self.sinusoid[:width]
        return self.embed_dropout(embedding(tokens) * self.scale + positions)

    def encode(self, src: Tensor, src_lengths: Tensor) -> Memory:
        mask = source_mask(src_lengths.to(src.device), src.shape[1])
        x = self._embed(self.src_embed, src)
        for layer in self.encoder_layers:
            x, _ = layer(x, ~mask)
        return {"memory": self.encoder_norm(x), "src_mask": mask}

    def _decode(self, memory: Memory, tgt_in: Tensor, need_weights: bool) -> tuple[Tensor, Tensor | None]:
        """Decoder states [B, T, d] (after the final LN) and the last layer's cross-attention."""
        width = tgt_in.shape[1]
        causal = torch.ones(width, width, dtype=torch.bool, device=tgt_in.device).triu(diagonal=1)
        tgt_padding = tgt_in == self.pad_id
        x = self._embed(self.tgt_embed, tgt_in)
        weights = None
        for i, layer in enumerate(self.decoder_layers):
            last = i == len(self.decoder_layers) - 1
            x, weights = layer(
                x, memory["memory"], causal, tgt_padding, ~memory["src_mask"], need_weights and last
            )
        return self.decoder_norm(x), weights

    def forward(
        self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor, teacher_forcing: float = 1.0
    ) -> Tensor:
        if teacher_forcing != 1.0:
            raise ValueError(
                "the transformer decodes all target positions in parallel from the gold prefix; "
                f"teacher_forcing must be 1.0, got {teacher_forcing}"
            )
        states, _ = self._decode(self.encode(src, src_lengths), tgt_in, need_weights=False)
        return self.output(states)

    def start(self, memory: Memory) -> State:
        batch = memory["src_mask"].shape[0]
        return {"prefix": torch.empty(batch, 0, dtype=torch.long, device=memory["src_mask"].device)}

    def step(self, memory: Memory, state: State, prev_tokens: Tensor) -> tuple[Tensor, State, Tensor | None]:
        prefix = torch.cat([state["prefix"], prev_tokens.unsqueeze(1)], dim=1)
        states, weights = self._decode(memory, prefix, need_weights=True)
        attention = weights[:, -1] if weights is not None else None
        return self.output(states[:, -1]), {"prefix": prefix}, attention


@SEQ2SEQ_MODELS.register("transformer_seq2seq")
def transformer_seq2seq(
    src_vocab_size: int,
    tgt_vocab_size: int,
    pad_id: int,
    bos_id: int,
    eos_id: int,
    dropout: float = 0.0,
    d_model: int = 128,  # embedding and residual width
    heads: int = 4,  # d_model must be divisible by heads
    layers: int = 2,  # encoder and decoder each
    ff_dim: int = 512,  # hidden width of each layer's feed-forward block
    share_embeddings: bool = False,  # one embedding for source and target: needs a joint vocabulary
    tie_output: bool = True,  # output projection = target embedding (Press & Wolf 2017)
) -> nn.Module:
    """Pre-LN transformer encoder-decoder with sinusoidal positions."""
    check_seq2seq_args("transformer_seq2seq", src_vocab_size, tgt_vocab_size, pad_id, bos_id, eos_id)
    if d_model % heads:
        raise ValueError(f"transformer_seq2seq: d_model={d_model} is not divisible by heads={heads}")
    if share_embeddings and src_vocab_size != tgt_vocab_size:
        raise ValueError(
            "transformer_seq2seq: share_embeddings needs one joint vocabulary, but "
            f"src_vocab_size={src_vocab_size} != tgt_vocab_size={tgt_vocab_size}"
        )
    return TransformerSeq2Seq(
        src_vocab_size=src_vocab_size,
        tgt_vocab_size=tgt_vocab_size,
        pad_id=pad_id,
        bos_id=bos_id,
        eos_id=eos_id,
        d_model=d_model,
        heads=heads,
        layers=layers,
        ff_dim=ff_dim,
        share_embeddings=share_embeddings,
        tie_output=tie_output,
        dropout=dropout,
    )
