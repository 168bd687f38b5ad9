"""Recurrent encoder-decoders: the no-attention GRU baseline (Cho et al. 2014 / Sutskever et al. 2014:
the decoder starts from the encoder's final state) and attentional GRU/LSTM models with a bidirectional
encoder (Bahdanau et al. 2015 additive attention, Luong et al. 2015 general/dot attention, optional
input feeding). The encoder runs on packed sequences, so padding never enters the recurrence, and
attention never weighs padded source positions."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from lightning_modules.architectures.recurrent import CELLS
from lightning_modules.architectures.registry import SEQ2SEQ_MODELS
from lightning_modules.architectures.seq2seq import (
    Memory,
    Seq2Seq,
    State,
    check_seq2seq_args,
    source_mask,
)
from lightning_modules.architectures.text_encoders import TokenEmbedding

ATTENTIONS = ("bahdanau", "luong", "luong_dot")


class Attention(nn.Module):
    """Scores a decoder query [B, H] against encoder outputs [B, S, H]; padded positions get weight 0.

    ``bahdanau``: v^T tanh(W q + U k) (additive); ``luong``: q^T W k (general); ``luong_dot``: q^T k.
    The key transform (U or W) depends on the source only, so ``keys`` runs once per source."""

    def __init__(self, kind: str, hidden: int) -> None:
        super().__init__()
        self.kind = kind
        self.key = nn.Identity() if kind == "luong_dot" else nn.Linear(hidden, hidden, bias=False)
        if kind == "bahdanau":
            self.query = nn.Linear(hidden, hidden, bias=False)
            self.v = nn.Linear(hidden, 1, bias=False)

    def keys(self, outputs: Tensor) -> Tensor:
        return self.key(outputs)

    def forward(self, query: Tensor, keys: Tensor, values: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """One query [B, H] -> context [B, H], weights [B, S]; or every step's [B, T, H] -> [B, T, H],
        [B, T, S] at once (teacher forcing of a decoder whose queries do not depend on the context)."""
        one_step = query.dim() == 2
        queries = query.unsqueeze(1) if one_step else query
        if self.kind == "bahdanau":
            projected = self.query(queries).unsqueeze(2) + keys.unsqueeze(1)  # [B, T, S, H]
            scores = self.v(torch.tanh(projected)).squeeze(-1)
        else:
            scores = torch.bmm(queries, keys.transpose(1, 2))
        # every row has a real token, so no row is all -inf
        weights = scores.masked_fill(~mask.unsqueeze(1), float("-inf")).softmax(dim=-1)
        context = torch.bmm(weights, values)
        return (context.squeeze(1), weights.squeeze(1)) if one_step else (context, weights)


class RecurrentSeq2Seq(Seq2Seq):
    """Embedding -> (bi)GRU/LSTM encoder -> decoder of the same cell and depth -> output projection.

    Without attention the decoder starts from the encoder's final states and reads only the previous
    token. With attention the encoder is bidirectional with ``hidden // 2`` units per direction (its
    outputs have the decoder's width, so dot scores need no projection); the decoder starts from
    tanh(W [forward final; backward final]) per layer, and each step forms the attentional vector
    h~ = tanh(W_c [context; h]) that the output layer reads (and, with input feeding, the next step's
    input too). Bahdanau queries with the previous top state and feeds the context into the cell;
    Luong queries with the new top state.
    """

    def __init__(
        self,
        cell: str,
        src_vocab_size: int,
        tgt_vocab_size: int,
        pad_id: int,
        bos_id: int,
        eos_id: int,
        embed_dim: int,
        hidden: int,
        layers: int,
        attention: str | None,
        input_feed: bool,
        tie_embeddings: bool,
        dropout: float,
    ) -> None:
        super().__init__()
        if layers < 1 or hidden < 1 or embed_dim < 1:
            raise ValueError(f"{cell} seq2seq needs layers, hidden, embed_dim >= 1")
        if attention is not None and attention not in ATTENTIONS:
            raise ValueError(f"unknown attention {attention!r}; known: {', '.join(ATTENTIONS)}")
        bidirectional = attention is not None
        if bidirectional and hidden % 2:
            raise ValueError(
                f"hidden={hidden} must be even: the bidirectional encoder has hidden // 2 per side"
            )
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.cell = cell
        self.layers = layers
        self.hidden = hidden
        self.attention_kind = attention
        self.input_feed = input_feed and attention is not None
        self.bidirectional = bidirectional
        between = dropout if layers > 1 else 0.0  # between stacked layers; PyTorch warns on 1 layer

        self.src_embed = TokenEmbedding(src_vocab_size, embed_dim, pad_id, dropout)
        self.encoder = CELLS[cell](
            embed_dim,
            hidden // 2 if bidirectional else hidden,
            num_layers=layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=between,
        )
        # the two directions' final states, concatenated per layer, -> the decoder's initial state
        self.bridge = nn.Linear(hidden, hidden) if bidirectional else None
        self.bridge_c = nn.Linear(hidden, hidden) if bidirectional and cell == "lstm" else None

        self.tgt_embed = TokenEmbedding(tgt_vocab_size, embed_dim, pad_id, dropout)
        extra = (hidden if self.input_feed else 0) + (hidden if attention == "bahdanau" else 0)
        self.decoder = CELLS[cell](
            embed_dim + extra, hidden, num_layers=layers, batch_first=True, dropout=between
        )
        self.attention = Attention(attention, hidden) if attention is not None else None
        self.combine = nn.Linear(2 * hidden, hidden) if attention is not None else None
        self.dropout = nn.Dropout(dropout)
        # tying needs the output layer's input to have the embedding's width
        self.pre_output = (
            nn.Linear(hidden, embed_dim) if tie_embeddings and hidden != embed_dim else nn.Identity()
        )
        self.output = nn.Linear(embed_dim if tie_embeddings else hidden, tgt_vocab_size)
        if tie_embeddings:
            self.output.weight = self.tgt_embed.embedding.weight

    def _final(self, final: Tensor, bridge: nn.Linear | None) -> Tensor:
        """[layers * directions, B, h] (layer-major) -> [B, layers, hidden], bridged when bidirectional."""
        directions = 2 if self.bidirectional else 1
        per_layer = final.view(self.layers, directions, final.shape[1], final.shape[2])
        state = per_layer.permute(2, 0, 1, 3).reshape(final.shape[1], self.layers, self.hidden)
        return torch.tanh(bridge(state)) if bridge is not None else state

    def encode(self, src: Tensor, src_lengths: Tensor) -> Memory:
        width = src.shape[1]
        # pack_padded_sequence wants the lengths on the CPU (one small device sync)
        packed = pack_padded_sequence(
            self.src_embed(src), src_lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        outputs, final = self.encoder(packed)
        memory = {"src_mask": source_mask(src_lengths.to(src.device), width)}
        h, c = final if self.cell == "lstm" else (final, None)
        memory["h0"] = self._final(h, self.bridge)
        if c is not None:
            memory["c0"] = self._final(c, self.bridge_c)
        if self.attention is not None:
            outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=width)  # zero on pads
            memory["outputs"] = outputs
            memory["keys"] = self.attention.keys(outputs)
        return memory

    def start(self, memory: Memory) -> State:
        state = {"h": memory["h0"]}
        if "c0" in memory:
            state["c"] = memory["c0"]
        if self.input_feed:
            state["feed"] = memory["h0"].new_zeros(memory["h0"].shape[0], self.hidden)
        return state

    def step(self, memory: Memory, state: State, prev_tokens: Tensor) -> tuple[Tensor, State, Tensor | None]:
        features, new_state, weights = self._step_features(memory, state, self.tgt_embed(prev_tokens))
        return self._logits(features), new_state, weights

    def _step_features(
        self, memory: Memory, state: State, embedded: Tensor
    ) -> tuple[Tensor, State, Tensor | None]:
        """One decoder step from the embedded previous token [B, E]: the output layer's input [B, H]."""
        parts = [embedded]
        if self.input_feed:
            parts.append(state["feed"])
        weights = None
        if self.attention_kind == "bahdanau":  # attend with the previous top-layer state
            context, weights = self.attention(
                state["h"][:, -1], memory["keys"], memory["outputs"], memory["src_mask"]
            )
            parts.append(context)
        hx = state["h"].transpose(0, 1).contiguous()  # the cell wants [layers, B, H]
        if self.cell == "lstm":
            hx = (hx, state["c"].transpose(0, 1).contiguous())
        out, new = self.decoder(torch.cat(parts, dim=-1).unsqueeze(1), hx)
        out = out[:, 0]
        h, c = new if self.cell == "lstm" else (new, None)
        new_state = {"h": h.transpose(0, 1)}
        if c is not None:
            new_state["c"] = c.transpose(0, 1)
        features = out
        if self.attention is not None:
            if self.attention_kind != "bahdanau":  # Luong: attend with the new top-layer state
                context, weights = self.attention(out, memory["keys"], memory["outputs"], memory["src_mask"])
            features = torch.tanh(self.combine(torch.cat([context, out], dim=-1)))
            if self.input_feed:
                new_state["feed"] = features
        return features, new_state, weights

    def _logits(self, features: Tensor) -> Tensor:
        return self.output(self.pre_output(self.dropout(features)))

    def forward(
        self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor, teacher_forcing: float = 1.0
    ) -> Tensor:
        if not 0.0 <= teacher_forcing <= 1.0:
            raise ValueError(f"teacher_forcing is a probability; got {teacher_forcing}")
        memory = self.encode(src, src_lengths)
        if teacher_forcing < 1.0:
            return self._forward_own_guesses(memory, tgt_in, teacher_forcing)
        embedded = self.tgt_embed(tgt_in)
        if self.attention_kind == "bahdanau" or self.input_feed:
            # each step's input needs the previous step's context: a Python loop over the steps, but
            # the embeddings and the output layer (most of the arithmetic) run once on all of them
            state = self.start(memory)
            features = []
            for t in range(tgt_in.shape[1]):
                step_features, state, _ = self._step_features(memory, state, embedded[:, t])
                features.append(step_features)
            return self._logits(torch.stack(features, dim=1))
        # the cell reads gold tokens only, so it runs over the whole target in one call, and
        # Luong attention (queried by the new states) then attends for all steps at once
        hx = memory["h0"].transpose(0, 1).contiguous()
        if self.cell == "lstm":
            hx = (hx, memory["c0"].transpose(0, 1).contiguous())
        out, _ = self.decoder(embedded, hx)
        if self.attention is None:
            return self._logits(out)
        context, _ = self.attention(out, memory["keys"], memory["outputs"], memory["src_mask"])
        return self._logits(torch.tanh(self.combine(torch.cat([context, out], dim=-1))))

    def _forward_own_guesses(self, memory: Memory, tgt_in: Tensor, teacher_forcing: float) -> Tensor:
        """Scheduled sampling: per row and step, the gold token with probability ``teacher_forcing``,
        else the model's own argmax of the step before."""
        state = self.start(memory)
        prev = tgt_in[:, 0]
        steps = []
        for t in range(tgt_in.shape[1]):
            if t > 0:
                gold = torch.rand(prev.shape, device=prev.device) < teacher_forcing
                prev = torch.where(gold, tgt_in[:, t], steps[-1].argmax(dim=-1))
            logits, state, _ = self.step(memory, state, prev)
            steps.append(logits)
        return torch.stack(steps, dim=1)


