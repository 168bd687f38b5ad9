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
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from core import tags as tag
from core.context import Context
from core.errors import SpecError
from experiments.events import Listener, StudiesStarted, StudyEnded, ignore
from experiments.specs import RunSpec, validate_run_spec
from experiments.specs.errors import Loc, SpecSource, dotted, line_of, spec_error
from experiments.sweeps.grid import GridCell, GridSpec, check_unique, leaves, overlaps
from experiments.tuning.study_spec import StudySpec, check_study, resolve_objective

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

    from experiments.tuning.tune import RayOptions


@dataclass(frozen=True)
class ConfigStudy:
    """One configuration of the grid, its cells (one per seed) and the study that tunes it."""

    config: str
    spec: StudySpec
    cells: tuple[GridCell, ...]


@dataclass(frozen=True)
class StudyStatus:
    """Where one configuration's study stands (what a dry run shows)."""

    study: str
    finished: int
    trials: int
    best_value: float | None
    best_params: dict[str, Any]
    status: str  # done, in progress, to run


@dataclass
class TunedGrid:
    cells: list[GridCell]  # the cells to run, each with its configuration's best spec
    waiting: list[str] = field(default_factory=list)  # configurations whose study is not done (dry run)
    problem: str | None = None  # why the grid cannot run (a study stopped short)
    statuses: list[StudyStatus] = field(default_factory=list)  # every study's standing (dry run)
    waiting_runs: int = 0  # the runs of the waiting configurations


def study_name(grid: str, config: str) -> str:
    """``<grid>-<config>``, with characters a study name may not hold replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", f"{grid}-{config}")


def studies_for(grid: GridSpec, cells: Sequence[GridCell], where: str = "grid") -> list[ConfigStudy]:
    """One validated study per configuration, in the grid's order; errors point into the tune block."""
    if grid.tune is None:
        return []
    source = grid._source or SpecSource(where)
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
            raise spec_error(err, StudySpec, source, prefix=("tune",)) from None
        try:
            check_study(spec, source.within("tune"))
        except SpecError as err:
            found = f"found in the study of configuration {config!r}"
            raise SpecError(f"{str(err).rstrip('.')} ({found}).") from None
        studies.append(ConfigStudy(config, spec, tuple(group)))
    return studies


def _without_seed(spec: RunSpec) -> dict[str, Any]:
    raw = spec.model_dump(mode="json")
    del raw["seed"]
    return raw


def _check_space_keys(grid: GridSpec, cells: Sequence[GridCell], source: SpecSource) -> None:
    """Each space key is a field of the cells' specs, and none is a key the grid itself varies."""
    assert grid.tune is not None
    known = {key for cell in cells for key in cell.spec.flat_params()}
    varied: list[tuple[tuple[str, ...], Loc]] = []
    for key, values in grid.axes.items():
        varied += [leaf for i, value in enumerate(values) for leaf in leaves(key, value, ("axes", key, i))]
    for g, group in enumerate(grid.zip):
        varied += [(tuple(key.split(".")), ("zip", g, key)) for key in group]
    for i, entry in enumerate(grid.include):
        for key, value in entry.items():
            varied += leaves(key, value, ("include", i, key))
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
        clash = next((at for leaf, at in varied if overlaps(parts, leaf)), None)
        if clash is not None:
            line = line_of(source.root, clash)
            raise SpecError(
                f"{source.at(loc)}: {key!r} is also set by the grid's {dotted(clash)}"
                f"{f' (line {line})' if line else ''}; a study tunes what its configuration holds fixed, "
                "so drop the key from the space or from the grid."
            )


