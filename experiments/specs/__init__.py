"""Specs: the typed, validated schema of every YAML file litbench reads, and the rules that fill one.

- ``sections``: ``RunSpec`` and its sections; a run's hash is its identity.
- ``strategies``: ``model.init_from``, ``distill`` and ``variants``, and references to other runs.
- ``options``: a registry entry's options, typed from its builder's signature.
- ``values``: reading YAML, ``--set`` overrides and the one rule for setting a dotted key.
- ``errors``: the one formatter of spec errors, pointing at the file line that caused each.

Grid files (``experiments.sweeps.grid``) and study files (``experiments.tuning.study_spec``) build on
these.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from core.errors import SpecError
from experiments.specs.errors import SpecSource, spec_error
from experiments.specs.options import options_model
from experiments.specs.sections import (
    DataSpec,
    ModelSpec,
    OptimizerSpec,
    RegularizationSpec,
    RunSpec,
    ScheduleSpec,
    StrictModel,
    TrackingSpec,
    TrainerSpec,
    validate_run_spec,
)
from experiments.specs.strategies import VARIANTS, DistillSpec, InitFromSpec, RunRef
from experiments.specs.values import flatten, parse_override, read_yaml, set_value
from tasks.translation import DecodingSpec

__all__ = [
    "VARIANTS",
    "DataSpec",
    "DecodingSpec",
    "DistillSpec",
    "InitFromSpec",
    "ModelSpec",
    "OptimizerSpec",
    "RegularizationSpec",
    "RunRef",
    "RunSpec",
    "ScheduleSpec",
    "SpecError",
    "SpecSource",
    "StrictModel",
    "TrackingSpec",
    "TrainerSpec",
    "flatten",
    "load_run_spec",
    "options_model",
    "parse_override",
    "read_yaml",
    "set_value",
    "spec_error",
    "validate_run_spec",
]


def load_run_spec(path: str | Path, overrides: Sequence[str] = ()) -> RunSpec:
    """Read a RunSpec YAML file, apply ``key=value`` overrides, and validate it."""
    raw = read_yaml(path)
    for text in overrides:
        key, value = parse_override(text)
        set_value(raw, key, value)
    return validate_run_spec(raw, where=str(path))
