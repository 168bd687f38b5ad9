"""Task kinds by name: ``TASKS.get("translation")``; ``task_for_data("mnist")``.

Each kind is one module with a ``tasks.base.TaskKind`` subclass; importing this package registers the
built-in ones (the registry itself lives in ``tasks.registry``). A datamodule names its kind in
``task_kind``; a kind of your own is one file that calls ``register_task(MyKind())``, named in
``LITBENCH_PLUGINS``.
"""

from __future__ import annotations

from tasks import image_classification, masked_lm, text_classification, translation
from tasks.base import ArtifactSink, Built, TaskKind, Training
from tasks.registry import TASKS, model_registries, register_task, scoring_of, task_for_data

__all__ = [
    "TASKS",
    "ArtifactSink",
    "Built",
    "TaskKind",
    "Training",
    "image_classification",
    "masked_lm",
    "model_registries",
    "register_task",
    "scoring_of",
    "task_for_data",
    "text_classification",
    "translation",
]
