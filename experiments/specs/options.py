"""The options of a registry entry, typed from its builder's signature: the schema of the spec's
``data``, ``model``, ``optimizer`` and ``schedule`` sections.

``model: {name: cnn, channels: [32, 64]}`` is typed by the ``cnn`` builder itself, so a typo in an
option fails before anything trains. The parameters a registry injects (``Registry.injected``: the
data directory, the input shape, the parameters to optimize, ...) are not options.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, create_model

from core.registry import Registry, RegistryUnion, UnknownNameError

SECTIONS = ("data", "model", "optimizer", "schedule")
# fields a section has whatever entry it names (kept when the entry changes), beside ``name``
SHARED_FIELDS: dict[str, tuple[str, ...]] = {
    "data": (),
    "model": (),
    "optimizer": ("lr",),
    "schedule": ("warmup_epochs",),
}


def registry_for(section: str) -> Registry | RegistryUnion:
    """The registry whose entries a section names (KeyError for a section that names none)."""
    if section == "data":
        from datamodules import DATAMODULES

        return DATAMODULES
    if section == "model":
        from tasks import model_registries

        return model_registries()
    if section in ("optimizer", "schedule"):
        from lightning_modules.optim import OPTIMIZERS, SCHEDULES

        return OPTIMIZERS if section == "optimizer" else SCHEDULES
    raise KeyError(section)


def _owner(section: str, name: str) -> Registry:
    registry = registry_for(section)
    return registry.owner(name) if isinstance(registry, RegistryUnion) else registry


@functools.cache
def options_model(section: str, name: str) -> type[BaseModel]:
    """A pydantic model of the options that registry entry ``name`` takes, built from its signature."""
    registry = _owner(section, name)
    entry = registry.get(name)
    target = entry.__init__ if inspect.isclass(entry) else entry
    hints = typing.get_type_hints(target)
    fields: dict[str, Any] = {}
    for param in inspect.signature(target).parameters.values():
        if param.name in registry.injected or param.name == "self":
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (hints.get(param.name, Any), default)
    config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    return create_model(f"{section}_{name}_options", __config__=config, **fields)


def retired_options(section: str, name: str) -> dict[str, Any]:
    """Options entry ``name`` once took and no longer does, at the value every run had: a run's
    identity keeps them, so runs tracked before the option went keep their hashes."""
    if section != "data":
        return {}
    return dict(getattr(registry_for(section).get(name), "retired_options", {}) or {})


def added_options(section: str, name: str) -> dict[str, Any]:
    """Options entry ``name`` took on after runs were tracked, at the default that leaves a run as it
    was: left at it, they stay out of a run's identity, so runs from before them keep their hashes."""
    if section != "data":
        return {}
    return dict(getattr(registry_for(section).get(name), "added_options", {}) or {})


def entry_fields(section: str, name: Any) -> tuple[set[str], Callable[[str, Any], bool]] | None:
    """For a registry section: its shared fields (``lr``) and a test of whether entry ``name`` takes
    an option with a given value; None where ``section`` names no registry or ``name`` no entry."""
    if section not in SHARED_FIELDS or not isinstance(name, str):
        return None
    try:
        options = options_model(section, name)
    except (UnknownNameError, KeyError):
        return None

    def accepts(key: str, value: Any) -> bool:
        field = options.model_fields.get(key)
        if field is None:
            return False
        try:
            TypeAdapter(field.annotation).validate_python(value)
        except ValidationError:
            return False
        return True

    return set(SHARED_FIELDS[section]), accepts
