"""A suite: one method axis compared across several workloads, each a grid file.

```yaml
name: optimizers              # each workload's grid runs as the experiment <suite>-<workload>
method: optimizer             # the spec key whose values are the compared methods
methods:                      # added to every workload's grid as its `method` axis
  - {name: sgd, lr: 0.05}
  - {name: adam, lr: 0.001}
with:                         # optional: keys that vary with the method, i-th value with i-th method
  regularization.l2: [0.0, 0.0]
seeds: [0, 1, 2]              # optional: replaces every grid's seeds
workloads:
  digits_mlp: {grid: optimizers/digits_mlp.yaml}               # relative to this file
  mnist_mlp: {grid: optimizers/mnist_mlp.yaml, target: 0.975}  # val/<metric> target, over the task's
  sst2_cbow: {grid: optimizers/sst2_cbow.yaml, budget_s: 60}   # seconds of fit allowed to reach it
```

With ``with`` the method and those keys are one ``zip`` group of each grid (AdamW's decoupled
weight decay is ``regularization.l2``, a key beside the optimizer's). Without ``methods`` every
grid must vary ``method`` itself (an axis of the same name, the same values in each). A
workload's target and budget default to its task's (``TaskProtocol``: the target of
``val/<metric>``, and the epochs each run trains); a run that never reaches the target counts at
its budget. ``reports/suite.py`` compares the methods across the workloads.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from core.errors import SpecError
from experiments.specs import StrictModel
from experiments.specs.errors import SpecSource, spec_error
from experiments.specs.values import read_yaml
from experiments.sweeps.grid import GridSpec, label, load_grid

NAME = r"^[A-Za-z0-9_.\-]+$"


class WorkloadSpec(StrictModel):
    grid: str = Field(min_length=1)  # a grid file, relative to the suite file
    target: float | None = None  # the val/<metric> to reach; default: the task's
    budget_s: float | None = Field(None, gt=0)  # seconds of fit; default: each run's whole fit


class SuiteSpec(StrictModel):
    name: str = Field(min_length=1, pattern=NAME)
    description: str = ""
    method: str = Field(min_length=1)
    methods: list[Any] | None = Field(None, min_length=2)
    with_: dict[str, list[Any]] = Field(default_factory=dict, alias="with")
    seeds: list[int] | None = Field(None, min_length=1)
    workloads: dict[str, WorkloadSpec] = Field(min_length=2)


@dataclass(frozen=True)
class Workload:
    name: str
    grid: GridSpec  # named <suite>-<workload>, with the method axis
    grid_path: Path
    target: float | None
    budget_s: float | None

    @property
    def experiment(self) -> str:
        return self.grid.name


@dataclass(frozen=True)
class Suite:
    spec: SuiteSpec
    path: Path
    workloads: list[Workload]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def method(self) -> str:
        return self.spec.method


def is_suite_file(path: str | Path) -> bool:
    """Whether a YAML file is a suite (it has ``workloads``) rather than a grid or a run spec."""
    path = Path(path)
    return path.suffix in (".yaml", ".yml") and path.is_file() and "workloads" in read_yaml(path)


def load_suite(path: str | Path, overrides: Sequence[str] = ()) -> Suite:
    """Read a suite file and every grid it names; ``key=value`` overrides apply to each grid's base."""
    path = Path(path)
    raw = read_yaml(path)
    raw.setdefault("name", path.stem)
    source = SpecSource.of_file(str(path), path.read_text(encoding="utf-8"), ())
    try:
        spec = SuiteSpec.model_validate(raw)
    except ValidationError as err:
        raise spec_error(err, SuiteSpec, source) from None
    if spec.with_ and spec.methods is None:
        raise SpecError(f"{path}: `with` varies keys with the suite's `methods`; give `methods` too")
    for key, values in spec.with_.items():
        if len(values) != len(spec.methods or ()):
            raise SpecError(
                f"{path}: with.{key} has {len(values)} values for {len(spec.methods or ())} methods; "
                "give one value per method, in the methods' order"
            )
    for name in spec.workloads:
        if not _valid_name(name):
            raise SpecError(f"{path}: workload name {name!r} may hold only letters, digits, '_', '.', '-'")
    workloads = [_workload(spec, path, name, entry, overrides) for name, entry in spec.workloads.items()]
    _check_same_methods(path, spec, workloads)
    return Suite(spec, path, workloads)


def _valid_name(name: str) -> bool:
    return re.fullmatch(NAME, name) is not None


def _workload(
    spec: SuiteSpec, path: Path, name: str, entry: WorkloadSpec, overrides: Sequence[str]
) -> Workload:
    grid_path = (path.parent / entry.grid).resolve()
    if not grid_path.is_file():
        raise SpecError(
            f"{path}: workloads.{name}.grid: {entry.grid!r} does not exist (looked for {grid_path}); "
            "give the grid file's path relative to the suite file"
        )

    def adjust(raw: dict[str, Any]) -> None:
        raw["name"] = f"{spec.name}-{name}"
        if spec.seeds is not None:
            raw["seeds"] = list(spec.seeds)
        if spec.methods is None:
            return
        axes = raw.setdefault("axes", {})
        if not isinstance(axes, dict):
            return  # the grid's own validation says what is wrong with its axes
        zipped = [k for group in raw.get("zip") or [] if isinstance(group, dict) for k in group]
        ours = (spec.method, *spec.with_)
        clash = [k for k in (*axes, *zipped) if any(_overlap(str(k), key) for key in ours)]
        if clash:
            raise SpecError(
                f"{grid_path}: this grid varies {clash[0]!r}, which suite {spec.name!r} varies with its "
                f"methods ({', '.join(ours)}); drop the axis from the grid or `methods` from the suite"
            )
        if spec.with_:
            raw["zip"] = [*(raw.get("zip") or []), {spec.method: list(spec.methods), **spec.with_}]
        else:
            axes[spec.method] = list(spec.methods)

    return Workload(name, load_grid(grid_path, overrides, adjust), grid_path, entry.target, entry.budget_s)


def _overlap(a: str, b: str) -> bool:
    """Whether two dotted keys set the same value (``optimizer`` and ``optimizer.name`` do)."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def _check_same_methods(path: Path, spec: SuiteSpec, workloads: list[Workload]) -> None:
    """Methods compared across workloads must be the same methods: the same labels in every grid."""
    seen: dict[str, list[str]] = {}
    for workload in workloads:
        values = workload.grid.axes.get(spec.method)
        for group in workload.grid.zip:
            values = group.get(spec.method, values)
        if values is None:
            raise SpecError(
                f"{workload.grid_path}: suite {spec.name!r} compares {spec.method!r}, which this grid "
                f"does not vary; add `axes: {{{spec.method}: [...]}}` to it or `methods:` to the suite"
            )
        seen[workload.name] = [label(spec.method, v) for v in values]
    first, *rest = seen.items()
    for name, labels in rest:
        if sorted(labels) != sorted(first[1]):
            raise SpecError(
                f"{path}: workload {name!r} compares {labels}, workload {first[0]!r} {first[1]}; every "
                "workload must vary the same methods (or give them once, as the suite's `methods`)"
            )
