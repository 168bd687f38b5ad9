"""The translation LightningModule in tiny CPU fits of a copy task the models can memorize."""

from __future__ import annotations

import math
import random
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning
import pytest
import torch
from lightning.pytorch.loggers import Logger
from torch import nn

from datamodules.seq2seq import ParallelCorpusDataModule
from experiments.specs import OptimizerSpec, RegularizationSpec, ScheduleSpec
from lightning_modules.architectures.seq2seq import create_seq2seq_model
from lightning_modules.errors import NonFiniteLossError
from lightning_modules.optim import OptimizerFactory, ScheduleFactory
from lightning_modules.regularization import LossOptions
from lightning_modules.seq2seq import Seq2SeqModule

WORDS = ["red", "blue", "green", "cat", "dog", "sun", "moon", "tree", "runs", "sleeps"]
DISTINCT, REPEATS = 12, 8  # every sentence repeats, so val and test sentences are also in train
SMALL = {
    "transformer_seq2seq": {"d_model": 32, "heads": 2, "layers": 1, "ff_dim": 64},
    "gru_attention": {"embed_dim": 16, "hidden": 32},
}

warnings.filterwarnings("ignore", message=".*does not have many workers.*")
warnings.filterwarnings("ignore", message=".*(GPU|TPU|HPU) available.*")


def write_copy_corpus(folder: Path) -> None:
    """Aligned files whose target is the source: 12 sentences of 4-6 words, each written 8 times."""
    rng = random.Random(0)
    sentences = [" ".join(rng.choices(WORDS, k=rng.randint(4, 6))) for _ in range(DISTINCT)]
    lines = "".join(s + "\n" for s in sentences * REPEATS)
    (folder / "copy.src").write_text(lines)
    (folder / "copy.tgt").write_text(lines)


def make_datamodule(folder: Path) -> ParallelCorpusDataModule:
    return ParallelCorpusDataModule(
        data_dir=str(folder),
        corpus="files",
        source_lang="src",
        target_lang="tgt",
        source_file="copy.src",
        target_file="copy.tgt",
        val_fraction=0.15,
        test_fraction=0.1,
        vocab_size=40,
        batch_size=16,
        eval_batch_size=8,
        cache_dir=str(folder / "cache"),
    )


@pytest.fixture(scope="module")
def dm(tmp_path_factory: pytest.TempPathFactory) -> ParallelCorpusDataModule:
    folder = tmp_path_factory.mktemp("copy")
    write_copy_corpus(folder)
    datamodule = make_datamodule(folder)
    datamodule.setup()
    return datamodule


def make_module(
    dm: ParallelCorpusDataModule,
    name: str = "transformer_seq2seq",
    lr: float = 1e-2,
    schedule: dict | None = None,
    seed: int = 0,
    module_options: dict | None = None,
    **regularization: float,
) -> Seq2SeqModule:
    torch.manual_seed(seed)
    network = create_seq2seq_model(
        name,
        src_vocab_size=dm.src_vocab_size,
        tgt_vocab_size=dm.tgt_vocab_size,
        pad_id=dm.pad_id,
        bos_id=dm.bos_id,
        eos_id=dm.eos_id,
        **SMALL[name],
    )
    reg = RegularizationSpec(**regularization)
    return Seq2SeqModule(
        network,
        OptimizerSpec.model_validate({"name": "adam", "lr": lr}).factory(reg.l2),
        ScheduleSpec.model_validate(schedule or {"name": "none"}).factory(),
        reg.loss_options(),
        pad_id=dm.pad_id,
        bos_id=dm.bos_id,
        eos_id=dm.eos_id,
        detokenize=dm.decode,
        references=dm.references,
        **(module_options or {}),
    )


def make_trainer(**overrides: Any) -> lightning.Trainer:
    options: dict[str, Any] = dict(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
    )
    return lightning.Trainer(**{**options, **overrides})


