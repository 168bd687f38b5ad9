"""A grid with a ``tune:`` block: tune each configuration on its own, then re-run each one's best over
the grid's seeds (the protocol of careful optimizer benchmarks: the same tuning budget for each).

```yaml
axes: {optimizer.name: [sgd, adam]}
tune:
  space: {optimizer.lr: {type: float, low: 1.0e-4, high: 0.3, log: true}}
  trials: 12                        # finished trials per configuration
  sampler: {name: tpe, seed: 0}     # objective, direction, pruner, max_failures: as in a study file
  seed: 0                           # the training seed of every trial
seeds: [0, 1, 2]
```

A configuration is a cell less its seed (``GridCell.config``). Its study is named
``<grid>-<config>`` (its Optuna study and its MLflow experiment), its base is the configuration's
spec with ``seed = tune.seed``, and it is checked as a study file is (``check_study``) before
anything trains. ``litbench grid`` runs every study to its ``trials`` with ``run_study`` (resumable:
finished studies are reused, others continue), then gives each cell the best trial's complete spec
with the cell's own seed and the tags ``litbench.tuned.study``, ``.trial``, ``.params`` and
``.value``, and runs the grid as usual. A study that stops short (too many failed trials, or no
complete one) runs no re-run at all: the configurations would not have had the same budget.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from experiments.grid import (
    GridCell,
    GridSpec,
    Loc,
    _check_unique,
    _dotted,
    _leaves,
    _line_of,
    _overlap,
    _Source,
)
from experiments.specs import RunSpec, SpecError
from experiments.study import StudySpec, _clean, _describe, check_study

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

TAG_STUDY = "litbench.tuned.study"  # the study the run's spec came from
TAG_TRIAL = "litbench.tuned.trial"  # its best trial's number
TAG_PARAMS = "litbench.tuned.params"  # that trial's params, as JSON
TAG_VALUE = "litbench.tuned.value"  # and its objective value


@dataclass(frozen=True)
class ConfigStudy:
    """One configuration of the grid, its cells (one per seed) and the study that tunes it."""

    config: str
    spec: StudySpec
    cells: tuple[GridCell, ...]


@dataclass
class TunedGrid:
    cells: list[GridCell]  # the cells to run, each with its configuration's best spec
    waiting: list[str] = field(default_factory=list)  # configurations whose study is not done (dry run)
    problem: str | None = None  # why the grid cannot run (a study stopped short)


class _TuneSource(_Source):
    """Points check_study's study-relative locations (``space.x``, ``sampler``) into the tune block."""

    def line(self, loc: Loc) -> str:
        if loc[:1] == ("base",):  # the configuration's spec: the grid's base is the closest line
            return super().line(loc)
        return f"{super().line(('tune', *loc))}: tune"


def study_name(grid: str, config: str) -> str:
    """``<grid>-<config>``, with characters a study name may not hold replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", f"{grid}-{config}")


def studies_for(grid: GridSpec, cells: Sequence[GridCell], where: str = "grid") -> list[ConfigStudy]:
    """One validated study per configuration, in the grid's order; errors point into the tune block."""
    if grid.tune is None:
        return []
    source = grid._source or _Source(where)
    by_config: dict[str, list[GridCell]] = {}
    for cell in cells:
        by_config.setdefault(cell.config, []).append(cell)
    _check_space_keys(grid, cells, source)
    tune = grid.tune.model_dump(mode="json", exclude_unset=True, exclude={"seed"})
    studies, names = [], {}
    for config, group in by_config.items():
        base = _without_seed(group[0].spec)
        if any(_without_seed(c.spec) != base for c in group):
            raise SpecError(
                f"{source.path}: the cells of configuration {config!r} differ in more than their seed; "
                "a tuned grid tunes each configuration once, so give them distinct axis values"
            )
        name = study_name(grid.name, config)
        if names.setdefault(name, config) != config:
            raise SpecError(
                f"{source.path}: configurations {names[name]!r} and {config!r} both give the study name "
                f"{name!r}; change a value's label to tell them apart"
            )
        raw = {
            "name": name,
            "description": f"the tune block of grid {grid.name}, configuration {config}",
            "base": {**base, "seed": grid.tune.seed},
            **tune,
        }
        try:
            spec = StudySpec.model_validate(raw)
        except ValidationError as err:
            raise SpecError("; ".join(_study_problem(e, raw, source) for e in err.errors()) + ".") from None
        try:
            check_study(spec, _TuneSource(source.path, source.root, source.overrides))
        except SpecError as err:
            found = f"found in the study of configuration {config!r}"
            raise SpecError(f"{str(err).rstrip('.')} ({found}).") from None
        studies.append(ConfigStudy(config, spec, tuple(group)))
    return studies


