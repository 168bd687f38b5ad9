"""The engine reports each cell's start and end the moment it happens, so the CLI's progress line and
per-run lines tell the truth while a grid runs (they used to arrive all at once, at the end)."""

from __future__ import annotations

import time
from pathlib import Path

from core.context import Context
from core.store import client_for
from experiments.events import CellEnded, CellStarted
from experiments.sweeps.grid import expand, load_grid
from experiments.sweeps.scheduler import Policy, run_grid


def test_each_cell_end_reaches_the_listener_as_it_happens(tmp_path: Path) -> None:
    path = tmp_path / "lengths.yaml"
    path.write_text(
        "name: lengths\nbase:\n  data: {name: digits, batch_size: 64}\n  model: {name: mlp, hidden: [32]}\n"
        "  trainer: {limit_train_batches: 10, limit_val_batches: 2, accelerator: cpu}\n"
        "  tracking: {heatmaps: 0, log_checkpoint: false}\n"
        "axes:\n  trainer.max_epochs: [400, 1, 2]\nseeds: [0]\n"  # one long cell, two short ones
    )
    cells = expand(load_grid(path))
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    events: list[tuple[float, object]] = []
    running, most_running = 0, 0

    def listener(event) -> None:
        nonlocal running, most_running
        events.append((time.time(), event))
        if isinstance(event, CellStarted):
            running += 1
            most_running = max(most_running, running)
        elif isinstance(event, CellEnded):
            running -= 1

    final = run_grid(
        cells, experiment="lengths", ctx=Context(uri, tmp_path), policy=Policy(workers=2), on_event=listener
    )
    grid_end = time.time()
    assert sorted(o.status for o in final.values()) == ["FINISHED"] * 3
    assert most_running <= 2 and running == 0  # "running" never exceeds the workers alive

    client = client_for(uri)
    runs = client.search_runs([client.get_experiment_by_name("lengths").experiment_id])
    run_end = {r.info.run_id: r.info.end_time / 1000 for r in runs}
    ended = [(at, e.outcome) for at, e in events if isinstance(e, CellEnded)]
    assert len(ended) == 3
    # the listener heard the cells end in the order they ended in the store ...
    assert [o.run_id for _, o in ended] == sorted(run_end, key=run_end.get)
    # ... each one within seconds of its run's end, before the grid ended: not batched at the end
    for at, outcome in ended:
        assert run_end[outcome.run_id] - 1.0 <= at <= min(run_end[outcome.run_id] + 5.0, grid_end)
    assert [o.cell.run_name for _, o in ended] == ["max_epochs1-s0", "max_epochs2-s0", "max_epochs400-s0"]
    first_at, first = ended[0]
    assert first_at < max(run_end.values()), f"{first.cell.run_name} was reported after the last cell ended"