class RecordingLogger(Logger):
    """Keeps what it is given, to check what the module sends."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple[int | None, dict]] = []

    @property
    def name(self) -> str:
        return "recording"

    @property
    def version(self) -> str:
        return "0"

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        self.records.append((step, dict(metrics)))


def by_hand(module: Seq2SeqModule, dm: ParallelCorpusDataModule, stage: str, split: str) -> dict[str, float]:
    import sacrebleu

    pairs = module.hypotheses[stage]
    references = dm.references(split)
    hypotheses = [text for _, text in pairs]
    gold = [references[i] for i, _ in pairs]
    return {
        "bleu": sacrebleu.corpus_bleu(hypotheses, [gold]).score,
        "chrf": sacrebleu.corpus_chrf(hypotheses, [gold]).score,
    }


# ---- one fit shared by the tests that read its results ---------------------------------------


@pytest.fixture(scope="module")
def fitted(dm: ParallelCorpusDataModule) -> tuple[Seq2SeqModule, dict[str, float]]:
    pytest.importorskip("sacrebleu")
    module = make_module(dm, schedule={"name": "cosine", "warmup_epochs": 1})
    trainer = make_trainer(max_epochs=40, check_val_every_n_epoch=20, num_sanity_val_steps=1)
    trainer.fit(module, datamodule=dm)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    return module, metrics


def test_fit_logs_every_metric_and_memorizes_the_copy_task(fitted, dm) -> None:
    _, metrics = fitted
    for key in ("train/loss", "train/ppl", "val/loss", "val/ppl", "val/bleu", "val/chrf"):
        assert key in metrics and math.isfinite(metrics[key]), key
    assert metrics["train/ppl"] == pytest.approx(math.exp(metrics["train/loss"]), rel=1e-5)
    assert metrics["val/ppl"] == pytest.approx(math.exp(metrics["val/loss"]), rel=1e-5)
    assert metrics["val/bleu"] > 90 and metrics["val/chrf"] > 90, metrics


def test_bleu_is_sacrebleu_of_the_kept_hypotheses(fitted, dm) -> None:
    module, metrics = fitted
    pairs = module.hypotheses["val"]
    assert [i for i, _ in pairs] == list(range(dm.sizes()["val"]))  # every pair once, in index order
    expected = by_hand(module, dm, "val", "val")
    assert metrics["val/bleu"] == pytest.approx(expected["bleu"])
    assert metrics["val/chrf"] == pytest.approx(expected["chrf"])
    samples = module.samples["val"]
    assert len(samples) == 3
    assert [(i, hyp) for i, _, hyp in samples] == pairs[:3]
    assert [ref for _, ref, _ in samples] == [dm.references("val")[i] for i, _, _ in samples]


def test_limited_validation_scores_only_the_decoded_pairs(fitted, dm) -> None:
    module, _ = fitted
    trainer = make_trainer(limit_val_batches=1)
    metrics = trainer.validate(module, datamodule=dm, verbose=False)[0]
    pairs = module.hypotheses["val"]
    assert 0 < len(pairs) <= dm.eval_batch_size < dm.sizes()["val"]
    assert metrics["val/bleu"] == pytest.approx(by_hand(module, dm, "val", "val")["bleu"])


def test_test_stage_beam_search_and_predict(fitted, dm) -> None:
    module, _ = fitted
    trainer = make_trainer()
    metrics = trainer.test(module, datamodule=dm, verbose=False)[0]
    for key in ("test/loss", "test/ppl", "test/bleu", "test/chrf"):
        assert key in metrics, key
    assert metrics["test/bleu"] > 90
    assert metrics["test/bleu"] == pytest.approx(by_hand(module, dm, "test", "test")["bleu"])
    assert len(module.hypotheses["test"]) == dm.sizes()["test"]
    predictions = trainer.predict(module, datamodule=dm)
    texts = [text for batch in predictions for text in batch]
    assert len(texts) == dm.sizes()["test"] and all(isinstance(t, str) for t in texts)
    assert sorted(texts) == sorted(text for _, text in module.hypotheses["test"])


# ---- cheaper checks ------------------------------------------------------------------------


def test_recurrent_model_with_scheduled_sampling_and_beam_validation(dm) -> None:
    pytest.importorskip("sacrebleu")
    module = make_module(
        dm, "gru_attention", module_options={"teacher_forcing": 0.5, "val_beam_size": 3, "samples": 2}
    )
    calls = []
    forward = module.network.forward
    module.network.forward = lambda *args, **kwargs: calls.append(kwargs) or forward(*args, **kwargs)
    logger = RecordingLogger()
    make_trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=1, logger=logger).fit(
        module, datamodule=dm
    )
    assert calls and all(kwargs == {"teacher_forcing": 0.5} for kwargs in calls)
    logged = {key for _, metrics in logger.records for key in metrics}
    assert {"train/loss_step", "train/loss", "train/ppl", "val/loss", "val/bleu", "val/chrf"} <= logged
    assert [step for step, metrics in logger.records if "train/loss_step" in metrics] == [0, 1]
    assert len(module.samples["val"]) == 2


def test_label_smoothing_changes_the_training_loss_not_the_validation_loss(dm) -> None:
    batch = next(iter(dm.val_dataloader()))
    plain = make_module(dm)
    smoothed = make_module(dm, label_smoothing=0.2)  # same seed: same weights
    assert plain.training_loss(batch, 0).item() != pytest.approx(smoothed.training_loss(batch, 0).item())
    assert plain.validation_step(batch, 0).item() == pytest.approx(smoothed.validation_step(batch, 0).item())


def test_non_finite_loss_raises_before_backward(dm) -> None:
    module = make_module(dm)
    with torch.no_grad():
        module.network.output.bias.fill_(float("nan"))
    before = {k: v.clone() for k, v in module.network.state_dict().items()}
    with pytest.raises(NonFiniteLossError, match="non-finite loss"):
        make_trainer(max_epochs=1, limit_train_batches=2).fit(module, datamodule=dm)
    after = module.network.state_dict()
    for key, value in before.items():
        assert torch.equal(value.nan_to_num(), after[key].nan_to_num()), key


def test_gather_merges_ranks_once_per_index(monkeypatch) -> None:
    module = Seq2SeqModule(
        nn.Linear(1, 1),
        OptimizerFactory(),
        ScheduleFactory(),
        LossOptions(),
        pad_id=0,
        bos_id=3,
        eos_id=2,
        detokenize=str,
        references=list,
    )
    other_rank = [(0, "zero"), (2, "two")]

    def all_gather_object(out: list, local: list) -> None:
        out[:] = [local, other_rank]

    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "all_gather_object", all_gather_object)
    module._trainer = SimpleNamespace(world_size=2)  # type: ignore[assignment]
    assert module._gather([(3, "three"), (1, "one")]) == [(0, "zero"), (1, "one"), (2, "two"), (3, "three")]


def test_bad_options_fail_at_construction(dm) -> None:
    with pytest.raises(ValueError, match="teacher_forcing"):
        make_module(dm, module_options={"teacher_forcing": 1.5})
    with pytest.raises(ValueError, match="beam sizes"):
        make_module(dm, module_options={"beam_size": 0})


def test_an_untrained_model_scores_near_zero(dm) -> None:
    pytest.importorskip("sacrebleu")
    module = make_module(dm, seed=1)
    metrics = make_trainer(limit_val_batches=1).validate(module, datamodule=dm, verbose=False)[0]
    assert metrics["val/bleu"] < 10 and metrics["val/ppl"] > 10  # so the > 90 of the fit means something
