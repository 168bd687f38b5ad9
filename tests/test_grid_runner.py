"""The grid runner against real processes and a real SQLite store: kills, concurrency, DDP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from core.store import client_for

REPO = Path(__file__).resolve().parents[1]
TINY_BASE = """
base:
  data: {name: digits, batch_size: 32}
  model: {name: mlp, hidden: [16]}
  trainer: {max_epochs: 2, limit_train_batches: 4, limit_val_batches: 2, accelerator: cpu}
  tracking: {heatmaps: 0, log_checkpoint: false}
"""


def litbench(*args: str, cwd: Path, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "cli", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def runs_by_status(uri: str, experiment: str) -> dict[str, list]:
    client = client_for(uri)
    found = client.get_experiment_by_name(experiment)
    grouped: dict[str, list] = {}
    for run in client.search_runs([found.experiment_id]) if found else []:
        grouped.setdefault(run.info.status, []).append(run)
    return grouped


def finished_once_per_hash(uri: str, experiment: str, cells: int) -> dict[str, str]:
    finished = runs_by_status(uri, experiment).get("FINISHED", [])
    hashes = [r.data.tags["litbench.spec_hash"] for r in finished]
    detail = sorted(
        (r.data.tags["litbench.spec_hash"][:8], r.data.tags.get("litbench.attempt"), r.info.start_time)
        for r in finished
    )  # (hash, attempt, start) of each, so a flaky double run says which attempts ran
    assert len(finished) == cells, f"{len(finished)} FINISHED runs for {cells} cells: {detail}"
    assert len(set(hashes)) == cells, "a cell FINISHED twice"
    return {r.data.tags["litbench.spec_hash"]: r.info.run_id for r in finished}


def test_sigkilled_grid_resumes_to_exactly_one_finished_run_per_cell(tmp_path: Path) -> None:
    (tmp_path / "kill.yaml").write_text(
        "name: kill\n"
        + TINY_BASE
        + "axes:\n  optimizer.lr: [0.001, 0.003, 0.01, 0.03, 0.1, 0.3]\nseeds: [0, 1]\n"
    )
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    command = ("grid", "kill.yaml", "--workers", "2", "--tracking-uri", uri)
    grid = litbench(*command, cwd=tmp_path, start_new_session=True)  # its own process group
    deadline = time.monotonic() + 300
    before: dict[str, str] = {}
    while time.monotonic() < deadline and grid.poll() is None:
        if (tmp_path / "mlruns" / "mlflow.db").exists():
            statuses = runs_by_status(uri, "kill")
            finished = statuses.get("FINISHED", [])
            # kill with a run in flight; a run may still finish between this read and the kill, so
            # the finished set is read again once nothing can write any more
            if len(finished) >= 3 and statuses.get("RUNNING"):
                os.killpg(grid.pid, signal.SIGKILL)  # the grid, its fork server and every worker
                finished = runs_by_status(uri, "kill").get("FINISHED", [])
                before = {r.data.tags["litbench.spec_hash"]: r.info.run_id for r in finished}
                break
        time.sleep(0.3)
    grid.wait(timeout=30)
    assert grid.returncode == -signal.SIGKILL, "the grid ended before three runs finished"
    assert 3 <= len(before) < 12
    # the killed workers left their runs RUNNING: the next invocation must treat them as orphans
    assert runs_by_status(uri, "kill").get("RUNNING"), "no run was in flight at the kill"

    again = litbench(*command, cwd=tmp_path)
    output, _ = again.communicate(timeout=600)
    assert again.returncode == 0, output
    after = finished_once_per_hash(uri, "kill", 12)
    assert {h: after[h] for h in before} == before  # runs finished before the kill are kept as they were
    statuses = runs_by_status(uri, "kill")
    assert "RUNNING" not in statuses
    for run in statuses.get("KILLED", []):
        assert run.data.tags["litbench.failure"] == "orphaned: its worker process is gone"


def test_two_grid_commands_on_one_grid_run_each_cell_once(tmp_path: Path) -> None:
    (tmp_path / "pair.yaml").write_text(
        "name: pair\n" + TINY_BASE + "axes:\n  optimizer.lr: [0.001, 0.01, 0.1]\nseeds: [0, 1]\n"
    )
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"  # a store that does not exist yet
    first = litbench("grid", "pair.yaml", "--tracking-uri", uri, cwd=tmp_path)
    second = litbench("grid", "pair.yaml", "--tracking-uri", uri, cwd=tmp_path)
    outputs = [p.communicate(timeout=600)[0] for p in (first, second)]
    assert first.returncode == 0, outputs[0]
    assert second.returncode == 0, outputs[1]
    finished_once_per_hash(uri, "pair", 6)
    statuses = runs_by_status(uri, "pair")
    assert set(statuses) == {"FINISHED"}, {k: len(v) for k, v in statuses.items()}
    # both did work: the cells were shared out, not run twice
    ran = [sum(line.startswith("FINISHED ") for line in out.splitlines()) for out in outputs]
    assert sum(ran) == 6


def test_ddp_run_on_cpu_is_one_tracked_run_matching_single_process(tmp_path: Path) -> None:
    (tmp_path / "ddp.yaml").write_text(
        "data: {name: digits, batch_size: 32}\nmodel: {name: mlp, hidden: [64]}\n"
        "optimizer: {name: adam, lr: 0.003}\ntracking: {heatmaps: 0, log_checkpoint: false}\n"
        "trainer: {max_epochs: 25, accelerator: cpu, devices: 2, strategy: ddp}\n"
    )
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    ddp = litbench("run", "ddp.yaml", "--tracking-uri", uri, cwd=tmp_path)
    out = ddp.communicate(timeout=600)[0]
    assert ddp.returncode == 0, out
    single = litbench(
        "run",
        "ddp.yaml",
        "--tracking-uri",
        uri,
        "--set",
        "trainer.devices=1",
        "--set",
        "trainer.strategy=auto",
        cwd=tmp_path,
    )
    out = single.communicate(timeout=600)[0]
    assert single.returncode == 0, out
    runs = runs_by_status(uri, "ddp")
    assert (
        set(runs) == {"FINISHED"} and len(runs["FINISHED"]) == 2
    )  # one run for the DDP run, not one per rank
    by_devices = {r.data.params["trainer.devices"]: r for r in runs["FINISHED"]}
    ddp_acc, single_acc = (by_devices[d].data.metrics["test/acc"] for d in ("2", "1"))
    assert abs(ddp_acc - single_acc) <= 0.01, (ddp_acc, single_acc)
    assert by_devices["2"].data.params["trainer.strategy"] == "ddp"
    # every rank trained: rank 0 saw half of the training set per epoch
    assert by_devices["2"].data.metrics["perf/train_samples_per_s"] > 0


def test_workers_must_be_positive(tmp_path: Path) -> None:
    (tmp_path / "g.yaml").write_text("name: g\n" + TINY_BASE)
    proc = litbench("grid", "g.yaml", "--workers", "0", cwd=tmp_path)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 2 and "argument --workers: must be at least 1, got 0" in out


def _kill_the_worker(grid: subprocess.Popen, uri: str, experiment: str) -> str:
    """SIGKILL the worker of the cell once its run is RUNNING (not the grid); its run id."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and grid.poll() is None:
        if Path(uri.removeprefix("sqlite:///")).exists():
            running = runs_by_status(uri, experiment).get("RUNNING", [])
            if running and "litbench.pid" in running[0].data.tags:
                os.kill(int(running[0].data.tags["litbench.pid"]), signal.SIGKILL)
                return running[0].info.run_id
        time.sleep(0.2)
    raise AssertionError("the cell's run never showed up RUNNING")


