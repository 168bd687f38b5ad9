"""Reading the GLUE tasks' TSV files as the official ``glue_data`` download lays them out, and writing
GLUE submission files.

The files are tab-separated with no quoting: a ``"`` inside a sentence is a character of the sentence,
so lines are split on tabs only (a CSV reader would merge rows at unbalanced quotes). Known quirks, all
handled here: CoLA's train/dev files have no header (source, label, original label, sentence) while its
test file has one; MRPC's train and dev files start with a UTF-8 byte-order mark and name the label
``Quality``; STS-B keeps its float ``score`` last among ten columns; RTE, QNLI and MNLI write label
names, the other tasks 0/1; CoLA's dev file does not end in a newline.

Label ids follow Hugging Face ``datasets``' ``nyu-mll/glue`` ClassLabel order everywhere, so an integer
label in any file (ours, an HF export, a model's output) means the same class: see ``TASKS``.
"""

from __future__ import annotations

import difflib
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from core.metrics import direction_of
from core.registry import UnknownNameError
from datamodules.download import DATA_DIR_HINT, CorruptDataError, DataNotFoundError
from datamodules.hub import ensure_reachable_or_offline

Split = Literal["train", "dev", "test", "dev_mismatched", "test_mismatched"]

ROOTS = ("glue", "glue_data", "")  # searched in this order under the data directory; "" is the dir itself
ID_COLUMNS = ("index", "id", "idx")  # the first present gives GlueSplit.ids; else row numbers
HF_EXPORT_SUFFIX = "_hf_export.tsv"  # dev.tsv -> dev_hf_export.tsv: a Hugging Face copy of the split
_STANDARD_FILES = {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"}
_REPLACE = "replace it with the official file (the GLUE download's glue_data/<task>/ folder)"
_ONE_LINE = str.maketrans("\t\r\n", "   ")  # a tab or line break inside a text would break the TSV


@dataclass(frozen=True, kw_only=True)
class GlueTask:
    """One GLUE task: where its files are, how to read them, and how it is scored."""

    name: str  # the HF datasets config name: cola, sst2, ...
    folder: str  # the folder in glue_data: CoLA, SST-2, ...
    pair: bool  # two texts per example
    label_names: tuple[str, ...]  # id i is label_names[i] (HF datasets' order); () for regression
    metric: str  # the primary metric, logged as val/<metric>
    metrics: tuple[str, ...]  # everything GLUE reports for the task, primary first
    string_labels: bool = False  # the official files and the submission use label names, not ids
    files: Mapping[str, str] = field(default_factory=lambda: dict(_STANDARD_FILES))  # split -> file
    submission_files: Mapping[str, str] = field(default_factory=dict)  # split -> file name GLUE expects
    text_a_columns: tuple[str, ...]  # candidate header names: the official one, then HF's
    text_b_columns: tuple[str, ...] = ()
    label_columns: tuple[str, ...] = ("label",)
    headerless_files: tuple[str, ...] = ()  # official files without a header line ...
    headerless_header: tuple[str, ...] = ()  # ... read as if they had this one
    hf_text_columns: tuple[str, ...]  # the text features of the HF datasets config, for the export

    @property
    def mode(self) -> Literal["max", "min"]:
        """Whether higher or lower values of the primary metric are better: its declared direction."""
        return direction_of(self.metric)

    @property
    def regression(self) -> bool:
        return not self.label_names

    @property
    def num_labels(self) -> int:
        return 1 if self.regression else len(self.label_names)

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.files)


@dataclass(frozen=True)
class GlueSplit:
    """One split's examples, row-aligned: ``texts_b`` is None for single-sentence tasks, ``labels``
    None for an unlabelled (test) split, ``ids`` the file's index column or row numbers from 0."""

    texts_a: list[str]
    texts_b: list[str] | None
    labels: list[int] | list[float] | None
    ids: list[str]
    path: Path  # the file it was read from

    def __post_init__(self) -> None:
        lengths = {len(self.texts_a), len(self.ids)}
        lengths |= {len(self.texts_b)} if self.texts_b is not None else set()
        lengths |= {len(self.labels)} if self.labels is not None else set()
        if len(lengths) != 1:
            raise ValueError(f"{self.path}: the columns have different lengths {sorted(lengths)}")

    def __len__(self) -> int:
        return len(self.texts_a)


