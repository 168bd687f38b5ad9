"""A parallel corpus's train/val/test splits: one pool cut by a seeded split, or the user's own files.

``path`` of a ``files`` or ``pairs`` corpus names one pool (a string) or the splits' own files (a
mapping from ``train``, ``val`` and ``test`` to a path, e.g. ``{train: europarl, test: newstest2013}``):

- train only: the pool, cut into train/val/test as a single path is (``val_fraction``, ``test_fraction``);
- train and test: test is that file, every line in file order; val is a seeded ``val_fraction`` of the
  train file, never of test;
- train, val and test: each is its file, exactly.

Val without test is refused: the split results are reported on must not be carved from a training file
while a held-out file sits unused.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Mapping, Sequence

import torch

from datamodules.download import DataError
from datamodules.parallel_files import ParallelText

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def check_split_paths(path: Mapping[str, str], corpus: str) -> None:
    """A clear ValueError for a split mapping a corpus cannot read: an unknown or missing split."""
    for key in path:
        if key not in SPLITS:
            close = difflib.get_close_matches(str(key), SPLITS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(
                f"path of corpus={corpus!r} names the splits train, val and test, not {key!r}{hint}"
            )
    if "train" not in path:
        raise ValueError(f"path of corpus={corpus!r} names no 'train' file; every corpus needs one")
    if "val" in path and "test" not in path:
        raise ValueError(
            f"path of corpus={corpus!r} gives val but no test: add your test file, or drop val so val "
            "and test are both cut from train"
        )
    empty = [key for key, value in path.items() if not str(value).strip()]
    if empty:
        raise ValueError(f"path of corpus={corpus!r}: the {empty[0]!r} file is an empty name")


def split_pool(
    pool: ParallelText, val_fraction: float, test_fraction: float, seed: int, name: str
) -> dict[str, ParallelText]:
    """A seeded train/val/test partition of ``pool``; each split keeps file order."""
    n = len(pool)
    n_test = max(1, round(n * test_fraction))
    n_val = max(1, round(n * val_fraction))
    if n_val + n_test >= n:
        raise DataError(
            f"{name}: {n} pairs are too few to hold out {n_val} for val and {n_test} for test; "
            "add pairs or lower val_fraction and test_fraction"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    parts = {
        "train": order[n_val + n_test :],
        "val": order[n_test : n_test + n_val],
        "test": order[:n_test],
    }
    return {split: rows(pool, index.sort().values.tolist()) for split, index in parts.items()}


def hold_out_val(train: ParallelText, val_fraction: float, seed: int, name: str) -> dict[str, ParallelText]:
    """Train and a seeded ``val_fraction`` of it as val, both in file order."""
    n = len(train)
    n_val = max(1, round(n * val_fraction))
    if n_val >= n:
        raise DataError(
            f"{name}: {n} training pairs are too few to hold out {n_val} for val; add pairs, lower "
            "val_fraction or give path a val file"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return {
        "train": rows(train, order[n_val:].sort().values.tolist()),
        "val": rows(train, order[:n_val].sort().values.tolist()),
    }


def read_splits(
    read: Callable[[str], ParallelText],
    path: str | Mapping[str, str],
    val_fraction: float,
    test_fraction: float,
    seed: int,
    name: str,
) -> dict[str, ParallelText]:
    """Train, val and test of ``path`` (one pool or the splits' files), ``read`` reading each entry."""
    files = {"train": path} if isinstance(path, str) else dict(path)
    if set(files) == {"train"}:
        return split_pool(read(files["train"]), val_fraction, test_fraction, seed, name)
    splits = {split: read(files[split]) for split in SPLITS if split in files}
    if "val" not in splits:
        splits |= hold_out_val(splits["train"], val_fraction, seed, name)
    seen = set(splits["train"].pairs) | set(splits["val"].pairs)
    leaked = sum(pair in seen for pair in splits["test"].pairs)
    if leaked:  # the user's files; kept as given, but a test score over seen pairs deserves a word
        log.warning("%s: %d of %d test pairs also occur in train or val", name, leaked, len(splits["test"]))
    return {split: splits[split] for split in SPLITS}


def rows(text: ParallelText, index: Sequence[int]) -> ParallelText:
    return ParallelText([text.sources[i] for i in index], [text.targets[i] for i in index])
