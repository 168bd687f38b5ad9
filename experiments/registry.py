"""Name -> builder registries (timm style): architectures, datamodules, optimizers, schedules."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(ValueError):
    """A name that no registry entry carries; the message lists the known ones."""


class Registry(Generic[T]):
    """A mapping from short lowercase names to builders, filled by a decorator."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = entry
            return entry

        return add

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(str(name), self._entries, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}.{hint}"

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)


class RegistryUnion:
    """Several registries looked up as one (a spec's ``model`` names a classifier or a seq2seq model);
    the first that knows a name owns it."""

    def __init__(self, kind: str, *registries: Registry) -> None:
        self.kind, self._registries = kind, registries

    def get(self, name: str):
        for registry in self._registries:
            if name in registry:
                return registry.get(name)
        raise UnknownNameError(self.unknown_message(name))

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(str(name), self.names(), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}.{hint}"

    def names(self) -> list[str]:
        return sorted(name for registry in self._registries for name in registry.names())

    def __contains__(self, name: object) -> bool:
        return any(name in registry for registry in self._registries)

    def __len__(self) -> int:
        return sum(len(registry) for registry in self._registries)
