"""Parallel corpora from the Hugging Face hub (or a local dataset folder) through HF ``datasets``.

Two row layouts are read, the ones translation sets on the hub use:

- a ``translation`` column of ``{lang: sentence}`` dicts (``wmt/wmt14``, ``Helsinki-NLP/opus_books``,
  ``Helsinki-NLP/europarl``);
- one column per language, named by its code (``bentrevett/multi30k``: columns ``de`` and ``en``).

Splits named ``train``, ``validation``/``valid``/``val``/``dev`` and ``test`` are used as they are; a
corpus without one of them (many OPUS sets ship ``train`` only) is split by the caller.
"""

from __future__ import annotations

from typing import Any

from datamodules.download import CorruptDataError, DataNotFoundError
from datamodules.hub import ensure_reachable_or_offline
from datamodules.parallel_files import ParallelText

SPLIT_NAMES = {
    "train": ("train",),
    "val": ("validation", "valid", "val", "dev"),
    "test": ("test",),
}


def read_hub(name: str, config: str | None, source_lang: str, target_lang: str) -> dict[str, ParallelText]:
    """The splits of hub data set ``name`` (configuration ``config``) present under the names of
    ``SPLIT_NAMES``, keyed train/val/test. Raises DataNotFoundError when it cannot be loaded (offline,
    unknown name or configuration) and CorruptDataError when its rows hold neither layout."""
    online = ensure_reachable_or_offline()  # offline: the cache only, at once, without retry noise
    try:
        import datasets
    except ImportError as err:
        raise DataNotFoundError("corpus='hub' needs HF datasets: pip install datasets") from err
    try:
        loaded = datasets.load_dataset(name, config)
    except Exception as err:  # offline, unknown repo, missing configuration: all mean "not loadable"
        raise DataNotFoundError(
            f"could not load the parallel corpus {name!r}"
            + (f" (configuration {config!r})" if config else "")
            + (
                f" with HF datasets ({type(err).__name__}: {err})"
                if online
                else ": the hub cannot be reached from this machine, nor is it cached"
            )
            + ". Check the name and the network; without "
            "a network, export the pairs to two aligned files (corpus: files) or one TSV of pairs "
            "(corpus: pairs) in the data directory."
        ) from err
    splits: dict[str, ParallelText] = {}
    for split, names in SPLIT_NAMES.items():
        found = next((n for n in names if n in loaded), None)
        if found is not None:
            splits[split] = _pairs(loaded[found], f"{name}[{found}]", source_lang, target_lang)
    if "train" not in splits:
        raise CorruptDataError(
            f"{name!r} has splits {', '.join(loaded)} but no 'train'; name the corpus that holds the "
            "training pairs."
        )
    return splits


def _pairs(rows: Any, where: str, source_lang: str, target_lang: str) -> ParallelText:
    """The (source, target) sentences of a ``datasets.Dataset`` in either layout."""
    columns = list(rows.column_names)
    if "translation" in columns:
        sources, targets = [], []
        for n, pair in enumerate(rows["translation"]):
            if not isinstance(pair, dict) or source_lang not in pair or target_lang not in pair:
                present = ", ".join(pair) if isinstance(pair, dict) else type(pair).__name__
                raise CorruptDataError(
                    f"{where}, row {n}: the translation holds {present}, not {source_lang!r} and "
                    f"{target_lang!r}; pick source_lang and target_lang among them, or the hub "
                    "configuration of that language pair."
                )
            sources.append(pair[source_lang])
            targets.append(pair[target_lang])
        return ParallelText(sources, targets)
    if source_lang in columns and target_lang in columns:
        return ParallelText(list(rows[source_lang]), list(rows[target_lang]))
    raise CorruptDataError(
        f"{where}: columns {', '.join(columns)} hold neither a 'translation' column of "
        f"{{language: sentence}} dicts nor the columns {source_lang!r} and {target_lang!r}; pick "
        "source_lang and target_lang among the columns, or export the pairs to a TSV (corpus: pairs)."
    )