def tune_grid(
    grid: GridSpec,
    cells: Sequence[GridCell],
    ctx: Context,
    *,
    workers: int = 1,
    dry_run: bool = False,
    where: str = "grid",
    on_event: Listener = ignore,
    ray: RayOptions | None = None,
) -> TunedGrid:
    """Run (or, dry, look up) each configuration's study; the cells with their configuration's best spec.
    With ``ray``, each study's trials are tasks on that Ray cluster.

    A dry run starts nothing: it returns each study's standing and the cells of the studies that are
    done, with their best spec now; the others are ``waiting``.
    """
    from experiments.tuning.storage import quiet_optuna, resolve_storage

    quiet_optuna()
    studies = studies_for(grid, cells, where)
    location = resolve_storage(None, ctx.tracking_uri)
    for study in studies:
        _check_identity(study, location)
    if dry_run:
        return _dry_run(studies, location)
    assert grid.tune is not None
    on_event(StudiesStarted(grid.name, len(studies), grid.tune.trials, location))
    tuned, short = [], []
    for study in studies:
        outcome = _run_one(study, ctx, workers, on_event, ray)
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
    check_unique(tuned, where)
    return TunedGrid(tuned)


def _run_one(study: ConfigStudy, ctx: Context, workers: int, on_event: Listener, ray: RayOptions | None):
    from experiments.tuning.tune import run_study

    objective = resolve_objective(study.spec)
    outcome = run_study(study.spec, ctx, workers=workers, on_event=on_event, ray=ray)
    best = outcome.best
    on_event(
        StudyEnded(
            study=study.spec.name,
            objective=objective.metric,
            finished=outcome.finished,
            target=outcome.target,
            best_value=None if best is None else best.value,
            best_number=None if best is None else best.number,
            best_params={} if best is None else dict(best.params),
        )
    )
    return outcome


def _tuned_cells(study: ConfigStudy, best: FrozenTrial) -> list[GridCell]:
    """The configuration's cells with the best trial's complete spec, each with its own seed."""
    tuned_tags = {
        tag.TUNED_STUDY: study.spec.name,
        tag.TUNED_TRIAL: str(best.number),
        tag.TUNED_PARAMS: json.dumps(best.params, sort_keys=True),
        tag.TUNED_VALUE: f"{best.value:.6g}",
    }
    tuned = []
    for cell in study.cells:
        raw = copy.deepcopy(best.user_attrs[tag.ATTR_SPEC])
        raw["seed"] = cell.spec.seed
        raw["tracking"] = cell.spec.tracking.model_dump(mode="json")  # the grid's, as it is now
        where = f"{cell.run_name} (best trial {best.number} of {study.spec.name})"
        spec = validate_run_spec(raw, where=where)
        tuned.append(dataclasses.replace(cell, spec=spec, tags={**cell.tags, **tuned_tags}))
    return tuned


def _check_identity(study: ConfigStudy, location: str) -> None:
    """A study of this name made from another base, space or objective cannot be continued."""
    from experiments.tuning.storage import stored_study

    stored = stored_study(study.spec.name, location)
    identity = stored.user_attrs.get(tag.STUDY_ATTR_IDENTITY) if stored is not None else None
    if identity is not None and identity != study.spec.identity():
        raise SpecError(
            f"study {study.spec.name!r} in {location} was made for configuration {study.config!r} with "
            "another base, space or objective (the grid's file or --set changed since), so its trials "
            "would not be comparable; give the grid another `name`, or use another --tracking-uri (the "
            "studies' storage is beside the store)"
        )


def _dry_run(studies: list[ConfigStudy], location: str) -> TunedGrid:
    from experiments.tuning.storage import best_trial, stored_study
    from experiments.tuning.tune import FINISHED

    ready, waiting, statuses = [], [], []
    for study in studies:
        stored = stored_study(study.spec.name, location)
        trials = stored.get_trials(deepcopy=False) if stored is not None else []
        finished = sum(t.state in FINISHED for t in trials)
        best = best_trial(stored) if stored is not None else None
        done = finished >= study.spec.trials and best is not None
        status = "done" if done else "in progress" if trials else "to run"
        statuses.append(
            StudyStatus(
                study.spec.name,
                finished,
                study.spec.trials,
                None if best is None else best.value,
                {} if best is None else dict(best.params),
                status,
            )
        )
        if done:
            ready += _tuned_cells(study, best)
        else:
            waiting.append(study.config)
    runs = sum(len(s.cells) for s in studies if s.config in waiting)
    return TunedGrid(ready, waiting, statuses=statuses, waiting_runs=runs)
