"""A study file: a base RunSpec, a search space, the validation metric to optimize, sampler and pruner.

```yaml
name: digits_lr                 # the Optuna study and the MLflow experiment; defaults to the file name
base: {data: {name: digits}, model: {name: mlp}, trainer: {max_epochs: 8}}
space:                          # see experiments/tuning/search_space.py
  optimizer.name: [sgd, adam]
  optimizer.lr: {type: float, low: 1.0e-4, high: 0.3, log: true}
  optimizer.momentum: {type: float, low: 0.0, high: 0.95, when: {optimizer.name: sgd}}
objective: val/acc              # default val/<the task's metric>; never a test/ metric
direction: maximize             # default: the task's protocol mode (loss: minimize)
sampler: {name: tpe, seed: 0}   # tpe, random, cmaes, grid, qmc; other keys go to the Optuna sampler
pruner: {name: median, n_startup_trials: 3, n_warmup_steps: 1}   # median, successive_halving, hyperband, none
trials: 12                      # finished (complete or pruned) trials to reach; --trials overrides
max_failures: 10                # one command stops after this many failed trials
```

Everything is checked before anything trains: unknown keys, wrong types, ``when`` on a field that
exists nowhere, and every value each parameter can take set into the base and validated as a RunSpec.
Errors name the file, the line and the key path, as the grid's do.
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from core.errors import SpecError
from core.metrics import direction_of
from experiments.specs import RunSpec, StrictModel, flatten, read_yaml
from experiments.specs.errors import SpecSource, problem, spec_error
from experiments.tuning.search_space import Param, grid_space, probe_spaces, shorthand

if TYPE_CHECKING:
    import optuna

SAMPLERS = ("tpe", "random", "cmaes", "grid", "qmc")
PRUNERS = ("median", "successive_halving", "hyperband", "none")


class _Options(StrictModel):
    """A name plus the options its Optuna class takes (checked against its signature at load)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, raw: Any) -> Any:
        return {"name": raw} if isinstance(raw, str) else raw

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class SamplerSpec(_Options):
    name: Literal["tpe", "random", "cmaes", "grid", "qmc"] = "tpe"
    seed: int | None = 0  # with several workers or a resumed study, each process offsets it


class PrunerSpec(_Options):
    name: Literal["median", "successive_halving", "hyperband", "none"] = "median"


class StudySpec(StrictModel):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = ""
    base: dict[str, Any] = Field(default_factory=dict)
    space: dict[str, Param] = Field(min_length=1)
    objective: str | None = Field(None, pattern=r"^[^/]+/.+$")  # None: val/<the task's metric>
    direction: Literal["maximize", "minimize"] | None = None  # None: the task's mode for the metric
    sampler: SamplerSpec = SamplerSpec()
    pruner: PrunerSpec = PrunerSpec()
    trials: int = Field(20, ge=1)
    max_failures: int = Field(10, ge=1)

    @field_validator("space", mode="before")
    @classmethod
    def _shorthands(cls, space: Any) -> Any:
        if isinstance(space, Mapping):
            return {key: shorthand(entry) for key, entry in space.items()}
        return space

    @field_validator("objective")
    @classmethod
    def _validation_only(cls, objective: str | None) -> str | None:
        if objective is not None and not objective.startswith("val/"):
            raise ValueError(
                f"{objective!r} is not a validation metric; a study optimizes a val/ metric (e.g. val/acc, "
                "val/loss) and never looks at the test split, which stays for the final, unbiased number"
            )
        return objective

    def base_spec(self) -> RunSpec:
        return RunSpec.model_validate(self.base)

    def identity(self) -> str:
        """What makes two runs of this file the same study: base, space, objective, direction."""
        objective = resolve_objective(self)
        canonical = {
            "base": self.base_spec().identity(),
            "space": {k: v.model_dump(mode="json") for k, v in self.space.items()},
            "objective": objective.metric,
            "direction": objective.direction,
        }
        text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Objective:
    metric: str  # val/<name>
    direction: Literal["maximize", "minimize"]


def resolve_objective(study: StudySpec) -> Objective:
    """The objective and its direction: the file's, else the metric's declared direction."""
    from tasks import scoring_of, task_for_data

    base = study.base_spec()
    scoring = scoring_of(base.data.name, base.data.typed_options())
    metric = study.objective or f"val/{scoring.metric}"
    logged = [f"val/{name}" for name in task_for_data(base.data.name).logged_metrics(scoring)]
    if metric not in logged:
        raise SpecError(
            f"objective {metric!r}: the task does not log it; its validation metrics are {', '.join(logged)}"
        )
    if study.direction:
        return Objective(metric, study.direction)
    return Objective(metric, "maximize" if direction_of(metric) == "max" else "minimize")


def load_study_spec(path: str | Path) -> StudySpec:
    """Read and validate a study file: the schema, the base, each ``when`` and every value in the space."""
    path = Path(path)
    raw = read_yaml(path)
    raw.setdefault("name", path.stem)
    source = SpecSource.of_file(str(path), path.read_text(encoding="utf-8"))
    try:
        study = StudySpec.model_validate(raw)
    except ValidationError as err:
        raise spec_error(err, StudySpec, source) from None
    check_study(study, source)
    return study


