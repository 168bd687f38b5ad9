"""Datamodules by name: ``create_datamodule("mnist", batch_size=256)``, ``available_datamodules()``."""

from __future__ import annotations

from typing import Any

import lightning

from datamodules.augment import AugmentationPolicy, augment_batch
from datamodules.base import ImageClassificationDataModule, InMemoryBatchLoader, TaskProtocol
from datamodules.download import CorruptDataError, DataError, DataNotFoundError
from experiments.registry import Registry

DATAMODULES: Registry[type[lightning.LightningDataModule]] = Registry("datamodule")

# imported after DATAMODULES exists: each module registers its classes into it
from datamodules import digits, glue, mnist, seq2seq, text_classification  # noqa: E402

__all__ = [
    "DATAMODULES",
    "AugmentationPolicy",
    "CorruptDataError",
    "DataError",
    "DataNotFoundError",
    "ImageClassificationDataModule",
    "InMemoryBatchLoader",
    "TaskProtocol",
    "augment_batch",
    "available_datamodules",
    "create_datamodule",
    "digits",
    "glue",
    "mnist",
    "seq2seq",
    "text_classification",
]


def create_datamodule(name: str, **kwargs: Any) -> lightning.LightningDataModule:
    """The datamodule registered as ``name``, built with ``kwargs``; unknown names list the known ones."""
    return DATAMODULES.get(name)(**kwargs)


def available_datamodules() -> list[str]:
    return DATAMODULES.names()
