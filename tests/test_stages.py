"""Grids in stages: expansion and linking, dependents of a FAILED cell left unrun with the reason,
and SIGKILLs during either stage resumed to one FINISHED run per cell, no child before its parent."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest

from core import tags as tag
from core.errors import SpecError
from experiments.sweeps.grid import expand, load_grid
from tests.test_grid_runner import finished_once_per_hash, litbench, runs_by_status

STAGED = """
name: staged
base:
  data: {name: digits, batch_size: 32}
  model: {name: mlp, hidden: [16]}
  trainer: {max_epochs: 2, limit_train_batches: 6, limit_val_batches: 2, accelerator: cpu}
  tracking: {heatmaps: 0}
seeds: [0, 1]
stages:
  pretrain:
    trainer: {max_epochs: 3}
  finetune:
    axes:
      optimizer.lr: [0.001, 0.01]
      model.init_from: [null, {stage: pretrain}]
"""


def _grid(tmp_path: Path, text: str, name: str = "g.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path, load_grid(path)


def test_stage_cells_are_named_linked_and_hash_their_parent(tmp_path: Path) -> None:
    _, grid = _grid(tmp_path, STAGED)
    cells = expand(grid)
    assert [c.run_name for c in cells[:2]] == ["pretrain-s0", "pretrain-s1"]
    assert len(cells) == 2 + 2 * 2 * 2
    parents = {c.spec.seed: c.spec.spec_hash for c in cells if c.stage == "pretrain"}
    for cell in cells:
        assert cell.tags[tag.STAGE] == cell.stage
        init = cell.spec.model.init_from
        if cell.stage == "finetune" and init is not None:
            assert cell.needs == (parents[cell.spec.seed],)  # the same seed's pretraining
            assert init.spec_hash == parents[cell.spec.seed]
        else:
            assert cell.needs == ()
    # the child's identity follows its parent's: a longer pretraining makes other fine-tuning runs
    _, longer = _grid(tmp_path, STAGED.replace("max_epochs: 3", "max_epochs: 4"), "h.yaml")
    changed = {c.run_name: c.spec.spec_hash for c in expand(longer)}
    for cell in cells:
        moved = changed[cell.run_name] != cell.spec.spec_hash
        assert moved == (cell.stage == "pretrain" or cell.spec.model.init_from is not None), cell.run_name


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("{stage: later}", "names stage 'later', which is not an earlier stage"),
        ("{stage: pretrain, cell: nope}", "stage 'pretrain' has no configuration 'nope'"),
        ("{stage: finetune}", "names stage 'finetune', which is not an earlier stage"),
    ],
)
def test_bad_stage_references_name_the_cell_and_the_fix(tmp_path: Path, edit: str, message: str) -> None:
    _, grid = _grid(tmp_path, STAGED.replace("{stage: pretrain}", edit))
    with pytest.raises(SpecError, match=message):
        expand(grid)


def test_ambiguous_parent_and_top_level_axes_are_refused(tmp_path: Path) -> None:
    two = STAGED.replace("    trainer: {max_epochs: 3}", "    axes: {optimizer.lr: [0.1, 0.2]}")
    _, grid = _grid(tmp_path, two)
    with pytest.raises(
        SpecError, match=r"2 cells of stage 'pretrain' could be the parent .*pick one with `cell:`"
    ):
        expand(grid)
    _, picked = _grid(tmp_path, two.replace("{stage: pretrain}", "{stage: pretrain, cell: lr0.1}"), "p.yaml")
    assert all(c.needs for c in expand(picked) if c.spec.model.init_from is not None)
    with pytest.raises(SpecError, match=r"move axes into the stage"):
        _grid(tmp_path, STAGED + "axes: {seed: [1]}\n", "t.yaml")


def test_dependents_of_a_failed_cell_are_left_unrun_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # `litbench ls` prints whole reasons
    # the pretraining diverges (a NaN/inf loss fails a run)
    text = STAGED.replace("    trainer: {max_epochs: 3}", "    base: {optimizer: {name: sgd, lr: 1.0e+30}}")
    (tmp_path / "g.yaml").write_text(text)
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    grid = litbench("grid", "g.yaml", "--workers", "2", "--tracking-uri", uri, cwd=tmp_path)
    output, _ = grid.communicate(timeout=600)
    assert grid.returncode == 1, output
    assert output.count("BLOCKED") >= 4, output
    statuses = runs_by_status(uri, "staged")
    assert len(statuses["FAILED"]) == 2  # the pretraining cells, with the data error
    assert len(statuses["FINISHED"]) == 4  # fine-tuning from scratch does not need them
    blocked = statuses["KILLED"]
    assert len(blocked) == 4
    for run in blocked:
        assert run.data.tags[tag.BLOCKED].startswith("not run: it needs pretrain-s")
        assert "whose last run FAILED (NonFiniteLossError" in run.data.tags[tag.FAILURE]
        assert not run.data.metrics  # nothing trained
    listing = litbench("ls", "staged", "--tracking-uri", uri, cwd=tmp_path)
    shown, _ = listing.communicate(timeout=120)
    assert listing.returncode == 0
    assert shown.count("not run: it needs") == 4, shown
    again = litbench("grid", "g.yaml", "--tracking-uri", uri, cwd=tmp_path)
    output, _ = again.communicate(timeout=600)
    assert again.returncode == 1
    assert len(runs_by_status(uri, "staged")["KILLED"]) == 4  # the same reason is not recorded twice


def _in_flight(uri: str, stage: str, before: set[str]) -> list[str]:
    """Ids of the runs of `stage` RUNNING now that were not there before this grid started (a run
    orphaned by an earlier kill is RUNNING too, until the new grid takes it over). Read with sqlite3:
    an MLflow client's first look at a store being created takes seconds, longer than a tiny cell."""
    store = Path(uri.removeprefix("sqlite:///"))
    if not store.exists():
        return []
    query = (
        "SELECT runs.run_uuid FROM runs JOIN tags ON runs.run_uuid = tags.run_uuid "
        "WHERE runs.status = 'RUNNING' AND tags.key = ? AND tags.value = ?"
    )
    try:
        with closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=1)) as db:
            found = [row[0] for row in db.execute(query, (tag.STAGE, stage))]
    except sqlite3.OperationalError:  # the tables are not made yet, or a write holds the lock
        return []
    return [run_id for run_id in found if run_id not in before]


