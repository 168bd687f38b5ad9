"""What a quickstart cell tracks, pinned: the params, metric names, artifact paths and tag names of
`cnn-adam-lr0.002-s0`, as recorded in `tests/quickstart_tracked.json` before the run path was made
faster (issue 15). Speed-ups must keep every one of them; a change that means to track more or less
updates the file in the same commit."""

from __future__ import annotations

import json
from pathlib import Path

from core.context import Context
from experiments.run.runner import execute
from experiments.sweeps.grid import expand, load_grid

REPO = Path(__file__).resolve().parents[1]
PINNED = json.loads((REPO / "tests" / "quickstart_tracked.json").read_text())


def _artifact_paths(client, run_id: str, path: str = "") -> list[str]:
    found = []
    for item in client.list_artifacts(run_id, path):
        found += _artifact_paths(client, run_id, item.path) if item.is_dir else [item.path]
    return found


def _differences(kind: str, got: list[str], pinned: list[str]) -> str:
    lost, new = sorted(set(pinned) - set(got)), sorted(set(got) - set(pinned))
    return f"{kind}: no longer tracked {lost}, newly tracked {new}" if lost or new else ""


def test_a_quickstart_cell_tracks_what_it_tracked_before(tracking_uri: str, tmp_path: Path) -> None:
    cells = expand(load_grid(REPO / "experiments" / "grids" / "quickstart.yaml"))
    (cell,) = [c for c in cells if c.run_name == PINNED["cell"]]
    result = execute(
        cell.spec, Context(tracking_uri, tmp_path), experiment="quickstart", run_name=cell.run_name
    )
    client = Context(tracking_uri, tmp_path).client
    run = client.get_run(result.run_id)
    problems = [
        _differences("params", list(run.data.params), PINNED["params"]),
        _differences("metrics", list(run.data.metrics), PINNED["metrics"]),
        _differences("artifacts", _artifact_paths(client, result.run_id), PINNED["artifacts"]),
        _differences("tags", list(run.data.tags), PINNED["tags"]),
    ]
    assert not any(problems), "; ".join(p for p in problems if p)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["test/acc"] > 0.8  # the cell still learns the digits