def check_study(study: StudySpec, source: SpecSource | None = None) -> None:
    """The checks that need the registries: the base, ``when`` keys, each space value, the objective.

    ``source`` points errors at the file's lines; a study nested in a grid's ``tune:`` block has its
    ``prefix`` there, and its base is the configuration's spec (errors point at the grid's base).
    """
    source = source or SpecSource("study")
    base_source = SpecSource(source.path, source.root, source.overrides)  # the base is the file's own
    try:
        base = study.base_spec()
    except ValidationError as err:
        raise spec_error(err, RunSpec, base_source, prefix=("base",)) from None
    known = set(base.flat_params())
    earlier: list[str] = []
    for key, param in study.space.items():
        if key.split(".")[0] not in RunSpec.model_fields:
            close = difflib.get_close_matches(key, sorted(known), n=3, cutoff=0.5)
            hint = f"; close fields: {', '.join(close)}" if close else ""
            raise SpecError(
                f"{source.line(('space', key))}: {_shown(source, 'space', key)}: not a RunSpec field (dotted "
                f"keys as in RunSpec.flat_params(), e.g. optimizer.lr, model.name){hint}."
            )
        for cond in param.when or {}:
            if cond in study.space and cond not in earlier:
                raise SpecError(
                    f"{source.line(('space', key, 'when', cond))}: {_shown(source, 'space', key)}.when: "
                    f"{cond!r} is sampled "
                    f"after {key!r}; list {cond!r} first in the space"
                )
            if not _reachable(cond, known, study, earlier):
                close = difflib.get_close_matches(cond, sorted(known | set(earlier)), n=3, cutoff=0.5)
                hint = f"; close fields: {', '.join(close)}" if close else ""
                raise SpecError(
                    f"{source.line(('space', key, 'when', cond))}: {_shown(source, 'space', key)}.when: "
                    f"{cond!r} is neither a "
                    f"field of the base spec nor a key sampled earlier in the space{hint}."
                )
        earlier.append(key)
    for key, value, raw in probe_spaces(study.space, study.base):
        try:
            RunSpec.model_validate(raw)
        except ValidationError as err:
            text = "; ".join(problem(e, RunSpec).rstrip(".") for e in err.errors())
            raise SpecError(
                f"{source.line(('space', key))}: {_shown(source, 'space', key)}: the value {value!r} gives "
                f"an invalid run: {text}."
            ) from None
    try:
        resolve_objective(study)
    except SpecError as err:
        raise SpecError(f"{source.line(('objective',))}: {err}.") from None
    for section, names in (("sampler", SAMPLER_CLASSES), ("pruner", PRUNER_CLASSES)):
        spec = getattr(study, section)
        _check_options(section, spec, names[spec.name], source)
    make_sampler(study, study.sampler.seed)  # bad option values (a grid over an unstepped float) fail here
    make_pruner(study)


def _reachable(cond: str, known: set[str], study: StudySpec, earlier: list[str]) -> bool:
    """A base field, an earlier space key, or a field inside an earlier partial-spec choice."""
    if cond in known or cond in earlier:
        return True
    for key in earlier:
        param = study.space[key]
        for choice in getattr(param, "choices", []):
            if isinstance(choice, Mapping) and cond in {f"{key}.{k}" for k in flatten(choice)}:
                return True
    return False


def _shown(source: SpecSource, *loc: str) -> str:
    """``space.x`` in a study file, ``tune.space.x`` in a grid's tune block."""
    return ".".join(str(part) for part in (*source.prefix, *loc))


SAMPLER_CLASSES = {
    "tpe": "TPESampler",
    "random": "RandomSampler",
    "cmaes": "CmaEsSampler",
    "grid": "GridSampler",
    "qmc": "QMCSampler",
}
PRUNER_CLASSES = {
    "median": "MedianPruner",
    "successive_halving": "SuccessiveHalvingPruner",
    "hyperband": "HyperbandPruner",
    "none": "NopPruner",
}


def _check_options(section: str, spec: _Options, class_name: str, source: SpecSource) -> None:
    import optuna

    cls = getattr(optuna.samplers if section == "sampler" else optuna.pruners, class_name)
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "search_space")]
    for key in spec.options:
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise SpecError(
                f"{source.line((section, key))}: {section} {spec.name!r} ({class_name}) takes no option "
                f"{key!r}{hint}. Its options: {', '.join(accepted) or 'none'}."
            )


def make_sampler(study: StudySpec, seed: int | None) -> optuna.samplers.BaseSampler:
    import optuna

    options = dict(study.sampler.options)
    cls = getattr(optuna.samplers, SAMPLER_CLASSES[study.sampler.name])
    try:
        if study.sampler.name == "grid":
            return cls(grid_space(study.space), seed=seed, **options)
        return cls(seed=seed, **options)
    except (TypeError, ValueError) as err:
        raise SpecError(f"sampler {study.sampler.name!r}: {err}") from None


def make_pruner(study: StudySpec) -> optuna.pruners.BasePruner:
    import optuna

    cls = getattr(optuna.pruners, PRUNER_CLASSES[study.pruner.name])
    try:
        return cls(**study.pruner.options)
    except (TypeError, ValueError) as err:
        raise SpecError(f"pruner {study.pruner.name!r}: {err}") from None
