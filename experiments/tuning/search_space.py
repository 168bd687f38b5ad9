"""A search space written as data, and the one function that turns it into ``trial.suggest_*`` calls.

```yaml
space:
  optimizer.name: [sgd, adam]                                # a list is a categorical
  optimizer.lr: {type: float, low: 1.0e-4, high: 0.3, log: true}
  optimizer.momentum: {type: float, low: 0.0, high: 0.95, when: {optimizer.name: sgd}}
  model.hidden: {type: categorical, choices: [[64], [128, 64]]}
  regularization.early_stopping: {type: int, low: 0, high: 4, step: 2}
  schedule:                                                  # whole partial specs, as a grid axis takes them
    {type: categorical, choices: [{name: none}, {name: cosine, warmup_epochs: 1}]}
```

Each key is a dotted RunSpec field (or a section, for partial specs). Entries are sampled in file order,
each set into the base spec before the next is looked at (by the one rule of
``experiments.specs.values.set_value``), so ``when`` (every key must hold its value; a list means any
of) sees the values chosen so far, or the base's. A parameter whose condition fails is not sampled at
all, so the sampler never learns from values that did not matter.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError, model_validator

from experiments.specs import RunSpec, StrictModel
from experiments.specs.values import get_dotted, same, set_value
from experiments.sweeps.grid import label

if TYPE_CHECKING:
    import optuna

Scalar = str | int | float | bool | None


class _Param(StrictModel):
    when: dict[str, Any] | None = None  # sample only when every key has this value (a list: any of them)

    def applies(self, raw: Mapping[str, Any]) -> bool:
        return all(same(current_value(raw, key), want) for key, want in (self.when or {}).items())


class FloatParam(_Param):
    type: Literal["float"]
    low: float
    high: float
    log: bool = False  # sample log-uniformly; needs low > 0
    step: float | None = Field(None, gt=0)  # a grid of low, low+step, ...; not with log

    @model_validator(mode="after")
    def _check(self) -> FloatParam:
        _check_range(self.low, self.high, self.log, self.log and self.step is not None)
        return self

    def suggest(self, trial: optuna.Trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=self.log, step=self.step)

    def probes(self) -> list[Any]:
        return [self.low, self.high]

    def grid(self) -> list[Any]:
        if self.step is None:
            raise ValueError("the grid sampler needs a step (or a categorical) for every float")
        count = math.floor((self.high - self.low) / self.step + 1e-9) + 1
        return [round(self.low + i * self.step, 12) for i in range(count)]


class IntParam(_Param):
    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _check(self) -> IntParam:
        _check_range(self.low, self.high, self.log, self.log and self.step != 1)
        return self

    def suggest(self, trial: optuna.Trial, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, log=self.log, step=self.step)

    def probes(self) -> list[Any]:
        return [self.low, self.high]

    def grid(self) -> list[Any]:
        if self.log:
            raise ValueError("the grid sampler cannot enumerate a log-scaled int; use a categorical")
        return list(range(self.low, self.high + 1, self.step))


class CategoricalParam(_Param):
    type: Literal["categorical"]
    choices: list[Any] = Field(min_length=1)

    @model_validator(mode="after")
    def _labels_unique(self) -> CategoricalParam:
        if not self._plain():
            labels = [label("choice", c) for c in self.choices]
            if len(set(labels)) != len(labels):
                raise ValueError(f"two choices share the label {labels}; make the choices differ")
        elif len({repr(c) for c in self.choices}) != len(self.choices):
            raise ValueError(f"choices repeat ({self.choices}); list each once")
        return self

    def _plain(self) -> bool:
        """Optuna stores scalars as they are; lists and partial specs go by a readable label."""
        return all(isinstance(c, Scalar) for c in self.choices)

    def optuna_choices(self, name: str) -> list[Scalar]:
        return list(self.choices) if self._plain() else [label(name, c) for c in self.choices]

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        options = self.optuna_choices(name)
        picked = trial.suggest_categorical(name, options)
        return copy.deepcopy(self.choices[options.index(picked)])

    def probes(self) -> list[Any]:
        return list(self.choices)

    def grid(self) -> list[Any]:
        return list(self.choices)


def _check_range(low: float, high: float, log: bool, log_with_step: bool) -> None:
    if low > high:
        raise ValueError(f"low ({low}) is above high ({high})")
    if log and low <= 0:
        raise ValueError(f"a log scale needs low > 0, got {low}")
    if log_with_step:
        raise ValueError("log and step exclude each other; drop one")


Param = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]
PARAM_TYPES: dict[str, type[BaseModel]] = {
    "float": FloatParam,
    "int": IntParam,
    "categorical": CategoricalParam,
}


def shorthand(entry: Any) -> Any:
    """A plain list, or a mapping with ``choices`` and no ``type``, is a categorical."""
    if isinstance(entry, list):
        return {"type": "categorical", "choices": entry}
    if isinstance(entry, Mapping) and "type" not in entry and "choices" in entry:
        return {"type": "categorical", **entry}
    return entry


def current_value(raw: Mapping[str, Any], key: str) -> Any:
    """The value ``key`` has in a raw spec: set there, else the default the validated spec fills in."""
    value = get_dotted(raw, key)
    if value is not None:
        return value
    try:
        return RunSpec.model_validate(raw).flat_params().get(key)
    except ValidationError:  # a partial spec mid-sampling; the condition then does not hold
        return None


def sample(trial: optuna.Trial, space: Mapping[str, Any], base: Mapping[str, Any]) -> tuple[dict, dict]:
    """The base with every applicable parameter suggested by ``trial`` set in; and those values."""
    raw = copy.deepcopy(dict(base))
    chosen: dict[str, Any] = {}
    for key, param in space.items():
        if not param.applies(raw):
            continue
        value = param.suggest(trial, key)
        set_value(raw, key, value)
        chosen[key] = value
    return raw, chosen


def grid_space(space: Mapping[str, Any]) -> dict[str, list[Scalar]]:
    """The search space as Optuna's GridSampler takes it (raises ValueError naming the entry)."""
    grid: dict[str, list[Scalar]] = {}
    for key, param in space.items():
        try:
            values = param.grid()
        except ValueError as err:
            raise ValueError(f"space.{key}: {err}") from None
        grid[key] = param.optuna_choices(key) if isinstance(param, CategoricalParam) else values
    return grid


def probe_spaces(space: Mapping[str, Any], base: Mapping[str, Any]) -> list[tuple[str, Any, dict]]:
    """For each entry and each of its extreme values (every choice), the raw spec it gives.

    Conditions are made to hold by setting their first wanted value, so every value an entry can take
    is validated against the spec it will actually meet, before anything trains.
    """
    probes = []
    for key, param in space.items():
        for value in param.probes():
            raw = copy.deepcopy(dict(base))
            for cond_key, want in (param.when or {}).items():
                set_value(raw, cond_key, want[0] if isinstance(want, list) and want else want)
            set_value(raw, key, value)
            probes.append((key, value, raw))
    return probes
