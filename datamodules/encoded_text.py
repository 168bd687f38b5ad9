"""Encoded splits and their on-disk cache: each split's ids, stored flat, keyed by spec and texts.

Tokenizing a GLUE task in Python takes seconds to minutes, so encoded splits are cached under a
sha256 of the tokenizer spec and every input text: changed data or settings can never reuse stale ids.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from datamodules.atomic import atomic_write
from datamodules.download import DataError
from datamodules.text_tokenizers import (
    CACHE_VERSION,
    PretrainedTokenizer,
    TextTokenizer,
    TokenizerSpec,
    build_tokenizer,
)

log = logging.getLogger(__name__)

CACHE_FORMAT = "litbench-encoded-text"

Pair = tuple[str, str]


class TokenSequences(Sequence[list[int]]):
    """Variable-length id sequences stored flat: int32 ids and int64 offsets, 4 bytes a token.

    Lists of Python ints cost about 36 bytes a token; the larger GLUE tasks have tens of millions.
    Sequence ``i`` is ``flat[offsets[i]:offsets[i + 1]]``.
    """

    def __init__(self, flat: Tensor, offsets: Tensor) -> None:
        if flat.dtype != torch.int32 or flat.ndim != 1:
            raise ValueError(f"flat ids must be a 1-D int32 tensor, got {flat.dtype} {list(flat.shape)}")
        if offsets.dtype != torch.int64 or offsets.ndim != 1 or len(offsets) == 0:
            raise ValueError(f"offsets must be a non-empty 1-D int64 tensor, got {offsets.dtype}")
        if offsets[0] != 0 or offsets[-1] != len(flat) or bool((offsets.diff() < 0).any()):
            raise ValueError(f"offsets must rise from 0 to {len(flat)} (the number of ids)")
        self.flat, self.offsets = flat, offsets

    @classmethod
    def from_lists(cls, sequences: Sequence[Sequence[int]]) -> TokenSequences:
        sizes = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
        offsets = np.concatenate([np.zeros(1, np.int64), np.cumsum(sizes)])
        flat = np.fromiter(chain.from_iterable(sequences), dtype=np.int32, count=int(offsets[-1]))
        return cls(torch.from_numpy(flat), torch.from_numpy(offsets))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def tensor(self, i: int) -> Tensor:
        """Sequence ``i`` as an int32 view into the flat ids (no copy)."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"sequence {i} of {len(self)}")
        i %= len(self)
        return self.flat[self.offsets[i] : self.offsets[i + 1]]

    def __getitem__(self, i: int | slice) -> Any:  # list[int] for an int, list[list[int]] for a slice
        if isinstance(i, slice):
            return [self.tensor(j).tolist() for j in range(*i.indices(len(self)))]
        return self.tensor(i).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        for i in range(len(self)):
            yield self.tensor(i).tolist()

    def lengths(self) -> Tensor:
        """int64 ``[N]``: the number of ids in each sequence."""
        return self.offsets.diff()

    def tolist(self) -> list[list[int]]:
        return list(self)


@dataclass(frozen=True)
class EncodedSplit:
    """One split's ids: ``a`` per example, and ``b`` too for sentence-pair tasks."""

    a: TokenSequences
    b: TokenSequences | None = None

    def __post_init__(self) -> None:
        if self.b is not None and len(self.b) != len(self.a):
            raise ValueError(f"{len(self.a)} first sentences but {len(self.b)} second ones")

    @property
    def pair(self) -> bool:
        return self.b is not None

    def __len__(self) -> int:
        return len(self.a)

    def lengths(self) -> Tensor:
        """int64 ``[N]``: the length of each example's ``tokens`` row (``a [SEP] b`` for pairs)."""
        return self.a.lengths() if self.b is None else self.a.lengths() + 1 + self.b.lengths()


@dataclass(frozen=True)
class EncodedCorpus:
    """The result of ``encode_cached``: the fitted tokenizer and every split's ids."""

    tokenizer: TextTokenizer
    splits: dict[str, EncodedSplit]
    pair: bool
    cache_hit: bool  # True: read from ``path``; nothing was fit or tokenized
    path: Path
    key: str

    def __getitem__(self, name: str) -> EncodedSplit:
        return self.splits[name]


# ---- the cache ----------------------------------------------------------------------------------


def _check_splits(splits: Mapping[str, Sequence[str] | Sequence[Pair]], fit_on: str) -> bool:
    """Whether the splits hold sentence pairs; bad items raise DataError naming split and position."""
    if fit_on not in splits:
        raise ValueError(f"fit_on={fit_on!r} is not a split; the splits are {list(splits)}")
    if not splits[fit_on]:
        raise DataError(f"split {fit_on!r} is empty; the tokenizer has nothing to fit on")
    first = splits[fit_on][0]
    pair = isinstance(first, (tuple, list))
    for name, items in splits.items():
        if isinstance(items, str):
            raise TypeError(f"split {name!r} is one str; give a sequence of texts")
        for i, item in enumerate(items):
            if pair:
                ok = (
                    isinstance(item, (tuple, list))
                    and len(item) == 2
                    and all(isinstance(t, str) for t in item)
                )
            else:
                ok = isinstance(item, str)
            if not ok:
                expected = "a (str, str) pair" if pair else "a str"
                raise DataError(f"split {name!r} item {i} is {item!r}, expected {expected} like {first!r}")
    return pair


def _columns(items: Sequence[str] | Sequence[Pair], pair: bool) -> list[Sequence[str]]:
    """``[texts]``, or ``[first sentences, second sentences]`` for pairs."""
    if not pair:
        return [items]  # type: ignore[list-item]
    return [[a for a, _ in items], [b for _, b in items]]  # type: ignore[misc]


