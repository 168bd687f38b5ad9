"""A grid file: a base RunSpec, the axes that vary, and seeds, expanded into named, hashed RunSpecs.

```yaml
name: quickstart            # the MLflow experiment; defaults to the file name
base: {data: {name: digits}, trainer: {max_epochs: 20}}
trainer: {max_epochs: 3}    # Trainer settings for every cell, on top of the base
axes:
  model.name: [mlp, cnn]
  optimizer:                # a list of partial specs: coupled settings vary together
    - {name: sgd, lr: 0.1, momentum: 0.9}
    - {name: adam, lr: 0.001}
zip:                        # each group is one axis whose keys vary together, i-th with i-th
  - {regularization.dropout: [0.0, 0.5], regularization.augment: [false, true]}
exclude:                    # drop the product's cells matching any entry (a list means any of)
  - {model.name: cnn, optimizer.name: sgd}
include:                    # extra cells: partial specs over the base, run for every seed
  - {model.name: cnn, optimizer: {name: adamw, lr: 0.003}}
seeds: [0, 1]
tune:                       # optional: tune each configuration first, then run its best over the seeds
  space: {optimizer.lr: {type: float, low: 1.0e-4, high: 0.3, log: true}}
  trials: 12                # see experiments/tuned_grid.py
```

Cells come in a fixed order: the product of ``axes`` then ``zip`` groups (in file order, the last
varying fastest), each for every seed, less the excluded ones; then the ``include`` entries.
Errors name the file, the line where the YAML parser saw the offending key and its path there
(``grids/x.yaml:12: axes.optimizer[1].lr: ...``).
"""

from __future__ import annotations

import copy
import difflib
import itertools
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from experiments.registry import UnknownNameError
from experiments.specs import (
    RunSpec,
    SpecError,
    StrictModel,
    TrainerSpec,
    flatten,
    options_model,
    read_yaml,
    set_dotted,
)

Loc = tuple[str | int, ...]  # a path in the grid file: keys and list indices


def _zip_group(group: dict[str, list[Any]]) -> dict[str, list[Any]]:
    if not group:
        raise ValueError("a zip group needs at least one key")
    lengths = {key: len(values) for key, values in group.items()}
    if len(set(lengths.values())) != 1:
        sizes = ", ".join(f"{key}: {n}" for key, n in lengths.items())
        raise ValueError(
            f"the lists of group ({', '.join(group)}) differ in length ({sizes}); a group pairs its "
            "i-th values, so give every key the same number of values"
        )
    if not next(iter(lengths.values())):
        raise ValueError(f"group ({', '.join(group)}) has no values; give at least one or remove it")
    return group


def _filter_entry(entry: dict[str, Any]) -> dict[str, Any]:
    if not entry:
        raise ValueError("an empty entry; give at least one key: value")
    return entry


ZipGroup = Annotated[dict[str, list[Any]], AfterValidator(_zip_group)]
Entry = Annotated[dict[str, Any], AfterValidator(_filter_entry)]


@dataclass(frozen=True)
class _Source:
    """Where a grid came from, to point errors at the line of the file that caused them."""

    path: str
    root: yaml.Node | None = None  # the composed YAML, which keeps each node's line
    overrides: tuple[tuple[str, str], ...] = ()  # (dotted key, the `key=value` text) set on the base

    def at(self, loc: Loc) -> str:
        """``file:line: path`` for a location in the file; an override names itself instead."""
        if loc[:1] == ("--set",):
            return f"{self.path}: override {loc[1]!r}"
        line = _line_of(self.root, loc)
        return f"{self.path}:{line}: {_dotted(loc)}" if line else f"{self.path}: {_dotted(loc)}"

    def line(self, loc: Loc) -> str:
        line = _line_of(self.root, loc)
        return f"{self.path}:{line}" if line else self.path


class TuneSpec(StrictModel):
    """A grid's ``tune:`` block: one Optuna study per configuration before the grid runs.

    The keys are a study file's (``experiments/study.py``) less its name and base, which each
    configuration supplies; ``space``, ``sampler`` and ``pruner`` are checked in full by
    ``experiments.tuned_grid``, which needs the study schema (study.py imports this module).
    """

    space: dict[str, Any] = Field(min_length=1)  # as a study file's space; no key the grid varies
    objective: str | None = None  # default val/<the task's metric>
    direction: Literal["maximize", "minimize"] | None = None  # default: the task's mode
    sampler: dict[str, Any] | str | None = None  # default {name: tpe, seed: 0}
    pruner: dict[str, Any] | str | None = None  # default {name: median}
    trials: int = Field(20, ge=1)  # finished trials per configuration: the same budget for each
    max_failures: int = Field(10, ge=1)  # a study stops after this many failed trials in one command
    seed: int = 0  # the training seed of every trial; the grid's seeds are for the re-runs


