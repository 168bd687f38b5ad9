"""The base of every text classification datamodule, and ``text_classification`` for a user's own files.

A subclass reads its files into ``TextSplit``s: "train" (labelled), "test" (labelled, the set results
are reported on; GLUE's dev split), optionally "val" (labelled: a user's own validation file),
optionally further labelled evaluation splits (MNLI's mismatched dev) and "predict" (unlabelled, for
submissions). Without a "val" split the base class holds out a seeded fraction of train as "val" (early
stopping and checkpoint selection watch it, so the reported split never steers training). It encodes
every split through the on-disk cache of ``datamodules.encoded_text`` and serves length-bucketed,
dynamically padded batches. Augmentation is word dropout: each real token of a training batch becomes
[UNK] with probability ``word_dropout``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import lightning
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from core.datasets import DataSplit, tensor_digest
from core.metrics import TaskProtocol
from datamodules.download import DataError
from datamodules.encoded_text import EncodedCorpus, TokenSequences, encode_cached, sequence_tensors
from datamodules.registry import DATAMODULES
from datamodules.sharding import trainer_rank
from datamodules.text_batches import TextDataset, make_loader
from datamodules.text_files import read_table
from datamodules.text_tokenizers import SEP_ID, SPECIALS, UNK_ID, TokenizerSpec

log = logging.getLogger(__name__)

TOKEN_KEYS = ("tokens", "tokens_a", "tokens_b")  # the batch entries word dropout acts on


@dataclass(frozen=True)
class TextSplit:
    """One split's texts (``(a, b)`` pairs for pair tasks), labels (None: unlabelled) and row ids."""

    texts: list[str] | list[tuple[str, str]]
    labels: list[int] | list[float] | None
    ids: list[str]


