"""The GLUE tasks as one datamodule: ``data: {name: glue, task: sst2}``.

Splits: train minus a seeded holdout trains; the holdout is ``val`` (early stopping and checkpoint
selection watch it); GLUE's dev split is ``test``, the split every reported number comes from (MNLI
also tests on ``test_mismatched``); GLUE's unlabelled test split is ``predict``, which ``litbench
predict`` turns into the submission TSV. Files are read from the official ``glue_data`` layout under
the data directory (see ``datamodules.glue_files``); missing ones are fetched with HF ``datasets``
when ``download`` is on and a network is there.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Literal

from core.metrics import TaskProtocol
from datamodules.download import DataNotFoundError
from datamodules.glue_files import available_splits, download_with_datasets, get_task, read_split
from datamodules.registry import DATAMODULES
from datamodules.text_classification import TextClassificationDataModule, TextSplit
from datamodules.text_tokenizers import TokenizerSpec

log = logging.getLogger(__name__)

GlueTaskName = Literal["cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"]

# GLUE split -> this module's split: dev is what results are reported on, test is predict-only
SPLIT_ROLES = {
    "train": "train",
    "dev": "test",
    "dev_mismatched": "test_mismatched",
    "test": "predict",
    "test_mismatched": "predict_mismatched",
}
# time-to-target thresholds on each task's primary metric: roughly the GLUE paper's CBoW baseline
TARGETS = {
    "cola": 0.15,
    "sst2": 0.80,
    "mrpc": 0.80,
    "qqp": 0.75,
    "stsb": 0.60,
    "mnli": 0.60,
    "qnli": 0.60,
    "rte": 0.55,
    "wnli": 0.55,
}
BUDGET_EPOCHS = 5  # the default epoch budget of every GLUE task


@DATAMODULES.register("glue")
class GlueDataModule(TextClassificationDataModule):
    """One GLUE task; its metrics are the ones the GLUE leaderboard reports, its primary metric first."""

    # an option that never changed training, removed; kept in run identities at the value every run had
    retired_options: ClassVar[dict[str, Any]] = {"max_epochs": 5}

    def __init__(
        self,
        data_dir: str = "./data",
        seed: int = 0,
        augment: bool = False,
        task: GlueTaskName = "sst2",
        tokenizer: TokenizerSpec | None = None,
        batch_size: int = 64,
        eval_batch_size: int = 256,
        holdout_fraction: float = 0.05,
        split_seed: int = 0,
        train_subset: int | None = None,
        word_dropout: float = 0.1,
        download: bool = True,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__(
            data_dir=data_dir,
            seed=seed,
            augment=augment,
            tokenizer=tokenizer,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            holdout_fraction=holdout_fraction,
            split_seed=split_seed,
            train_subset=train_subset,
            word_dropout=word_dropout,
            cache_dir=cache_dir,
        )
        self.task = get_task(task)
        self.download = download
        self.name = f"glue/{self.task.name}"
        self.num_classes = self.task.num_labels
        self.label_names = self.task.label_names
        self.protocol = TaskProtocol(
            metric=self.task.metric,
            metrics=self.task.metrics[1:],
            target=TARGETS[self.task.name],
            max_epochs=BUDGET_EPOCHS,
        )

    @property
    def eval_splits(self) -> tuple[str, ...]:
        return tuple(SPLIT_ROLES[s] for s in self.task.files if SPLIT_ROLES[s].startswith("test"))

    def _read(self) -> dict[str, TextSplit]:
        present = set(available_splits(self.data_dir, self.task.name))
        labelled = {s for s in self.task.files if not SPLIT_ROLES[s].startswith("predict")}
        if not labelled <= present and self.download:
            log.info(
                "%s: %s missing under %s; downloading", self.name, sorted(labelled - present), self.data_dir
            )
            try:
                download_with_datasets(self.data_dir, self.task.name)
            except DataNotFoundError as err:
                missing = ", ".join(sorted(labelled - present))
                raise DataNotFoundError(
                    f"GLUE task {self.task.name!r}: split(s) {missing} are not on disk. {err}"
                ) from None
            present = set(available_splits(self.data_dir, self.task.name))
        splits = {}
        for glue_split, role in SPLIT_ROLES.items():
            if glue_split not in self.task.files or (
                role.startswith("predict") and glue_split not in present
            ):
                continue  # the unlabelled test split is optional: only submissions need it
            split = read_split(self.data_dir, self.task.name, glue_split)  # a missing file: a clear error
            texts = (
                split.texts_a
                if split.texts_b is None
                else list(zip(split.texts_a, split.texts_b, strict=True))
            )
            splits[role] = TextSplit(texts=texts, labels=split.labels, ids=split.ids)
        return splits

    def submission_file(self, split: str) -> str:
        """The file name GLUE expects for predictions of ``split`` ("predict" or "predict_mismatched")."""
        glue_split = next(g for g, role in SPLIT_ROLES.items() if role == split)
        return self.task.submission_files.get(glue_split, f"{self.task.folder}-{glue_split}.tsv")
