"""``litbench tune --export-best FILE``: the best trial's complete spec as a grid over three seeds."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from core import tags as tag
from core.errors import SpecError
from experiments.sweeps.grid import expand, load_grid
from experiments.tuning.study_spec import StudySpec
from experiments.tuning.tune import TuneOutcome


def export_best(outcome: TuneOutcome, spec: StudySpec, path: str | Path) -> Path:
    """The best trial's complete spec as a grid over three seeds, which `litbench grid` runs unchanged."""
    best = outcome.best
    if best is None or tag.ATTR_SPEC not in best.user_attrs:
        raise SpecError(f"study {spec.name!r} has no completed trial yet; nothing to export")
    base = {k: v for k, v in best.user_attrs[tag.ATTR_SPEC].items() if k != "seed"}
    grid = {
        "name": f"{spec.name}-best",
        "description": f"the best trial ({best.number}) of study {spec.name}: {outcome.objective} = "
        f"{best.value:.6g}",
        "base": base,
        "seeds": [0, 1, 2],
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (
        f"# Exported by `litbench tune` from study {spec.name!r}: trial {best.number}, "
        f"{outcome.objective} = {best.value:.6g}, params {json.dumps(best.params, sort_keys=True)}.\n"
        f"# Run it over three seeds: litbench grid {path}\n"
    )
    path.write_text(header + yaml.safe_dump(grid, sort_keys=False))
    expand(load_grid(path))  # what `litbench grid` does first: it must accept the file
    return path
