"""A corpus given as its own train/val/test files keeps them: the test split is the test file line for
line, val comes from a val file or from train (never from test), and a single pool is split as before.
Tiny files in the real formats under tmp_path: aligned ``.de``/``.en`` files, TSV pairs, CSV rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from datamodules.download import DataError
from datamodules.seq2seq import ParallelCorpusDataModule
from datamodules.text_classification import TextClassificationFiles
from experiments.specs import SpecError, validate_run_spec
from tests.test_seq2seq_data import datamodule, write_lines

SUBJECTS = [("a man", "ein Mann"), ("a woman", "eine Frau"), ("the dog", "der Hund"), ("a child", "ein Kind")]
VERBS = [
    ("runs", "läuft"),
    ("sits", "sitzt"),
    ("plays", "spielt"),
    ("waits", "wartet"),
    ("sleeps", "schläft"),
]
PLACES = [("in the park.", "im Park."), ("on the street!", "auf der Straße!"), ("at home.", "zu Hause.")]
PAIRS = [  # 60 distinct (English, German) pairs
    (f"{s} {v} {p}".capitalize(), f"{sd} {vd} {pd}"[0].upper() + f"{sd} {vd} {pd}"[1:])
    for s, sd in SUBJECTS
    for v, vd in VERBS
    for p, pd in PLACES
]
LONG = (  # longer than max_len below: a training pair like it is dropped, a test pair never
    "A man in a red shirt and a woman with a big hat walk their old dog along the river in the park.",
    "Ein Mann in rotem Hemd und eine Frau mit großem Hut führen ihren alten Hund am Fluss im Park.",
)
TRAIN, DEV = PAIRS[:40], PAIRS[40:48]
TEST = [*PAIRS[48:][::-1], LONG]  # reversed: file order, not sorted or corpus order, must survive


def write_tsv(path: Path, pairs: list[tuple[str, str]]) -> None:
    write_lines(path, [f"{en}\t{de}" for en, de in pairs])


def write_aligned(root: Path, prefix: str, pairs: list[tuple[str, str]]) -> None:
    write_lines(root / f"{prefix}.en", [en for en, _ in pairs])
    write_lines(root / f"{prefix}.de", [de for _, de in pairs])


def translation(tmp_path: Path, **kwargs: Any) -> ParallelCorpusDataModule:
    """The seq2seq tests' tiny datamodule, read and set up as a fit would."""
    dm = datamodule(tmp_path, **kwargs)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def pairs_of(dm: ParallelCorpusDataModule, split: str) -> list[tuple[str, str]]:
    """``(English, German)`` rows of ``split``, as the files write them."""
    return list(zip(dm.references(split), dm.sources(split), strict=True))


PAIRS_TSV = {"corpus": "pairs", "source_column": 1, "target_column": 0}


# ---- translation: train and test files ------------------------------------------------------------


def test_pairs_train_and_test_files_keep_the_test_file_exactly(tmp_path: Path) -> None:
    write_tsv(tmp_path / "train.tsv", TRAIN)
    write_tsv(tmp_path / "test.tsv", TEST)
    short = max(len(s.split()) for pair in PAIRS for s in pair) * 3  # BPE pieces of a short sentence
    dm = translation(
        tmp_path,
        **PAIRS_TSV,
        path={"train": "train.tsv", "test": "test.tsv"},
        val_fraction=0.1,
        max_len=short,
    )
    assert pairs_of(dm, "test") == TEST  # every line, in file order, the long one unfiltered
    assert len(dm.encode([LONG[1]])[0]) > short and dm.filtered == 0  # so the filter was live, for train
    val, train = pairs_of(dm, "val"), pairs_of(dm, "train")
    assert len(val) == 4 and set(val) <= set(TRAIN) and set(train) <= set(TRAIN)
    assert sorted(val + train) == sorted(TRAIN)  # val is cut from train, nothing else is lost
    assert not set(TEST) & (set(val) | set(train))
    assert dm.sizes() == {"train": 36, "val": 4, "test": len(TEST)}


