"""The translation task as a LightningModule: it receives a seq2seq network (the protocol of
``lightning_modules.architectures.seq2seq``), the optimizer and schedule factories and the loss
options, and owns the steps, metrics and logging only.

Training is teacher-forced cross-entropy on the target tokens (padding ignored). Evaluation logs the
plain token-level loss and perplexity, decodes every batch (greedy or beam search), and at the end of
the epoch scores the detokenized hypotheses against the raw references with sacrebleu's corpus BLEU
and chrF, so the scores are the ones papers report, not BLEU over subword ids.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_modules.classification import log_step_loss
from lightning_modules.decoding import beam_search, greedy_decode
from lightning_modules.optim import OptimizerFactory, ScheduleFactory
from lightning_modules.regularization import LossOptions, checked_training_loss
from lightning_modules.stepping import SteppingModule

log = logging.getLogger(__name__)

Batch = dict[str, Tensor]


def corpus_scores(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    """sacrebleu's corpus BLEU (13a tokenization) and chrF of ``hypotheses`` against one reference each."""
    try:
        import sacrebleu
    except ImportError as error:  # a dependency of the project; a clear message if an env lacks it
        raise ImportError("translation metrics need sacrebleu: pip install 'sacrebleu>=2.4'") from error
    return {
        "bleu": sacrebleu.corpus_bleu(hypotheses, [references]).score,
        "chrf": sacrebleu.corpus_chrf(hypotheses, [references]).score,
    }


