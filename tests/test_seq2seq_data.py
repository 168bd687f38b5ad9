"""Parallel-corpus reading and the translation datamodule, on tiny files in the real formats."""

from __future__ import annotations

import csv
import gzip
import json
import re
import unicodedata
from pathlib import Path
from typing import Any

import pytest
import torch

from datamodules.download import CorruptDataError, DataError, DataNotFoundError
from datamodules.parallel_files import read_aligned, read_multi30k, read_pairs, read_sentences
from datamodules.seq2seq import ParallelCorpusDataModule

SUBJECTS = [("a man", "ein Mann"), ("a woman", "eine Frau"), ("the dog", "der Hund"), ("a child", "ein Kind")]
VERBS = [
    ("runs", "läuft"),
    ("sits", "sitzt"),
    ("plays", "spielt"),
    ("waits", "wartet"),
    ("sleeps", "schläft"),
]
PLACES = [
    ("in the park.", "im Park."),
    ("on the street!", "auf der Straße!"),
    ("at home, quietly.", "zu Hause."),
]
# 60 distinct pairs: English first, as the Anki exports write them
PAIRS = [
    (f"{s} {v} {p}".capitalize(), f"{sd} {vd} {pd}"[0].upper() + f"{sd} {vd} {pd}"[1:])
    for s, sd in SUBJECTS
    for v, vd in VERBS
    for p, pd in PLACES
]
LONG = (
    "A man in a red shirt and a woman with a big hat walk their old dog along the river in the park.",
    "Ein Mann in rotem Hemd und eine Frau mit großem Hut führen ihren alten Hund am Fluss im Park.",
)


def normalize(text: str, lowercase: bool = False) -> str:
    """What BPE decoding restores: NFKC, whitespace runs as one space, stripped."""
    text = re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip()
    return text.lower() if lowercase else text


def write_lines(path: Path, lines: list[str], newline: str = "\n") -> Path:
    data = "".join(line + newline for line in lines).encode("utf-8")
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def write_multi30k(root: Path, train: int = 40, long_everywhere: bool = False) -> Path:
    """Multi30k's layout under ``root/multi30k``: train, val and test_2016_flickr in en and de, gzipped."""
    folder = root / "multi30k"
    folder.mkdir(parents=True, exist_ok=True)
    extra = [LONG] if long_everywhere else []
    splits = {
        "train": PAIRS[:train] + extra,
        "val": PAIRS[train : train + 5] + extra,
        "test_2016_flickr": PAIRS[train + 5 : train + 10] + extra,
    }
    for stem, pairs in splits.items():
        write_lines(folder / f"{stem}.en.gz", [en for en, _ in pairs])
        write_lines(folder / f"{stem}.de.gz", [de for _, de in pairs])
    return folder


def write_anki(path: Path, pairs: list[tuple[str, str]] = PAIRS) -> Path:
    """An Anki export: English, the translation, and a CC-BY attribution column."""
    lines = [
        f"{en}\t{de}\tCC-BY 2.0 (France) Attribution: tatoeba.org #{i} (CK)"
        for i, (en, de) in enumerate(pairs)
    ]
    return write_lines(path, lines)


def datamodule(tmp_path: Path, **kwargs: Any) -> ParallelCorpusDataModule:
    args: dict[str, Any] = {
        "data_dir": str(tmp_path),
        "source_lang": "de",
        "target_lang": "en",
        "vocab_size": 2000,
        "batch_size": 4,
        "eval_batch_size": 4,
        "cache_dir": str(tmp_path / "cache"),
    }
    return ParallelCorpusDataModule(**(args | kwargs))


# ---- readers ------------------------------------------------------------------------------------


def test_multi30k_layout_reads_aligned_splits(tmp_path: Path) -> None:
    folder = write_multi30k(tmp_path, train=40)
    splits = read_multi30k(folder, "de", "en")
    assert {name: len(text) for name, text in splits.items()} == {"train": 40, "val": 5, "test": 5}
    assert splits["train"].pairs[:3] == [(de, en) for en, de in PAIRS[:3]]
    assert splits["test"].pairs[-1] == (PAIRS[49][1], PAIRS[49][0])


