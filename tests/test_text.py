"""Tokenizers, the encoded-data cache, collate's batch contract and the bucket sampler, on tiny inputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from datamodules import encoded_text
from datamodules.download import DataError
from datamodules.encoded_text import TokenSequences, encode_cached
from datamodules.text_batches import BucketBatchSampler, TextDataset, collate, collate_labeled, make_loader
from datamodules.text_tokenizers import (
    PAD_ID,
    SEP_ID,
    SPECIALS,
    UNK_ID,
    BpeTokenizer,
    TextTokenizer,
    TokenizerSpec,
    WordTokenizer,
    build_tokenizer,
    pre_tokenize,
)

CORPUS = [
    "The cat sat on the mat.",
    "A dog ran after the cat, quickly!",
    "Hello world; the world is large.",
    "the quick brown fox jumps over the lazy dog",
]
PAIRS = [("The cat sat.", "A dog ran."), ("Hello world!", "Goodbye moon?"), ("the fox", "the dog")]


def word(texts: list[str], **spec: object) -> WordTokenizer:
    tokenizer = build_tokenizer(TokenizerSpec(**spec), texts)
    assert isinstance(tokenizer, WordTokenizer)
    return tokenizer


# ---- spec ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_len", 0), ("min_freq", 0), ("max_size", 0), ("vocab_size", 4), ("kind", "char"), ("typo", 1)],
)
def test_spec_rejects_bad_values_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        TokenizerSpec(**{field: value})


def test_spec_is_frozen_and_allows_unbounded_vocabulary() -> None:
    spec = TokenizerSpec(max_size=None)
    assert spec.max_size is None
    with pytest.raises(ValueError):
        spec.max_len = 3  # type: ignore[misc]


# ---- word tokenizer -----------------------------------------------------------------------------


def test_pre_tokenize_splits_punctuation_lowercases_and_folds_compatibility_forms() -> None:
    assert pre_tokenize("Don't STOP, now!") == ["don", "'", "t", "stop", ",", "now", "!"]
    assert pre_tokenize("Don't", lowercase=False) == ["Don", "'", "t"]
    assert pre_tokenize("  a\tb\n[SEP] ﬁne ") == ["a", "b", "[", "sep", "]", "fine"]


def test_word_vocab_orders_by_count_then_alphabet() -> None:
    tokenizer = word(["b a c", "a b", "a d", "e"])  # a:3, b:2, then c, d, e once each
    assert tokenizer.tokens == [*SPECIALS, "a", "b", "c", "d", "e"]
    assert [tokenizer.token_to_id(t) for t in SPECIALS] == [0, 1, 2, 3]
    assert tokenizer.vocab_size == 9
    assert word(["z y x", "x"]).tokens[4:] == ["x", "y", "z"]  # y and z tie: alphabetical


def test_word_vocab_min_freq_and_max_size() -> None:
    texts = ["b a c", "a b", "a d", "e"]
    assert word(texts, min_freq=2).tokens[4:] == ["a", "b"]
    assert word(texts, max_size=3).tokens[4:] == ["a", "b", "c"]  # the tie c/d/e cut alphabetically
    assert word(texts, max_size=None).vocab_size == 9


def test_word_encode_unk_lowercase_truncation_and_empty() -> None:
    tokenizer = word(["the cat sat", "the dog"], max_len=3)
    the, cat = tokenizer.vocab["the"], tokenizer.vocab["cat"]
    assert tokenizer.encode(["The CAT", "the zebra", "", "  ?!", "the cat sat the dog"]) == [
        [the, cat],
        [the, UNK_ID],
        [UNK_ID],  # nothing to encode still gives one token
        [UNK_ID, UNK_ID],  # unseen punctuation
        [the, cat, tokenizer.vocab["sat"]],  # cut at max_len=3
    ]
    assert word(["Cat"], lowercase=False).encode(["Cat cat"]) == [[4, UNK_ID]]
    assert tokenizer.decode(torch.tensor([the, cat, UNK_ID, PAD_ID, PAD_ID])) == "the cat [UNK]"


def test_encode_refuses_a_single_string() -> None:
    with pytest.raises(TypeError, match="one str"):
        word(CORPUS).encode("the cat")  # type: ignore[arg-type]


def test_word_tokenizer_save_load_round_trip(tmp_path: Path) -> None:
    tokenizer = word(CORPUS, min_freq=1, max_len=5)
    tokenizer.save(tmp_path / "tok.json")
    loaded = TextTokenizer.load(tmp_path / "tok.json")
    assert isinstance(loaded, WordTokenizer)
    assert loaded.spec == tokenizer.spec and loaded.tokens == tokenizer.tokens
    assert loaded.encode(CORPUS) == tokenizer.encode(CORPUS)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match=r"bad\.json"):
        TextTokenizer.load(tmp_path / "bad.json")


# ---- BPE tokenizer ------------------------------------------------------------------------------


def test_bpe_specials_round_trip_truncation_and_determinism(tmp_path: Path) -> None:
    spec = TokenizerSpec(kind="bpe", vocab_size=60, max_len=6)
    first, second = build_tokenizer(spec, CORPUS * 3), build_tokenizer(spec, CORPUS * 3)
    assert isinstance(first, BpeTokenizer)
    assert [first.token_to_id(t) for t in SPECIALS] == [0, 1, 2, 3]
    assert first.vocab_size == 60
    assert first.to_json() == second.to_json()  # same texts, same merges

    long_spec = spec.model_copy(update={"max_len": 128})
    full = build_tokenizer(long_spec, CORPUS * 3)
    ids = full.encode(CORPUS)
    assert [full.decode(x) for x in ids] == [t.lower() for t in CORPUS]  # seen text round-trips
    assert all(len(x) <= 6 for x in first.encode(CORPUS)) and max(map(len, ids)) > 6
    assert first.encode(CORPUS) == [x[:6] for x in ids]
    assert first.encode(["", "   "]) == [[UNK_ID], [UNK_ID]]
    assert UNK_ID in full.encode(["the ø cat"])[0]  # a character never seen in training
    assert SEP_ID not in full.encode(["cat [SEP] dog"])[0]  # typed specials are text, not separators

    first.save(tmp_path / "bpe.json")
    loaded = TextTokenizer.load(tmp_path / "bpe.json")
    assert isinstance(loaded, BpeTokenizer)
    texts = [*CORPUS, "cat [SEP] dog"]
    assert loaded.encode(texts) == first.encode(texts)


def test_bpe_keeps_case_when_asked() -> None:
    tokenizer = build_tokenizer(TokenizerSpec(kind="bpe", vocab_size=100, lowercase=False), CORPUS)
    assert tokenizer.decode(tokenizer.encode(["The cat"])[0]) == "The cat"


# ---- the cache ----------------------------------------------------------------------------------


def splits_of(train: list[str]) -> dict[str, list[str]]:
    return {"train": train, "val": ["the cat ran", "a zebra"], "test": ["hello"]}


def test_cache_hit_loads_without_fitting_or_encoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = TokenizerSpec(max_len=4)
    miss = encode_cached(tmp_path, spec, splits_of(CORPUS))
    assert not miss.cache_hit and miss.path.is_file() and miss.path.parent == tmp_path
    assert list(tmp_path.iterdir()) == [miss.path]  # no temporary file left behind
    assert miss["val"].a.tolist() == miss.tokenizer.encode(["the cat ran", "a zebra"])
    assert miss["train"].b is None and not miss.pair

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cache hit must not fit or encode")

    monkeypatch.setattr(encoded_text, "build_tokenizer", refuse)
    monkeypatch.setattr(WordTokenizer, "encode", refuse)
    hit = encode_cached(tmp_path, spec, splits_of(CORPUS))
    assert hit.cache_hit and hit.path == miss.path and hit.key == miss.key
    assert isinstance(hit.tokenizer, WordTokenizer) and hit.tokenizer.tokens == miss.tokenizer.tokens
    for name in ("train", "val", "test"):
        assert hit[name].a.tolist() == miss[name].a.tolist()
        assert hit[name].a.flat.dtype == torch.int32


@pytest.mark.parametrize(
    "change",
    ["train text", "val text", "split order", "max_len", "lowercase", "kind"],
)
def test_cache_misses_when_data_or_spec_change(tmp_path: Path, change: str) -> None:
    spec = TokenizerSpec(max_len=4)
    first = encode_cached(tmp_path, spec, splits_of(CORPUS))
    splits = splits_of(CORPUS)
    if change == "train text":
        splits["train"] = [*CORPUS[:-1], CORPUS[-1] + "!"]
    elif change == "val text":
        splits["val"] = ["the cat ran", "a zebra."]
    elif change == "split order":
        splits = {"train": splits["train"], "test": splits["test"], "val": splits["val"]}
    else:
        update = {"max_len": 5, "lowercase": False, "kind": "bpe"}
        spec = spec.model_copy(update={change: update[change]})
    second = encode_cached(tmp_path, spec, splits)
    assert not second.cache_hit and second.key != first.key and second.path != first.path
    assert encode_cached(tmp_path, spec, splits).cache_hit
    if change == "max_len":
        assert max(second["train"].a.lengths()) == 5


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "other key"])
def test_corrupt_cache_is_rebuilt(tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture) -> None:
    spec = TokenizerSpec()
    good = encode_cached(tmp_path, spec, splits_of(CORPUS))
    data = good.path.read_bytes()
    if damage == "garbage":
        good.path.write_bytes(b"\x00not a torch file" * 50)
    elif damage == "truncated":
        good.path.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        good.path.write_bytes(b"")
    else:  # a complete cache of other texts under this name
        other = encode_cached(tmp_path / "other", spec, splits_of(CORPUS[:2]))
        good.path.write_bytes(other.path.read_bytes())
    rebuilt = encode_cached(tmp_path, spec, splits_of(CORPUS))
    assert not rebuilt.cache_hit and "rebuilding" in caplog.text
    assert rebuilt["train"].a.tolist() == good["train"].a.tolist()
    assert encode_cached(tmp_path, spec, splits_of(CORPUS)).cache_hit  # the rebuild overwrote it


def test_pair_cache_fits_on_both_sentences(tmp_path: Path) -> None:
    splits = {"train": PAIRS, "val": [("the moon", "a cat")]}
    corpus = encode_cached(tmp_path, TokenizerSpec(), splits)
    assert corpus.pair and len(corpus["train"]) == 3
    tokenizer = corpus.tokenizer
    assert tokenizer.token_to_id("goodbye") is not None  # only in second sentences
    assert corpus["val"].a.tolist() == tokenizer.encode(["the moon"])
    assert corpus["val"].b is not None and corpus["val"].b.tolist() == tokenizer.encode(["a cat"])
    assert corpus["val"].lengths().tolist() == [2 + 1 + 2]
    again = encode_cached(tmp_path, TokenizerSpec(), splits)
    assert again.cache_hit and again["train"].b is not None
    assert again["train"].b.tolist() == corpus["train"].b.tolist()  # type: ignore[union-attr]


def test_bad_inputs_name_the_split_and_item(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="'val' item 1"):
        encode_cached(tmp_path, TokenizerSpec(), {"train": CORPUS, "val": ["ok", None]})  # type: ignore[list-item]
    with pytest.raises(DataError, match="'train' item 2"):
        encode_cached(tmp_path, TokenizerSpec(), {"train": [*PAIRS[:2], "single"]})  # type: ignore[list-item]
    with pytest.raises(ValueError, match="fit_on='train'"):
        encode_cached(tmp_path, TokenizerSpec(), {"val": CORPUS})
    assert not list(tmp_path.iterdir())


def test_token_sequences_store_flat_int32() -> None:
    seqs = TokenSequences.from_lists([[5, 6, 7], [], [8]])
    assert seqs.flat.tolist() == [5, 6, 7, 8] and seqs.offsets.tolist() == [0, 3, 3, 4]
    assert seqs.lengths().tolist() == [3, 0, 1] and seqs[-1] == [8] and seqs[0:2] == [[5, 6, 7], []]
    with pytest.raises(ValueError, match="offsets"):
        TokenSequences(seqs.flat, torch.tensor([0, 3, 2, 4]))


# ---- batches ------------------------------------------------------------------------------------


def test_collate_single_sentences() -> None:
    batch = collate([[5, 6, 7], torch.tensor([8], dtype=torch.int32)], pair=False)
    assert set(batch) == {"tokens", "lengths", "segments"}
    assert batch["tokens"].tolist() == [[5, 6, 7], [8, PAD_ID, PAD_ID]]
    assert batch["lengths"].tolist() == [3, 1]
    assert batch["segments"].tolist() == [[0, 0, 0], [0, 0, 0]]
    assert all(t.dtype == torch.long for t in batch.values())


def test_collate_pairs() -> None:
    batch = collate([([5, 6], [7]), ([8], [9, 10, 11])], pair=True)
    assert set(batch) == {"tokens", "lengths", "segments", "tokens_a", "lengths_a", "tokens_b", "lengths_b"}
    assert batch["tokens"].tolist() == [[5, 6, SEP_ID, 7, PAD_ID], [8, SEP_ID, 9, 10, 11]]
    assert batch["lengths"].tolist() == [4, 5]
    assert batch["segments"].tolist() == [[0, 0, 0, 1, 0], [0, 0, 1, 1, 1]]
    assert batch["tokens_a"].tolist() == [[5, 6], [8, PAD_ID]]
    assert batch["lengths_a"].tolist() == [2, 1]
    assert batch["tokens_b"].tolist() == [[7, PAD_ID, PAD_ID], [9, 10, 11]]
    assert batch["lengths_b"].tolist() == [1, 3]
    assert all(t.dtype == torch.long for t in batch.values())


def test_collate_refuses_empty_sequences() -> None:
    with pytest.raises(ValueError, match="no tokens"):
        collate([[5], []], pair=False)


def test_loader_yields_batches_and_labels_covering_every_example() -> None:
    ids = [[4 + i] * (1 + i % 3) for i in range(10)]
    loader = make_loader(TextDataset(ids, list(range(10))), batch_size=4, shuffle=True, seed=1)
    seen = []
    for batch, labels in loader:
        assert labels.dtype == torch.int64
        assert batch["tokens"][:, 0].tolist() == [4 + y for y in labels.tolist()]  # labels match rows
        assert batch["lengths"].tolist() == [1 + y % 3 for y in labels.tolist()]
        seen += labels.tolist()
    assert sorted(seen) == list(range(10))

    pairs = TextDataset([[4], [5, 6]], [0.5, 1.5], b=[[7, 8], [9]])
    (batch, labels), *_ = make_loader(pairs, batch_size=2, shuffle=False, seed=0)
    assert labels.dtype == torch.float32 and labels.tolist() == [0.5, 1.5]
    assert batch["tokens"].tolist() == [[4, SEP_ID, 7, 8], [5, 6, SEP_ID, 9]]
    with pytest.raises(ValueError, match="pair"):
        make_loader(pairs, batch_size=2, shuffle=False, seed=0, pair=False)


@pytest.mark.parametrize("pair", [False, True])
def test_dataset_batch_equals_collate(pair: bool) -> None:
    generator = torch.Generator().manual_seed(0)

    def random_ids(n: int) -> list[list[int]]:
        sizes = torch.randint(1, 9, (n,), generator=generator).tolist()
        return [torch.randint(4, 50, (size,), generator=generator).tolist() for size in sizes]

    dataset = TextDataset(random_ids(30), list(range(30)), b=random_ids(30) if pair else None)
    for indices in ([3], [0, 29, 7, 7, 12], list(range(30))):
        batch, labels = dataset.batch(indices)
        expected, expected_labels = collate_labeled([dataset[i] for i in indices], pair)
        assert set(batch) == set(expected)
        for key, value in expected.items():
            assert torch.equal(batch[key], value), key
            assert batch[key].dtype == torch.long and batch[key].is_contiguous()
        assert torch.equal(labels, expected_labels)
    with pytest.raises(IndexError):
        dataset.batch([0, 30])


def test_loader_reshuffles_each_epoch_and_lets_lightning_set_it() -> None:
    dataset = TextDataset([[4 + i % 5] for i in range(40)], list(range(40)))
    loader = make_loader(dataset, batch_size=4, shuffle=True, seed=0)
    assert len(loader) == 10
    epoch0 = [labels.tolist() for _, labels in loader]
    epoch1 = [labels.tolist() for _, labels in loader]
    assert epoch0 != epoch1 and sorted(flat(epoch1)) == list(range(40))
    loader.sampler.set_epoch(0)  # what Lightning's fit loop does before each epoch
    assert [labels.tolist() for _, labels in loader] == epoch0


def test_loader_from_an_encoded_split(tmp_path: Path) -> None:
    corpus = encode_cached(tmp_path, TokenizerSpec(), {"train": PAIRS})
    dataset = TextDataset.from_split(corpus["train"], [0, 1, 0])
    assert dataset.lengths.tolist() == corpus["train"].lengths().tolist()
    batch, labels = next(iter(make_loader(dataset, batch_size=3, shuffle=False)))
    assert labels.tolist() == [0, 1, 0]
    assert batch["lengths"].tolist() == dataset.lengths.tolist()


# ---- the bucket sampler -------------------------------------------------------------------------


def flat(batches: list[list[int]]) -> list[int]:
    return [i for batch in batches for i in batch]


def test_sampler_is_seeded_and_reshuffles_each_epoch() -> None:
    lengths = torch.randint(1, 50, (100,), generator=torch.Generator().manual_seed(0))
    a = BucketBatchSampler(lengths, 8, shuffle=True, seed=3, bucket_size_multiplier=2)
    b = BucketBatchSampler(lengths, 8, shuffle=True, seed=3, bucket_size_multiplier=2)
    assert list(a) == list(b) == a.batches(0)
    assert a.epoch == 1 and list(a) == b.batches(1) != b.batches(0)  # iter() advances the epoch
    a.set_epoch(0)
    assert list(a) == b.batches(0)
    assert BucketBatchSampler(lengths, 8, shuffle=True, seed=4).batches(0) != b.batches(0)
    assert len(a) == 13 and len(a.batches(5)) == 13
    assert sorted(flat(a.batches(5))) == list(range(100))  # every sample exactly once


def test_sampler_without_shuffle_is_sequential() -> None:
    sampler = BucketBatchSampler([5, 1, 4, 2, 3], 2, shuffle=False)
    assert list(sampler) == [[0, 1], [2, 3], [4]] == list(sampler)
    dropping = BucketBatchSampler([5, 1, 4, 2, 3], 2, shuffle=False, drop_last=True)
    assert list(dropping) == [[0, 1], [2, 3]] and len(dropping) == 2


def test_sampler_batches_hold_similar_lengths() -> None:
    lengths = torch.randperm(96, generator=torch.Generator().manual_seed(1)) + 1  # distinct 1..96
    # one bucket holds everything: each batch is a run of 8 consecutive lengths
    whole = BucketBatchSampler(lengths, 8, shuffle=True, seed=0, bucket_size_multiplier=12).batches(0)
    spans = sorted((int(lengths[b].min()), int(lengths[b].max())) for b in whole)
    assert spans == [(1 + 8 * k, 8 + 8 * k) for k in range(12)]
    # buckets of 2 batches: each batch is sorted and holds the shorter or longer half of its bucket
    sampler = BucketBatchSampler(lengths, 8, shuffle=True, seed=0, bucket_size_multiplier=2)
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(96, generator=generator)
    batches = {tuple(b) for b in sampler.batches(0)}
    for bucket in order.split(16):
        ranked = bucket[torch.sort(lengths[bucket], stable=True).indices].tolist()
        assert tuple(ranked[:8]) in batches and tuple(ranked[8:]) in batches

    def padded(batches: list) -> int:  # tokens in the padded batches
        return sum(len(b) * int(lengths[b].max()) for b in batches)

    unsorted = padded(list(order.split(8)))
    assert padded(whole) == 8 * sum(range(8, 97, 8)) < 0.7 * unsorted
    assert padded(sampler.batches(0)) < unsorted


def test_sampler_shards_across_ranks() -> None:
    lengths = list(range(1, 12))  # 11 samples over 2 ranks: one wraps around
    ranks = [BucketBatchSampler(lengths, 3, True, seed=2, rank=r, world_size=2) for r in range(2)]
    batches = [s.batches(0) for s in ranks]
    assert len(ranks[0]) == len(ranks[1]) == len(batches[0]) == len(batches[1]) == 2
    assert [len(flat(b)) for b in batches] == [6, 6]
    both = flat(batches[0]) + flat(batches[1])
    first = int(torch.randperm(11, generator=torch.Generator().manual_seed(2))[0])
    assert sorted(both) == sorted([*range(11), first])  # the epoch's first sample pads the odd shard

    exact = [BucketBatchSampler(lengths, 3, False, rank=r, world_size=2, pad_shards=False) for r in range(2)]
    assert [list(s) for s in exact] == [[[0, 2, 4], [6, 8, 10]], [[1, 3, 5], [7, 9]]]
    assert sorted(flat(list(exact[0].batches(0))) + flat(exact[1].batches(0))) == list(range(11))
    with pytest.raises(ValueError, match="rank 2"):
        BucketBatchSampler(lengths, 3, True, rank=2, world_size=2)