_NLI = ("entailment", "not_entailment")
_PAIR = ("sentence1",), ("sentence2",)
_MNLI_FILES = {
    "train": "train.tsv",
    "dev": "dev_matched.tsv",
    "dev_mismatched": "dev_mismatched.tsv",
    "test": "test_matched.tsv",
    "test_mismatched": "test_mismatched.tsv",
}

TASKS: dict[str, GlueTask] = {
    task.name: task
    for task in [
        GlueTask(
            name="cola",
            folder="CoLA",
            pair=False,
            label_names=("unacceptable", "acceptable"),
            metric="mcc",
            metrics=("mcc",),
            submission_files={"test": "CoLA.tsv"},
            text_a_columns=("sentence",),
            headerless_files=("train.tsv", "dev.tsv"),
            headerless_header=("source", "label", "original_label", "sentence"),
            hf_text_columns=("sentence",),
        ),
        GlueTask(
            name="sst2",
            folder="SST-2",
            pair=False,
            label_names=("negative", "positive"),
            metric="acc",
            metrics=("acc",),
            submission_files={"test": "SST-2.tsv"},
            text_a_columns=("sentence",),
            hf_text_columns=("sentence",),
        ),
        GlueTask(
            name="mrpc",
            folder="MRPC",
            pair=True,
            label_names=("not_equivalent", "equivalent"),
            metric="f1",
            metrics=("f1", "acc"),
            submission_files={"test": "MRPC.tsv"},
            text_a_columns=("#1 String", "sentence1"),
            text_b_columns=("#2 String", "sentence2"),
            label_columns=("Quality", "label"),
            hf_text_columns=("sentence1", "sentence2"),
        ),
        GlueTask(
            name="qqp",
            folder="QQP",
            pair=True,
            label_names=("not_duplicate", "duplicate"),
            metric="f1",
            metrics=("f1", "acc"),
            submission_files={"test": "QQP.tsv"},
            text_a_columns=("question1",),
            text_b_columns=("question2",),
            label_columns=("is_duplicate", "label"),
            hf_text_columns=("question1", "question2"),
        ),
        GlueTask(
            name="stsb",
            folder="STS-B",
            pair=True,
            label_names=(),
            metric="pearson",
            metrics=("pearson", "spearman"),
            submission_files={"test": "STS-B.tsv"},
            text_a_columns=_PAIR[0],
            text_b_columns=_PAIR[1],
            label_columns=("score", "label"),
            hf_text_columns=("sentence1", "sentence2"),
        ),
        GlueTask(
            name="mnli",
            folder="MNLI",
            pair=True,
            label_names=("entailment", "neutral", "contradiction"),
            metric="acc",  # on dev (matched); dev_mismatched is scored as a split of its own
            metrics=("acc",),
            string_labels=True,
            files=_MNLI_FILES,
            submission_files={"test": "MNLI-m.tsv", "test_mismatched": "MNLI-mm.tsv"},
            text_a_columns=("sentence1", "premise"),
            text_b_columns=("sentence2", "hypothesis"),
            label_columns=("gold_label", "label"),
            hf_text_columns=("premise", "hypothesis"),
        ),
        GlueTask(
            name="qnli",
            folder="QNLI",
            pair=True,
            label_names=_NLI,
            metric="acc",
            metrics=("acc",),
            string_labels=True,
            submission_files={"test": "QNLI.tsv"},
            text_a_columns=("question",),
            text_b_columns=("sentence",),
            hf_text_columns=("question", "sentence"),
        ),
        GlueTask(
            name="rte",
            folder="RTE",
            pair=True,
            label_names=_NLI,
            metric="acc",
            metrics=("acc",),
            string_labels=True,
            submission_files={"test": "RTE.tsv"},
            text_a_columns=_PAIR[0],
            text_b_columns=_PAIR[1],
            hf_text_columns=("sentence1", "sentence2"),
        ),
        GlueTask(
            name="wnli",
            folder="WNLI",
            pair=True,
            label_names=("not_entailment", "entailment"),  # the files' 0/1; note: reversed from RTE/QNLI
            metric="acc",
            metrics=("acc",),
            submission_files={"test": "WNLI.tsv"},
            text_a_columns=_PAIR[0],
            text_b_columns=_PAIR[1],
            hf_text_columns=("sentence1", "sentence2"),
        ),
    ]
}