class GridSpec(StrictModel):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = ""
    base: dict[str, Any] = Field(default_factory=dict)
    trainer: TrainerSpec = TrainerSpec()  # only the keys the file sets apply, over the base
    axes: dict[str, list[Any]] = Field(default_factory=dict)
    zip: list[ZipGroup] = Field(default_factory=list)
    exclude: list[Entry] = Field(default_factory=list)
    include: list[Entry] = Field(default_factory=list)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    tune: TuneSpec | None = None
    _source: _Source | None = PrivateAttr(default=None)

    @field_validator("axes")
    @classmethod
    def _axes_have_values(cls, axes: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in axes.items():
            if not values:
                raise ValueError(f"axis {key!r} has no values; give at least one or remove the axis")
        return axes

    @field_validator("seeds")
    @classmethod
    def _seeds_unique(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds repeat ({seeds}); each seed must appear once")
        return seeds

    @model_validator(mode="after")
    def _each_key_varies_once(self) -> GridSpec:
        owners = {key: "axes" for key in self.axes}
        for i, group in enumerate(self.zip):
            for key in group:
                if key in owners:
                    raise ValueError(f"key {key!r} varies in both {owners[key]} and zip[{i}]; keep one")
                owners[key] = f"zip[{i}]"
        return self


@dataclass(frozen=True)
class GridCell:
    """One run of the grid: its readable name, its configuration name (no seed) and its spec.

    ``factors`` maps each axis the cell sets (an ``axes`` key, a ``zip`` key, an ``include`` key) to the
    label of its value there; runs carry them as tags, so a report groups by the grid's own axes.
    ``tags`` are more tags for its run (a tuned grid records the study its spec came from).
    """

    run_name: str
    config: str
    spec: RunSpec
    factors: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


def load_grid(path: str | Path, overrides: Sequence[str] = ()) -> GridSpec:
    """Read and validate a grid file; ``key=value`` overrides apply to its base (and win over its
    top-level ``trainer``)."""
    from experiments.specs import parse_override

    path = Path(path)
    raw = read_yaml(path)  # first, for its messages about broken YAML
    raw.setdefault("name", path.stem)
    applied = []
    for text in overrides:
        key, value = parse_override(text)
        set_dotted(raw.setdefault("base", {}), key, value)
        applied.append((key, text))
    source = _Source(str(path), yaml.compose(path.read_text(), Loader=yaml.SafeLoader), tuple(applied))
    try:
        grid = GridSpec.model_validate(raw)
    except ValidationError as err:
        problems = [f"{source.line(e['loc'])}: {_problem(e, GridSpec).rstrip('.')}" for e in err.errors()]
        raise SpecError("; ".join(problems) + ".") from None
    grid._source = source
    return grid


# A setting: (dotted key, value, where the file gives it); a cell applies several over the base.
Setting = tuple[str, Any, Loc]


def expand(grid: GridSpec, where: str = "grid") -> list[GridCell]:
    """The Cartesian product of the axes and zip groups, times the seeds, less the excluded cells,
    plus the included ones; each cell validated as a RunSpec.

    ``where`` names the grid in messages when it was not read by ``load_grid`` (which knows its file).
    """
    source = grid._source or _Source(where)
    start = copy.deepcopy(grid.base)
    set_by: list[tuple[tuple[str, ...], Loc]] = [(_parts(k), ("base", *_parts(k))) for k in flatten(start)]
    overridden = [_parts(key) for key, _ in source.overrides]
    for key, value in grid.trainer.model_dump(mode="json", exclude_unset=True).items():
        if not any(o == ("trainer", key)[: len(o)] for o in overridden):  # `--set` wins
            set_dotted(start, f"trainer.{key}", value)
            set_by.append((("trainer", key), ("trainer", key)))
    set_by += [(_parts(key), ("--set", text)) for key, text in source.overrides]

    dims: list[list[tuple[Setting, ...]]] = [
        [((key, value, ("axes", key, i)),) for i, value in enumerate(values)]
        for key, values in grid.axes.items()
    ]
    for g, group in enumerate(grid.zip):
        length = len(next(iter(group.values())))
        dims.append([tuple((k, group[k][i], ("zip", g, k, i)) for k in group) for i in range(length)])
    seeds = [(seed, ("seeds", i)) for i, seed in enumerate(grid.seeds)]
    product = [
        cell
        for choice in itertools.product(*dims)
        for cell in _cells(grid, start, set_by, [s for settings in choice for s in settings], seeds, source)
    ]

    known = {key for cell in product for key in cell.spec.flat_params()}
    included = []
    for i, entry in enumerate(grid.include):
        for key in entry:
            if key.split(".")[0] not in RunSpec.model_fields:
                raise SpecError(_unknown_key(source, ("include", i, key), key, known))
        settings = [(key, value, ("include", i, key)) for key, value in entry.items() if key != "seed"]
        own_seed = [(entry["seed"], ("include", i, "seed"))] if "seed" in entry else seeds
        included += _cells(grid, start, set_by, settings, own_seed, source)

    known |= {key for cell in included for key in cell.spec.flat_params()}
    for i, entry in enumerate(grid.exclude):
        for key in entry:
            if key not in known:
                raise SpecError(_unknown_key(source, ("exclude", i, key), key, known))
    excluded = [any(_matches(e, cell.spec.flat_params()) for e in grid.exclude) for cell in product]
    kept = [cell for cell, out in zip(product, excluded, strict=True) if not out]
    cells = kept + included
    _check_unique(cells, source.path)
    return cells


def _cells(
    grid: GridSpec,
    start: dict[str, Any],
    set_by: list[tuple[tuple[str, ...], Loc]],
    settings: list[Setting],
    seeds: list[tuple[Any, Loc]],
    source: _Source,
) -> list[GridCell]:
    """One cell per seed: the settings applied over the base, validated as a RunSpec."""
    raw = copy.deepcopy(start)
    for key, value, _ in settings:
        apply_axis_value(raw, key, value)
    config = "-".join(label(key, value) for key, value, _ in settings) or grid.name
    # a scalar axis keeps its plain value (sorts as a number in a report), an entry axis its label
    factors = {
        key: label(key, value) if isinstance(value, Mapping) else _fmt(value) for key, value, _ in settings
    }
    set_by = set_by + [leaf for key, value, loc in settings for leaf in _leaves(key, value, loc)]
    cells = []
    for seed, seed_loc in seeds:
        raw["seed"] = seed
        try:
            spec = RunSpec.model_validate(raw)
        except ValidationError as err:
            context = f"cell {config} seed {seed}"
            raise SpecError(
                _cell_error(err, raw, [*set_by, (("seed",), seed_loc)], source, context)
            ) from None
        cells.append(GridCell(f"{config}-s{seed}", config, spec, dict(factors)))
    return cells


def _check_unique(cells: list[GridCell], where: str) -> None:
    by_hash: dict[str, GridCell] = {}
    by_name: dict[str, GridCell] = {}
    for cell in cells:
        same = by_hash.setdefault(cell.spec.spec_hash, cell)
        if same is not cell:
            raise SpecError(
                f"{where}: cells {same.run_name!r} and {cell.run_name!r} describe the same run (same spec "
                "hash); an axis repeats a value or sets a field to its default twice, or an include entry "
                "repeats a cell of the product. Remove the duplicate value."
            )
        if by_name.setdefault(cell.run_name, cell) is not cell:
            raise SpecError(
                f"{where}: two different runs are both named {cell.run_name!r}; the labels of their "
                "values coincide, so change a value (or an include entry) to tell them apart."
            )


def apply_axis_value(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set one axis value; a mapping is a partial spec merged into that section.

    A mapping that names a different registry entry (``{name: adam, lr: ...}`` over a base sgd with
    momentum) replaces the section, since the old entry's options mean nothing to the new one.
    """
    if not isinstance(value, Mapping):
        set_dotted(raw, key, value)
        return
    current = _get_dotted(raw, key)
    if isinstance(current, str):
        current = {"name": current}
    if not isinstance(current, Mapping) or ("name" in value and value["name"] != current.get("name")):
        set_dotted(raw, key, copy.deepcopy(dict(value)))
        return
    set_dotted(raw, key, _deep_merge(current, value))


def _get_dotted(raw: Mapping[str, Any], key: str) -> Any:
    node: Any = raw
    for part in key.split("."):
        if isinstance(node, str) and part != "name":
            return None
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def _deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(copy.deepcopy(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _matches(entry: Mapping[str, Any], flat: Mapping[str, Any]) -> bool:
    """An include/exclude entry matches a cell when every one of its keys does."""
    return all(key in flat and _same(flat[key], want) for key, want in entry.items())


def _same(have: Any, want: Any) -> bool:
    if isinstance(want, list) and have != want:  # a list means any of these, unless the field is a list
        return any(_same(have, option) for option in want)
    if isinstance(have, bool) != isinstance(want, bool):
        return False
    if isinstance(have, int | float) and isinstance(want, str):  # YAML reads `1e-3` as a string
        try:
            return have == float(want)
        except ValueError:
            return False
    return have == want


def _unknown_key(source: _Source, loc: Loc, key: str, known: set[str]) -> str:
    close = difflib.get_close_matches(key, sorted(known), n=3, cutoff=0.5)
    hint = f"; close valid keys: {', '.join(close)}" if close else ""
    return (
        f"{source.at(loc)}: {key!r} is not a field of any cell's RunSpec (dotted keys as in "
        f"RunSpec.flat_params(), e.g. model.name, optimizer.lr, seed){hint}."
    )


def _cell_error(
    err: ValidationError,
    raw: Mapping[str, Any],
    set_by: list[tuple[tuple[str, ...], Loc]],
    source: _Source,
    context: str,
) -> str:
    """One paragraph: each problem at the setting (axis value, base key, override) that caused it."""
    problems = []
    for n, e in enumerate(err.errors()):
        loc = _deepen(raw, tuple(str(p) for p in e["loc"]))
        origin = next((at for key, at in reversed(set_by) if _overlap(key, loc)), None)
        where = source.at(origin) if origin else source.path
        problem = _problem(e, RunSpec).rstrip(".")
        problems.append(f"{where}: {context + ': ' if n == 0 else ''}{problem}")
    return "; ".join(problems) + "."


def _overlap(key: tuple[str, ...], loc: tuple[str, ...]) -> bool:
    """Whether setting ``key`` set ``loc``, or something inside it."""
    n = min(len(key), len(loc))
    return key[:n] == loc[:n]


def _deepen(raw: Mapping[str, Any], loc: tuple[str, ...]) -> tuple[str, ...]:
    """A registry section reports its options' errors as the section's; find the option at fault."""
    section = loc[0] if len(loc) == 1 else None
    field = RunSpec.model_fields.get(section) if section else None
    value = raw.get(section) if section else None
    if isinstance(value, str):
        value = {"name": value}
    own = getattr(field and field.annotation, "model_fields", {})  # name and shared fields (lr, ...)
    if "name" not in own or not isinstance(value, Mapping):
        return loc
    try:
        options = options_model(section, value.get("name", own["name"].default))
    except UnknownNameError:
        return (section, "name")
    except KeyError:  # not a registry section
        return loc
    try:
        options.model_validate({k: v for k, v in value.items() if k not in own})
    except ValidationError as err:
        return (section, *(str(p) for p in err.errors()[0]["loc"]))
    return loc


def _problem(e: Mapping[str, Any], model: type[BaseModel]) -> str:
    path = _dotted(e["loc"]) or "(top level)"
    if e["type"] == "extra_forbidden":
        valid = _fields_at(model, e["loc"][:-1])
        close = difflib.get_close_matches(str(e["loc"][-1]), valid, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown key {path!r} (valid keys here: {', '.join(valid)}{hint})"
    if e["type"] == "value_error":
        return f"{path}: {e['msg'].removeprefix('Value error, ')}"
    return f"{path}: {e['msg']} (got {e.get('input')!r})"


def _fields_at(model: type[BaseModel], loc: Sequence[str | int]) -> list[str]:
    for part in loc:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field else None
        if get_origin(annotation) in (Union, types.UnionType):  # an optional section: `tune: ... | None`
            annotation = next((a for a in get_args(annotation) if a is not type(None)), None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def _parts(key: str) -> tuple[str, ...]:
    return tuple(key.split("."))


def _leaves(key: str, value: Any, loc: Loc) -> list[tuple[tuple[str, ...], Loc]]:
    """What a setting sets, leaf by leaf, so an error inside a partial spec points at its own key."""
    if isinstance(value, Mapping) and value:
        return [((*_parts(key), *_parts(k)), (*loc, *_parts(k))) for k in flatten(value)]
    return [(_parts(key), loc)]


def _dotted(loc: Sequence[str | int]) -> str:
    """``axes.optimizer[1].lr`` for the loc ``('axes', 'optimizer', 1, 'lr')``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def _line_of(node: yaml.Node | None, loc: Loc) -> int | None:
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


_SHORT = {"lr": "lr", "dropout": "do", "l2": "l2", "l1": "l1", "label_smoothing": "ls", "augment": "aug"}


def label(key: str, value: Any) -> str:
    """A short readable label for one axis value: ``adam-lr0.001``, ``do0.5``, ``cnn``."""
    leaf = key.rsplit(".", 1)[-1]
    if isinstance(value, Mapping):
        parts = [str(value["name"])] if "name" in value else []
        parts += [
            f"{_SHORT.get(k, k)}{'on' if v is True else 'off' if v is False else _fmt(v)}"
            for k, v in value.items()
            if k != "name"
        ]
        return "-".join(parts) or "none"  # {} is the base unchanged, e.g. "no regularization"
    if leaf == "name":
        return str(value)
    if isinstance(value, bool):
        return f"{_SHORT.get(leaf, leaf)}{'on' if value else 'off'}"
    return f"{_SHORT.get(leaf, leaf)}{_fmt(value)}"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, Mapping):
        return "_".join(f"{k}{_fmt(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return "x".join(_fmt(v) for v in value)
    return str(value)