def test_aligned_files_plain_and_gzip_keep_all_but_the_line_end(tmp_path: Path) -> None:
    sources = [
        "  Ein Mann läuft. ",
        "",
        "Zwei\tHunde.",
    ]  # spaces, a blank line and a tab are sentence content
    targets = ["  A man runs. ", "", "Two\tdogs."]
    src = write_lines(tmp_path / "corpus.de", sources, newline="\r\n")
    tgt = write_lines(tmp_path / "corpus.en.gz", [*targets, "", ""])  # blank lines at the end are dropped
    text = read_aligned(src, tgt)
    assert text.sources == sources and text.targets == targets
    assert read_sentences(src) == sources


def test_anki_tsv_pairs_by_column(tmp_path: Path) -> None:
    path = write_anki(tmp_path / "deu.txt", PAIRS[:3])
    path.write_text(path.read_text() + '\nHe said "hi".\tEr sagte "hallo".\tCC-BY\n\n', encoding="utf-8")
    text = read_pairs(path)
    assert text.pairs[:3] == PAIRS[:3] and text.pairs[3] == ('He said "hi".', 'Er sagte "hallo".')
    reverse = read_pairs(path, source_column=1, target_column=0)
    assert reverse.sources == text.targets and reverse.targets == text.sources


def test_csv_pairs_follow_quoting_and_skip_a_header(tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text('id,en,de\n1,"Hello, world.",Hallo Welt.\n2,Yes.,"Ja, ""gut""."\n', encoding="utf-8")
    text = read_pairs(path, source_column=1, target_column=2, header=True)
    assert text.pairs == [("Hello, world.", "Hallo Welt."), ("Yes.", 'Ja, "gut".')]


def test_misaligned_files_name_both_files_and_counts(tmp_path: Path) -> None:
    src = write_lines(tmp_path / "train.de.gz", ["a", "b", "c"])
    tgt = write_lines(tmp_path / "train.en.gz", ["a", "b"])
    with pytest.raises(CorruptDataError) as err:
        read_aligned(src, tgt)
    message = str(err.value)
    assert str(src) in message and str(tgt) in message
    assert "3 lines" in message and "has 2" in message and "re-download" in message


def test_short_pair_line_names_the_line(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "pairs.tsv", ["Hi.\tHallo.", "Bye."])
    with pytest.raises(CorruptDataError, match=r"line 2: 1 field"):
        read_pairs(path)


def test_missing_files_name_the_path_and_the_data_dir_setting(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as err:
        read_aligned(tmp_path / "nope.de", tmp_path / "nope.en")
    assert str(tmp_path / "nope.de") in str(err.value) and "LITBENCH_DATA_DIR" in str(err.value)
    folder = write_multi30k(tmp_path)
    with pytest.raises(DataNotFoundError) as err:
        read_multi30k(folder, "fr", "en")
    assert (
        "train.fr.gz" in str(err.value)
        and "de, en" in str(err.value)
        and "LITBENCH_DATA_DIR" in str(err.value)
    )
    with pytest.raises(DataNotFoundError, match="LITBENCH_DATA_DIR"):
        datamodule(tmp_path / "empty").setup()


# ---- the datamodule -----------------------------------------------------------------------------


def test_lowercase_reaches_references_and_ids(tmp_path: Path) -> None:
    write_multi30k(tmp_path)
    dm = datamodule(tmp_path, lowercase=True)
    assert dm.references("train")[0] == PAIRS[0][0].lower()
    assert dm.sources("val")[0] == PAIRS[40][1].lower()
    assert dm.encode(["Ein Mann"]) == dm.encode(["ein mann"])
    assert dm.decode(dm.encode([PAIRS[0][0]], side="target")[0]) == PAIRS[0][0].lower()


def test_max_len_filters_training_pairs_only(tmp_path: Path) -> None:
    write_multi30k(tmp_path, long_everywhere=True)
    full = datamodule(tmp_path, max_len=None)
    assert full.sizes() == {"train": 41, "val": 6, "test": 6}
    longest = max(
        int(full.datasets["train"].tgt.lengths().max()), int(full.datasets["train"].src.lengths().max())
    )
    short = max(
        max(map(len, full.encode([de for _, de in PAIRS[:40]]))),
        max(map(len, full.encode([en for en, _ in PAIRS[:40]], "target"))),
    )
    assert short < longest
    dm = datamodule(tmp_path, max_len=short)
    assert dm.sizes() == {"train": 40, "val": 6, "test": 6} and dm.filtered == 1
    assert LONG[0] not in dm.references("train") and LONG[0] in dm.references("test")
    train = dm.datasets["train"]
    assert int(train.src.lengths().max()) <= short and int(train.tgt.lengths().max()) <= short
    assert dm.references("train") == [en for en, _ in PAIRS[:40]]  # still aligned with the ids


def test_seeded_split_is_deterministic_and_disjoint(tmp_path: Path) -> None:
    write_anki(tmp_path / "deu.txt")
    kwargs = {"corpus": "pairs", "path": "deu.txt", "source_column": 1, "target_column": 0}
    a = datamodule(tmp_path, **kwargs, val_fraction=0.1, test_fraction=0.2)
    b = datamodule(tmp_path, **kwargs, val_fraction=0.1, test_fraction=0.2)
    other = datamodule(tmp_path, **kwargs, val_fraction=0.1, test_fraction=0.2, split_seed=1)
    assert a.sizes() == {"train": 42, "val": 6, "test": 12}
    splits = {name: a.references(name) for name in ("train", "val", "test")}
    assert splits == {name: b.references(name) for name in splits}
    assert splits["test"] != other.references("test")
    assert sorted(s for split in splits.values() for s in split) == sorted(
        en for en, _ in PAIRS
    )  # disjoint and complete
    assert [a.sources("val")[i] for i in range(6)] == [
        dict((en, de) for en, de in PAIRS)[en] for en in splits["val"]
    ]


def test_two_aligned_files_make_a_corpus(tmp_path: Path) -> None:
    write_lines(tmp_path / "corpus.de.gz", [de for _, de in PAIRS])
    write_lines(tmp_path / "corpus.en", [en for en, _ in PAIRS])
    dm = datamodule(tmp_path, corpus="files", source_file="corpus.de.gz", target_file="corpus.en")
    assert sum(dm.sizes().values()) == len(PAIRS)
    by_path = datamodule(tmp_path, corpus="files", source_file="corpus.de.gz", path="corpus")
    assert by_path.references("test") == dm.references("test")


@pytest.mark.parametrize("joint", [True, False])
def test_bpe_round_trips_training_sentences(tmp_path: Path, joint: bool) -> None:
    write_multi30k(tmp_path)
    dm = datamodule(tmp_path, vocab_size=60, joint=joint)  # small: words are split into subwords
    targets = dm.references("train")
    ids = dm.encode(targets, side="target")
    assert any(len(row) > len(text.split()) + 2 for row, text in zip(ids, targets, strict=True))
    assert [dm.decode(row) for row in ids] == [normalize(t) for t in targets]
    sources = dm.sources("train")
    assert [dm.src_tokenizer.decode(row) for row in dm.encode(sources)] == [normalize(s) for s in sources]


def test_joint_and_separate_vocabularies(tmp_path: Path) -> None:
    write_multi30k(tmp_path)
    joint, separate = datamodule(tmp_path, joint=True), datamodule(tmp_path, joint=False)
    assert joint.src_vocab_size == joint.tgt_vocab_size and joint.src_tokenizer is joint.tgt_tokenizer
    assert separate.src_vocab_size != separate.tgt_vocab_size
    assert joint.src_vocab_size > max(separate.src_vocab_size, separate.tgt_vocab_size)
    assert joint.tgt_tokenizer.token_to_id("▁Hund") is not None
    assert separate.tgt_tokenizer.token_to_id("▁Hund") is None  # German lives in the source vocabulary
    assert separate.src_tokenizer.token_to_id("▁Hund") is not None
    assert separate.token_inputs() == {
        "src_vocab_size": separate.src_vocab_size,
        "tgt_vocab_size": separate.tgt_vocab_size,
        "pad_id": 0,
        "bos_id": separate.bos_id,
        "eos_id": separate.eos_id,
    }


def test_special_ids_and_batch_layout(tmp_path: Path) -> None:
    write_multi30k(tmp_path, long_everywhere=True)
    dm = datamodule(tmp_path, max_len=None, vocab_size=150)
    tok = dm.tgt_tokenizer
    assert dm.pad_id == 0 and len({dm.pad_id, dm.unk_id, dm.bos_id, dm.eos_id}) == 4
    assert tok.id_to_token(dm.pad_id) == "[PAD]" and tok.id_to_token(dm.unk_id) == "[UNK]"
    seen = []
    for batch in dm.train_dataloader():
        assert set(batch) == {"src", "src_lengths", "tgt_in", "tgt_out", "tgt_lengths", "index"}
        assert all(t.dtype == torch.long for t in batch.values())
        src, tgt_in, tgt_out = batch["src"], batch["tgt_in"], batch["tgt_out"]
        assert src.shape[1] == int(batch["src_lengths"].max()) and tgt_in.shape == tgt_out.shape
        assert tgt_in.shape[1] == int(batch["tgt_lengths"].max())
        references = dm.references("train")
        for row, i in enumerate(batch["index"].tolist()):
            s, t = int(batch["src_lengths"][row]), int(batch["tgt_lengths"][row])
            expected_src = dm.encode([dm.sources("train")[i]])[0]
            expected_tgt = dm.encode([references[i]], side="target")[0]
            assert src[row, :s].tolist() == expected_src and (src[row, s:] == dm.pad_id).all()
            assert tgt_in[row, :t].tolist() == [dm.bos_id, *expected_tgt]
            assert tgt_out[row, :t].tolist() == [*expected_tgt, dm.eos_id]
            assert (tgt_in[row, t:] == dm.pad_id).all() and (tgt_out[row, t:] == dm.pad_id).all()
            assert dm.decode(tgt_out[row]) == normalize(references[i])
            assert dm.decode(tgt_in[row]) == normalize(references[i])  # bos and padding are skipped
        seen += batch["index"].tolist()
    assert sorted(seen) == list(range(41))  # each training pair once an epoch
    test = [i for batch in dm.test_dataloader() for i in batch["index"].tolist()]
    assert test == list(range(6))  # evaluation in file order
    assert dm.decode([5, 6, dm.eos_id, 7, 8]) == dm.decode([5, 6])  # stops at eos


def test_second_setup_reads_the_cache(tmp_path: Path) -> None:
    write_multi30k(tmp_path)
    for joint in (True, False):
        first = datamodule(tmp_path, joint=joint)
        first.setup()
        assert not first.cache_hit
        second = datamodule(tmp_path, joint=joint)
        second.setup()
        assert second.cache_hit and second.tracking_params()["data.cache_hit"] is True
        assert second.datasets["train"].tgt.tolist() == first.datasets["train"].tgt.tolist()
    changed = datamodule(tmp_path, lowercase=True)  # other text: another key, no stale ids
    changed.setup()
    assert not changed.cache_hit


def test_bad_arguments_fail_early(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="corpus must be"):
        datamodule(tmp_path, corpus="wmt")
    with pytest.raises(ValueError, match="needs path"):
        datamodule(tmp_path, corpus="pairs")
    with pytest.raises(ValueError, match="val_fraction"):
        datamodule(tmp_path, corpus="pairs", path="x.tsv", val_fraction=0.6, test_fraction=0.5)
    write_lines(tmp_path / "few.tsv", ["a\tb", "c\td"])
    with pytest.raises(DataError, match="too few"):
        datamodule(tmp_path, corpus="pairs", path="few.tsv").setup()


@pytest.mark.realdata
def test_real_multi30k_de_en(shared_data: Path, tmp_path: Path) -> None:
    dm = ParallelCorpusDataModule(
        data_dir=str(shared_data), max_len=None, vocab_size=8000, cache_dir=str(tmp_path / "cache")
    )
    assert dm.sizes() == {"train": 29000, "val": 1014, "test": 1000}
    assert len(dm.references("test")) == 1000 and dm.references("train")[0].startswith("Two young")
    batch = next(iter(dm.val_dataloader()))
    assert batch["src"].shape[0] == 128 and (batch["tgt_in"][:, 0] == dm.bos_id).all()
    for lang in ("fr", "cs"):  # every language is line-aligned with English in every split
        splits = read_multi30k(shared_data / "multi30k", lang, "en")
        sizes = {name: len(text) for name, text in splits.items()}
        assert sizes == {"train": 29000, "val": 1014, "test": 1000}


# ---- hub corpora (HF datasets; a local dataset folder stands in for the hub) ----------------------


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf")
    return tmp_path / "hf"


def test_hub_corpus_with_a_translation_column_keeps_its_splits(tmp_path: Path, hf_cache: Path) -> None:
    folder = tmp_path / "opus_like"
    folder.mkdir()
    splits = {"train": PAIRS[:40], "validation": PAIRS[40:45], "test": PAIRS[45:50]}
    for name, pairs in splits.items():
        rows = [json.dumps({"translation": {"en": en, "de": de}}, ensure_ascii=False) for en, de in pairs]
        write_lines(folder / f"{name}.jsonl", rows)
    dm = datamodule(tmp_path, corpus="hub", path=str(folder))
    assert dm.sizes() == {"train": 40, "val": 5, "test": 5}
    assert dm.references("test") == [en for en, _ in PAIRS[45:50]]
    assert dm.sources("val") == [de for _, de in PAIRS[40:45]]


def test_hub_corpus_with_language_columns_and_train_only_is_split_by_seed(
    tmp_path: Path, hf_cache: Path
) -> None:
    folder = tmp_path / "multi30k_like"
    folder.mkdir()
    with (folder / "train.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["en", "de"])
        writer.writerows(PAIRS)
    dm = datamodule(tmp_path, corpus="hub", path=str(folder), val_fraction=0.1, test_fraction=0.2)
    assert dm.sizes() == {"train": 42, "val": 6, "test": 12}
    from_pairs = datamodule(
        tmp_path,
        corpus="pairs",
        path=str(write_anki(tmp_path / "deu.txt")),
        source_column=1,
        target_column=0,
        val_fraction=0.1,
        test_fraction=0.2,
    )
    assert dm.references("test") == from_pairs.references("test")  # the same seeded split


def test_hub_corpus_errors_name_the_problem(tmp_path: Path, hf_cache: Path) -> None:
    folder = tmp_path / "fr_only"
    folder.mkdir()
    write_lines(folder / "train.jsonl", [json.dumps({"translation": {"en": "a", "fr": "b"}})])
    with pytest.raises(CorruptDataError, match=r"holds en, fr, not 'de' and 'en'"):
        datamodule(tmp_path, corpus="hub", path=str(folder)).setup()
    with pytest.raises(DataNotFoundError, match=r"could not load the parallel corpus (?s:.)*the pairs"):
        datamodule(tmp_path, corpus="hub", path=str(tmp_path / "nowhere")).setup()
    with pytest.raises(ValueError, match="corpus='hub' needs path"):
        datamodule(tmp_path, corpus="hub")
