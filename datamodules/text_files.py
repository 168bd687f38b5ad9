"""Reading a user's own text classification or regression corpus from a CSV, TSV or JSON-lines file.

CSV follows the CSV rules (fields may be quoted, with ``""`` for a quote inside). TSV does not: like
the GLUE files, a tab-separated line is split on tabs only, so a ``"`` is an ordinary character.
JSON lines hold one object per line (columns by key) or one array per line (columns by position).
Blank lines are skipped. Files are UTF-8, with or without a byte-order mark.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datamodules.download import DATA_DIR_HINT, CorruptDataError, DataNotFoundError
from datamodules.glue_files import GlueSplit, read_lines, read_tsv

DELIMITERS = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
JSON_LINES = (".jsonl", ".ndjson")
_INT = re.compile(r"[+-]?\d+")

Column = str | int  # a header name, or a 0-based position


@dataclass(frozen=True)
class TextTable(GlueSplit):
    """A GlueSplit plus the class names: ``labels[i]`` is class ``label_names[labels[i]]``; () for
    regression or an unlabelled file."""

    label_names: tuple[str, ...] = ()


def read_table(
    path: str | os.PathLike[str],
    text_column: Column,
    text_pair_column: Column | None = None,
    label_column: Column | None = "label",
    header: bool = True,
    delimiter: str | None = None,
    regression: bool = False,
    label_names: Sequence[str] | None = None,
    id_column: Column | None = None,
) -> TextTable:
    """The examples of a .csv, .tsv or .jsonl file.

    Columns are header names, or 0-based positions (always allowed; the only way when ``header`` is
    False or the JSON lines are arrays). ``label_column=None`` reads an unlabelled file. Labels become:
    floats when ``regression``; the given ``label_names``' ids (names or integer ids in the file); the
    integers themselves when every label is a non-negative integer; else ids of the distinct label
    strings in sorted order. Pass the training file's ``label_names`` when reading its dev/test files,
    so a class missing from one file cannot shift the ids. ``delimiter`` overrides the suffix's.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"{path}: no such file; check the path ({DATA_DIR_HINT}).")
    if path.suffix.lower() in JSON_LINES and delimiter is None:
        rows, names = _json_rows(path)
    else:
        delimiter = delimiter or DELIMITERS.get(path.suffix.lower())
        if delimiter is None:
            raise ValueError(
                f"{path}: cannot tell the format from the suffix {path.suffix!r}; name the file .csv, .tsv "
                "or .jsonl, or pass delimiter="
            )
        rows, names = _delimited_rows(path, delimiter, header)
    if not rows:
        raise CorruptDataError(
            f"{path}: the file has {'a header but ' if names else ''}no rows; it is empty or was cut short. "
            "Write the examples into it, one a line."
        )

    def column(key: Column) -> list[Any]:
        return [_cell(path, line, row, key, names) for line, row in rows]

    labels, found_names = None, ()
    if label_column is not None:
        labels, found_names = _labels(path, rows, column(label_column), regression, label_names)
    return TextTable(
        texts_a=_texts(path, rows, column(text_column), text_column),
        texts_b=None
        if text_pair_column is None
        else _texts(path, rows, column(text_pair_column), text_pair_column),
        labels=labels,
        ids=[str(i) for i in (column(id_column) if id_column is not None else range(len(rows)))],
        path=path,
        label_names=found_names,
    )


