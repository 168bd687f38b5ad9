"""Translation: a parallel corpus (``datamodules.seq2seq``), an encoder-decoder from ``SEQ2SEQ_MODELS``,
teacher-forced training and BLEU/chrF by sacrebleu (``Seq2SeqModule``). Its own spec section is
``decoding``; its artifacts are the test translations and an attention (alignment) figure."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from core.metrics import TaskProtocol
from core.registry import Registry
from lightning_modules.architectures import SEQ2SEQ_MODELS
from lightning_modules.architectures.seq2seq import create_seq2seq_model
from lightning_modules.attention_figures import save_alignment_figure
from lightning_modules.decoding import beam_search, greedy_decode_with_attention
from lightning_modules.seq2seq import Seq2SeqModule
from tasks.base import ArtifactSink, Built, TaskKind, Training
from tasks.registry import register_task


class DecodingSpec(BaseModel):
    """How a translation (seq2seq) model is trained and decoded: the spec's ``decoding`` section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    teacher_forcing: float = Field(1.0, ge=0.0, le=1.0)  # < 1: recurrent decoders feed their own guesses
    beam_size: int = Field(5, ge=1)  # test decoding; 1 is greedy
    length_penalty: float = Field(1.0, ge=0.0)  # GNMT's alpha
    val_beam_size: int = Field(1, ge=1)  # validation BLEU each epoch: greedy by default, for speed
    max_len_ratio: float = Field(1.5, gt=0.0)  # hypotheses stop at ratio * source length + extra tokens
    max_len_extra: int = Field(10, ge=0)

    def max_len(self, longest_source: int) -> int:
        return math.ceil(self.max_len_ratio * longest_source + self.max_len_extra)


class Translation(TaskKind):
    name = "translation"
    settings_section = "decoding"
    inputs = "a translation corpus"

    def model_registry(self) -> Registry:
        return SEQ2SEQ_MODELS

    def mismatch(self, model: str) -> str:
        return f"{model!r} is a classifier, and a translation corpus needs an encoder-decoder"

    def logged_metrics(self, scoring: TaskProtocol) -> tuple[str, ...]:
        return ("loss", "ppl", scoring.metric, *scoring.metrics)

    def build_network(
        self, datamodule: Any, model: str, options: dict[str, Any], dropout: float
    ) -> nn.Module:
        return create_seq2seq_model(model, dropout=dropout, **datamodule.token_inputs(), **options)

    def build_module(self, datamodule: Any, network: nn.Module, training: Training, settings: Any):
        decoding = settings or DecodingSpec()
        return Seq2SeqModule(
            network,
            training.optimizer,
            training.schedule,
            training.loss,
            pad_id=datamodule.pad_id,
            bos_id=datamodule.bos_id,
            eos_id=datamodule.eos_id,
            detokenize=datamodule.decode,
            references=datamodule.references,
            sources=datamodule.sources,
            grad_clip=training.grad_clip,
            teacher_forcing=decoding.teacher_forcing,
            beam_size=decoding.beam_size,
            length_penalty=decoding.length_penalty,
            max_len_ratio=decoding.max_len_ratio,
            max_len_extra=decoding.max_len_extra,
            val_beam_size=decoding.val_beam_size,
        )

    def batch_size(self, batch: Any) -> int:
        return len(batch["src"])  # a dict of tensors: src, tgt_in, tgt_out, ...

    def tracking_params(self, datamodule: Any) -> dict[str, Any]:
        return datamodule.tracking_params()

    def fit_metrics(self, datamodule: Any) -> dict[str, float]:
        return {} if datamodule.tokenize_s is None else {"perf/tokenize_s": datamodule.tokenize_s}

    def log_artifacts(self, built: Built, sink: ArtifactSink, heatmaps: int) -> None:
        for stage, rows in built.module.hypotheses.items():
            if stage != "val":
                path = sink.workdir / f"{stage}.txt"  # one line per source sentence, in the corpus's order
                path.write_text("".join(f"{text}\n" for _, text in sorted(rows)))
                sink.log(path, "translations")
        if heatmaps:
            figure = self._alignment_figure(built, heatmaps, sink)
            if figure is not None:
                sink.log(figure, "heatmaps")

    def _alignment_figure(self, built: Built, count: int, sink: ArtifactSink):
        """The model's attention over the source at each word it writes, for the first ``count`` (at
        most 4) test sentences, decoded greedily; None for a model without attention."""
        datamodule, network = built.datamodule, built.network.cpu()
        decoding = built.settings or DecodingSpec()
        ids = datamodule.encode(datamodule.sources("test")[: min(count, 4)], "source")
        src, lengths = _padded(ids, datamodule.pad_id)
        hypotheses, attention = greedy_decode_with_attention(
            network, src, lengths, datamodule.bos_id, datamodule.eos_id, decoding.max_len(int(lengths.max()))
        )
        if attention is None:
            return None

        def pieces(tokenizer, row: list[int]) -> list[str]:
            return [tokenizer.id_to_token(i) or "?" for i in row]

        source_tokens = [pieces(datamodule.src_tokenizer, row) for row in ids]
        target_tokens = [[*pieces(datamodule.tgt_tokenizer, row), "</s>"] for row in hypotheses]
        titles = [datamodule.decode(row)[:40] for row in hypotheses]
        return save_alignment_figure(
            list(attention), source_tokens, target_tokens, titles, sink.workdir / "attention.png"
        )

    def translate(
        self, built: Built, texts: Sequence[str], beam_size: int, length_penalty: float
    ) -> list[str]:
        """The translation of each text (an empty text stays empty), by batched beam search."""
        datamodule, network = built.datamodule, built.network
        decoding = built.settings or DecodingSpec()
        real = [i for i, text in enumerate(texts) if text.strip()]
        out = [""] * len(texts)
        if not real:
            return out
        src, lengths = _padded(datamodule.encode([texts[i] for i in real], "source"), datamodule.pad_id)
        hypotheses = beam_search(
            network,
            src,
            lengths,
            datamodule.bos_id,
            datamodule.eos_id,
            beam_size,
            decoding.max_len(int(lengths.max())),
            length_penalty=length_penalty,
        )
        for i, tokens in zip(real, hypotheses, strict=True):
            out[i] = datamodule.decode(tokens)
        return out


def _padded(ids: Sequence[Sequence[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """A right-padded ``[B, S]`` batch of token rows and their lengths (at least 1 each)."""
    lengths = torch.tensor([max(1, len(row)) for row in ids])
    src = torch.full((len(ids), int(lengths.max())), pad_id, dtype=torch.long)
    for row, tokens in enumerate(ids):
        src[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
    return src, lengths


register_task(Translation())
