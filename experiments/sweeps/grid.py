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
  - {model.name: cnn, optimizer: {name: adamw, lr: 0.003}, label: cnn-adamw}  # label: its name
seeds: [0, 1]
tune:                       # optional: tune each configuration first, then run its best over the seeds
  space: {optimizer.lr: {type: float, low: 1.0e-4, high: 0.3, log: true}}
  trials: 12                # see experiments/tuning/tuned_grid.py
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, PrivateAttr, ValidationError, field_validator, model_validator

from core.errors import SpecError
from core.registry import UnknownNameError
from experiments.specs import RunSpec, StrictModel, TrainerSpec, options_model
from experiments.specs.errors import Loc, SpecSource, problem, spec_error
from experiments.specs.values import flatten, matches, parse_override, read_yaml, set_dotted, set_value


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


class TuneSpec(StrictModel):
    """A grid's ``tune:`` block: one Optuna study per configuration before the grid runs.

    The keys are a study file's (``experiments/tuning/study_spec.py``) less its name and base, which each
    configuration supplies; ``space``, ``sampler`` and ``pruner`` are checked in full by
    ``experiments.tuning.tuned_grid``, which needs the study schema.
    """

    space: dict[str, Any] = Field(min_length=1)  # as a study file's space; no key the grid varies
    objective: str | None = None  # default val/<the task's metric>
    direction: Literal["maximize", "minimize"] | None = None  # default: the task's mode
    sampler: dict[str, Any] | str | None = None  # default {name: tpe, seed: 0}
    pruner: dict[str, Any] | str | None = None  # default {name: median}
    trials: int = Field(20, ge=1)  # finished trials per configuration: the same budget for each
    max_failures: int = Field(10, ge=1)  # a study stops after this many failed trials in one command
    seed: int = 0  # the training seed of every trial; the grid's seeds are for the re-runs


class StageSpec(StrictModel):
    """One stage of a grid: a grid of its own over the grid's base (its ``base`` merged in, its
    ``trainer`` keys over the grid's), whose cells may start from cells of earlier stages."""

    base: dict[str, Any] = Field(default_factory=dict)
    trainer: TrainerSpec = TrainerSpec()
    axes: dict[str, list[Any]] = Field(default_factory=dict)
    zip: list[ZipGroup] = Field(default_factory=list)
    exclude: list[Entry] = Field(default_factory=list)
    include: list[Entry] = Field(default_factory=list)
    seeds: list[int] | None = Field(None, min_length=1)  # default: the grid's


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
    stages: dict[str, StageSpec] = Field(default_factory=dict)  # see experiments/sweeps/stages.py
    _source: SpecSource | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _stages_own_the_cells(self) -> GridSpec:
        if self.stages:
            own = [k for k in ("axes", "zip", "exclude", "include") if getattr(self, k)]
            if own:
                raise ValueError(
                    f"a grid with stages varies its cells inside each stage; move {', '.join(own)} "
                    "into the stage(s) it belongs to"
                )
            if self.tune is not None:
                raise ValueError("a grid with stages cannot be tuned (yet); drop tune or the stages")
        return self

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
    stage: str | None = None  # the grid stage it belongs to
    needs: tuple[str, ...] = ()  # spec hashes of the cells it starts from: they must FINISH first


def load_grid(
    path: str | Path,
    overrides: Sequence[str] = (),
    adjust: Callable[[dict[str, Any]], None] | None = None,
) -> GridSpec:
    """Read and validate a grid file; ``key=value`` overrides apply to its base (and win over its
    top-level ``trainer``). ``adjust`` changes the file's mapping before it is validated (a suite
    names the grid and adds its method axis)."""
    path = Path(path)
    raw = read_yaml(path)  # first, for its messages about broken YAML
    raw.setdefault("name", path.stem)
    if adjust is not None:
        adjust(raw)
    applied = []
    for text in overrides:
        key, value = parse_override(text)
        base = raw.setdefault("base", {})
        if not isinstance(base, dict):
            raise SpecError(f"{path}: base must be a mapping of spec sections, not {type(base).__name__}")
        set_value(base, key, value)
        applied.append((key, text))
    source = SpecSource.of_file(str(path), path.read_text(encoding="utf-8"), tuple(applied))
    try:
        grid = GridSpec.model_validate(raw)
    except ValidationError as err:
        raise spec_error(err, GridSpec, source) from None
    grid._source = source
    return grid


LABEL_KEY = "label"  # an include entry's own configuration name (else the labels of its values)

# A setting: (dotted key, value, where the file gives it); a cell applies several over the base.
Setting = tuple[str, Any, Loc]