def get_task(name: str) -> GlueTask:
    """The task called ``name``; an unknown name lists the known ones and suggests the closest."""
    try:
        return TASKS[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), TASKS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownNameError(f"unknown GLUE task {name!r}; known: {', '.join(TASKS)}.{hint}") from None


def _check_split(task: GlueTask, split: str) -> str:
    if split not in task.files:
        raise ValueError(
            f"GLUE task {task.name!r} has no split {split!r}; its splits: {', '.join(task.files)}"
        )
    return task.files[split]


def candidate_paths(data_dir: str | os.PathLike[str], task: str, split: str) -> list[Path]:
    """Where ``read_split`` looks, in order: the official file under each root, then HF exports."""
    spec = get_task(task)
    filename = _check_split(spec, split)
    exported = Path(filename).stem + HF_EXPORT_SUFFIX
    return [Path(data_dir, root, spec.folder, name) for name in (filename, exported) for root in ROOTS]


def available_splits(data_dir: str | os.PathLike[str], task: str) -> list[str]:
    """The task's splits that have a file under ``data_dir``."""
    spec = get_task(task)
    return [s for s in spec.files if any(p.is_file() for p in candidate_paths(data_dir, task, s))]


def read_split(data_dir: str | os.PathLike[str], task: str, split: Split) -> GlueSplit:
    """One split of a GLUE task, from the first of ``candidate_paths`` that exists.

    Labels are ids in ``TASKS[task].label_names`` order (label names and integer ids are both
    accepted in the files), floats for STS-B, None where the file has no label column (test).
    """
    spec = get_task(task)
    candidates = candidate_paths(data_dir, task, split)
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise DataNotFoundError(_missing_message(Path(data_dir), spec, split, candidates))
    rows = read_tsv(path)
    if not rows:
        raise CorruptDataError(f"{path}: the file is empty; {_REPLACE}.")
    headerless = path.name in spec.headerless_files
    header = list(spec.headerless_header) if headerless else rows.pop(0)[1]
    if not rows:
        raise CorruptDataError(f"{path}: the file has a header but no rows; {_REPLACE}.")
    rows = [(line, _fit(path, line, fields, header)) for line, fields in rows]

    a = _column(path, header, spec.text_a_columns, "first text")
    b = _column(path, header, spec.text_b_columns, "second text") if spec.pair else None
    label = _column(path, header, spec.label_columns, "label", required=not split.startswith("test"))
    index = next((header.index(c) for c in ID_COLUMNS if c in header), None)

    labels: list[int] | list[float] | None = None
    if label is not None:
        parse = _parse_score if spec.regression else _label_parser(spec)
        labels = [parse(path, line, fields[label]) for line, fields in rows]  # type: ignore[assignment]
    ids = [fields[index] for _, fields in rows] if index is not None else [str(i) for i in range(len(rows))]
    return GlueSplit(
        texts_a=[fields[a] for _, fields in rows],
        texts_b=None if b is None else [fields[b] for _, fields in rows],
        labels=labels,
        ids=ids,
        path=path,
    )


def read_tsv(path: Path) -> list[tuple[int, list[str]]]:
    """``(line number, fields)`` for each line of a tab-separated file, split on tabs only (no quoting)."""
    return [(number, line.split("\t")) for number, line in read_lines(path)]