def test_val_from_train_is_seeded_by_split_seed(tmp_path: Path) -> None:
    write_tsv(tmp_path / "train.tsv", TRAIN)
    write_tsv(tmp_path / "test.tsv", TEST)
    path = {"train": "train.tsv", "test": "test.tsv"}
    a = translation(tmp_path, **PAIRS_TSV, path=path, val_fraction=0.1)
    b = translation(tmp_path, **PAIRS_TSV, path=path, val_fraction=0.1)
    other = translation(tmp_path, **PAIRS_TSV, path=path, val_fraction=0.1, split_seed=1)
    assert pairs_of(a, "val") == pairs_of(b, "val") != pairs_of(other, "val")
    assert pairs_of(other, "test") == TEST


def test_aligned_prefixes_for_train_val_and_test_are_used_exactly(tmp_path: Path) -> None:
    for prefix, pairs in (("europarl", TRAIN), ("dev", DEV), ("newstest", TEST)):
        write_aligned(tmp_path, prefix, pairs)
    dm = translation(
        tmp_path,
        corpus="files",
        path={"train": "europarl", "val": "dev", "test": "newstest"},
        lowercase=True,
        max_len=None,
    )
    lower = [(en.lower(), de.lower()) for en, de in TEST]
    assert pairs_of(dm, "test") == lower  # lowercase reaches every split, as for one pool
    assert pairs_of(dm, "val") == [(en.lower(), de.lower()) for en, de in DEV]
    assert pairs_of(dm, "train") == [(en.lower(), de.lower()) for en, de in TRAIN]


def test_train_only_is_the_single_pool_split_of_before(tmp_path: Path) -> None:
    write_tsv(tmp_path / "all.tsv", PAIRS)
    pool = translation(tmp_path, **PAIRS_TSV, path="all.tsv", val_fraction=0.1, test_fraction=0.2)
    mapped = translation(
        tmp_path, **PAIRS_TSV, path={"train": "all.tsv"}, val_fraction=0.1, test_fraction=0.2
    )
    # the split of every existing run: test first, then val, from one seeded permutation
    order = torch.randperm(len(PAIRS), generator=torch.Generator().manual_seed(0))
    assert pairs_of(pool, "test") == [PAIRS[i] for i in sorted(order[:12].tolist())]
    assert pairs_of(pool, "val") == [PAIRS[i] for i in sorted(order[12:18].tolist())]
    for split in ("train", "val", "test"):
        assert pairs_of(mapped, split) == pairs_of(pool, split)


def test_train_too_small_for_a_val_holdout_says_what_to_do(tmp_path: Path) -> None:
    write_tsv(tmp_path / "train.tsv", TRAIN[:1])
    write_tsv(tmp_path / "test.tsv", TEST)
    with pytest.raises(DataError, match=r"too few to hold out 1 for val.*give path a val file"):
        translation(tmp_path, **PAIRS_TSV, path={"train": "train.tsv", "test": "test.tsv"})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"corpus": "pairs", "path": {"train": "a.tsv", "val": "b.tsv"}}, "gives val but no test"),
        (
            {"corpus": "pairs", "path": {"train": "a.tsv", "valid": "b.tsv"}},
            "not 'valid' \\(did you mean 'val'",
        ),
        ({"corpus": "files", "path": {"test": "b"}}, "names no 'train' file"),
        ({"corpus": "pairs", "path": {"train": "a.tsv", "test": " "}}, "the 'test' file is an empty name"),
        ({"corpus": "multi30k", "path": {"train": "a"}}, "only for corpus 'files' or 'pairs'.*one folder"),
        (
            {"corpus": "files", "path": {"train": "a", "test": "b"}, "source_file": "a.de"},
            "source_file and target_file name one pool",
        ),
    ],
)
def test_contradictory_split_options_are_refused_naming_the_option(
    tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ParallelCorpusDataModule(data_dir=str(tmp_path), **kwargs)


# ---- text classification: val_file ---------------------------------------------------------------


def write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    path.write_text("text,label\n" + "".join(f'"{text}",{label}\n' for text, label in rows))


ROWS = [(f"{en} {'good' if i % 2 else 'bad'}", "pos" if i % 2 else "neg") for i, (en, _) in enumerate(PAIRS)]


def classification(tmp_path: Path, **kwargs: Any) -> TextClassificationFiles:
    write_csv(tmp_path / "train.csv", ROWS[:40])
    write_csv(tmp_path / "dev.csv", ROWS[40:48])
    write_csv(tmp_path / "test.csv", ROWS[48:][::-1])
    dm = TextClassificationFiles(data_dir=str(tmp_path), cache_dir=str(tmp_path / "cache"), **kwargs)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_text_classification_val_file_is_val_exactly(tmp_path: Path) -> None:
    dm = classification(tmp_path, val_file="dev.csv")
    assert dm.texts["val"] == [text for text, _ in ROWS[40:48]]
    assert dm.texts["train"] == [text for text, _ in ROWS[:40]]  # nothing held out of train
    assert dm.texts["test"] == [text for text, _ in ROWS[48:][::-1]]
    assert dm.datasets["val"].labels.tolist() == [int(label == "pos") for _, label in ROWS[40:48]]
    assert dm.sizes() == {"train": 40, "val": 8, "test": 12}


def test_text_classification_without_val_file_holds_out_train_only(tmp_path: Path) -> None:
    dm = classification(tmp_path, holdout_fraction=0.1)
    train_rows, test_rows = [t for t, _ in ROWS[:40]], [t for t, _ in ROWS[48:]]
    assert len(dm.texts["val"]) == 4 and set(dm.texts["val"]) <= set(train_rows)
    assert sorted(dm.texts["val"] + dm.texts["train"]) == sorted(train_rows)
    assert not set(dm.texts["val"]) & set(test_rows)
    assert dm.texts["test"] == [t for t, _ in ROWS[48:][::-1]]


def test_text_classification_val_file_that_is_another_split_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"val_file is 'test\.csv', the same file as test_file"):
        TextClassificationFiles(data_dir=str(tmp_path), val_file="test.csv")
    with pytest.raises(ValueError, match="val_file is an empty name"):
        TextClassificationFiles(data_dir=str(tmp_path), val_file="")