class TextClassificationDataModule(lightning.LightningDataModule):
    """Shared machinery; subclasses implement ``_read`` and set ``protocol``, ``num_classes``,
    ``label_names`` and ``name`` (used in messages and the cache folder) before ``setup`` ends."""

    task_kind: ClassVar[str] = "text_classification"  # the task kind in tasks.TASKS that trains it
    protocol: TaskProtocol
    num_classes: int
    label_names: tuple[str, ...] = ()

    def __init__(
        self,
        data_dir: str = "./data",
        seed: int = 0,
        augment: bool = False,
        tokenizer: TokenizerSpec | None = None,
        batch_size: int = 64,
        eval_batch_size: int = 256,
        holdout_fraction: float = 0.05,
        split_seed: int = 0,
        train_subset: int | None = None,
        word_dropout: float = 0.1,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1 or eval_batch_size < 1:
            raise ValueError(f"batch sizes must be at least 1, got {batch_size} and {eval_batch_size}")
        if not 0 < holdout_fraction < 1:
            raise ValueError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
        if train_subset is not None and train_subset < 1:
            raise ValueError(f"train_subset must be at least 1 (or None for all), got {train_subset}")
        if not 0 <= word_dropout < 1:
            raise ValueError(f"word_dropout must be in [0, 1), got {word_dropout}")
        self.data_dir = data_dir
        self.seed = seed  # the training shuffle; the holdout depends on split_seed only
        self.augment = augment
        self.tokenizer_spec = TokenizerSpec.model_validate(tokenizer or {})  # YAML gives a dict
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.holdout_fraction = holdout_fraction
        self.split_seed = split_seed
        self.train_subset = train_subset
        self.word_dropout = word_dropout
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.corpus: EncodedCorpus | None = None
        self.tokenize_s: float | None = None  # wall time of the last encode (a cache hit: reading it)
        self.datasets: dict[str, TextDataset] = {}
        self.ids: dict[str, list[str]] = {}
        self.train_texts: list[str] | list[tuple[str, str]] = []  # the training examples, dataset order
        self.texts: dict[str, list[str] | list[tuple[str, str]]] = {}  # every split's, dataset order
        self.index_train_batches = False  # training batches carry example indices (distillation)

    # ---- what subclasses provide -------------------------------------------------------------

    def _read(self) -> dict[str, TextSplit]:
        """Splits "train" and "test" (labelled), optional "val" and further labelled ones, optional
        "predict"."""
        raise NotImplementedError

    @property
    def eval_splits(self) -> tuple[str, ...]:
        """The labelled splits tested after training; each logs ``<split>/<metric>``."""
        return ("test",)

    # ---- setup -------------------------------------------------------------------------------

    @property
    def input_shape(self) -> tuple[int]:
        """The longest ``tokens`` row a batch can hold: a pair is ``a [SEP] b``."""
        max_len = self.tokenizer_spec.max_len
        return (2 * max_len + 1,) if self.pair else (max_len,)

    @property
    def pair(self) -> bool:
        self.setup()
        assert self.corpus is not None
        return self.corpus.pair

    def prepare_data(self) -> None:
        self.setup()  # once per node: fills the cache, so other ranks' setup reads it

    def setup(self, stage: str | None = None) -> None:
        if self.corpus is not None:
            return
        splits = self._read()
        for name in ("train", "test", *(["val"] if "val" in splits else [])):
            if name not in splits or splits[name].labels is None:
                raise DataError(
                    f"{self.name}: the {name!r} split has no labels; it cannot be trained or scored"
                )
        started = time.perf_counter()
        self.corpus = encode_cached(
            self.cache_dir, self.tokenizer_spec, {n: s.texts for n, s in splits.items()}, fit_on="train"
        )
        self.tokenize_s = time.perf_counter() - started
        log.info(
            "%s: %s in %.2f s (%s)",
            self.name,
            "read the encoded splits from the cache"
            if self.corpus.cache_hit
            else "fit the tokenizer and encoded",
            self.tokenize_s,
            self.corpus.path,
        )
        full = {name: self._dataset(name, split) for name, split in splits.items()}
        own_val = "val" in splits  # the subclass read a val file: it is val exactly, nothing held out
        train, holdout = self._holdout(len(full["train"]), own_val)
        self.datasets = dict(full)
        self.datasets["train"] = _subset(full["train"], train)
        self.texts = {name: split.texts for name, split in splits.items()}
        self.texts["train"] = self.train_texts = [splits["train"].texts[i] for i in train.tolist()]
        if not own_val:
            self.datasets["val"] = _subset(full["train"], holdout)
            self.texts["val"] = [splits["train"].texts[i] for i in holdout.tolist()]
        self.ids = {name: split.ids for name, split in splits.items()}

    def _dataset(self, name: str, split: TextSplit) -> TextDataset:
        assert self.corpus is not None
        labels: list[int] | list[float] | Tensor = (
            split.labels if split.labels is not None else [0] * len(split.ids)
        )
        if self.num_classes == 1:
            labels = torch.tensor(labels, dtype=torch.float32)
        return TextDataset.from_split(self.corpus[name], labels)

    def _holdout(self, n: int, own_val: bool = False) -> tuple[Tensor, Tensor]:
        """Seeded train/holdout indices (no holdout with ``own_val``, a val file); ``train_subset``
        shrinks train only, never the holdout."""
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.split_seed))
        n_holdout = 0 if own_val else max(1, round(n * self.holdout_fraction))
        if n_holdout >= n:
            raise DataError(f"{self.name}: {n} training examples are too few to hold out a validation split")
        holdout, train = order[:n_holdout], order[n_holdout:]
        if self.train_subset is not None:
            train = train[: self.train_subset]
        return train.sort().values, holdout.sort().values

    def sizes(self) -> dict[str, int]:
        self.setup()
        return {name: len(dataset) for name, dataset in self.datasets.items()}

    def dataset_splits(self, name: str) -> dict[str, DataSplit]:
        """Each split digested from its token ids and labels, so the digest follows the texts, the
        holdout and the fitted tokenizer. Named by the datamodule (``glue/sst2``), not by ``name``."""
        self.setup()
        return {
            split: DataSplit(
                self.name,
                str(self.data_dir),
                tensor_digest(*sequence_tensors(data.a), *sequence_tensors(data.b), data.labels),
                len(data),
            )
            for split, data in self.datasets.items()
        }

    def tracking_params(self) -> dict[str, Any]:
        """Tokenizer facts a run records beside its spec (the vocabulary is fit on the data)."""
        self.setup()
        assert self.corpus is not None
        return {
            "data.vocab_size": self.corpus.tokenizer.vocab_size,
            "data.cache_key": self.corpus.key[:16],
            "data.cache_hit": self.corpus.cache_hit,
        }

    def token_inputs(self) -> dict[str, Any]:
        """What a text model is built with: its vocabulary size, the pad id and whether inputs are pairs."""
        self.setup()
        assert self.corpus is not None
        return {"vocab_size": self.corpus.tokenizer.vocab_size, "pad_id": 0, "pair": self.corpus.pair}

    # ---- loaders -----------------------------------------------------------------------------

    def _loader(self, name: str, train: bool) -> DataLoader:
        self.setup()
        rank, world_size = trainer_rank(self.trainer)
        return make_loader(
            self.datasets[name],
            self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            seed=self.seed,
            rank=rank,
            world_size=world_size,
            pad_shards=train,  # DDP needs equal step counts; evaluation must count each example once
            with_index=train and self.index_train_batches,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader | list[DataLoader]:
        loaders = [self._loader(name, train=False) for name in self.eval_splits]
        return loaders[0] if len(loaders) == 1 else loaders

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.prediction_splits[0] if self.prediction_splits else "test", train=False)

    @property
    def prediction_splits(self) -> list[str]:
        """The unlabelled splits present ("predict", and "predict_mismatched" for MNLI)."""
        self.setup()
        return [name for name in self.datasets if name.startswith("predict")]

    def prediction_loader(self, split: str) -> DataLoader:
        """Batches of ``split`` in file order (``ids[split]`` lines up with the predictions)."""
        return self._loader(split, train=False)

    def submission_file(self, split: str) -> str:
        return f"{split}.tsv"

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        trainer = self.trainer
        if not (self.augment and self.word_dropout > 0 and trainer is not None and trainer.training):
            return batch
        inputs, *rest = batch  # labels, and example indices when asked for
        return word_dropout(inputs, self.word_dropout), *rest

    # ---- a teacher's view of another run's examples (distillation) ------------------------------

    def train_examples(self) -> list[str] | list[tuple[str, str]]:
        """The raw training examples, in the order of the training dataset (its indices)."""
        self.setup()
        return self.train_texts

    def batches_for(self, examples: Sequence[Any], batch_size: int) -> Iterator[dict[str, Tensor]]:
        """``examples`` (raw texts, maybe another run's) as this datamodule's model inputs, in order,
        encoded by this datamodule's own tokenizer."""
        self.setup()
        assert self.corpus is not None
        pair = self.corpus.pair
        if examples and isinstance(examples[0], (tuple, list)) != pair:
            raise DataError(
                f"{self.name} reads {'sentence pairs' if pair else 'single sentences'} but the examples "
                f"are {'pairs' if not pair else 'single sentences'}"
            )
        tokenizer = self.corpus.tokenizer
        for start in range(0, len(examples), batch_size):
            chunk = examples[start : start + batch_size]
            columns = [[a for a, _ in chunk], [b for _, b in chunk]] if pair else [list(chunk)]
            encoded = [TokenSequences.from_lists(tokenizer.encode(column)) for column in columns]
            dataset = TextDataset(encoded[0], torch.zeros(len(chunk), dtype=torch.long), *encoded[1:])
            yield dataset.batch(torch.arange(len(chunk)))[0]

    def sample_batch(self, n: int) -> tuple[dict[str, Tensor], Tensor, list[list[str]]]:
        """The first ``n`` examples of the reported split: the batch, labels and each row's tokens."""
        self.setup()
        assert self.corpus is not None
        dataset = self.datasets["test"]
        inputs, labels = dataset.batch(torch.arange(min(n, len(dataset))))
        tokenizer = self.corpus.tokenizer
        pair = self.corpus.pair
        rows = []
        for ids, length in zip(inputs["tokens"], inputs["lengths"], strict=True):
            # a pair's separator is SEP_ID whatever the tokenizer's own vocabulary calls that id
            rows.append(
                [
                    "[SEP]" if pair and i == SEP_ID else tokenizer.id_to_token(i) or "?"
                    for i in ids[: int(length)].tolist()
                ]
            )
        return inputs, labels, rows


