"""Reading parallel corpora (sentence-aligned translations) as aligned lists of (source, target) strings.

Three layouts:

- Multi30k: ``<dir>/{train,val,test_2016_flickr}.{lang}.gz``, one sentence a line, gzip or plain;
- two aligned plain-text files (``corpus.de`` and ``corpus.en``, optionally gzipped): line ``i`` of
  one translates line ``i`` of the other;
- one delimited file of pairs, one pair a line: the manythings.org Anki exports (``English<TAB>other
  <TAB>attribution``) and the Tatoeba pair downloads (``id<TAB>text<TAB>id<TAB>text``). Columns are
  chosen by 0-based position; extra columns are ignored.

Files are UTF-8 with or without a byte-order mark. Only the line end (``\\n`` or ``\\r\\n``) is cut from a
sentence; blank lines at the very end of a file are dropped. Inside aligned files a blank line is kept,
because dropping it would shift every later line against its translation.
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

from datamodules.download import DATA_DIR_HINT, CorruptDataError, DataNotFoundError
from datamodules.text_files import csv_rows

MULTI30K_SPLITS = {"train": "train", "val": "val", "test": "test_2016_flickr"}  # split -> file stem
MULTI30K_LANGS = ("en", "de", "fr", "cs")
DELIMITERS = {".tsv": "\t", ".tab": "\t", ".txt": "\t", ".csv": ","}  # Anki exports are .txt with tabs


@dataclass(frozen=True)
class ParallelText:
    """Row-aligned sentences: ``targets[i]`` translates ``sources[i]``."""

    sources: list[str]
    targets: list[str]

    def __post_init__(self) -> None:
        if len(self.sources) != len(self.targets):
            raise ValueError(f"{len(self.sources)} source sentences but {len(self.targets)} targets")

    def __len__(self) -> int:
        return len(self.sources)

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return list(zip(self.sources, self.targets, strict=True))


def read_text(path: str | os.PathLike[str]) -> str:
    """A UTF-8 file's text (a ``.gz`` one decompressed); a missing or unreadable file is a DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"{path}: no such file; check the path ({DATA_DIR_HINT}).")
    data = path.read_bytes()
    if path.suffix == ".gz" or data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as err:
            raise CorruptDataError(
                f"{path}: not a complete gzip file ({err}); the download was probably cut short. "
                "Delete it and fetch it again."
            ) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise CorruptDataError(
            f"{path}, line {line}: not valid UTF-8 ({err.reason}); the file was probably saved in another "
            "encoding. Convert it to UTF-8 or replace it with the original file."
        ) from None


def read_sentences(path: str | os.PathLike[str]) -> list[str]:
    """One sentence per line of ``path`` (gzip or plain): line ends cut, trailing blank lines dropped."""
    lines = read_text(path).split("\n")  # not splitlines: a form feed inside a sentence is no line break
    while lines and not lines[-1].strip():
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def read_aligned(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> ParallelText:
    """Two files, one sentence a line, line ``i`` of ``target`` translating line ``i`` of ``source``."""
    sources, targets = read_sentences(source), read_sentences(target)
    if len(sources) != len(targets):
        raise CorruptDataError(
            f"{source} has {len(sources)} lines but {target} has {len(targets)}: a parallel corpus needs "
            "exactly one sentence a line in both files, line i of one translating line i of the other, so "
            "these cannot be paired. Check that both files are the same release and split of the corpus "
            "and that neither was cut short or has a sentence broken over two lines; re-download or "
            "re-export the pair."
        )
    return ParallelText(sources, targets)


def multi30k_files(root: str | os.PathLike[str], split: str, lang: str) -> Path:
    """The file of ``split`` ("train", "val" or "test") in ``lang``: ``.gz`` if present, else plain."""
    if split not in MULTI30K_SPLITS:
        raise ValueError(f"Multi30k has splits {', '.join(MULTI30K_SPLITS)}, not {split!r}")
    path = Path(root) / f"{MULTI30K_SPLITS[split]}.{lang}.gz"
    return path if path.is_file() or not path.with_suffix("").is_file() else path.with_suffix("")


def read_multi30k(
    root: str | os.PathLike[str], source_lang: str, target_lang: str
) -> dict[str, ParallelText]:
    """Multi30k's train, val and test (test_2016_flickr) splits from the folder ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise DataNotFoundError(
            f"{root}: no such folder; Multi30k is read from <data dir>/multi30k/ holding "
            f"train.<lang>.gz, val.<lang>.gz and test_2016_flickr.<lang>.gz ({DATA_DIR_HINT})."
        )
    for lang in (source_lang, target_lang):
        path = multi30k_files(root, "train", lang)
        if not path.is_file():
            present = sorted({p.name.split(".")[1] for p in root.glob("train.*")})
            raise DataNotFoundError(
                f"{path}: no such file; the languages in {root} are {', '.join(present) or 'none'} "
                f"(Multi30k has {', '.join(MULTI30K_LANGS)}). Pick one of those or add the files "
                f"({DATA_DIR_HINT})."
            )
    return {
        split: read_aligned(
            multi30k_files(root, split, source_lang), multi30k_files(root, split, target_lang)
        )
        for split in MULTI30K_SPLITS
    }


def read_pairs(
    path: str | os.PathLike[str],
    source_column: int = 0,
    target_column: int = 1,
    delimiter: str | None = None,
    header: bool = False,
) -> ParallelText:
    """The pairs of a delimited file, one a line; blank lines are skipped, extra columns ignored.

    Tab-separated files (``.tsv``, ``.tab``, ``.txt``: the Anki exports) are split on tabs only, so a
    ``"`` is an ordinary character; ``.csv`` follows the CSV quoting rules. ``delimiter`` overrides the
    suffix's (a ``.gz`` suffix is looked through). ``header`` skips the first non-blank line.
    """
    check_columns(source_column, target_column)
    path = Path(path)
    text = read_text(path)
    if delimiter is None:
        suffix = Path(path.stem).suffix if path.suffix == ".gz" else path.suffix
        delimiter = DELIMITERS.get(suffix.lower())
        if delimiter is None:
            raise ValueError(
                f"{path}: cannot tell the delimiter from the suffix {suffix!r}; name the file .tsv, .txt "
                "or .csv, or pass delimiter="
            )
    if delimiter == "\t":
        lines = text.split("\n")
        rows = [(n, line.removesuffix("\r").split("\t")) for n, line in enumerate(lines, start=1)]
    else:
        rows = csv_rows(path, text, delimiter)
    rows = [(n, fields) for n, fields in rows if any(f.strip() for f in fields)]
    if header and rows:
        rows.pop(0)
    if not rows:
        raise CorruptDataError(f"{path}: no pairs; the file is empty. Write one pair a line into it.")
    need = max(source_column, target_column) + 1
    sources, targets = [], []
    for n, fields in rows:
        if len(fields) < need:
            raise CorruptDataError(
                f"{path}, line {n}: {len(fields)} field(s), but columns {source_column} (source) and "
                f"{target_column} (target) need at least {need}; the line lacks a translation or a "
                f"delimiter. Fix that line, or choose other columns."
            )
        sources.append(fields[source_column])
        targets.append(fields[target_column])
    return ParallelText(sources, targets)


def check_columns(source_column: int, target_column: int) -> None:
    if source_column < 0 or target_column < 0 or source_column == target_column:
        raise ValueError(
            f"source_column and target_column must be two different 0-based positions, got "
            f"{source_column} and {target_column}"
        )
