"""Reading spec files and setting values into raw specs: the one rule for dotted keys.

``set_value(raw, "optimizer.lr", 0.01)`` is how a ``--set`` override, a grid axis value and a sampled
search-space value all reach a raw spec, so a key means the same thing everywhere:

- ``section.key: value`` sets one field, creating sections on the way (``model: cnn`` shorthand
  becomes ``{name: cnn}`` first).
- ``section.name: other`` on a registry section (data, model, optimizer, schedule) switches the entry:
  the section keeps its shared fields (``lr``, ``warmup_epochs``) and those options of the old entry
  that the new one also takes with a value valid there (adam's ``betas`` for adamw), and drops the
  rest (sgd's ``momentum`` means nothing to adam, an mlp's ``hidden: [128]`` nothing to an lstm).
- a mapping is a partial spec: merged into the section, unless it names a different entry, which
  replaces the section.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from core.errors import SpecError


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``tree['a']['b'] = value`` for ``dotted='a.b'``, creating sections on the way."""
    *parents, leaf = dotted.split(".")
    node = tree
    for part in parents:
        child = node.get(part)
        if isinstance(child, str):  # `model: cnn` shorthand, then `model.dropout=...`
            child = {"name": child}
        if child is not None and not isinstance(child, Mapping):
            raise SpecError(
                f"cannot set {dotted!r}: {part!r} holds the value {child!r}, not a section of keys; "
                f"set {part!r} itself or a key of a section"
            )
        node[part] = child = dict(child or {})
        node = child
    node[leaf] = value


def get_dotted(raw: Mapping[str, Any], key: str) -> Any:
    node: Any = raw
    for part in key.split("."):
        if isinstance(node, str) and part != "name":
            return None
        if isinstance(node, str):  # `model: cnn` shorthand: its name
            return node
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(copy.deepcopy(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def set_value(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set one value into a raw spec by the rule in this module's docstring."""
    from experiments.specs.options import entry_fields

    section, _, leaf = key.partition(".")
    current = raw.get(section) if "." not in leaf else None
    if isinstance(current, str):
        current = {"name": current}
    if isinstance(value, Mapping):
        here = get_dotted(raw, key)
        if isinstance(here, str):
            here = {"name": here}
        if not isinstance(here, Mapping) or ("name" in value and value["name"] != here.get("name")):
            set_dotted(raw, key, copy.deepcopy(dict(value)))
        else:
            set_dotted(raw, key, deep_merge(here, value))
        return
    fields = entry_fields(section, value) if leaf == "name" else None
    if fields is not None and isinstance(current, Mapping) and current.get("name") != value:
        shared, accepts = fields
        kept = {k: v for k, v in current.items() if k in shared or (k != "name" and accepts(k, v))}
        raw[section] = {**kept, "name": value}
        return
    set_dotted(raw, key, value)


def parse_override(text: str) -> tuple[str, Any]:
    """``key.sub=value`` with the value read as YAML, so numbers, lists and booleans keep their type."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise SpecError(f"override {text!r} is not of the form key=value (for example optimizer.lr=0.01)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise SpecError(
            f"override {text!r}: the value is not valid YAML ({problem}); quote it, or write a list as "
            "[a, b] and a mapping as {key: value}"
        ) from None
    return key.strip(), value


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        found = sorted(p.name for p in path.glob("*.yaml"))[:3]
        hint = f" (it holds {', '.join(found)})" if found else ""
        raise SpecError(f"{str(path)!r} is a folder, not a spec file; pass one YAML file{hint}")
    if not path.is_file():
        raise SpecError(f"spec file {str(path)!r} does not exist; pass the path of a YAML spec")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise SpecError(f"{path}: not UTF-8 text (byte {err.start}); save the spec as UTF-8 YAML") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise SpecError(f"{path}: not valid YAML{where} ({problem}); fix the syntax there") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise SpecError(
            f"{path}: the top level must be a mapping of keys to values, not {type(loaded).__name__}"
        )
    return loaded


def same(have: Any, want: Any) -> bool:
    """Whether a spec value matches an include/exclude or ``when`` entry (a list means any of)."""
    if isinstance(want, list) and have != want:  # a list means any of these, unless the field is a list
        return any(same(have, option) for option in want)
    if isinstance(have, bool) != isinstance(want, bool):
        return False
    if isinstance(have, int | float) and isinstance(want, str):  # YAML reads `1e-3` as a string
        try:
            return have == float(want)
        except ValueError:
            return False
    return have == want


def matches(entry: Mapping[str, Any], flat: Mapping[str, Any]) -> bool:
    """An include/exclude entry matches a cell when every one of its keys does."""
    return all(key in flat and same(flat[key], want) for key, want in entry.items())
