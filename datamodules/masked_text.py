"""Unlabelled text for masked-language-model pretraining: ``data: {name: masked_text, source: glue}``.

Sources:

- ``glue``: the text of a GLUE task (task-adaptive pretraining). The splits, the holdout and the
  fitted vocabulary are those of the ``glue`` datamodule built with the same ``task``, ``tokenizer``,
  ``holdout_fraction``, ``split_seed`` and ``train_subset`` (it is built inside and read): the same ids
  mean the same words, so a fine-tuning run on that GLUE task can load the pretrained embeddings, and
  it validates on the very holdout pretraining never trained on. Test is GLUE's dev text; its labels,
  and GLUE's unlabelled test text, are never trained on.
- ``text_files``: ``train_file`` and ``test_file``, one sentence a line (plain or gzip; blank lines
  skipped), paths relative to the data directory unless absolute.
- ``parallel``: one side (``side``) of a translation corpus, read by the ``translation`` datamodule
  with the same corpus options, so its train/test cut is the one translation runs train and test on.

As for every text datamodule, ``val`` is a seeded ``holdout_fraction`` of train (GLUE's: the same
rows) and the vocabulary is fit on train only. Batches are the text batches of
``datamodules.text_batches`` (``tokens``, ``lengths``, ``segments``; pairs as ``a [SEP] b``) with
labels that ride along unused; the task module masks them (``mask_rate``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Literal

from core.metrics import TaskProtocol
from datamodules.download import DataError
from datamodules.glue import GlueDataModule, GlueTaskName
from datamodules.parallel_files import read_sentences
from datamodules.registry import DATAMODULES
from datamodules.seq2seq import CorpusKind, ParallelCorpusDataModule
from datamodules.text_classification import TextClassificationDataModule, TextSplit
from datamodules.text_tokenizers import SEP_ID, TokenizerSpec

Source = Literal["glue", "text_files", "parallel"]
SOURCES: tuple[str, ...] = ("glue", "text_files", "parallel")


@DATAMODULES.register("masked_text")
class MaskedTextDataModule(TextClassificationDataModule):
    """Unlabelled sentences (or GLUE sentence pairs) from one of the sources of the module docstring."""

    task_kind: ClassVar[str] = "masked_lm"  # the task kind in tasks.TASKS that trains it
    # scored by the dev cross-entropy at masked positions; no time-to-target threshold is known yet
    protocol: ClassVar[TaskProtocol] = TaskProtocol(
        metric="mlm_loss", metrics=("mlm_acc",), target=None, max_epochs=10
    )
    num_classes = 2  # the labels are placeholders; the base class reads this only to type them

    def __init__(
        self,
        data_dir: str = "./data",
        seed: int = 0,
        augment: bool = False,
        source: Source = "glue",
        task: GlueTaskName = "sst2",  # glue: its training text is what is pretrained on
        train_file: str = "train.txt",  # text_files: one sentence a line
        test_file: str = "test.txt",  # text_files: the text the run is reported on (test/mlm_loss)
        corpus: CorpusKind = "multi30k",  # parallel: these options are the translation datamodule's
        side: Literal["src", "tgt"] = "src",  # parallel: which language's sentences
        source_lang: str = "de",
        target_lang: str = "en",
        path: str | None = None,
        source_file: str | None = None,
        target_file: str | None = None,
        source_column: int = 0,
        target_column: int = 1,
        delimiter: str | None = None,
        header: bool = False,
        hub_config: str | None = None,
        lowercase: bool = False,
        val_fraction: float = 0.05,  # parallel files/pairs: the translation datamodule's own cut
        test_fraction: float = 0.05,
        tokenizer: TokenizerSpec | None = None,
        batch_size: int = 64,
        eval_batch_size: int = 256,
        holdout_fraction: float = 0.05,
        split_seed: int = 0,
        train_subset: int | None = None,
        mask_rate: float = 0.15,  # share of the real tokens chosen for prediction in every batch
        cache_dir: str | None = None,
        download: bool = True,  # glue: fetch missing files with HF datasets
    ) -> None:
        if augment:
            raise ValueError(
                "regularization.augment has no policy for masked-LM pretraining (masking already is the "
                "corruption, and word dropout would hide words it never asks for); set it to false"
            )
        if source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
        if not 0 < mask_rate <= 1:
            raise ValueError(f"mask_rate must be in (0, 1], got {mask_rate}")
        shared = {
            "data_dir": data_dir,
            "seed": seed,
            "tokenizer": tokenizer,
            "batch_size": batch_size,
            "eval_batch_size": eval_batch_size,
            "holdout_fraction": holdout_fraction,
            "split_seed": split_seed,
            "train_subset": train_subset,
            "cache_dir": cache_dir,
        }
        super().__init__(augment=False, word_dropout=0.0, **shared)
        self.source, self.side = source, side
        self.mask_rate = mask_rate
        self.files = {"train": train_file, "test": test_file}
        # glue: the glue datamodule of the same options owns the splits, the holdout and the vocabulary
        self.glue = None
        if source == "glue":
            self.glue = GlueDataModule(task=task, download=download, word_dropout=0.0, **shared)
        self.parallel = None
        if source == "parallel":
            self.parallel = ParallelCorpusDataModule(
                data_dir=data_dir,
                seed=seed,
                corpus=corpus,
                source_lang=source_lang,
                target_lang=target_lang,
                path=path,
                source_file=source_file,
                target_file=target_file,
                source_column=source_column,
                target_column=target_column,
                delimiter=delimiter,
                header=header,
                hub_config=hub_config,
                lowercase=lowercase,
                max_len=None,  # keep every training sentence: the other side's length is no concern here
                val_fraction=val_fraction,
                test_fraction=test_fraction,
                split_seed=split_seed,
                cache_dir=cache_dir,
            )
        names = {"glue": f"glue/{task}", "text_files": train_file, "parallel": f"{corpus}-{side}"}
        self.name = f"masked_text({names[source]})"

    @property
    def eval_splits(self) -> tuple[str, ...]:
        return self.glue.eval_splits if self.glue is not None else ("test",)  # MNLI: both dev sets

    def setup(self, stage: str | None = None) -> None:
        if self.corpus is not None:
            return
        if self.glue is None:
            super().setup(stage)  # reads _read's splits, fits, encodes and holds out val
            return
        self.glue.setup()
        self.corpus, self.tokenize_s = self.glue.corpus, self.glue.tokenize_s
        # GLUE's unlabelled test text is for submissions: a pretraining run has no use for it
        kept = [name for name in self.glue.datasets if not name.startswith("predict")]
        self.datasets = {name: self.glue.datasets[name] for name in kept}
        self.ids = {name: self.glue.ids[name] for name in kept if name in self.glue.ids}

    def _read(self) -> dict[str, TextSplit]:
        if self.parallel is not None:
            self.parallel.setup()
            take = self.parallel.sources if self.side == "src" else self.parallel.references
            texts = {"train": take("train"), "test": take("test")}
        else:
            texts = {name: self._sentences(name) for name in ("train", "test")}
        # placeholder labels: the base class wants labelled train and test splits; nothing reads them
        return {
            name: TextSplit(t, [0] * len(t), [str(i) for i in range(len(t))]) for name, t in texts.items()
        }

    def _sentences(self, split: str) -> list[str]:
        path = Path(self.files[split])
        path = path if path.is_absolute() else Path(self.data_dir) / path
        sentences = [line for line in read_sentences(path) if line.strip()]
        if not sentences:
            raise DataError(f"{path}: no sentences; write the text into it, one sentence a line")
        return sentences

    def token_names(self, ids: Sequence[int]) -> list[str]:
        """The vocabulary's name of each id (a pair's separator is [SEP] whatever the tokenizer calls it)."""
        self.setup()
        assert self.corpus is not None
        tokenizer, pair = self.corpus.tokenizer, self.corpus.pair
        return ["[SEP]" if pair and i == SEP_ID else tokenizer.id_to_token(i) or "?" for i in ids]