def _without_seed(spec: RunSpec) -> dict[str, Any]:
    raw = spec.model_dump(mode="json")
    del raw["seed"]
    return raw


def _study_problem(e: Any, raw: dict[str, Any], source: _Source) -> str:
    """A StudySpec error, at its line in the tune block, with its path from the top of the file."""
    loc = ("tune", *_clean(e["loc"]))
    text = _describe(e, raw)
    prefix = "unknown key '"
    if text.startswith(prefix):
        return f"{source.line(loc)}: {prefix}tune.{text.removeprefix(prefix)}"
    return f"{source.line(loc)}: tune.{text}"


def _check_space_keys(grid: GridSpec, cells: Sequence[GridCell], source: _Source) -> None:
    """Each space key is a field of the cells' specs, and none is a key the grid itself varies."""
    assert grid.tune is not None
    known = {key for cell in cells for key in cell.spec.flat_params()}
    varied: list[tuple[tuple[str, ...], Loc]] = []
    for key, values in grid.axes.items():
        varied += [leaf for i, value in enumerate(values) for leaf in _leaves(key, value, ("axes", key, i))]
    for g, group in enumerate(grid.zip):
        varied += [(tuple(key.split(".")), ("zip", g, key)) for key in group]
    for i, entry in enumerate(grid.include):
        for key, value in entry.items():
            varied += _leaves(key, value, ("include", i, key))
    for key, entry in grid.tune.space.items():
        loc = ("tune", "space", key)
        if key == "seed":
            raise SpecError(
                f"{source.at(loc)}: the training seed is not tuned; the studies train with tune.seed "
                "and the grid's seeds are for the re-runs of each configuration's best."
            )
        gated = isinstance(entry, dict) and entry.get("when")  # check_study validates it under its condition
        if key not in known and not any(k.startswith(f"{key}.") for k in known) and not gated:
            close = difflib.get_close_matches(key, sorted(known), n=3, cutoff=0.5)
            hint = f"; close fields: {', '.join(close)}" if close else ""
            raise SpecError(
                f"{source.at(loc)}: not a field of any cell's RunSpec (dotted keys as in "
                f"RunSpec.flat_params(), e.g. optimizer.lr, model.name){hint}."
            )
        parts = tuple(key.split("."))
        clash = next((at for leaf, at in varied if _overlap(parts, leaf)), None)
        if clash is not None:
            line = _line_of(source.root, clash)
            raise SpecError(
                f"{source.at(loc)}: {key!r} is also set by the grid's {_dotted(clash)}"
                f"{f' (line {line})' if line else ''}; a study tunes what its configuration holds fixed, "
                "so drop the key from the space or from the grid."
            )


def tune_grid(
    grid: GridSpec,
    cells: Sequence[GridCell],
    *,
    tracking_uri: str,
    data_dir: Path,
    console,
    workers: int = 1,
    dry_run: bool = False,
    where: str = "grid",
) -> TunedGrid:
    """Run (or, dry, report) each configuration's study; the cells with their configuration's best spec.

    A dry run starts nothing: it prints each study's progress and returns the cells of the studies
    that are done, with their best spec now; the others are ``waiting``.
    """
    from experiments.tune import quiet_optuna, resolve_storage

    quiet_optuna()
    studies = studies_for(grid, cells, where)
    location = resolve_storage(None, tracking_uri)
    for study in studies:
        _check_identity(study, location)
    if dry_run:
        return _dry_run(studies, location, console)
    assert grid.tune is not None
    console.print(
        f"[bold]litbench grid[/] {grid.name}: first {len(studies)} studies of {grid.tune.trials} trials "
        f"each, one per configuration, storage {location}"
    )
    tuned, short = [], []
    for study in studies:
        outcome = _run_one(study, tracking_uri, data_dir, workers, console)
        best = outcome.best
        if not outcome.reached or best is None:
            failed = sum(t.state.name == "FAIL" for t in outcome.trials)
            why = "no trial completed" if outcome.reached else f"{failed} trials failed"
            short.append(f"{study.spec.name} ({outcome.finished} of {outcome.target} finished, {why})")
            continue
        tuned += _tuned_cells(study, best)
    if short:
        return TunedGrid(
            [],
            problem=f"{len(short)} of {len(studies)} studies stopped short: {'; '.join(short)}. The grid "
            "runs once every configuration had its full tuning budget; see each study's trials with "
            "`litbench ls STUDY` and re-run the same command to continue the studies",
        )
    _check_unique(tuned, where)
    return TunedGrid(tuned)