def cache_key(
    spec: TokenizerSpec, splits: Mapping[str, Sequence[str] | Sequence[Pair]], fit_on: str = "train"
) -> str:
    """sha256 over the spec, the library doing BPE, and every text of every split, in order."""
    return _cache_key(spec, splits, fit_on, _check_splits(splits, fit_on))


def _cache_key(
    spec: TokenizerSpec, splits: Mapping[str, Sequence[str] | Sequence[Pair]], fit_on: str, pair: bool
) -> str:
    header = {
        "cache_version": CACHE_VERSION,
        "spec": spec.model_dump(),
        "fit_on": fit_on,
        "pair": pair,
        # another tokenizers release may train different merges from the same texts
        "tokenizers": importlib.metadata.version("tokenizers") if spec.kind in ("bpe", "minilm") else None,
        "splits": [[name, len(items)] for name, items in splits.items()],
    }
    if spec.kind == "minilm":  # the vocabulary ships in a package; another release may split differently
        header["pretrained"] = PretrainedTokenizer.package_version()
    digest = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
    for items in splits.values():
        for column in _columns(items, pair):
            data = [text.encode("utf-8", "surrogatepass") for text in column]
            # the lengths make the concatenation unambiguous: ["ab", "c"] and ["a", "bc"] differ
            digest.update(np.fromiter(map(len, data), dtype=np.int64, count=len(data)).tobytes())
            digest.update(b"".join(data))
    return digest.hexdigest()


def encode_cached(
    cache_dir: str | os.PathLike[str],
    spec: TokenizerSpec,
    splits: Mapping[str, Sequence[str] | Sequence[Pair]],
    fit_on: str = "train",
) -> EncodedCorpus:
    """Every split encoded by a tokenizer fit on ``splits[fit_on]``, from the cache when it holds them.

    Splits are all texts or all ``(text_a, text_b)`` pairs; for pairs the tokenizer is fit on both
    sentences. A miss (or an unreadable cache file) fits, encodes and writes ``<cache_dir>/text-*.pt``
    through a temporary file and ``os.replace``, so a killed process never leaves half a cache.
    """
    pair = _check_splits(splits, fit_on)
    key = _cache_key(spec, splits, fit_on, pair)
    path = Path(cache_dir) / f"text-{spec.kind}-{key[:32]}.pt"
    sizes = {name: len(items) for name, items in splits.items()}
    if path.exists() and (cached := _load_cache(path, key, sizes, pair)) is not None:
        tokenizer, encoded = cached
        return EncodedCorpus(tokenizer, encoded, pair, cache_hit=True, path=path, key=key)
    fit_texts = chain.from_iterable(_columns(splits[fit_on], pair))
    tokenizer = build_tokenizer(spec, fit_texts)
    encoded = {}
    for name, items in splits.items():
        columns = [TokenSequences.from_lists(tokenizer.encode(c)) for c in _columns(items, pair)]
        encoded[name] = EncodedSplit(*columns)
    payload = {
        "format": CACHE_FORMAT,
        "key": key,
        "pair": pair,
        "tokenizer": tokenizer.to_json(),
        "splits": {name: _split_state(split) for name, split in encoded.items()},
    }
    atomic_write(path, lambda tmp: torch.save(payload, tmp))
    return EncodedCorpus(tokenizer, encoded, pair, cache_hit=False, path=path, key=key)


def _split_state(split: EncodedSplit) -> dict[str, Tensor]:
    state = {"a_ids": split.a.flat, "a_offsets": split.a.offsets}
    if split.b is not None:
        state |= {"b_ids": split.b.flat, "b_offsets": split.b.offsets}
    return state


def _load_cache(
    path: Path, key: str, sizes: dict[str, int], pair: bool
) -> tuple[TextTokenizer, dict[str, EncodedSplit]] | None:
    """The cached tokenizer and splits, or None (logged) when the file is unreadable or not this cache."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain data only
        if not isinstance(payload, dict) or payload.get("format") != CACHE_FORMAT:
            raise ValueError(f"not a {CACHE_FORMAT} file")
        if payload["key"] != key or payload["pair"] != pair or list(payload["splits"]) != list(sizes):
            raise ValueError("it holds other data than its name promises")
        tokenizer = TextTokenizer.from_json(payload["tokenizer"])
        encoded = {}
        for name, size in sizes.items():
            state = payload["splits"][name]
            names = ("a", "b") if pair else ("a",)
            columns = [TokenSequences(state[f"{c}_ids"], state[f"{c}_offsets"]) for c in names]
            for column in columns:
                if len(column) != size:
                    raise ValueError(f"split {name!r} has {len(column)} sequences, expected {size}")
                ids = column.flat
                if len(ids) and not 0 <= int(ids.min()) <= int(ids.max()) < tokenizer.vocab_size:
                    raise ValueError(f"split {name!r} has ids outside the vocabulary")
            encoded[name] = EncodedSplit(*columns)
        return tokenizer, encoded
    except Exception as err:  # truncated, garbage or foreign: rebuild, never trust it
        log.warning("text cache %s is unusable (%s: %s); rebuilding it", path, type(err).__name__, err)
        return None


def sequence_tensors(sequences: TokenSequences | None) -> tuple[Any, Any]:
    """The flat ids and offsets of ``sequences`` (None, None for an absent second text): what a
    split's digest hashes."""
    return (None, None) if sequences is None else (sequences.flat, sequences.offsets)
