"""The datamodule registry: ``create_datamodule("mnist", batch_size=256)``, ``available_datamodules()``.

Each datamodule class registers itself with ``@DATAMODULES.register(name)`` and declares its task
kind (``task_kind``, a name in ``tasks.TASKS``) and how it is scored (``protocol``). Its constructor's
typed keywords are the options of the spec's ``data`` section; ``data_dir``, ``seed`` and ``augment``
are injected by the runner.
"""

from __future__ import annotations

from typing import Any

import lightning

from core.registry import Registry

DATAMODULES: Registry[type[lightning.LightningDataModule]] = Registry(
    "datamodule", injected=("self", "data_dir", "seed", "augment")
)


def create_datamodule(name: str, **kwargs: Any) -> lightning.LightningDataModule:
    """The datamodule registered as ``name``, built with ``kwargs``; unknown names list the known ones."""
    return DATAMODULES.get(name)(**kwargs)


def available_datamodules() -> list[str]:
    return DATAMODULES.names()