def default_cache_dir() -> Path:
    """``$LITBENCH_CACHE_DIR/text``, else ``~/.cache/litbench/text``: never inside the data directory,
    which may be a read-only or shared copy of the data sets. Entries are keyed by content hashes, so
    one cache serves every project and data directory safely."""
    root = os.environ.get("LITBENCH_CACHE_DIR") or Path.home() / ".cache" / "litbench"
    return Path(root) / "text"


def word_dropout(inputs: dict[str, Tensor], p: float) -> dict[str, Tensor]:
    """A copy of ``inputs`` whose real (non-special) tokens became [UNK] with probability ``p``."""
    out = dict(inputs)
    for key in TOKEN_KEYS:
        if key in inputs:
            tokens = inputs[key]
            drop = (torch.rand(tokens.shape, device=tokens.device) < p) & (tokens >= len(SPECIALS))
            out[key] = tokens.masked_fill(drop, UNK_ID)
    return out


def _subset(dataset: TextDataset, index: Tensor) -> TextDataset:
    b = None if dataset.b is None else take(dataset.b, index)
    return TextDataset(take(dataset.a, index), dataset.labels[index], b)


def take(sequences: TokenSequences, index: Tensor) -> TokenSequences:
    """Sequences ``index`` of ``sequences``, in that order, in a few tensor ops (no per-row Python)."""
    starts, lengths = sequences.offsets[index], sequences.lengths()[index]
    offsets = torch.cat([lengths.new_zeros(1), lengths.cumsum(0)])
    within = torch.arange(int(offsets[-1])) - torch.repeat_interleave(offsets[:-1], lengths)
    return TokenSequences(sequences.flat[torch.repeat_interleave(starts, lengths) + within], offsets)


