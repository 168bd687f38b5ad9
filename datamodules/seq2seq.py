"""Translation data: a parallel corpus, BPE subwords, and length-bucketed teacher-forcing batches.

Corpora (``corpus``): ``multi30k`` (its own train/val/test_2016_flickr splits), ``files`` (two aligned
files), ``pairs`` (a TSV/CSV of pairs, e.g. an Anki or Tatoeba export) and ``hub`` (a Hugging Face
``datasets`` corpus, e.g. ``bentrevett/multi30k`` or ``wmt/wmt14`` with ``hub_config: de-en``). Files and
pairs are one pool that a seeded split cuts into train/val/test, or the user's own split files
(``path: {train: ..., val: ..., test: ...}``, ``datamodules.parallel_splits``); a hub corpus keeps the
splits it has and cuts the missing ones out of its training split the same way. Text is lowercased
first if asked, so references match. The BPE vocabulary is fit on the training split only, shared by
both languages (``joint``) or one per side, and every split is encoded through the on-disk cache of
``datamodules.encoded_text``.

Special ids are the text tokenizers' own (``datamodules.text_tokenizers.SPECIALS``): pad=0, unk=1, and the
sentence markers ``[CLS]`` (id 3) as beginning-of-sentence and ``[SEP]`` (id 2) as end-of-sentence,
as BERT brackets a segment. A batch is a dict of int64 tensors:

- ``src`` [B, S]: source ids, right-padded with ``pad_id``; ``src_lengths`` [B];
- ``tgt_in`` [B, T]: ``bos + target`` (the decoder input); ``tgt_out`` [B, T]: ``target + eos`` (what
  it predicts), both padded with ``pad_id``; ``tgt_lengths`` [B]: non-pad length of both (target + 1);
- ``index`` [B]: each row's position in its split, so ``references(split)[index[i]]`` is its raw target.

Only training pairs are filtered: pairs with a side longer than ``max_len`` subword tokens, or a blank
side. Validation and test are never filtered, so scores are comparable across settings.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import lightning
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from core.datasets import DataSplit, tensor_digest
from core.metrics import TaskProtocol
from datamodules.download import DataError
from datamodules.encoded_text import EncodedCorpus, TokenSequences, encode_cached, sequence_tensors
from datamodules.parallel_files import (
    ParallelText,
    check_columns,
    read_aligned,
    read_multi30k,
    read_pairs,
)
from datamodules.parallel_hub import read_hub
from datamodules.parallel_splits import check_split_paths, read_splits, rows, split_pool
from datamodules.registry import DATAMODULES
from datamodules.sharding import trainer_rank
from datamodules.text_batches import BatchesDataset, BucketBatchSampler, as_is, gather
from datamodules.text_classification import default_cache_dir, take
from datamodules.text_tokenizers import CLS_ID, PAD_ID, SEP_ID, SPECIALS, UNK_ID, TextTokenizer, TokenizerSpec

log = logging.getLogger(__name__)

BOS_ID, EOS_ID = CLS_ID, SEP_ID  # [CLS] opens a sentence and [SEP] closes it, as in BERT
TRUNCATE_LEN = 1024  # tokens the tokenizer keeps per sentence: a guard against a runaway line, not a filter
SPLITS = ("train", "val", "test")

CorpusKind = Literal["multi30k", "files", "pairs", "hub"]


class ParallelDataset(Dataset):
    """Examples ``(src ids, tgt ids)`` (int32 views, no specials); ``batch`` builds a whole batch."""

    def __init__(self, src: TokenSequences, tgt: TokenSequences) -> None:
        if len(src) != len(tgt):
            raise ValueError(f"{len(src)} source sentences but {len(tgt)} targets")
        self.src, self.tgt = src, tgt

    @property
    def lengths(self) -> Tensor:
        """int64 ``[N]``: source plus target length, the bucket sampler's sort key."""
        return self.src.lengths() + self.tgt.lengths()

    def __len__(self) -> int:
        return len(self.src)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.src.tensor(i), self.tgt.tensor(i)

    def batch(self, indices: Sequence[int] | Tensor) -> dict[str, Tensor]:
        """Rows ``indices`` in the batch layout of the module docstring, in a few tensor ops."""
        index = torch.as_tensor(indices, dtype=torch.long)
        if index.ndim != 1 or len(index) == 0:
            raise ValueError(f"a batch needs a non-empty 1-D list of indices, got shape {list(index.shape)}")
        if int(index.min()) < 0 or int(index.max()) >= len(self):
            raise IndexError(f"batch indices span {int(index.min())}..{int(index.max())} of {len(self)}")
        src, src_lengths = gather(self.src, index)
        tgt, tgt_lengths = gather(self.tgt, index)
        rows = len(index)
        tgt_in = torch.cat([tgt.new_full((rows, 1), BOS_ID), tgt], dim=1)
        tgt_out = torch.cat([tgt, tgt.new_full((rows, 1), PAD_ID)], dim=1)
        tgt_out[torch.arange(rows), tgt_lengths] = EOS_ID  # right after each target's last token
        return {
            "src": src,
            "src_lengths": src_lengths,
            "tgt_in": tgt_in,
            "tgt_out": tgt_out,
            "tgt_lengths": tgt_lengths + 1,
            "index": index,
        }