def csv_rows(path: Path, text: str, delimiter: str) -> list[tuple[int, list[str]]]:
    """``text`` (the contents of ``path``) parsed as CSV: each row with the line number it starts on."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows, line = [], 1
    try:
        for fields in reader:
            rows.append((line, fields))
            line = reader.line_num + 1  # a quoted field may span lines: the next row starts here
    except csv.Error as err:
        raise CorruptDataError(
            f"{path}, line {line}: not valid CSV ({err}); check the quoting on that line."
        ) from None
    return rows


def _delimited_rows(path: Path, delimiter: str, header: bool) -> tuple[list[tuple[int, Any]], list[str]]:
    if delimiter == "\t":
        rows = read_tsv(path)  # no quoting, as in GLUE
    else:
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as err:
            raise CorruptDataError(
                f"{path}: not valid UTF-8 ({err.reason} at byte {err.start}); convert the file to UTF-8."
            ) from None
        rows = csv_rows(path, text, delimiter)
    rows = [(line, fields) for line, fields in rows if any(f.strip() for f in fields)]  # blank lines
    names = rows.pop(0)[1] if header and rows else []
    width = len(names) if header else len(rows[0][1]) if rows else 0
    for line, fields in rows:
        if len(fields) != width and not (len(fields) > width and not any(fields[width:])):
            first = "header" if header else "first row"
            stray = "delimiter" if delimiter == "\t" else "delimiter or quote"
            raise CorruptDataError(
                f"{path}, line {line}: {len(fields)} fields where the {first} has {width}; a stray {stray} "
                "shifts the columns. Fix that line."
            )
    return rows, names


def _json_rows(path: Path) -> tuple[list[tuple[int, Any]], list[str]]:
    rows: list[tuple[int, Any]] = []
    for line, text in read_lines(path):
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as err:
            raise CorruptDataError(
                f"{path}, line {line}: not valid JSON ({err.msg} at column {err.colno}); each line of a "
                "JSON-lines file must be one complete JSON object or array. Fix that line."
            ) from None
        if not isinstance(row, dict | list):
            raise CorruptDataError(
                f"{path}, line {line}: a JSON {type(row).__name__}, where each line must be an object "
                "(columns by key) or an array (columns by position). Fix that line."
            )
        rows.append((line, row))
    names = list(rows[0][1]) if rows and isinstance(rows[0][1], dict) else []
    return rows, names


def _cell(path: Path, line: int, row: Any, key: Column, names: list[str]) -> Any:
    if isinstance(row, dict):
        if isinstance(key, str) and key in row:
            return row[key]
        present = f"the keys are {', '.join(map(repr, row))}"
    elif isinstance(key, int):
        if -len(row) <= key < len(row):
            return row[key]
        present = f"the row has {len(row)} columns, positions 0-{len(row) - 1}"
    elif key in names:
        return row[names.index(key)]
    elif names:
        present = f"the header's columns are {', '.join(map(repr, names))}"
    else:
        raise ValueError(
            f"{path}: column {key!r} is a name, but the rows have no column names (no header, or JSON "
            "arrays); give a 0-based position"
        )
    raise CorruptDataError(
        f"{path}, line {line}: no column {key!r}; {present}. Pass one of those, or fix the file."
    )


def _texts(path: Path, rows: list[tuple[int, Any]], values: list[Any], key: Column) -> list[str]:
    for (line, _), value in zip(rows, values, strict=True):
        if not isinstance(value, str):
            raise CorruptDataError(
                f"{path}, line {line}: the text column {key!r} holds {value!r}, not a string. Fix that line."
            )
    return values


def _labels(
    path: Path,
    rows: list[tuple[int, Any]],
    values: list[Any],
    regression: bool,
    label_names: Sequence[str] | None,
) -> tuple[list[int] | list[float], tuple[str, ...]]:
    lines = [line for line, _ in rows]
    if regression:
        return [_float(path, line, value) for line, value in zip(lines, values, strict=True)], ()
    keys = [str(value).strip() if value is not None else "" for value in values]
    for line, key in zip(lines, keys, strict=True):
        if not key:
            raise CorruptDataError(f"{path}, line {line}: the label is missing or empty. Fix that line.")
    numbers = [_int(value) for value in values]
    if label_names is None and all(n is not None and n >= 0 for n in numbers):
        ints: list[int] = numbers  # type: ignore[assignment]
        return ints, tuple(str(i) for i in range(max(ints) + 1))
    given = label_names is not None
    label_names = list(label_names) if given else sorted(set(keys))
    ids = {name: i for i, name in enumerate(label_names)}
    labels = []
    for line, key, number in zip(lines, keys, numbers, strict=True):
        if key in ids:
            labels.append(ids[key])
        elif given and number is not None and 0 <= number < len(label_names):
            labels.append(number)  # an id into the given names
        else:
            raise CorruptDataError(
                f"{path}, line {line}: unknown label {key!r}; label_names are "
                f"{', '.join(map(repr, label_names))}, with ids 0-{len(label_names) - 1}. Fix that line, or "
                "pass label_names= with every class."
            )
    return labels, tuple(label_names)


def _int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return int(value) if isinstance(value, str) and _INT.fullmatch(value.strip()) else None


def _float(path: Path, line: int, value: Any) -> float:
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise CorruptDataError(
            f"{path}, line {line}: the regression target {value!r} is not a finite number. Fix that line."
        )
    return number