def _run_one(study: ConfigStudy, tracking_uri: str, data_dir: Path, workers: int, console):
    from experiments.study import resolve_objective
    from experiments.tune import run_study

    name = study.spec.name
    objective = resolve_objective(study.spec)

    def ended(trial: FrozenTrial) -> None:
        state = trial.state.name
        style = {"COMPLETE": "green", "PRUNED": "yellow"}.get(state, "red")
        value = f"  {trial.value:.4f}" if trial.value is not None else ""
        params = _params(trial.params)
        seconds = trial.duration.total_seconds() if trial.duration else 0.0
        reason = trial.user_attrs.get("litbench.failure", "") if state == "FAIL" else ""
        line = f"  [{style}]{state:8}[/] {name} trial {trial.number}{value}  {params}  {seconds:.0f} s"
        console.print(f"{line}  {reason}".rstrip())

    def problem(text: str) -> None:
        console.print(f"  [red]worker problem[/] {name}: {text}")

    outcome = run_study(
        study.spec,
        tracking_uri=tracking_uri,
        data_dir=data_dir,
        workers=workers,
        on_trial=ended,
        on_problem=problem,
    )
    best = outcome.best
    so_far = f"{outcome.finished}/{outcome.target} finished"
    if best is None:
        console.print(f"[red]study[/] {name}: no complete trial ({so_far})")
    else:
        style = "green" if outcome.reached else "red"
        console.print(
            f"[{style}]study[/] {name}: best {objective.metric} {best.value:.4f} (trial {best.number}), "
            f"{_params(best.params)}; {so_far}"
        )
    return outcome


def _params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def _tuned_cells(study: ConfigStudy, best: FrozenTrial) -> list[GridCell]:
    """The configuration's cells with the best trial's complete spec, each with its own seed."""
    from experiments.specs import validate_run_spec
    from experiments.tune import ATTR_SPEC

    tags = {
        TAG_STUDY: study.spec.name,
        TAG_TRIAL: str(best.number),
        TAG_PARAMS: json.dumps(best.params, sort_keys=True),
        TAG_VALUE: f"{best.value:.6g}",
    }
    tuned = []
    for cell in study.cells:
        raw = copy.deepcopy(best.user_attrs[ATTR_SPEC])
        raw["seed"] = cell.spec.seed
        raw["tracking"] = cell.spec.tracking.model_dump(mode="json")  # the grid's, as it is now
        where = f"{cell.run_name} (best trial {best.number} of {study.spec.name})"
        spec = validate_run_spec(raw, where=where)
        tuned.append(dataclasses.replace(cell, spec=spec, tags={**cell.tags, **tags}))
    return tuned


def _stored(name: str, location: str) -> optuna.Study | None:
    """The study in the storage, or None; never creates the storage or the study."""
    import optuna

    from experiments.tune import open_storage

    if location.startswith("sqlite:///") and not Path(location.removeprefix("sqlite:///")).exists():
        return None
    if "://" not in location and not Path(location).exists():
        return None
    storage = open_storage(location)
    if name not in optuna.get_all_study_names(storage):
        return None
    return optuna.load_study(study_name=name, storage=storage)


def _check_identity(study: ConfigStudy, location: str) -> None:
    """A study of this name made from another base, space or objective cannot be continued."""
    from experiments.tune import STUDY_ATTR_IDENTITY

    stored = _stored(study.spec.name, location)
    identity = stored.user_attrs.get(STUDY_ATTR_IDENTITY) if stored is not None else None
    if identity is not None and identity != study.spec.identity():
        raise SpecError(
            f"study {study.spec.name!r} in {location} was made for configuration {study.config!r} with "
            "another base, space or objective (the grid's file or --set changed since), so its trials "
            "would not be comparable; give the grid another `name`, or use another --tracking-uri (the "
            "studies' storage is beside the store)"
        )


def _dry_run(studies: list[ConfigStudy], location: str, console) -> TunedGrid:
    from rich.table import Table

    from experiments.tune import FINISHED, best_trial

    table = Table("study", "trials finished", "best", "params", "status", title=f"{len(studies)} studies")
    ready, waiting = [], []
    for study in studies:
        stored = _stored(study.spec.name, location)
        trials = stored.get_trials(deepcopy=False) if stored is not None else []
        finished = sum(t.state in FINISHED for t in trials)
        best = best_trial(stored) if stored is not None else None
        done = finished >= study.spec.trials and best is not None
        status = "done" if done else "in progress" if trials else "to run"
        value = f"{best.value:.4f}" if best is not None else ""
        params = _params(best.params) if best is not None else ""
        table.add_row(study.spec.name, f"{finished}/{study.spec.trials}", value, params, status)
        if done:
            ready += _tuned_cells(study, best)
        else:
            waiting.append(study.config)
    console.print(table)
    if waiting:
        runs = sum(len(s.cells) for s in studies if s.config in waiting)
        console.print(f"{runs} runs wait for their configuration's study: {', '.join(waiting)}")
    return TunedGrid(ready, waiting)