class Seq2SeqModule(SteppingModule):
    """Teacher-forced training of a seq2seq ``network`` on ``ParallelCorpusDataModule`` batches
    (dicts of ``src``, ``src_lengths``, ``tgt_in``, ``tgt_out``, ``tgt_lengths``, ``index``).

    ``detokenize`` turns target ids (no bos/eos) into text and ``references(split)`` gives the raw
    references, row ``i`` for batch index ``i``: the datamodule's ``decode`` and ``references``.
    Label smoothing and the L1 penalty act on the training loss here, L2 through the optimizer,
    gradient clipping at the step (``SteppingModule``), dropout in the network and early stopping in
    the Trainer.

    After each evaluation epoch ``hypotheses[stage]`` holds its ``(index, text)`` pairs in index order
    and ``samples[stage]`` the first ``samples`` ``(index, reference, hypothesis)`` triples.
    """

    def __init__(
        self,
        network: nn.Module,
        optimizer: OptimizerFactory,
        schedule: ScheduleFactory,
        loss: LossOptions = LossOptions(),  # noqa: B008  (frozen: one shared default is safe)
        *,
        pad_id: int,
        bos_id: int,
        eos_id: int,
        detokenize: Callable[[list[int]], str],
        references: Callable[[str], list[str]],
        sources: Callable[[str], list[str]] | None = None,  # raw sources, for the logged samples
        teacher_forcing: float = 1.0,  # probability of feeding the gold token; < 1 for recurrent models only
        beam_size: int = 5,  # test and predict
        length_penalty: float = 1.0,  # GNMT alpha; 0 scores by log-probability alone
        max_len_ratio: float = 1.5,  # decode at most ratio * longest source + extra tokens
        max_len_extra: int = 10,
        val_beam_size: int = 1,  # 1: greedy validation, cheap enough to run every epoch
        samples: int = 3,  # (index, reference, hypothesis) triples kept (and logged) per evaluation
        test_stages: tuple[str, ...] = ("test",),
        grad_clip: float = 0.0,
    ) -> None:
        super().__init__(optimizer, schedule, loss, grad_clip)
        if not 0.0 <= teacher_forcing <= 1.0:
            raise ValueError(f"teacher_forcing must be in [0, 1]; got {teacher_forcing}")
        if beam_size < 1 or val_beam_size < 1:
            raise ValueError(
                f"beam sizes must be >= 1; got beam_size={beam_size}, val_beam_size={val_beam_size}"
            )
        if max_len_ratio <= 0 or max_len_extra < 0:
            raise ValueError(
                f"max_len_ratio must be > 0 and max_len_extra >= 0; got {max_len_ratio}, {max_len_extra}"
            )
        self.network = network
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.detokenize = detokenize
        self.references = references
        self.sources = sources
        self.teacher_forcing = teacher_forcing
        self.beam_size, self.val_beam_size = beam_size, val_beam_size
        self.length_penalty = length_penalty
        self.max_len_ratio, self.max_len_extra = max_len_ratio, max_len_extra
        self.num_samples = samples
        self.test_stages = tuple(test_stages)
        # running sums on the device, logged once an epoch (see ClassificationModule): loss * tokens, tokens
        self.register_buffer("_train_sums", torch.zeros(2), persistent=False)
        self._eval_sums: dict[str, Tensor] = {}
        self._eval_hypotheses: dict[str, list[tuple[int, str]]] = {}
        self.hypotheses: dict[str, list[tuple[int, str]]] = {}
        self.samples: dict[str, list[tuple[int, str, str]]] = {}

    # ---- training ----------------------------------------------------------------------------

    def forward(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor) -> Tensor:
        if self.teacher_forcing == 1.0:  # the transformer takes no teacher_forcing below 1
            return self.network(src, src_lengths, tgt_in)
        return self.network(src, src_lengths, tgt_in, teacher_forcing=self.teacher_forcing)

    def _token_loss(self, logits: Tensor, tgt_out: Tensor, label_smoothing: float = 0.0) -> Tensor:
        """Mean cross-entropy over the non-pad target tokens."""
        return F.cross_entropy(
            logits.flatten(0, 1),
            tgt_out.flatten(),
            ignore_index=self.pad_id,
            label_smoothing=label_smoothing,
        )

    def training_loss(self, batch: Batch, batch_idx: int) -> Tensor:
        logits = self(batch["src"], batch["src_lengths"], batch["tgt_in"])
        data_loss = self._token_loss(logits, batch["tgt_out"], self.loss_options.label_smoothing)
        loss, value = checked_training_loss(self, data_loss, self.loss_options.l1)
        with torch.no_grad():
            tokens = (batch["tgt_out"] != self.pad_id).sum()
            self._train_sums[0] += data_loss * tokens
            self._train_sums[1] += tokens
        log_step_loss(self, data_loss.item() if data_loss is not loss else value)
        return loss

    def on_train_epoch_end(self) -> None:
        loss_sum, count = self.trainer.strategy.reduce(self._train_sums, reduce_op="sum")
        loss = loss_sum / count.clamp_min(1)
        self.log("train/loss", loss)  # label-smoothed when smoothing is on, as is train/ppl
        self.log("train/ppl", loss.exp())
        self._train_sums.zero_()

    # ---- evaluation --------------------------------------------------------------------------

    def max_decode_len(self, src_lengths: Tensor) -> int:
        return math.ceil(self.max_len_ratio * int(src_lengths.max()) + self.max_len_extra)

    def decode(self, batch: Batch, beam_size: int) -> list[str]:
        """Detokenized hypotheses for the sources of ``batch``: greedy for beam size 1, else beam search."""
        src, src_lengths = batch["src"], batch["src_lengths"]
        max_len = self.max_decode_len(src_lengths)
        if beam_size == 1:
            ids = greedy_decode(self.network, src, src_lengths, self.bos_id, self.eos_id, max_len)
        else:
            ids = beam_search(
                self.network,
                src,
                src_lengths,
                self.bos_id,
                self.eos_id,
                beam_size=beam_size,
                max_len=max_len,
                length_penalty=self.length_penalty,
            )
        return [self.detokenize(row) for row in ids]

    def _evaluate(self, batch: Batch, stage: str, beam_size: int) -> Tensor:
        logits = self(batch["src"], batch["src_lengths"], batch["tgt_in"])
        # plain cross-entropy, so runs with different label smoothing report comparable losses
        loss = self._token_loss(logits, batch["tgt_out"])
        tokens = (batch["tgt_out"] != self.pad_id).sum()
        sums = self._eval_sums.get(stage)
        if sums is None:
            sums = self._eval_sums[stage] = torch.zeros(2, device=self.device)
        sums[0] += loss.detach() * tokens
        sums[1] += tokens
        texts = self.decode(batch, beam_size)
        self._eval_hypotheses.setdefault(stage, []).extend(zip(batch["index"].tolist(), texts, strict=True))
        return loss

    def _gather(self, local: list[tuple[int, str]]) -> list[tuple[int, str]]:
        """Every rank's ``(index, text)`` pairs, on every rank, once per index and in index order."""
        pairs = local
        world_size = self.trainer.world_size if self._trainer is not None else 1
        if world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * world_size
            torch.distributed.all_gather_object(gathered, local)
            pairs = [pair for part in gathered for pair in part]
        return sorted(dict(pairs).items())

    def _finish(self, stage: str, split: str) -> None:
        """Log the stage's loss, perplexity, BLEU and chrF, and keep its hypotheses and samples."""
        sums = self._eval_sums.pop(stage, None)
        local = self._eval_hypotheses.pop(stage, [])
        if sums is None:  # no batch of this stage ran (e.g. limit_val_batches=0)
            return
        loss_sum, count = self.trainer.strategy.reduce(sums, reduce_op="sum")
        loss = loss_sum / count.clamp_min(1)
        self.log(f"{stage}/loss", loss)
        self.log(f"{stage}/ppl", loss.exp())
        pairs = self._gather(local)
        references = self.references(split)
        gold = [references[i] for i, _ in pairs]
        texts = [text for _, text in pairs]
        # every rank scores the same gathered corpus, so the values agree without another sync
        for name, value in corpus_scores(texts, gold).items():
            self.log(f"{stage}/{name}", value, prog_bar=name == "bleu")
        self.hypotheses[stage] = pairs
        n = self.num_samples
        self.samples[stage] = [(i, ref, hyp) for (i, hyp), ref in zip(pairs[:n], gold[:n], strict=True)]
        self._log_samples(stage, split)

    def _log_samples(self, stage: str, split: str) -> None:
        """The kept triples to the console and, on rank 0 of a tracked run, to the MLflow run as
        ``samples/val-epoch<N>.txt`` (``samples/test.txt``): each epoch's translations, in the UI."""
        sources = self.sources(split) if self.sources is not None else None
        blocks = []
        for index, reference, hypothesis in self.samples[stage]:
            source = f"  src: {sources[index]}\n" if sources is not None else ""
            blocks.append(f"{stage} #{index}\n{source}  ref: {reference}\n  hyp: {hypothesis}")
        for block in blocks:
            log.info("%s", block)
        logger = self.logger
        if not blocks or self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        client = getattr(logger, "experiment", None)
        if hasattr(client, "log_text") and logger.run_id is not None:
            epoch = "" if stage in self.test_stages else f"-epoch{self.current_epoch:03d}"
            name = f"samples/{stage}{epoch}.txt"
            client.log_text(logger.run_id, "\n\n".join(blocks) + "\n", name)

    def on_validation_epoch_start(self) -> None:
        self._eval_sums.pop("val", None)
        self._eval_hypotheses.pop("val", None)

    def validation_step(self, batch: Batch, batch_idx: int) -> Tensor:
        return self._evaluate(batch, "val", self.val_beam_size)

    def on_validation_epoch_end(self) -> None:
        self._finish("val", "val")

    def on_test_epoch_start(self) -> None:
        for stage in self.test_stages:
            self._eval_sums.pop(stage, None)
            self._eval_hypotheses.pop(stage, None)

    def test_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        return self._evaluate(batch, self.test_stages[dataloader_idx], self.beam_size)

    def on_test_epoch_end(self) -> None:
        for stage in self.test_stages:
            self._finish(stage, stage)  # each test stage is the datamodule split of that name

    def predict_step(self, batch: Batch, batch_idx: int) -> list[str]:
        return self.decode(batch, self.beam_size)
