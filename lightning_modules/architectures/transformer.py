"""A small pre-LN transformer encoder for sentence (pair) classification, BERT-style on the joint
``a [SEP] b`` sequence, that can hand back its attention weights for heatmaps; and the same encoder
with a masked-language-model head (``TransformerMLM``), whose encoder weights a classifier loads by key."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.registry import Registry
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
INITIAL_LOGIT_STD = 0.1  # the untrained MLM head's logit spread: a first loss of log V + 0.005


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


class TransformerEncoder(nn.Module):
    """Token (x sqrt(d)) + position (+ segment, for pairs) embeddings -> pre-LN layers -> final LN.

    The part a classifier and a masked language model share. Its parameters sit on the model itself
    (``token.weight``, ``layers.0.attn.in_proj_weight``, ``norm.weight``, ...), not under a submodule, so
    the keys are the ones ``TransformerClassifier`` always had: encoder weights move between the two by
    key (``architectures.parts``: every tensor but the task heads), and checkpoints saved before the
    encoder was shared still load."""

    def __init__(
        self,
        vocab_size: int,
        pad_id: int,
        pair: bool,
        max_len: int,
        d_model: int,
        heads: int,
        layers: int,
        ff_dim: int,
        positional: str,
        dropout: float,
    ) -> None:
        super().__init__()
        self.pad_id = pad_id
        self.pair = pair
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

    def _token_vectors(self, batch: dict[str, Tensor]) -> Tensor:
        """[B, T, d] before the x sqrt(d) scale; a subclass may substitute some positions."""
        return self.token(batch["tokens"])

    def _embed(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Input vectors [B, T, d] and the pad mask [B, T] (True at padding)."""
        keys = ("tokens", "segments") if self.pair else ("tokens",)
        require(batch, keys, type(self).__name__)
        tokens = batch["tokens"]
        x = self._token_vectors(batch) * self.scale + self._positions(tokens.shape[1], tokens.device)
        if self.segment is not None:
            x = x + self.segment(batch["segments"])
        return self.embed_dropout(x), ~valid_mask(tokens, self.pad_id)

    def encode(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Every position's final vector [B, T, d] and the pad mask [B, T] (True at padding)."""
        x, padding = self._embed(batch)
        for layer in self.layers:
            x, _ = layer(x, padding)
        return self.norm(x), padding

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


class TransformerClassifier(TransformerEncoder):
    """The encoder -> masked mean (or first-token) pooling -> head."""

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
        super().__init__(
            vocab_size, pad_id, pair, max_len, d_model, heads, layers, ff_dim, positional, dropout
        )
        self.pooling = pooling
        self.head = classifier_head(d_model, num_classes, head_hidden, dropout)

    def features(self, batch: dict[str, Tensor]) -> Tensor:
        """The pooled sentence (pair) vector [B, d] that the head reads."""
        x, padding = self.encode(batch)
        if self.pooling == "first":
            return x[:, 0]  # [CLS] when the datamodule prepends it, else the first word
        return masked_mean(x, ~padding)

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        return self.head(self.features(batch))


class MaskedLMHead(nn.Module):
    """BERT's prediction head: Linear d->d, GELU, LayerNorm, then the token embedding (tied) as the
    decoder, plus a bias per vocabulary entry."""

    def __init__(self, d_model: int, vocab_size: int) -> None:
        super().__init__()
        self.dense = nn.Linear(d_model, d_model)
        self.act = nn.GELU()
        self.norm = nn.LayerNorm(d_model)
        # The tied embedding has std 1/sqrt(d), so a unit gain gives logits of std 1 and a first loss of
        # log V + 1/2; a small learned gain starts the model near uniform (log V), as BERT's 0.02 init does.
        nn.init.constant_(self.norm.weight, INITIAL_LOGIT_STD)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, x: Tensor, embedding: Tensor) -> Tensor:
        return F.linear(self.norm(self.act(self.dense(x))), embedding, self.bias)