def read_lines(path: Path) -> list[tuple[int, str]]:
    """``(line number, line)`` for each line of a UTF-8 text file, with or without a byte-order mark.

    Accepts CRLF line ends and drops blank lines at the end of the file. Lines are split on ``\\n``
    only: ``str.splitlines`` would also split at form feeds and other separators inside sentences.
    """
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise CorruptDataError(
            f"{path}, line {line}: not valid UTF-8 ({err.reason} at byte {err.start}); the file was probably "
            "saved in another encoding. Convert it to UTF-8 or replace it with the original file."
        ) from None
    lines = text.split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    return [(number, line.removesuffix("\r")) for number, line in enumerate(lines, start=1)]


def _fit(path: Path, line: int, fields: list[str], header: Sequence[str]) -> list[str]:
    """The row cut to the header's width; only empty trailing fields (stray tabs) may be cut."""
    if len(fields) == len(header) or (len(fields) > len(header) and not any(fields[len(header) :])):
        return fields[: len(header)]
    raise CorruptDataError(
        f"{path}, line {line}: {len(fields)} tab-separated fields where the header has {len(header)} "
        f"({', '.join(header)}); a tab inside a text or a cut line shifts the columns, so the row cannot be "
        f"read safely. Fix that line or {_REPLACE}."
    )


def _column(
    path: Path, header: Sequence[str], candidates: Sequence[str], what: str, required: bool = True
) -> int | None:
    for name in candidates:
        if name in header:
            return header.index(name)
    if not required:
        return None
    raise CorruptDataError(
        f"{path}: no {what} column (expected one named {' or '.join(map(repr, candidates))}); the columns "
        f"are {', '.join(map(repr, header))}. It is not this task's file or its header was changed; "
        f"{_REPLACE}."
    )


def _label_parser(task: GlueTask) -> Callable[[Path, int, str], int]:
    ids = {name: i for i, name in enumerate(task.label_names)}
    ids.update({str(i): i for i in range(task.num_labels)})
    valid = f"{', '.join(map(repr, task.label_names))} or their ids 0-{task.num_labels - 1}"

    def parse(path: Path, line: int, value: str) -> int:
        try:
            return ids[value.strip()]
        except KeyError:
            raise CorruptDataError(
                f"{path}, line {line}: unknown label {value!r} for GLUE task {task.name!r}; the valid labels "
                f"are {valid}. Fix that line or {_REPLACE}."
            ) from None

    return parse


def _parse_score(path: Path, line: int, value: str) -> float:
    try:
        score = float(value)
    except ValueError:
        score = math.nan
    if not math.isfinite(score):
        raise CorruptDataError(
            f"{path}, line {line}: the score {value!r} is not a finite number (STS-B scores are floats in "
            f"[0, 5]). Fix that line or {_REPLACE}."
        )
    return score


def _missing_message(data_dir: Path, task: GlueTask, split: str, candidates: Sequence[Path]) -> str:
    present = sorted(
        str(p)
        for root in ROOTS
        if (folder := data_dir / root / task.folder).is_dir()
        for p in folder.glob("*.tsv")
    )
    found = f" The task's folders hold only: {', '.join(present)}." if present else ""
    return (
        f"GLUE task {task.name!r}, split {split!r}: none of these files exists: "
        f"{', '.join(map(str, candidates))}.{found} Download the official GLUE data (the glue_data folder "
        f"that GLUE's download_glue_data.py writes, from https://gluebenchmark.com/tasks) and put its "
        f"{task.folder}/ folder into {data_dir / 'glue'}, or, where a network is available, call "
        f"datamodules.glue_files.download_with_datasets({str(data_dir)!r}, {task.name!r}), which writes "
        f"Hugging Face's nyu-mll/glue copy as *{HF_EXPORT_SUFFIX} files ({DATA_DIR_HINT})."
    )