def expand(grid: GridSpec, where: str = "grid", product: bool = True) -> list[GridCell]:
    """The Cartesian product of the axes and zip groups, times the seeds, less the excluded cells,
    plus the included ones; each cell validated as a RunSpec.

    ``where`` names the grid in messages when it was not read by ``load_grid`` (which knows its file).
    ``product=False`` leaves out the product (a stage of ``include`` entries only).
    """
    source = grid._source or SpecSource(where)
    if grid.stages:
        from experiments.sweeps.stages import expand_stages

        cells = expand_stages(grid, source, expand)
        check_unique(cells, source.path)
        return cells
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
        for choice in (itertools.product(*dims) if product else ())
        for cell in _cells(grid, start, set_by, [s for settings in choice for s in settings], seeds, source)
    ]

    known = {key for cell in product for key in cell.spec.flat_params()}
    included = []
    for i, entry in enumerate(grid.include):
        for key in entry:
            if key != LABEL_KEY and key.split(".")[0] not in RunSpec.model_fields:
                raise SpecError(_unknown_key(source, ("include", i, key), key, known))
        own_label = entry.get(LABEL_KEY)
        if own_label is not None and not (isinstance(own_label, str) and own_label):
            raise SpecError(f"{source.at(('include', i, LABEL_KEY))}: a label is a non-empty string")
        own = {k: v for k, v in entry.items() if k not in ("seed", LABEL_KEY)}
        settings = [(key, value, ("include", i, key)) for key, value in own.items()]
        own_seed = [(entry["seed"], ("include", i, "seed"))] if "seed" in entry else seeds
        included += _cells(grid, start, set_by, settings, own_seed, source, own_label)

    known |= {key for cell in included for key in cell.spec.flat_params()}
    for i, entry in enumerate(grid.exclude):
        for key in entry:
            if key not in known:
                raise SpecError(_unknown_key(source, ("exclude", i, key), key, known))
    excluded = [any(matches(e, cell.spec.flat_params()) for e in grid.exclude) for cell in product]
    kept = [cell for cell, out in zip(product, excluded, strict=True) if not out]
    cells = kept + included
    check_unique(cells, source.path)
    return cells


def _cells(
    grid: GridSpec,
    start: dict[str, Any],
    set_by: list[tuple[tuple[str, ...], Loc]],
    settings: list[Setting],
    seeds: list[tuple[Any, Loc]],
    source: SpecSource,
    config: str | None = None,
) -> list[GridCell]:
    """One cell per seed: the settings applied over the base, validated as a RunSpec; ``config`` names
    the configuration (default: the labels of its settings)."""
    raw = copy.deepcopy(start)
    for key, value, _ in settings:
        set_value(raw, key, value)
    config = config or "-".join(label(key, value) for key, value, _ in settings) or grid.name
    # a scalar axis keeps its plain value (sorts as a number in a report), an entry axis its label
    factors = {
        key: label(key, value) if isinstance(value, Mapping) else _fmt(value) for key, value, _ in settings
    }
    set_by = set_by + [leaf for key, value, loc in settings for leaf in leaves(key, value, loc)]
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


def check_unique(cells: list[GridCell], where: str) -> None:
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


def _unknown_key(source: SpecSource, loc: Loc, key: str, known: set[str]) -> str:
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
    source: SpecSource,
    context: str,
) -> str:
    """One paragraph: each problem at the setting (axis value, base key, override) that caused it."""
    problems = []
    for n, e in enumerate(err.errors()):
        loc = _deepen(raw, tuple(str(p) for p in e["loc"]))
        origin = next((at for key, at in reversed(set_by) if overlaps(key, loc)), None)
        where = source.at(origin) if origin else source.path
        text = problem(e, RunSpec).rstrip(".")
        problems.append(f"{where}: {context + ': ' if n == 0 else ''}{text}")
    return "; ".join(problems) + "."


def overlaps(key: tuple[str, ...], loc: tuple[str, ...]) -> bool:
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


def _parts(key: str) -> tuple[str, ...]:
    return tuple(key.split("."))


def leaves(key: str, value: Any, loc: Loc) -> list[tuple[tuple[str, ...], Loc]]:
    """What a setting sets, leaf by leaf, so an error inside a partial spec points at its own key."""
    if isinstance(value, Mapping) and value:
        return [((*_parts(key), *_parts(k)), (*loc, *_parts(k))) for k in flatten(value)]
    return [(_parts(key), loc)]


_SHORT = {"lr": "lr", "dropout": "do", "l2": "l2", "l1": "l1", "label_smoothing": "ls", "augment": "aug"}


def label(key: str, value: Any) -> str:
    """A short readable label for one axis value: ``adam-lr0.001``, ``do0.5``, ``cnn``."""
    leaf = key.rsplit(".", 1)[-1]
    if value is None:  # a section left unset (no distillation, say)
        return f"no_{leaf}"
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