class TransformerMLM(TransformerEncoder):
    """The encoder plus a masked-language-model head: logits over the vocabulary at every position.

    Where ``batch["masked"]`` [B, T] (bool) is True the token vector is replaced by the learned
    ``mask_embedding`` (every litbench vocabulary has the same four specials and no [MASK]; adding one
    would shift every id). Positional and segment embeddings are still added there, so the model knows
    which position it is asked to fill. Only ``mask_embedding`` and ``mlm_head.*`` are its own; every
    other key is a ``TransformerClassifier``'s of the same options, tensor for tensor.
    """

    def __init__(
        self,
        vocab_size: int,
        pad_id: int,
        pair: bool,
        max_len: int,
        d_model: int,
        heads: int,
        layers: int,
        ff_dim: int,
        positional: str,
        dropout: float,
    ) -> None:
        super().__init__(
            vocab_size, pad_id, pair, max_len, d_model, heads, layers, ff_dim, positional, dropout
        )
        self.vocab_size = vocab_size
        self.mask_embedding = nn.Parameter(torch.randn(d_model) * embedding_std(d_model))  # a token's scale
        self.mlm_head = MaskedLMHead(d_model, vocab_size)

    def _token_vectors(self, batch: dict[str, Tensor]) -> Tensor:
        vectors = self.token(batch["tokens"])
        masked = batch.get("masked")
        if masked is None:
            return vectors
        return torch.where(masked.unsqueeze(-1), self.mask_embedding.to(vectors.dtype), vectors)

    def forward(self, batch: dict[str, Tensor], positions: Tensor | None = None) -> Tensor:
        """Logits [B, T, vocab_size]; with ``positions`` (bool [B, T]) only theirs, [N, vocab_size] in
        row-major order: the loss needs the chosen ~15%, and the vocabulary projection dominates."""
        x, _ = self.encode(batch)
        if positions is not None:
            x = x[positions]
        return self.mlm_head(x, self.token.weight)


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
    _check_options(vocab_size, pad_id, num_classes, d_model, heads, positional, pooling)
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


def _check_options(
    vocab_size: int, pad_id: int, num_classes: int, d_model: int, heads: int, positional: str, pooling: str
) -> None:
    check_text_args("transformer", vocab_size, pad_id, num_classes)
    if positional not in POSITIONALS:
        raise ValueError(f"unknown positional {positional!r}; known: {', '.join(POSITIONALS)}")
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; known: {', '.join(POOLINGS)}")
    if d_model % heads:
        raise ValueError(f"transformer: d_model={d_model} is not divisible by heads={heads}")


# Models with a masked-LM head, by their ``MODELS`` name: a pretraining cell's ``model`` section is the
# classifier's, so the fine-tuning cell that loads its encoder shares it. Only the transformer has one.
# The others could: a bidirectional recurrent encoder sees a masked position's neighbours through both
# directions, which is all MLM needs, and the bag (cbow) and TextCNN encoders would need per-position
# outputs they pool away. None ships, because no classifier of theirs would load such weights yet.
MLM_MODELS: Registry[Callable[..., nn.Module]] = Registry(
    "masked-LM model", injected=("vocab_size", "pad_id", "pair", "max_len", "dropout")
)


@MLM_MODELS.register("transformer")
def transformer_mlm(
    vocab_size: int, pad_id: int, pair: bool, max_len: int, dropout: float = 0.0, **options: Any
) -> TransformerMLM:
    """A ``TransformerMLM`` from the ``transformer`` builder's options, with its defaults and checks.

    ``pooling`` and ``head_hidden`` shape only the classifier's head: accepted, checked and unused."""
    try:
        # the classifier's signature is the schema: same defaults, same unknown-option errors
        bound = inspect.signature(transformer).bind(
            (max_len,), 1, dropout, vocab_size, pad_id, pair, **options
        )
    except TypeError as err:  # an unknown option: name the ones there are
        known = [p for p in inspect.signature(transformer).parameters if p not in MODELS.injected]
        raise TypeError(f"model 'transformer': {err}; its options are: {', '.join(known)}") from None
    bound.apply_defaults()
    a = bound.arguments
    _check_options(vocab_size, pad_id, 1, a["d_model"], a["heads"], a["positional"], a["pooling"])
    return TransformerMLM(
        vocab_size=vocab_size,
        pad_id=pad_id,
        pair=pair,
        max_len=max_len,
        d_model=a["d_model"],
        heads=a["heads"],
        layers=a["layers"],
        ff_dim=a["ff_dim"],
        positional=a["positional"],
        dropout=dropout,
    )


def mlm_network(
    model_name: str,
    options: dict[str, Any],
    vocab_size: int,
    pad_id: int,
    pair: bool,
    max_len: int,
    dropout: float,
) -> nn.Module:
    """The masked-LM network of model ``model_name`` (a name in ``MLM_MODELS``) with its ``model``
    section's ``options``; an unknown name lists the models that have an MLM head."""
    builder = MLM_MODELS.get(model_name)
    return builder(
        vocab_size=vocab_size, pad_id=pad_id, pair=pair, max_len=max_len, dropout=dropout, **options
    )
