"""The one formatter of spec errors: pydantic's report as one paragraph that names each key, its path
in the file (with the line where the YAML parser saw it) and the fix.

``SpecSource`` remembers where a spec came from (a file, its composed YAML, the ``--set`` overrides
applied to it), so every error points at the line that caused it: ``grids/x.yaml:12: axes.lr: ...``.
"""

from __future__ import annotations

import difflib
import inspect
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from core.errors import SpecError

Loc = tuple[str | int, ...]  # a path in a spec file: keys and list indices


def dotted(loc: Sequence[str | int]) -> str:
    """``axes.optimizer[1].lr`` for the loc ``('axes', 'optimizer', 1, 'lr')``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def line_of(node: yaml.Node | None, loc: Loc) -> int | None:
    """The 1-based line of the deepest part of ``loc`` found in the composed YAML (a key's own line)."""
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if found is None:
                return line
            line, node = found[0].start_mark.line + 1, found[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


@dataclass(frozen=True)
class SpecSource:
    """Where a spec came from, to point errors at the line of the file that caused them."""

    path: str
    root: yaml.Node | None = None  # the composed YAML, which keeps each node's line
    overrides: tuple[tuple[str, str], ...] = ()  # (dotted key, the `key=value` text) set on the base
    prefix: Loc = ()  # where this spec sits in its file (a grid's tune block: ("tune",))

    @classmethod
    def of_file(cls, path: str, text: str, overrides: tuple[tuple[str, str], ...] = ()) -> SpecSource:
        return cls(path, yaml.compose(text, Loader=yaml.SafeLoader), overrides)

    def within(self, *prefix: str | int) -> SpecSource:
        """The same file, for a spec nested at ``prefix`` (its locations are relative to it)."""
        return SpecSource(self.path, self.root, self.overrides, (*self.prefix, *prefix))

    def at(self, loc: Loc) -> str:
        """``file:line: path`` for a location in the file; an override names itself instead."""
        if loc[:1] == ("--set",):
            return f"{self.path}: override {loc[1]!r}"
        full = (*self.prefix, *loc)
        line = line_of(self.root, full)
        return f"{self.path}:{line}: {dotted(full)}" if line else f"{self.path}: {dotted(full)}"

    def line(self, loc: Loc) -> str:
        """``file:line`` for a location (a base key outside the prefix is looked up from the top)."""
        line = line_of(self.root, (*self.prefix, *loc)) or line_of(self.root, loc)
        return f"{self.path}:{line}" if line else self.path


def _unwrap(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _members(annotation: Any) -> list[Any]:
    annotation = _unwrap(annotation)
    if get_origin(annotation) in (Union, types.UnionType):
        return [_unwrap(a) for a in get_args(annotation) if a is not type(None)]
    return [annotation]


def _is_model(annotation: Any) -> bool:
    return inspect.isclass(annotation) and issubclass(annotation, BaseModel)


def _discriminated(annotation: Any) -> dict[str, type[BaseModel]]:
    """Tag -> member of a discriminated union of models (``type: float`` -> FloatParam), else {}."""
    tags = {}
    for member in _members(annotation):
        if not _is_model(member):
            return {}
        for name, info in member.model_fields.items():
            args = get_args(info.annotation) if get_origin(info.annotation) is not None else ()
            if name == "type" and args and all(isinstance(a, str) for a in args):
                tags.update(dict.fromkeys(args, member))
    return tags


def walk(model: type[BaseModel], loc: Loc) -> tuple[Loc, list[str]]:
    """Follow ``loc`` through ``model``'s annotations: the loc without pydantic's union tags, and the
    valid keys where it ends (none where the end is not a model)."""
    annotation: Any = model
    clean: list[str | int] = []
    for part in loc:
        members = _members(annotation)
        tags = _discriminated(annotation)
        if tags and part in tags:  # pydantic puts the chosen member's tag in the path: skip it
            annotation = tags[part]
            continue
        model_member = next((m for m in members if _is_model(m)), None)
        clean.append(part)
        if model_member is not None:
            field = model_member.model_fields.get(str(part))
            annotation = field.annotation if field else None
        elif members and get_origin(members[0]) in (dict, list, tuple, Mapping, Sequence):
            args = get_args(members[0])
            annotation = args[-1] if args else None
        else:
            annotation = None
    valid: list[str] = []
    for member in _members(annotation):
        if _is_model(member):
            valid = [f for f in member.model_fields if f != "type" or not _discriminated(annotation)]
            break
    return tuple(clean), valid


def problem(
    e: Mapping[str, Any],
    model: type[BaseModel],
    prefix: Loc = (),
    unknown: Callable[[str, str, list[str]], str] | None = None,
) -> str:
    """One pydantic error as a phrase: ``unknown key 'a.b' (valid keys here: ...; did you mean ...?)``,
    ``a.b: <message> (got <input>)``. ``prefix`` is prepended to the shown path; ``unknown`` may
    phrase an unknown key itself (``(path, key, valid keys) -> text``)."""
    loc, valid = walk(model, tuple(e["loc"]))
    path = dotted((*prefix, *loc)) or "(top level)"
    if e["type"] == "extra_forbidden":
        _, valid = walk(model, tuple(e["loc"])[:-1])
        key = str(loc[-1]) if loc else ""
        if unknown is not None:
            return unknown(path, key, valid)
        close = difflib.get_close_matches(key, valid, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown key {path!r} (valid keys here: {', '.join(valid)}{hint})"
    if e["type"] in ("union_tag_invalid", "union_tag_not_found"):
        ctx = e.get("ctx", {})
        tags = str(ctx.get("expected_tags", "")).replace("'", "")
        key = str(ctx.get("discriminator", "type")).strip("'")
        return f"{path}: {key} must be one of {tags} (got {ctx.get('tag')!r})"
    if e["type"] == "value_error":
        message = e["msg"].removeprefix("Value error, ")
        return f"{path}: {message}" if loc or prefix else message
    return f"{path}: {e['msg']} (got {e.get('input')!r})"


def problems(err: ValidationError, model: type[BaseModel], prefix: Loc = ()) -> list[str]:
    return [problem(e, model, prefix) for e in err.errors()]


def spec_error(
    err: ValidationError,
    model: type[BaseModel],
    where: str | SpecSource,
    prefix: Loc = (),
) -> SpecError:
    """The whole report as one SpecError: each problem at its file line (a ``SpecSource``) or after a
    plain ``where`` label."""
    if isinstance(where, SpecSource):
        parts = []
        for e in err.errors():
            line = where.line((*prefix, *walk(model, tuple(e["loc"]))[0]))
            parts.append(f"{line}: {problem(e, model, prefix).rstrip('.')}")
        return SpecError("; ".join(parts) + ".")
    return SpecError(f"{where}: " + "; ".join(problems(err, model, prefix)) + ".")