def test_a_worker_killed_from_outside_is_killed_not_failed_and_a_rerun_completes_it(tmp_path: Path) -> None:
    slow = TINY_BASE.replace(
        "max_epochs: 2, limit_train_batches: 4", "max_epochs: 400, limit_train_batches: 4"
    )
    (tmp_path / "outside.yaml").write_text("name: outside\n" + slow + "seeds: [0]\n")
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    command = ("grid", "outside.yaml", "--tracking-uri", uri)

    first = litbench(*command, cwd=tmp_path)
    killed = _kill_the_worker(first, uri, "outside")
    output, _ = first.communicate(timeout=120)
    assert first.returncode == 1, output
    assert "killed from outside" in output and "the same command again runs the killed ones" in output
    run = client_for(uri).get_run(killed)
    assert run.info.status == "KILLED"
    assert run.data.tags["litbench.killed_by"] == "SIGKILL"
    assert "killed by signal 9 (SIGKILL) from outside the cell" in run.data.tags["litbench.failure"]
    assert "out-of-memory killer does this" not in run.data.tags["litbench.failure"]

    second = litbench(*command, cwd=tmp_path)  # a plain re-run takes the cell again; killed again
    killed_again = _kill_the_worker(second, uri, "outside")
    output, _ = second.communicate(timeout=120)
    assert second.returncode == 1, output
    run = client_for(uri).get_run(killed_again)
    assert run.info.status == "FAILED"  # twice in a row: no third try without --retry-failed
    assert "killed from outside too" in run.data.tags["litbench.failure"]

    third = litbench(*command, cwd=tmp_path)
    output, _ = third.communicate(timeout=120)
    assert third.returncode == 1 and "--retry-failed" in output, output  # the grid does not loop
    assert (
        len(client_for(uri).search_runs([client_for(uri).get_experiment_by_name("outside").experiment_id]))
        == 2
    )