@DATAMODULES.register("text_classification")
class TextClassificationFiles(TextClassificationDataModule):
    """Your own corpus: a train file and a test file (.csv, .tsv or .jsonl), optional unlabelled
    predict file. Paths are relative to the data directory unless absolute. Columns are header names
    or 0-based positions; labels are class names or integer ids (``regression``: float scores).

    ``val_file`` (optional, labelled like train) is the validation split exactly, and nothing is held
    out of train; without it val is a seeded ``holdout_fraction`` of train, never of test."""

    # an option that never changed training, removed; kept in run identities at the value every run had
    retired_options: ClassVar[dict[str, Any]] = {"max_epochs": 10}
    # options added since, at the default that leaves a run as it was before they existed
    added_options: ClassVar[dict[str, Any]] = {"val_file": None}

    def __init__(
        self,
        data_dir: str = "./data",
        seed: int = 0,
        augment: bool = False,
        train_file: str = "train.csv",
        test_file: str = "test.csv",
        predict_file: str | None = None,
        val_file: str | None = None,  # the validation split exactly; None: holdout_fraction of train
        text_column: str | int = "text",
        text_pair_column: str | int | None = None,
        label_column: str | int = "label",
        header: bool = True,
        regression: bool = False,
        metric: Literal["acc", "f1", "mcc", "pearson", "spearman", "mse"] | None = None,
        tokenizer: TokenizerSpec | None = None,
        batch_size: int = 64,
        eval_batch_size: int = 256,
        holdout_fraction: float = 0.1,
        split_seed: int = 0,
        train_subset: int | None = None,
        word_dropout: float = 0.1,
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
        if val_file is not None and not val_file.strip():
            raise ValueError("val_file is an empty name; name your validation file, or drop val_file")
        if val_file is not None and val_file in (train_file, test_file):
            role = "train_file" if val_file == train_file else "test_file"
            raise ValueError(
                f"val_file is {val_file!r}, the same file as {role}; validation needs examples of its "
                "own (drop val_file to hold out holdout_fraction of train)"
            )
        self.files = (
            {"train": train_file, "test": test_file}
            | ({"val": val_file} if val_file else {})
            | ({"predict": predict_file} if predict_file else {})
        )
        self.columns = {"text_column": text_column, "text_pair_column": text_pair_column, "header": header}
        self.label_column = label_column
        self.regression = regression
        metric = metric or ("pearson" if regression else "acc")
        extra = ("spearman",) if metric == "pearson" else ()
        # no time-to-target threshold: nothing is known of a user's corpus
        self.protocol = TaskProtocol(metric=metric, metrics=extra, target=None, max_epochs=10)
        self.num_classes = 1 if regression else 2  # set from the training labels in _read
        self.name = f"text_classification({train_file})"

    def _path(self, name: str) -> Path:
        path = Path(self.files[name])
        return path if path.is_absolute() else Path(self.data_dir) / path

    def _read(self) -> dict[str, TextSplit]:
        train = read_table(
            self._path("train"), label_column=self.label_column, regression=self.regression, **self.columns
        )
        names = train.label_names or None
        splits = {"train": _as_split(train)}
        labelled = ["test", *(["val"] if "val" in self.files else [])]
        for name in labelled:
            table = read_table(
                self._path(name),
                label_column=self.label_column,
                regression=self.regression,
                label_names=names,
                **self.columns,
            )
            splits[name] = _as_split(table)
        if "predict" in self.files:
            table = read_table(self._path("predict"), label_column=None, **self.columns)
            splits["predict"] = _as_split(table)
        if not self.regression:
            labels = [int(y) for s in ("train", *labelled) for y in splits[s].labels or []]
            self.label_names = train.label_names or tuple(str(i) for i in range(max(labels) + 1))
            self.num_classes = max(len(self.label_names), 2)
        return splits


def _as_split(table: Any) -> TextSplit:
    texts = table.texts_a if table.texts_b is None else list(zip(table.texts_a, table.texts_b, strict=True))
    return TextSplit(texts=texts, labels=table.labels, ids=table.ids)