# ---- through the spec ----------------------------------------------------------------------------


def test_split_files_validate_through_the_spec_and_typos_are_refused() -> None:
    own = {"name": "translation", "corpus": "pairs", "path": {"train": "train.tsv", "test": "test.tsv"}}
    spec = validate_run_spec({"data": own, "model": {"name": "gru_attention"}})
    assert spec.data.options["path"] == {"train": "train.tsv", "test": "test.tsv"}
    assert spec.flat_params()["data.path.test"] == "test.tsv"
    typo = own | {"path": {"train": "train.tsv", "tset": "test.tsv"}}
    with pytest.raises(SpecError, match="not 'tset' \\(did you mean 'test'"):
        validate_run_spec({"data": typo, "model": {"name": "gru_attention"}})
    text = {"name": "text_classification", "val_file": "dev.csv"}
    assert validate_run_spec({"data": text, "model": {"name": "cbow"}}).data.options["val_file"] == "dev.csv"
    with pytest.raises(SpecError, match="takes no option 'val_flie' \\(did you mean 'val_file'"):
        validate_run_spec({"data": {"name": "text_classification", "val_flie": "dev.csv"}, "model": "cbow"})


def test_a_single_path_spec_keeps_its_identity() -> None:
    """The type of ``path`` grew a mapping; a string path's identity is what it was."""
    data = {"name": "translation", "corpus": "pairs", "path": "deu.txt"}
    identity = validate_run_spec({"data": data, "model": {"name": "gru_attention"}}).identity()["data"]
    assert identity["path"] == "deu.txt"
    assert set(identity) == {
        *("name", "corpus", "source_lang", "target_lang", "path", "source_file", "target_file"),
        *("source_column", "target_column", "delimiter", "header", "hub_config", "lowercase", "max_len"),
        *("val_fraction", "test_fraction", "split_seed", "vocab_size", "joint", "batch_size"),
        *("eval_batch_size", "cache_dir", "max_epochs"),
    }


def test_a_text_classification_spec_without_val_file_keeps_its_hash() -> None:
    """``val_file`` came after runs were tracked; left unset it is not in the identity nor the params,
    so those runs keep their hashes (as computed by the code before val_file existed)."""
    spec = validate_run_spec({"data": {"name": "text_classification"}, "model": {"name": "cbow"}})
    assert spec.spec_hash == "09c83b93dde2c1cd"
    assert "val_file" not in spec.identity()["data"] and "data.val_file" not in spec.flat_params()
    own = validate_run_spec({"data": {"name": "text_classification", "val_file": "dev.csv"}, "model": "cbow"})
    assert own.identity()["data"]["val_file"] == "dev.csv" and own.spec_hash != spec.spec_hash