@SEQ2SEQ_MODELS.register("gru_seq2seq")
def gru_seq2seq(
    src_vocab_size: int,
    tgt_vocab_size: int,
    pad_id: int,
    bos_id: int,
    eos_id: int,
    dropout: float = 0.0,
    embed_dim: int = 128,
    hidden: int = 256,
    layers: int = 1,  # encoder and decoder each
    tie_embeddings: bool = False,  # output layer shares the target embedding (a projection if widths differ)
) -> nn.Module:
    """GRU encoder-decoder without attention: the whole source must pass through the final state."""
    check_seq2seq_args("gru_seq2seq", src_vocab_size, tgt_vocab_size, pad_id, bos_id, eos_id)
    return RecurrentSeq2Seq(
        cell="gru",
        src_vocab_size=src_vocab_size,
        tgt_vocab_size=tgt_vocab_size,
        pad_id=pad_id,
        bos_id=bos_id,
        eos_id=eos_id,
        embed_dim=embed_dim,
        hidden=hidden,
        layers=layers,
        attention=None,  # the baseline: no attention
        input_feed=False,
        tie_embeddings=tie_embeddings,
        dropout=dropout,
    )


def _attention_builder(
    cell: Literal["gru", "lstm"], default: Literal["bahdanau", "luong", "luong_dot"], doc: str
):
    """The registry entry of one attentional cell; both share their options (the schema)."""

    def build(
        src_vocab_size: int,
        tgt_vocab_size: int,
        pad_id: int,
        bos_id: int,
        eos_id: int,
        dropout: float = 0.0,
        embed_dim: int = 128,
        hidden: int = 256,  # decoder width; the bidirectional encoder has hidden // 2 per direction
        layers: int = 1,  # encoder and decoder each
        attention: Literal["bahdanau", "luong", "luong_dot"] = default,
        input_feed: bool = True,  # feed the previous attentional vector into the next step (Luong)
        tie_embeddings: bool = False,  # output layer shares the target embedding
    ) -> nn.Module:
        name = f"{cell}_attention"
        check_seq2seq_args(name, src_vocab_size, tgt_vocab_size, pad_id, bos_id, eos_id)
        return RecurrentSeq2Seq(
            cell=cell,
            src_vocab_size=src_vocab_size,
            tgt_vocab_size=tgt_vocab_size,
            pad_id=pad_id,
            bos_id=bos_id,
            eos_id=eos_id,
            embed_dim=embed_dim,
            hidden=hidden,
            layers=layers,
            attention=attention,
            input_feed=input_feed,
            tie_embeddings=tie_embeddings,
            dropout=dropout,
        )

    build.__name__ = build.__qualname__ = f"{cell}_attention"
    build.__doc__ = doc
    return SEQ2SEQ_MODELS.register(f"{cell}_attention")(build)


gru_attention = _attention_builder(
    "gru", "bahdanau", "Bidirectional GRU encoder, attentional GRU decoder (Bahdanau et al. 2015 by default)."
)
lstm_attention = _attention_builder(
    "lstm", "luong", "Bidirectional LSTM encoder, attentional LSTM decoder (Luong et al. 2015 by default)."
)
