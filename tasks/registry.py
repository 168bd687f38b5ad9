"""The task-kind registry and the lookups the engine and the specs make through it."""

from __future__ import annotations

from typing import Any

from core.errors import SpecError
from core.metrics import TaskProtocol
from core.registry import Registry, RegistryUnion
from datamodules import DATAMODULES
from tasks.base import TaskKind

TASKS: Registry[TaskKind] = Registry("task kind")


def register_task(kind: TaskKind) -> TaskKind:
    """Register a task kind under its ``name`` (its module is recorded for worker processes)."""
    return TASKS.add(kind.name, kind, module=type(kind).__module__)


def task_for_data(data: str) -> TaskKind:
    """The task kind that trains datamodule ``data`` (unknown names: the known datamodules)."""
    datamodule = DATAMODULES.get(data)
    kind = getattr(datamodule, "task_kind", None)
    if kind is None or kind not in TASKS:
        raise SpecError(
            f"datamodule {data!r} declares no known task kind ({kind!r}); a datamodule class sets "
            f"`task_kind` to one of: {', '.join(TASKS.names())}"
        )
    return TASKS.get(kind)


def model_registries() -> RegistryUnion:
    """Every task kind's model registry, as one: the ``model`` section of a spec names an entry there."""
    registries: list[Registry] = []
    for name in TASKS.names():
        registry = TASKS.get(name).model_registry()
        if all(registry is not r for r in registries):
            registries.append(registry)
    return RegistryUnion("model", *registries)


def scoring_of(data: str, options: dict[str, Any]) -> TaskProtocol:
    """How runs of datamodule ``data`` with ``options`` are scored, without reading any data."""
    task = task_for_data(data)
    cls = DATAMODULES.get(data)
    declared = getattr(cls, "protocol", None)
    if isinstance(declared, TaskProtocol):  # a class-level declaration: no instance needed
        return task.scoring(cls)
    return task.scoring(cls(data_dir=".", **options))  # constructors read no data (GLUE: the task's)
