"""Datamodules by name: ``create_datamodule("mnist", batch_size=256)``, ``available_datamodules()``.

Importing this package registers every built-in datamodule (``datamodules.registry`` holds the
registry itself, so the modules that register into it never import this package's ``__init__``).
"""

from __future__ import annotations

from core.metrics import TaskProtocol
from datamodules import digits, glue, masked_text, mnist, seq2seq, text_classification
from datamodules.augment import AugmentationPolicy, augment_batch
from datamodules.base import ImageClassificationDataModule, InMemoryBatchLoader
from datamodules.download import CorruptDataError, DataError, DataNotFoundError
from datamodules.registry import DATAMODULES, available_datamodules, create_datamodule

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
    "masked_text",
    "mnist",
    "seq2seq",
    "text_classification",
]