def write_submission(
    path: str | os.PathLike[str], task: str, ids: Iterable[Any], predictions: Iterable[Any]
) -> Path:
    """A GLUE submission file: ``index<TAB>prediction`` lines, written atomically.

    ``predictions`` are label ids (written as names for MNLI, QNLI and RTE, as ids elsewhere) or
    STS-B scores (written with 3 decimals). Tensors and arrays are accepted. The file name GLUE
    expects is ``TASKS[task].submission_files[split]``.
    """
    spec = get_task(task)
    ids = [str(i) for i in _as_list(ids)]
    predictions = _as_list(predictions)
    if len(ids) != len(predictions):
        raise ValueError(f"{len(ids)} ids but {len(predictions)} predictions for the {task} submission")
    lines = ["index\tprediction"]
    for index, value in zip(ids, predictions, strict=True):
        if spec.regression:
            if not math.isfinite(score := float(value)):
                raise ValueError(f"the STS-B prediction for index {index} is {score}, not a finite number")
            lines.append(f"{index}\t{score:.3f}")
            continue
        label = int(value)
        if label != value or not 0 <= label < spec.num_labels:
            valid = f"0-{spec.num_labels - 1}"
            raise ValueError(
                f"the {task} prediction for index {index} is {value!r}, not a label id in {valid}"
            )
        lines.append(f"{index}\t{spec.label_names[label] if spec.string_labels else label}")
    path = Path(path)
    _write_atomic(path, "\n".join(lines) + "\n")
    return path


def _as_list(values: Iterable[Any]) -> list[Any]:
    tolist = getattr(values, "tolist", None)  # tensors and arrays: Python numbers, not 0-d tensors
    return list(tolist()) if callable(tolist) else list(values)


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp_name, path)  # readers see the old file or the complete new one
    finally:
        Path(tmp_name).unlink(missing_ok=True)


def _hf_split(task: GlueTask, split: str) -> str:
    name = {"dev": "validation", "dev_mismatched": "validation_mismatched"}.get(split, split)
    return f"{name}_matched" if task.name == "mnli" and split in ("dev", "test") else name


def download_with_datasets(data_dir: str | os.PathLike[str], task: str) -> Path:
    """Write every split of ``task`` from Hugging Face's ``nyu-mll/glue`` (needs the network) as
    ``<data_dir>/glue/<Folder>/<split file stem>_hf_export.tsv``, which ``read_split`` reads when the
    official file is absent. Columns: the HF text features, ``label`` (ids; left out for the unlabelled
    test splits, where HF stores -1) and ``idx``. Returns the folder."""
    spec = get_task(task)
    online = ensure_reachable_or_offline()  # offline: the cache only, at once, without retry noise
    try:
        import datasets  # lazily: heavy, and only this function needs it
    except ImportError:
        raise DataNotFoundError(
            f"GLUE task {task!r}: downloading needs the 'datasets' package (pip install datasets); or put "
            f"the official glue_data/{spec.folder}/ folder into {Path(data_dir, 'glue')} ({DATA_DIR_HINT})."
        ) from None
    folder = Path(data_dir, "glue", spec.folder)
    for split, filename in spec.files.items():
        try:
            rows = datasets.load_dataset("nyu-mll/glue", spec.name, split=_hf_split(spec, split))
        except Exception as err:  # offline, hub errors, missing config: all mean "not downloadable"
            why = f"({err})" if online else "(the hub cannot be reached from this machine, nor is it cached)"
            raise DataNotFoundError(
                f"GLUE task {task!r}, split {split!r}: could not load nyu-mll/glue from the Hugging Face hub "
                f"{why}. Check the network, or put the official glue_data/{spec.folder}/ folder into "
                f"{folder.parent} ({DATA_DIR_HINT})."
            ) from err
        columns = [*spec.hf_text_columns, *([] if split.startswith("test") else ["label"]), "idx"]
        lines = ["\t".join(columns)]
        lines += ["\t".join(str(row[c]).translate(_ONE_LINE) for c in columns) for row in rows]
        _write_atomic(folder / (Path(filename).stem + HF_EXPORT_SUFFIX), "\n".join(lines) + "\n")
    return folder
