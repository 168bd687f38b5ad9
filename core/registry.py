"""Name -> builder registries (timm style): datamodules, architectures, optimizers, schedules, task
kinds, metrics.

A registry knows which of its builders' parameters the caller injects (``injected``): those are not
options a spec may set. It also remembers the module of each entry, so that entries registered by a
user's own module (a plugin) can be registered again in the worker processes (``core.plugins``).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from core.errors import InputError

T = TypeVar("T")

_ALL: list[Registry] = []  # every registry, for core.plugins


class UnknownNameError(InputError):
    """A name that no registry entry carries; the message lists the known ones."""


def unknown_message(kind: str, name: object, known: Iterable[str]) -> str:
    known = sorted(known)
    close = difflib.get_close_matches(str(name), known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"unknown {kind} {name!r}; known: {', '.join(known)}.{hint}"


class Registry(Generic[T]):
    """A mapping from short lowercase names to builders, filled by a decorator."""

    def __init__(self, kind: str, injected: Iterable[str] = ()) -> None:
        self.kind = kind
        self.injected = frozenset(injected)  # builder parameters the caller supplies, never a spec
        self._entries: dict[str, T] = {}
        self._modules: dict[str, str] = {}
        _ALL.append(self)

    def register(self, name: str) -> Callable[[T], T]:
        def add(entry: T) -> T:
            self.add(name, entry)
            return entry

        return add

    def add(self, name: str, entry: T, module: str | None = None) -> T:
        """Register ``entry`` as ``name``; ``module`` defaults to the module that defines the entry."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry
        self._modules[name] = module or getattr(entry, "__module__", None) or ""
        return entry

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        return unknown_message(self.kind, name, self._entries)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def module_of(self, name: str) -> str:
        """The module that registered ``name``."""
        self.get(name)  # unknown names: the usual error
        return self._modules[name]

    def modules(self) -> set[str]:
        """The modules that registered entries here."""
        return set(self._modules.values()) - {""}

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)


class RegistryUnion:
    """Several registries looked up as one (a spec's ``model`` names a classifier or a seq2seq model);
    the first that knows a name owns it."""

    def __init__(self, kind: str, *registries: Registry) -> None:
        self.kind, self.registries = kind, registries

    def owner(self, name: str) -> Registry:
        """The registry that knows ``name``."""
        for registry in self.registries:
            if name in registry:
                return registry
        raise UnknownNameError(self.unknown_message(name))

    def get(self, name: str):
        return self.owner(name).get(name)

    def unknown_message(self, name: str) -> str:
        return unknown_message(self.kind, name, self.names())

    def names(self) -> list[str]:
        return sorted(name for registry in self.registries for name in registry.names())

    def __contains__(self, name: object) -> bool:
        return any(name in registry for registry in self.registries)

    def __len__(self) -> int:
        return sum(len(registry) for registry in self.registries)


def all_registries() -> list[Registry]:
    return list(_ALL)
