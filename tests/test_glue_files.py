"""GLUE TSV reading on tiny files in the real formats, submission files, users' own CSV/TSV/JSON-lines
corpora, and the real GLUE files in ../shared/data."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from core.registry import UnknownNameError
from datamodules.download import CorruptDataError, DataNotFoundError
from datamodules.glue_files import (
    TASKS,
    GlueSplit,
    available_splits,
    candidate_paths,
    read_split,
    write_submission,
)
from datamodules.text_files import TextTable, read_table

BOM = "\ufeff"


def write(path: Path, *lines: str, end: str = "\n") -> Path:
    """A UTF-8 file of ``lines`` joined by newlines, ending in ``end`` (GLUE's CoLA dev ends in none)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\n".join(lines) + end).encode("utf-8"))
    return path


def glue(tmp_path: Path, folder: str, name: str, *lines: str, end: str = "\n") -> Path:
    return write(tmp_path / "glue" / folder / name, *lines, end=end)


# --- the registry ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(TASKS))
def test_task_declarations_agree(name: str) -> None:
    task = TASKS[name]
    assert task.name == name
    assert task.metric == task.metrics[0]
    assert task.mode == "max"
    assert task.num_labels == (1 if task.regression else len(task.label_names))
    assert set(task.submission_files) == {s for s in task.splits if s.startswith("test")}
    assert bool(task.text_b_columns) == task.pair == (len(task.hf_text_columns) == 2)
    assert task.string_labels == (name in {"mnli", "qnli", "rte"})


def test_label_orders_follow_hf_datasets() -> None:
    assert TASKS["mnli"].label_names == ("entailment", "neutral", "contradiction")
    assert TASKS["rte"].label_names == TASKS["qnli"].label_names == ("entailment", "not_entailment")
    assert TASKS["wnli"].label_names == ("not_entailment", "entailment")
    assert TASKS["cola"].label_names == ("unacceptable", "acceptable")
    assert TASKS["stsb"].num_labels == 1 and TASKS["stsb"].regression
    assert (TASKS["cola"].metric, TASKS["mrpc"].metrics, TASKS["stsb"].metrics) == (
        "mcc",
        ("f1", "acc"),
        ("pearson", "spearman"),
    )


def test_unknown_task_and_split(tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError, match=r"'sst-2'.*known: cola.*Did you mean 'sst2'"):
        read_split(tmp_path, "sst-2", "train")
    with pytest.raises(ValueError, match=r"'rte' has no split 'dev_mismatched'.*train, dev, test"):
        read_split(tmp_path, "rte", "dev_mismatched")  # type: ignore[arg-type]


# --- each task's real format -------------------------------------------------------------------


def test_cola_headerless_train_and_dev_without_final_newline(tmp_path: Path) -> None:
    glue(
        tmp_path,
        "CoLA",
        "train.tsv",
        "gj04\t1\t\tOur friends won't buy this.",
        "gj04\t0\t*\tThey drank the pub.",
    )
    glue(tmp_path, "CoLA", "dev.tsv", "gj04\t1\t\tThe sailors rode.", "cj99\t0\t*\tRode sailors the.", end="")
    glue(
        tmp_path,
        "CoLA",
        "test.tsv",
        "index\tsentence",
        "0\tBill whistled past the house.",
        "1\tThe car honked.",
    )
    train = read_split(tmp_path, "cola", "train")
    assert train == GlueSplit(
        texts_a=["Our friends won't buy this.", "They drank the pub."],
        texts_b=None,
        labels=[1, 0],
        ids=["0", "1"],
        path=tmp_path / "glue" / "CoLA" / "train.tsv",
    )
    dev = read_split(tmp_path, "cola", "dev")
    assert (dev.texts_a, dev.labels) == (["The sailors rode.", "Rode sailors the."], [1, 0])
    test = read_split(tmp_path, "cola", "test")
    assert (test.texts_a, test.labels, test.ids) == (
        ["Bill whistled past the house.", "The car honked."],
        None,
        ["0", "1"],
    )


def test_mrpc_byte_order_mark_and_quotes(tmp_path: Path) -> None:
    header = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"
    first = (
        'Amrozi accused his brother, whom he called "the witness", of deliberately distorting his evidence.'
    )
    glue(
        tmp_path,
        "MRPC",
        "train.tsv",
        BOM + header,
        f'1\t702876\t702977\t{first}\tReferring to him as only "the witness", Amrozi accused his brother.',
        "0\t2108705\t2108831\tYucaipa owned Dominick's.\tYucaipa bought Dominick's in 1995.",
    )
    glue(
        tmp_path,
        "MRPC",
        "test.tsv",
        "index\t#1 ID\t#2 ID\t#1 String\t#2 String",
        "0\t1089874\t1089925\tPCCW's chief will report to Mr So.\tCurrent chief will report to So.",
    )
    train = read_split(tmp_path, "mrpc", "train")
    assert train.texts_a == [first, "Yucaipa owned Dominick's."]
    assert train.texts_b is not None and train.texts_b[0].startswith('Referring to him as only "the witness"')
    assert (train.labels, train.ids) == ([1, 0], ["0", "1"])
    test = read_split(tmp_path, "mrpc", "test")
    assert (test.texts_b, test.labels, test.ids) == (["Current chief will report to So."], None, ["0"])


def test_stsb_float_scores_among_ten_columns(tmp_path: Path) -> None:
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2"
    meta = "main-captions\tMSRvid\t2012test\t0001\tnone\tnone"
    glue(
        tmp_path,
        "STS-B",
        "train.tsv",
        f"{header}\tscore",
        f"0\t{meta}\tA plane is taking off.\tAn air plane is taking off.\t5.000",
        f"1\t{meta}\tA man is playing a large flute.\tA man is playing a flute.\t3.800",
        f"2\t{meta}\tA cat.\tA dog.\t0.20000000298023224",
    )
    glue(
        tmp_path, "STS-B", "test.tsv", header, f"7\t{meta}\tA girl is styling her hair.\tA girl is brushing."
    )
    train = read_split(tmp_path, "stsb", "train")
    assert train.texts_a[1] == "A man is playing a large flute."
    assert train.texts_b == ["An air plane is taking off.", "A man is playing a flute.", "A dog."]
    assert train.labels == pytest.approx([5.0, 3.8, 0.2])
    assert all(isinstance(score, float) for score in train.labels)
    test = read_split(tmp_path, "stsb", "test")
    assert (test.labels, test.ids) == (None, ["7"])


def test_stsb_score_that_is_no_number(tmp_path: Path) -> None:
    glue(tmp_path, "STS-B", "dev.tsv", "index\tsentence1\tsentence2\tscore", "0\ta\tb\tfive")
    with pytest.raises(CorruptDataError, match=r"STS-B.dev\.tsv, line 2: the score 'five'"):
        read_split(tmp_path, "stsb", "dev")


def test_rte_string_labels_and_integer_ids(tmp_path: Path) -> None:
    glue(
        tmp_path,
        "RTE",
        "train.tsv",
        "index\tsentence1\tsentence2\tlabel",
        "0\tNo Weapons of Mass Destruction Found in Iraq Yet.\tWeapons Found in Iraq.\tnot_entailment",
        "1\tA place of sorrow became a place of joy.\tPope Benedict XVI is the new leader.\tentailment",
        "2\tA\tB\t1",
        "3\tC\tD\t0",
    )
    train = read_split(tmp_path, "rte", "train")
    assert train.labels == [1, 0, 1, 0]
    assert train.texts_b == ["Weapons Found in Iraq.", "Pope Benedict XVI is the new leader.", "B", "D"]
    assert train.ids == ["0", "1", "2", "3"]


def test_wnli_integer_labels(tmp_path: Path) -> None:
    glue(
        tmp_path,
        "WNLI",
        "dev.tsv",
        "index\tsentence1\tsentence2\tlabel",
        "0\tThe drain is clogged with hair. It has to be cleaned.\tThe hair has to be cleaned.\t0",
        "1\tJane knocked on Susan's door but she did not answer.\tSusan did not answer.\t1",
    )
    dev = read_split(tmp_path, "wnli", "dev")
    assert dev.labels == [0, 1]
    assert [TASKS["wnli"].label_names[i] for i in dev.labels] == ["not_entailment", "entailment"]


def test_sst2_keeps_text_verbatim_and_quotes_never_merge_rows(tmp_path: Path) -> None:
    glue(
        tmp_path,
        "SST-2",
        "train.tsv",
        "sentence\tlabel",
        "hide new secretions from the parental units \t0",
        '"an unbalanced quote opens here \t1',  # a CSV reader would swallow the next lines into this field
        'a "quoted" word \t1',
        'the last one ends it" \t0',
    )
    glue(tmp_path, "SST-2", "test.tsv", "index\tsentence", "0\tuneasy mishmash of styles and genres .")
    train = read_split(tmp_path, "sst2", "train")
    assert train.texts_a == [
        "hide new secretions from the parental units ",
        '"an unbalanced quote opens here ',
        'a "quoted" word ',
        'the last one ends it" ',
    ]
    assert train.labels == [0, 1, 1, 0]
    test = read_split(tmp_path, "sst2", "test")
    assert (test.texts_a, test.ids, test.labels) == (["uneasy mishmash of styles and genres ."], ["0"], None)


def test_qnli_dev_from_hf_export_and_train_missing(tmp_path: Path) -> None:
    glue(
        tmp_path,
        "QNLI",
        "dev_hf_export.tsv",
        "question\tsentence\tlabel",
        "What came into force?\tAs of that day, the new constitution came into force.\t0",
        "What is the first major city?\tThe most important tributaries are the Ill and the Neckar.\t1",
    )
    dev = read_split(tmp_path, "qnli", "dev")
    assert dev.texts_a == ["What came into force?", "What is the first major city?"]
    assert dev.labels == [0, 1] and dev.ids == ["0", "1"]
    assert available_splits(tmp_path, "qnli") == ["dev"]
    with pytest.raises(DataNotFoundError) as err:
        read_split(tmp_path, "qnli", "train")
    message = str(err.value)
    for path in candidate_paths(tmp_path, "qnli", "train"):
        assert str(path) in message
    assert "train_hf_export.tsv" in message
    assert f"hold only: {tmp_path / 'glue' / 'QNLI' / 'dev_hf_export.tsv'}" in message
    assert "glue_data" in message and "download_with_datasets" in message


def test_mnli_matched_and_mismatched_files(tmp_path: Path) -> None:
    header = "index\tpromptID\tpairID\tgenre\tsentence1\tsentence2\tlabel1\tgold_label"
    glue(
        tmp_path,
        "MNLI",
        "dev_matched.tsv",
        header,
        "0\t1\t1e\tgov\tP0\tH0\tneutral\tneutral",
        "1\t2\t2c\tgov\tP1\tH1\tcontradiction\tcontradiction",
        "2\t3\t3e\tgov\tP2\tH2\tentailment\tentailment",
    )
    glue(tmp_path, "MNLI", "dev_mismatched.tsv", header, "0\t9\t9n\tfic\tP\tH\tneutral\tneutral")
    glue(tmp_path, "MNLI", "test_mismatched.tsv", "index\tpromptID\tsentence1\tsentence2", "5\t1\tP\tH")
    assert read_split(tmp_path, "mnli", "dev").labels == [1, 2, 0]
    assert read_split(tmp_path, "mnli", "dev_mismatched").labels == [1]
    test = read_split(tmp_path, "mnli", "test_mismatched")
    assert (test.texts_a, test.texts_b, test.labels, test.ids) == (["P"], ["H"], None, ["5"])
    assert available_splits(tmp_path, "mnli") == ["dev", "dev_mismatched", "test_mismatched"]


@pytest.mark.parametrize("root", ["glue_data", ""])
def test_other_roots_and_crlf(tmp_path: Path, root: str) -> None:
    path = tmp_path / root / "SST-2" / "dev.tsv"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"sentence\tlabel\r\nit 's charming . \t1\r\nbleak \t0\r\n\r\n")
    dev = read_split(tmp_path, "sst2", "dev")
    assert (dev.path, dev.texts_a, dev.labels) == (path, ["it 's charming . ", "bleak "], [1, 0])