def _kill_in_flight(command: tuple[str, ...], cwd: Path, uri: str, stage: str) -> None:
    """SIGKILL a grid while one of its own `stage` runs is in flight; a tiny run can finish between
    the look and the kill, so try again (a new grid on the same store) until one was caught."""
    for _ in range(5):
        store = Path(uri.removeprefix("sqlite:///"))
        seen = runs_by_status(uri, "staged").values() if store.exists() else []
        before = {r.info.run_id for runs in seen for r in runs}
        grid = litbench(*command, cwd=cwd, start_new_session=True)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and grid.poll() is None and not _in_flight(uri, stage, before):
            time.sleep(0.05)
        if grid.poll() is not None:
            raise AssertionError(f"no {stage} run was ever in flight: {grid.communicate()[0]}")
        os.killpg(grid.pid, signal.SIGKILL)  # the grid, its fork server and every worker
        grid.wait(timeout=30)
        if _in_flight(uri, stage, before):
            return
    raise AssertionError(f"five kills in the {stage} stage, none caught a run in flight")


def test_sigkills_in_either_stage_resume_to_one_run_per_cell_and_parents_first(tmp_path: Path) -> None:
    # cells of a second or two, so that a kill can land inside one
    slower = STAGED.replace("max_epochs: 2, limit_train_batches: 6", "max_epochs: 6, limit_train_batches: 40")
    assert slower != STAGED
    (tmp_path / "g.yaml").write_text(slower)
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    command = ("grid", "g.yaml", "--workers", "2", "--tracking-uri", uri)
    for stage in ("pretrain", "finetune"):
        _kill_in_flight(command, tmp_path, uri, stage)
    again = litbench(*command, cwd=tmp_path)
    output, _ = again.communicate(timeout=600)
    assert again.returncode == 0, output
    finished_once_per_hash(uri, "staged", 10)
    runs = runs_by_status(uri, "staged")["FINISHED"]
    by_hash = {r.data.tags[tag.SPEC_HASH]: r for r in runs}
    children = [r for r in runs if r.data.tags.get(tag.PARENT_HASH)]
    assert len(children) == 4
    for child in children:
        parent = by_hash[child.data.tags[tag.PARENT_HASH]]
        assert child.data.tags[tag.PARENT_RUN] == parent.info.run_id
        assert child.info.start_time >= parent.info.end_time  # never before its parent FINISHED