@DATAMODULES.register("translation")
class ParallelCorpusDataModule(lightning.LightningDataModule):
    """A translation task from ``source_lang`` to ``target_lang``; see the module docstring.

    Paths are relative to ``data_dir`` unless absolute. ``multi30k`` reads the folder ``path``
    (default ``multi30k``); ``files`` reads ``source_file`` and ``target_file`` (default
    ``<path>.<lang>``, e.g. ``europarl.de``); ``pairs`` reads the file ``path``, taking the columns
    ``source_column`` and ``target_column`` (an Anki ``fra.txt`` is English in 0, French in 1; a
    Tatoeba pair download has its texts in 1 and 3); ``hub`` loads the data set ``path`` (a hub name or
    a local dataset folder), configuration ``hub_config``, with HF ``datasets``.

    Your own splits (``files`` and ``pairs``): ``path`` maps splits to files, each read as a single
    ``path`` is (``files``: the prefix of ``<prefix>.<lang>``; ``pairs``: a TSV/CSV of pairs)::

        path: {train: europarl, test: newstest2013}                # val: val_fraction of train
        path: {train: train.tsv, val: dev.tsv, test: test.tsv}     # each split exactly its file

    A test file is the test split line for line, in file order; val is never cut from it.
    ``test_fraction`` applies only to a single pool; ``val_fraction`` only where no val file is given.
    """

    pad_id, unk_id, bos_id, eos_id = PAD_ID, UNK_ID, BOS_ID, EOS_ID
    task_kind: ClassVar[str] = "translation"  # the task kind in tasks.TASKS that trains it
    # BLEU on the test split; no time-to-target threshold (none is known per corpus yet)
    protocol: ClassVar[TaskProtocol] = TaskProtocol(
        metric="bleu", metrics=("chrf",), target=None, max_epochs=20
    )
    # an option that never changed training, removed; kept in run identities at the value every run had
    retired_options: ClassVar[dict[str, Any]] = {"max_epochs": 20}

    def __init__(
        self,
        data_dir: str = "./data",
        seed: int = 0,
        corpus: CorpusKind = "multi30k",
        source_lang: str = "de",
        target_lang: str = "en",
        path: str | dict[str, str] | None = None,  # files/pairs: one pool, or {train, val, test} files
        source_file: str | None = None,
        target_file: str | None = None,
        source_column: int = 0,
        target_column: int = 1,
        delimiter: str
        | None = None,  # pairs: None picks it from the suffix (tab for .tsv/.txt, comma for .csv)
        header: bool = False,  # pairs: the first line names the columns
        hub_config: str | None = None,  # hub: the data set's configuration, e.g. "de-en" for wmt/wmt14
        lowercase: bool = False,
        max_len: int | None = 100,  # training pairs with a side over this many subword tokens are dropped
        val_fraction: float = 0.05,  # files/pairs only: Multi30k has its own splits
        test_fraction: float = 0.05,
        split_seed: int = 0,
        vocab_size: int = 8000,  # per vocabulary, specials included
        joint: bool = True,  # one vocabulary for both languages; False: one per side
        batch_size: int = 64,
        eval_batch_size: int = 128,
        cache_dir: str | None = None,
        augment: bool = False,
    ) -> None:
        super().__init__()
        if augment:
            raise ValueError(
                "regularization.augment has no policy for translation (token noise would corrupt the "
                "references); set it to false and regularize with dropout or label smoothing"
            )
        if corpus not in ("multi30k", "files", "pairs", "hub"):
            raise ValueError(f"corpus must be 'multi30k', 'files', 'pairs' or 'hub', got {corpus!r}")
        if corpus == "hub" and not path:
            raise ValueError("corpus='hub' needs path: the data set's hub name, e.g. bentrevett/multi30k")
        if corpus in ("multi30k", "hub") and source_lang == target_lang:
            raise ValueError(f"source_lang and target_lang are both {source_lang!r}; pick two languages")
        if isinstance(path, dict):
            if corpus not in ("files", "pairs"):
                raise ValueError(
                    f"path names split files only for corpus 'files' or 'pairs'; corpus={corpus!r} "
                    f"reads one {'folder' if corpus == 'multi30k' else 'data set'}, so give path as a string"
                )
            check_split_paths(path, corpus)
            if source_file or target_file:
                raise ValueError(
                    "source_file and target_file name one pool, and path names split files; give each "
                    "split's prefix in path (read as <prefix>.<lang>) and drop source_file and target_file"
                )
        if corpus == "files" and not (source_file and target_file) and not path:
            raise ValueError(
                "corpus='files' needs source_file and target_file, or path (read as <path>.<lang>, or "
                "{train: <prefix>, val: <prefix>, test: <prefix>})"
            )
        if corpus == "pairs":
            if not path:
                raise ValueError("corpus='pairs' needs path: the TSV/CSV file of pairs")
            check_columns(source_column, target_column)
        if max_len is not None and max_len < 1:
            raise ValueError(f"max_len must be at least 1 (or None for no filter), got {max_len}")
        if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
            raise ValueError(
                f"val_fraction and test_fraction must be in (0, 1) with a sum below 1, got {val_fraction} "
                f"and {test_fraction}"
            )
        if batch_size < 1 or eval_batch_size < 1:
            raise ValueError(f"batch sizes must be at least 1, got {batch_size} and {eval_batch_size}")
        self.data_dir = data_dir
        self.seed = seed  # the training shuffle; the split depends on split_seed only
        self.corpus = corpus
        self.source_lang, self.target_lang = source_lang, target_lang
        self.path = path
        self.source_file, self.target_file = source_file, target_file
        self.source_column, self.target_column = source_column, target_column
        self.delimiter, self.header = delimiter, header
        self.hub_config = hub_config
        self.lowercase = lowercase
        self.max_len = max_len
        self.val_fraction, self.test_fraction, self.split_seed = val_fraction, test_fraction, split_seed
        self.tokenizer_spec = TokenizerSpec(
            kind="bpe", lowercase=False, vocab_size=vocab_size, max_len=TRUNCATE_LEN
        )  # lowercase=False: lowercasing happens on the raw text, so the references get it too
        self.joint = joint
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.name = f"translation/{corpus}-{source_lang}-{target_lang}"
        self.corpora: tuple[EncodedCorpus, ...] = ()  # (joint,) or (source, target)
        self.tokenize_s: float | None = None  # wall time of the last encode (a cache hit: reading it)
        self.filtered = 0  # training pairs dropped by max_len or a blank side
        self.datasets: dict[str, ParallelDataset] = {}
        self.texts: dict[str, ParallelText] = {}

    # ---- reading -----------------------------------------------------------------------------

    def _resolve(self, name: str) -> Path:
        path = Path(name)
        return path if path.is_absolute() else Path(self.data_dir) / path

    def _read(self) -> dict[str, ParallelText]:
        """Splits train, val and test of raw (lowercased if asked) sentences, in file order."""
        if self.corpus == "multi30k":
            splits = read_multi30k(self._resolve(self.path or "multi30k"), self.source_lang, self.target_lang)
        elif self.corpus == "hub":
            assert self.path is not None
            splits = read_hub(self.path, self.hub_config, self.source_lang, self.target_lang)
            if len(splits) < len(SPLITS):  # cut the missing splits out of train, as for files
                cut = self._split(splits.pop("train"))
                splits = {"train": cut["train"], **{n: splits.get(n, cut[n]) for n in ("val", "test")}}
        else:
            path = self.path or ""  # files given by source_file and target_file alone: one pool
            splits = read_splits(
                self._read_file, path, self.val_fraction, self.test_fraction, self.split_seed, self.name
            )
        if self.lowercase:
            splits = {
                n: ParallelText([s.lower() for s in t.sources], [s.lower() for s in t.targets])
                for n, t in splits.items()
            }
        return splits

    def _read_file(self, path: str) -> ParallelText:
        """One pool or split: ``files`` reads ``<path>.<lang>`` (or source_file/target_file), ``pairs``
        the delimited file ``path``."""
        if self.corpus == "files":
            source = self.source_file or f"{path}.{self.source_lang}"
            target = self.target_file or f"{path}.{self.target_lang}"
            return read_aligned(self._resolve(source), self._resolve(target))
        return read_pairs(
            self._resolve(path),
            self.source_column,
            self.target_column,
            delimiter=self.delimiter,
            header=self.header,
        )

    def _split(self, pool: ParallelText) -> dict[str, ParallelText]:
        """A seeded train/val/test partition of ``pool``; each split keeps file order."""
        return split_pool(pool, self.val_fraction, self.test_fraction, self.split_seed, self.name)

    # ---- setup -------------------------------------------------------------------------------

    def prepare_data(self) -> None:
        self.setup()  # once per node: fills the cache, so other ranks' setup reads it

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        texts = self._read()
        for name in SPLITS:
            if not len(texts[name]):
                raise DataError(f"{self.name}: the {name!r} split has no pairs")
        started = time.perf_counter()
        if self.joint:
            joint = encode_cached(self.cache_dir, self.tokenizer_spec, {n: t.pairs for n, t in texts.items()})
            self.corpora = (joint,)
            encoded = {n: (joint[n].a, joint[n].b) for n in SPLITS}  # b: the targets, never None here
        else:
            src = encode_cached(self.cache_dir, self.tokenizer_spec, {n: t.sources for n, t in texts.items()})
            tgt = encode_cached(self.cache_dir, self.tokenizer_spec, {n: t.targets for n, t in texts.items()})
            self.corpora = (src, tgt)
            encoded = {n: (src[n].a, tgt[n].a) for n in SPLITS}
        self.tokenize_s = time.perf_counter() - started
        log.info(
            "%s: %s in %.2f s",
            self.name,
            "read the cached encoding" if self.cache_hit else "fit BPE and encoded",
            self.tokenize_s,
        )
        src_train, tgt_train = encoded["train"]
        assert tgt_train is not None
        keep = self._keep(texts["train"], src_train, tgt_train)
        self.filtered = len(texts["train"]) - len(keep)
        if not len(keep):
            raise DataError(f"{self.name}: max_len={self.max_len} drops every training pair; raise it")
        if self.filtered:
            log.info("%s: dropped %d of %d training pairs", self.name, self.filtered, len(texts["train"]))
        encoded["train"] = (take(src_train, keep), take(tgt_train, keep))
        texts["train"] = rows(texts["train"], keep.tolist())
        self.texts = texts
        self.datasets = {n: ParallelDataset(*encoded[n]) for n in SPLITS}  # type: ignore[arg-type]

    def _keep(self, text: ParallelText, src: TokenSequences, tgt: TokenSequences) -> Tensor:
        """Training rows kept: both sides non-blank and at most ``max_len`` tokens."""
        keep = torch.tensor(
            [bool(s.strip() and t.strip()) for s, t in zip(text.sources, text.targets, strict=True)]
        )
        if self.max_len is not None:
            keep &= (src.lengths() <= self.max_len) & (tgt.lengths() <= self.max_len)
        return keep.nonzero().flatten()

    @property
    def cache_hit(self) -> bool:
        """Whether the last setup read every encoding from the cache (nothing was fit or tokenized)."""
        return bool(self.corpora) and all(c.cache_hit for c in self.corpora)

    @property
    def src_tokenizer(self) -> TextTokenizer:
        self.setup()
        return self.corpora[0].tokenizer

    @property
    def tgt_tokenizer(self) -> TextTokenizer:
        self.setup()
        return self.corpora[-1].tokenizer

    @property
    def src_vocab_size(self) -> int:
        return self.src_tokenizer.vocab_size

    @property
    def tgt_vocab_size(self) -> int:
        return self.tgt_tokenizer.vocab_size

    def sizes(self) -> dict[str, int]:
        self.setup()
        return {name: len(dataset) for name, dataset in self.datasets.items()}

    def references(self, split: str) -> list[str]:
        """The raw target sentences of ``split`` (lowercased if asked), row ``i`` for batch index ``i``."""
        self.setup()
        return list(self.texts[split].targets)

    def sources(self, split: str) -> list[str]:
        self.setup()
        return list(self.texts[split].sources)

    def token_inputs(self) -> dict[str, Any]:
        """What a translation model is built with: vocabulary sizes and the special ids."""
        return {
            "src_vocab_size": self.src_vocab_size,
            "tgt_vocab_size": self.tgt_vocab_size,
            "pad_id": self.pad_id,
            "bos_id": self.bos_id,
            "eos_id": self.eos_id,
        }

    def dataset_splits(self, name: str) -> dict[str, DataSplit]:
        """Each split digested from its source and target ids (after the max_len filter), for the
        run's dataset inputs; named by the datamodule, sourced from the hub or the data folder."""
        self.setup()
        hub = self.corpus == "hub"
        where = self.path if isinstance(self.path, str) else None
        source = where if hub and where else str(Path(self.data_dir, where or ""))
        return {
            split: DataSplit(
                self.name,
                source,
                tensor_digest(*sequence_tensors(data.src), *sequence_tensors(data.tgt)),
                len(data),
                "hugging_face" if hub else "local",
            )
            for split, data in self.datasets.items()
        }

    def tracking_params(self) -> dict[str, Any]:
        """Tokenizer facts a run records beside its spec (the vocabulary is fit on the data)."""
        self.setup()
        return {
            "data.src_vocab_size": self.src_vocab_size,
            "data.tgt_vocab_size": self.tgt_vocab_size,
            "data.cache_key": "+".join(c.key[:16] for c in self.corpora),
            "data.cache_hit": self.cache_hit,
            "data.filtered": self.filtered,
        }

    # ---- text <-> ids ------------------------------------------------------------------------

    def encode(self, texts: Sequence[str], side: Literal["source", "target"] = "source") -> list[list[int]]:
        """Ids of ``texts`` as a batch holds them (no bos/eos), lowercased first if the corpus is."""
        tokenizer = self.src_tokenizer if side == "source" else self.tgt_tokenizer
        return tokenizer.encode([t.lower() for t in texts] if self.lowercase else list(texts))

    def decode(self, ids: Sequence[int] | Tensor) -> str:
        """The target text of ``ids``: cut at the first eos, special tokens (pad, unk, bos) skipped."""
        values = ids.tolist() if isinstance(ids, Tensor) else list(ids)
        if EOS_ID in values:
            values = values[: values.index(EOS_ID)]
        return self.tgt_tokenizer.decode([i for i in values if i >= len(SPECIALS)])

    def decode_batch(self, ids: Tensor | Sequence[Sequence[int]]) -> list[str]:
        """``decode`` of each row of ``ids`` [B, T]."""
        return [self.decode(row) for row in ids]

    # ---- loaders -----------------------------------------------------------------------------

    def _loader(self, name: str, train: bool) -> DataLoader:
        self.setup()
        rank, world_size = trainer_rank(self.trainer)
        dataset = self.datasets[name]
        sampler = BucketBatchSampler(
            dataset.lengths,
            self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            seed=self.seed,
            rank=rank,
            world_size=world_size,
            pad_shards=train,  # DDP needs equal step counts; evaluation must count each pair once
        )
        # the sampler yields whole index lists; ParallelDataset.batch gathers each in a few tensor ops
        return DataLoader(BatchesDataset(dataset), sampler=sampler, batch_size=None, collate_fn=as_is)  # type: ignore[arg-type]

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)