def test_official_file_wins_over_hf_export(tmp_path: Path) -> None:
    glue(tmp_path, "RTE", "dev_hf_export.tsv", "sentence1\tsentence2\tlabel\tidx", "x\ty\t1\t0")
    write(
        tmp_path / "glue_data" / "RTE" / "dev.tsv",
        "index\tsentence1\tsentence2\tlabel",
        "0\ta\tb\tentailment",
    )
    assert read_split(tmp_path, "rte", "dev").texts_a == ["a"]


# --- errors --------------------------------------------------------------------------------------


def test_missing_file_lists_every_place_looked(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as err:
        read_split(tmp_path, "cola", "dev")
    message = str(err.value)
    for path in [tmp_path / "glue" / "CoLA" / "dev.tsv", tmp_path / "glue_data" / "CoLA" / "dev.tsv"]:
        assert str(path) in message
    assert str(tmp_path / "CoLA" / "dev.tsv") in message
    assert "hold only" not in message


def test_unknown_label_names_file_line_and_valid_labels(tmp_path: Path) -> None:
    glue(
        tmp_path,
        "RTE",
        "dev.tsv",
        "index\tsentence1\tsentence2\tlabel",
        "0\ta\tb\tentailment",
        "1\ta\tb\tcontradiction",
    )
    with pytest.raises(CorruptDataError) as err:
        read_split(tmp_path, "rte", "dev")
    message = str(err.value)
    assert f"{tmp_path / 'glue' / 'RTE' / 'dev.tsv'}, line 3: unknown label 'contradiction'" in message
    assert "'entailment', 'not_entailment' or their ids 0-1" in message


def test_out_of_range_integer_label(tmp_path: Path) -> None:
    glue(tmp_path, "SST-2", "dev.tsv", "sentence\tlabel", "good \t1", "bad \t2")
    with pytest.raises(CorruptDataError, match=r"dev\.tsv, line 3: unknown label '2'"):
        read_split(tmp_path, "sst2", "dev")


def test_malformed_row_names_its_line(tmp_path: Path) -> None:
    glue(
        tmp_path,
        "RTE",
        "train.tsv",
        "index\tsentence1\tsentence2\tlabel",
        "0\ta\tb\tentailment",
        "1\ta tab\tinside\tb\tentailment",
    )
    with pytest.raises(
        CorruptDataError, match=r"train\.tsv, line 3: 5 tab-separated fields where the header has 4"
    ):
        read_split(tmp_path, "rte", "train")


def test_trailing_empty_fields_are_recovered(tmp_path: Path) -> None:
    glue(tmp_path, "WNLI", "train.tsv", "index\tsentence1\tsentence2\tlabel", "0\ta\tb\t1\t\t", "1\tc\td\t0")
    assert read_split(tmp_path, "wnli", "train").labels == [1, 0]


def test_cut_row_is_an_error(tmp_path: Path) -> None:
    glue(tmp_path, "CoLA", "train.tsv", "gj04\t1\t\tfine.", "gj04\t1")
    with pytest.raises(
        CorruptDataError, match=r"train\.tsv, line 2: 2 tab-separated fields where the header has 4"
    ):
        read_split(tmp_path, "cola", "train")


def test_missing_column_lists_the_columns(tmp_path: Path) -> None:
    glue(tmp_path, "RTE", "dev.tsv", "index\tpremise\thypothesis\tlabel", "0\ta\tb\tentailment")
    with pytest.raises(CorruptDataError, match=r"no first text column.*'sentence1'.*'index', 'premise'"):
        read_split(tmp_path, "rte", "dev")
    glue(tmp_path, "SST-2", "train.tsv", "sentence", "no label ")
    with pytest.raises(CorruptDataError, match=r"no label column"):
        read_split(tmp_path, "sst2", "train")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "is empty"),
        (b"sentence\tlabel\n", "header but no rows"),
        (b"sentence\tlabel\nbon \xe9t\xe9\t1\n", "line 2"),
    ],
)
def test_empty_header_only_and_not_utf8(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "glue" / "SST-2" / "dev.tsv"
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    with pytest.raises(CorruptDataError, match=problem):
        read_split(tmp_path, "sst2", "dev")


# --- submissions ---------------------------------------------------------------------------------


def test_submission_label_names_ids_and_scores(tmp_path: Path) -> None:
    rte = write_submission(tmp_path / "RTE.tsv", "rte", ["0", "1", "2"], torch.tensor([1, 0, 0]))
    assert rte.read_text() == "index\tprediction\n0\tnot_entailment\n1\tentailment\n2\tentailment\n"
    cola = write_submission(tmp_path / "sub" / "CoLA.tsv", "cola", range(3), [0, 1, 1])
    assert cola.read_text() == "index\tprediction\n0\t0\n1\t1\n2\t1\n"
    mnli = write_submission(tmp_path / "MNLI-m.tsv", "mnli", [4, 5], [2, 1])
    assert mnli.read_text() == "index\tprediction\n4\tcontradiction\n5\tneutral\n"
    stsb = write_submission(tmp_path / "STS-B.tsv", "stsb", ["0", "1"], torch.tensor([4.12345, 0.5]))
    assert stsb.read_text() == "index\tprediction\n0\t4.123\n1\t0.500\n"
    assert sorted(p.name for p in tmp_path.rglob("*")) == [
        "CoLA.tsv",
        "MNLI-m.tsv",
        "RTE.tsv",
        "STS-B.tsv",
        "sub",
    ]


def test_submission_rejects_bad_predictions(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="2 ids but 1 predictions"):
        write_submission(tmp_path / "x.tsv", "sst2", ["0", "1"], [1])
    with pytest.raises(ValueError, match=r"index 1 is 2, not a label id in 0-1"):
        write_submission(tmp_path / "x.tsv", "sst2", ["0", "1"], [1, 2])
    with pytest.raises(ValueError, match="not a finite number"):
        write_submission(tmp_path / "x.tsv", "stsb", ["0"], [math.nan])
    assert not any(tmp_path.iterdir())


def test_submission_round_trips_through_the_test_ids(tmp_path: Path) -> None:
    glue(tmp_path, "RTE", "test.tsv", "index\tsentence1\tsentence2", "10\ta\tb", "11\tc\td")
    test = read_split(tmp_path, "rte", "test")
    path = write_submission(tmp_path / "RTE.tsv", "rte", test.ids, [0, 1])
    assert path.read_text().splitlines()[1:] == ["10\tentailment", "11\tnot_entailment"]


# --- a user's own corpus -------------------------------------------------------------------------


def test_csv_with_quoting_and_string_labels(tmp_path: Path) -> None:
    path = write(
        tmp_path / "reviews.csv", "text,label", '"good, really",pos', "plain,neg", '"a ""quote""",neutral'
    )
    table = read_table(path, "text")
    assert table == TextTable(
        texts_a=["good, really", "plain", 'a "quote"'],
        texts_b=None,
        labels=[2, 0, 1],
        ids=["0", "1", "2"],
        path=path,
        label_names=("neg", "neutral", "pos"),
    )


def test_tsv_has_no_quoting_and_pairs(tmp_path: Path) -> None:
    path = write(tmp_path / "pairs.tsv", "id\ta\tb\ty", '7\t"unbalanced\tb1\t1', '8\tsecond"\tb2\t0')
    table = read_table(path, "a", "b", "y", id_column="id")
    assert (table.texts_a, table.texts_b, table.labels) == (['"unbalanced', 'second"'], ["b1", "b2"], [1, 0])
    assert (table.ids, table.label_names) == (["7", "8"], ("0", "1"))


def test_no_header_columns_by_position(tmp_path: Path) -> None:
    path = write(tmp_path / "plain.tsv", "x\tfirst text\t1", "y\tsecond text\t0", "", "z\tthird\t1")
    table = read_table(path, 1, label_column=2, header=False)
    assert (table.texts_a, table.labels) == (["first text", "second text", "third"], [1, 0, 1])
    with pytest.raises(ValueError, match="give a 0-based position"):
        read_table(path, "text", header=False)


def test_jsonl_objects_arrays_and_regression(tmp_path: Path) -> None:
    path = write(
        tmp_path / "scores.jsonl",
        '{"q": "a", "s": "b", "label": 0.5}',
        "",
        '{"q": "c", "s": "d", "label": 4}',
    )
    table = read_table(path, "q", "s", regression=True)
    assert (table.texts_a, table.texts_b, table.labels, table.label_names) == (
        ["a", "c"],
        ["b", "d"],
        [0.5, 4.0],
        (),
    )
    arrays = write(tmp_path / "arrays.jsonl", '["x", "spam"]', '["y", "ham"]')
    table = read_table(arrays, 0, label_column=1)
    assert (table.labels, table.label_names) == ([1, 0], ("ham", "spam"))
    unlabelled = read_table(arrays, 0, label_column=None)
    assert (unlabelled.labels, unlabelled.label_names) == (None, ())


def test_given_label_names_keep_ids_stable(tmp_path: Path) -> None:
    path = write(tmp_path / "dev.csv", "text,label", "a,pos", "b,1")
    table = read_table(path, "text", label_names=["neg", "pos"])
    assert (table.labels, table.label_names) == ([1, 1], ("neg", "pos"))
    bad = write(tmp_path / "bad.csv", "text,label", "a,pos", "b,meh")
    with pytest.raises(CorruptDataError, match=r"bad\.csv, line 3: unknown label 'meh'.*'neg', 'pos'"):
        read_table(bad, "text", label_names=["neg", "pos"])


def test_table_errors(tmp_path: Path) -> None:
    csv_path = write(tmp_path / "c.csv", "sentence,label", "a,1")
    with pytest.raises(CorruptDataError, match=r"c\.csv, line 2: no column 'text'.*'sentence', 'label'"):
        read_table(csv_path, "text")
    jsonl = write(tmp_path / "j.jsonl", '{"text": "a", "label": 1}', '{"text": "b", "label": 0')
    with pytest.raises(CorruptDataError, match=r"j\.jsonl, line 2: not valid JSON"):
        read_table(jsonl, "text")
    keys = write(tmp_path / "k.jsonl", '{"text": "a", "label": 1}', '{"txt": "b", "label": 0}')
    with pytest.raises(
        CorruptDataError, match=r"k\.jsonl, line 2: no column 'text'; the keys are 'txt', 'label'"
    ):
        read_table(keys, "text")
    for name in ["empty.csv", "empty.jsonl", "header.tsv"]:
        path = write(tmp_path / name, "text\tlabel" if name == "header.tsv" else "", end="")
        with pytest.raises(CorruptDataError, match="no rows"):
            read_table(path, "text")
    ragged = write(tmp_path / "r.csv", "text,label", "a,1", "b,c,1")
    with pytest.raises(CorruptDataError, match=r"r\.csv, line 3: 3 fields where the header has 2"):
        read_table(ragged, "text")
    with pytest.raises(CorruptDataError, match=r"line 2: the label is missing"):
        read_table(write(tmp_path / "e.csv", "text,label", "a,", "b,1"), "text")
    with pytest.raises(DataNotFoundError, match="no such file"):
        read_table(tmp_path / "absent.csv", "text")
    with pytest.raises(ValueError, match="pass delimiter="):
        read_table(write(tmp_path / "x.txt", "a"), 0)


# --- the real files ------------------------------------------------------------------------------

README_ROWS = {
    "sst2": {"train": 67_349, "dev": 872, "test": 1_821},
    "cola": {"train": 8_551, "dev": 1_043, "test": 1_063},
    "mrpc": {"train": 3_668, "dev": 408, "test": 1_725},
    "stsb": {"train": 5_749, "dev": 1_500, "test": 1_379},
    "rte": {"train": 2_490, "dev": 277, "test": 3_000},
    "wnli": {"train": 635, "dev": 71, "test": 146},
    "qnli": {"dev": 5_463},
}


@pytest.mark.realdata
def test_real_glue_files(shared_data: Path) -> None:
    for task, expected in README_ROWS.items():
        assert available_splits(shared_data, task) == list(expected), task
        for split, rows in expected.items():
            data = read_split(shared_data, task, split)  # type: ignore[arg-type]
            assert len(data) == rows, (task, split)
            assert (data.labels is None) == (split == "test"), (task, split)
            assert all(text.strip() for text in data.texts_a), (task, split)
            if split == "test":
                assert data.ids == [str(i) for i in range(rows)], (task, split)  # GLUE's index column
            elif task == "stsb":
                assert all(0.0 <= score <= 5.0 for score in data.labels)  # type: ignore[union-attr]
            else:
                assert set(data.labels) == {0, 1}, (task, split)  # type: ignore[arg-type]
    mrpc = read_split(shared_data, "mrpc", "train")
    assert mrpc.texts_a[0].startswith("Amrozi accused his brother")  # no byte-order mark left over
    assert mrpc.labels is not None and mrpc.labels[0] == 1
    rte = read_split(shared_data, "rte", "dev")
    assert rte.labels is not None and rte.labels[:2] == [1, 0]  # not_entailment, entailment
    assert not available_splits(shared_data, "mnli") and not available_splits(shared_data, "qqp")
