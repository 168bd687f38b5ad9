"""Modules outside litbench that register entries (a data set, a model, a task kind, a metric).

A new kind of task, data set or model is one file of yours that registers itself on import. Name it
in ``LITBENCH_PLUGINS`` (comma-separated module names, importable from the working directory or
``PYTHONPATH``) and every ``litbench`` command imports it first; a module that registered entries in
the command's own process (a test, a notebook) is found without it. Worker processes import the same
modules before they build a run, so the registrations exist wherever a cell or a trial runs.
"""

from __future__ import annotations

import importlib
import os

from core.errors import InputError
from core.registry import all_registries

ENV = "LITBENCH_PLUGINS"
OWN_PACKAGES = ("core", "datamodules", "lightning_modules", "tasks", "experiments", "reports", "cli")


def _own(module: str) -> bool:
    return module.split(".")[0] in OWN_PACKAGES


def plugin_modules() -> list[str]:
    """The modules a worker must import: those named in ``LITBENCH_PLUGINS`` and every module outside
    litbench that registered an entry in this process (``__main__`` excluded: it cannot be imported)."""
    named = [m.strip() for m in os.environ.get(ENV, "").split(",") if m.strip()]
    found = {m for registry in all_registries() for m in registry.modules() if not _own(m)}
    return list(dict.fromkeys([*named, *sorted(found - {"__main__"})]))


def load_plugins(modules: list[str] | None = None) -> list[str]:
    """Import ``modules`` (default: those named in ``LITBENCH_PLUGINS``); returns them."""
    if modules is None:
        modules = [m.strip() for m in os.environ.get(ENV, "").split(",") if m.strip()]
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise InputError(
                f"plugin module {module!r} (from {ENV} or registered by the command that started this "
                f"worker) cannot be imported: {err}. Put its folder on PYTHONPATH or run from the folder "
                f"that holds it, or remove it from {ENV}"
            ) from None
    return modules
