"""Run identity survives refactors: every shipped grid cell, run spec and study keeps the hash that
`litbench grid FILE --dry-run` printed before the house was rebuilt (tests/shipped_hashes.json, written by
the code of 009a321). A changed hash would make every existing store run its cells again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.errors import SpecError
from experiments.specs import load_run_spec, validate_run_spec
from experiments.sweeps.grid import expand, load_grid
from experiments.tuning.study_spec import load_study_spec
from experiments.tuning.tuned_grid import studies_for

REPO = Path(__file__).resolve().parents[1]
EXPECTED = json.loads((Path(__file__).parent / "shipped_hashes.json").read_text())


@pytest.mark.parametrize("name", sorted(EXPECTED["grids"]))
def test_shipped_grid_cells_keep_their_hashes(name: str) -> None:
    path = REPO / "experiments" / "grids" / name
    grid = load_grid(path)
    cells = expand(grid, where=str(path))
    assert {c.run_name: c.spec.spec_hash for c in cells} == EXPECTED["grids"][name]
    if grid.tune is not None:  # a tuned grid's studies keep their identities, so they resume
        identities = {s.spec.name: s.spec.identity() for s in studies_for(grid, cells, str(path))}
        assert identities == EXPECTED["tuned_studies"][name]


def test_every_shipped_grid_is_listed() -> None:
    assert sorted(p.name for p in (REPO / "experiments" / "grids").glob("*.yaml")) == sorted(
        EXPECTED["grids"]
    )


@pytest.mark.parametrize("name", sorted(EXPECTED["runs"]))
def test_shipped_run_specs_keep_their_hashes(name: str) -> None:
    assert load_run_spec(REPO / "experiments" / "runs" / name).spec_hash == EXPECTED["runs"][name]


@pytest.mark.parametrize("name", sorted(EXPECTED["studies"]))
def test_shipped_studies_keep_their_identities(name: str) -> None:
    assert load_study_spec(REPO / "experiments" / "studies" / name).identity() == EXPECTED["studies"][name]


@pytest.mark.parametrize("data", ["glue", "text_classification", "translation"])
def test_the_retired_max_epochs_option_is_refused_and_kept_in_the_identity(data: str) -> None:
    """`data.max_epochs` changed the hash and nothing else; it is gone, and runs keep their hashes."""
    model = {"glue": "cbow", "text_classification": "cbow", "translation": "gru_attention"}[data]
    with pytest.raises(SpecError, match=r"no longer takes 'max_epochs'.*trainer\.max_epochs"):
        validate_run_spec({"data": {"name": data, "max_epochs": 3}, "model": {"name": model}})
    spec = validate_run_spec({"data": {"name": data}, "model": {"name": model}})
    assert "max_epochs" not in spec.data.options and "data.max_epochs" not in spec.flat_params()
    assert "max_epochs" in spec.identity()["data"]
