"""`litbench grid|tune --executor ray` on a real Ray cluster of two nodes on this machine
(``ray.cluster_utils.Cluster``: a head and a worker node, each a raylet with its own CPUs), tracking
through `mlflow server` on PostgreSQL, a study on a PostgreSQL storage, and a worker node killed
mid-grid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[dev]')")
from ray.cluster_utils import Cluster  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "experiments" / "grids" / "quickstart.yaml"
# a node whose raylet is gone is declared dead after about 3 s instead of Ray's default 15-30 s
FAST_DEATH = {"health_check_period_ms": 1000, "health_check_failure_threshold": 3}


@pytest.fixture
def two_nodes() -> Iterator[tuple[Cluster, str, str]]:
    """A head node with 1 CPU and a worker node with 1 CPU; the cluster and both node ids."""
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "_system_config": FAST_DEATH})
    worker = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        yield cluster, cluster.head_node.node_id, worker.node_id
    finally:
        cluster.shutdown()


def litbench(
    *args: str, cwd: Path, timeout: float = 900, env: dict | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=cwd,
        env=env or {**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def grid_on_one_node(grid: Path, cpus: int, store: str) -> subprocess.CompletedProcess:
    """``litbench grid GRID --executor ray`` on a fresh one-node cluster of ``cpus`` CPUs."""
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": cpus})
    try:
        return litbench(
            "grid", str(grid), "--executor", "ray", "--ray-address", cluster.address, "--tracking-uri", store,
            cwd=grid.parent,
        )  # fmt: skip
    finally:
        cluster.shutdown()


def grid_runs(tracking_uri: str, experiment: str):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment}"
    return client.search_runs([found.experiment_id], max_results=1000)


def assert_each_cell_finished_once(runs, cells: int) -> None:
    finished = Counter(r.data.tags["litbench.spec_hash"] for r in runs if r.info.status == "FINISHED")
    assert len(finished) == cells, f"{len(finished)} of {cells} cells FINISHED"
    assert set(finished.values()) == {1}, f"cells FINISHED more than once: {finished}"
    assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"], "runs left RUNNING"


def test_quickstart_on_two_nodes_tracked_by_mlflow_server_on_postgres(
    two_nodes, mlflow_server: str, tmp_path: Path
) -> None:
    cluster, head, worker = two_nodes
    done = litbench(
        "grid", str(QUICKSTART), "--executor", "ray", "--ray-address", cluster.address,
        "--tracking-uri", mlflow_server, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Ray cluster of 2 nodes" in done.stdout
    runs = grid_runs(mlflow_server, "quickstart")
    assert_each_cell_finished_once(runs, 12)
    nodes = Counter(r.data.tags.get("litbench.ray.node_id") for r in runs)
    assert set(nodes) == {head, worker}, f"cells ran on {nodes}, not on both nodes"
    assert f"/{worker[:6]}" in done.stdout and f"/{head[:6]}" in done.stdout  # progress names the nodes


def _node_processes(node) -> list[int]:
    """The raylet of ``node`` and every process under it (its Ray workers, the cells they run)."""
    import psutil

    raylet = node.all_processes[ray._private.ray_constants.PROCESS_TYPE_RAYLET][0].process.pid
    return [raylet, *(p.pid for p in psutil.Process(raylet).children(recursive=True))]


def _running_on(db: Path, node_id: str) -> list[str]:
    """The RUNNING runs on Ray node ``node_id``, read straight from the SQLite file: an MLflow client
    here would create the store's tables while the grid command creates them too."""
    import sqlite3

    if not db.exists():
        return []
    query = (
        "SELECT runs.run_uuid FROM runs JOIN tags ON tags.run_uuid = runs.run_uuid "
        "WHERE runs.status = 'RUNNING' AND tags.key = 'litbench.ray.node_id' AND tags.value = ?"
    )
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as connection:
            return [row[0] for row in connection.execute(query, (node_id,))]
    except sqlite3.OperationalError:  # its tables are not there yet
        return []


def test_a_worker_node_killed_mid_grid_loses_no_cell(two_nodes, tmp_path: Path) -> None:
    cluster, _head, worker = two_nodes
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [
        sys.executable, "-m", "cli", "grid", str(QUICKSTART), "--executor", "ray",
        "--ray-address", cluster.address, "--tracking-uri", store, "--set", "trainer.max_epochs=40",
    ]  # fmt: skip
    grid = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while True:  # until a cell is training on the worker node
            assert grid.poll() is None, grid.communicate()[0].decode()
            assert time.monotonic() < deadline, "no cell started on the worker node"
            victims = _running_on(tmp_path / "mlflow.db", worker)
            if victims:
                break
            time.sleep(0.5)
        time.sleep(0.3)  # mid-cell: a digits cell of 40 epochs trains for seconds, polled every 0.5 s
        (node,) = [n for n in cluster.worker_nodes if n.node_id == worker]
        for pid in _node_processes(node):
            os.kill(pid, signal.SIGKILL)
        output = grid.communicate(timeout=600)[0].decode()
    finally:
        if grid.poll() is None:
            grid.kill()
    assert grid.returncode == 0, output
    runs = grid_runs(store, "quickstart")
    assert_each_cell_finished_once(runs, 12)
    killed = next(r for r in runs if r.info.run_id == victims[0])
    assert killed.info.status == "KILLED"
    assert "Ray node" in killed.data.tags["litbench.failure"], killed.data.tags["litbench.failure"]


def test_a_cell_runs_the_same_under_ray_and_the_process_pool(tmp_path: Path) -> None:
    """Same spec, same numbers: a Ray worker process (reused across tasks) trains the cell as a forked
    worker does."""
    grid = tmp_path / "same.yaml"
    grid.write_text(
        "name: same\nbase:\n  data: {name: digits, batch_size: 32}\n  model: {name: mlp, hidden: [32]}\n"
        "  trainer: {max_epochs: 2, accelerator: cpu}\nseeds: [0, 1]\n"
    )
    on_ray = grid_on_one_node(grid, cpus=1, store=f"sqlite:///{tmp_path / 'ray.db'}")
    # one torch thread on both sides (the Ray task has 1 CPU; the pool gives each of its workers
    # cores / workers threads): sums split over two threads round differently in the last bit
    one_thread = ["--workers", str(os.cpu_count())]
    in_pool = litbench(
        "grid", str(grid), *one_thread, "--tracking-uri", f"sqlite:///{tmp_path / 'pool.db'}", cwd=tmp_path
    )
    assert on_ray.returncode == 0 and in_pool.returncode == 0, on_ray.stdout + in_pool.stdout

    def metrics(db: str) -> dict[str, dict[str, float]]:
        runs = grid_runs(f"sqlite:///{tmp_path / db}", "same")
        return {
            r.data.tags["litbench.spec_hash"]: {
                k: r.data.metrics[k] for k in ("val/acc", "test/acc", "train/loss")
            }
            for r in runs
        }

    assert metrics("ray.db") == metrics("pool.db")


def test_tune_on_ray_with_a_postgres_storage(two_nodes, optuna_database: str, tmp_path: Path) -> None:
    cluster, head, worker = two_nodes
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = litbench(
        "tune", str(REPO / "experiments" / "studies" / "digits_lr.yaml"), "--trials", "4",
        "--executor", "ray", "--ray-address", cluster.address, "--storage", optuna_database,
        "--tracking-uri", store, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    import optuna

    (summary,) = optuna.get_all_study_summaries(optuna_database)
    study = optuna.load_study(study_name=summary.study_name, storage=optuna_database)
    finished = [t for t in study.trials if t.state.is_finished() and t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) >= 4
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers))
    runs = grid_runs(store, summary.study_name)
    parents = [r for r in runs if r.data.tags.get("litbench.study.role") == "parent"]
    assert len(parents) == 1
    trials = [r for r in runs if r not in parents]
    assert len(trials) == len(study.trials)
    assert {r.data.tags.get("mlflow.parentRunId") for r in trials} == {parents[0].info.run_id}
    assert {r.data.tags.get("litbench.ray.node_id") for r in trials} <= {head, worker}


def test_bad_ray_inputs_fail_fast_and_clearly(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    started = time.monotonic()
    unreachable = litbench(
        "grid", str(QUICKSTART), "--executor", "ray", "--ray-address", "127.0.0.1:9", "--tracking-uri", store,
        cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert unreachable.returncode == 2, unreachable.stdout + unreachable.stderr
    assert "no Ray head node answers at 127.0.0.1:9" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr
    assert time.monotonic() - started < 40

    shadow = tmp_path / "no_ray"  # an environment where `import ray` fails as it does without Ray
    (shadow / "ray").mkdir(parents=True)
    (shadow / "ray" / "__init__.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    missing = litbench(
        "grid", str(QUICKSTART), "--executor", "ray", "--tracking-uri", store, cwd=tmp_path, timeout=60,
        env={**os.environ, "PYTHONPATH": f"{shadow}{os.pathsep}{REPO}"},
    )  # fmt: skip
    assert missing.returncode == 2, missing.stdout + missing.stderr
    assert "pip install 'litbench[ray]'" in missing.stderr and "Traceback" not in missing.stderr

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        gpus = litbench(
            "grid", str(QUICKSTART), "--executor", "ray", "--ray-address", cluster.address,
            "--tracking-uri", store, "--set", "trainer.accelerator=gpu", cwd=tmp_path, timeout=120,
        )  # fmt: skip
        ddp = litbench(
            "grid", str(QUICKSTART), "--executor", "ray", "--ray-address", cluster.address,
            "--tracking-uri", store, "--set", "trainer.devices=2", "--set", "trainer.accelerator=cpu",
            cwd=tmp_path, timeout=120,
        )  # fmt: skip
    finally:
        cluster.shutdown()
    assert gpus.returncode == 2, gpus.stdout + gpus.stderr
    assert "asks for 1 CPUs and 1 GPUs on one node" in gpus.stderr and "Traceback" not in gpus.stderr
    assert ddp.returncode == 2, ddp.stdout + ddp.stderr
    assert "asks for 2 CPUs and 0 GPUs on one node" in ddp.stderr
    from mlflow import MlflowClient

    names = [e.name for e in MlflowClient(store).search_experiments()]
    assert "quickstart" not in names or not grid_runs(store, "quickstart"), "a run was tracked"


def test_a_ddp_cell_runs_as_one_ray_task_with_its_devices_together(tmp_path: Path) -> None:
    grid = tmp_path / "ddp.yaml"
    grid.write_text(
        "name: ddp\nbase:\n  data: {name: digits, batch_size: 32}\n  model: {name: mlp, hidden: [16]}\n"
        "  trainer: {max_epochs: 1, limit_train_batches: 4, limit_val_batches: 2, accelerator: cpu,"
        " devices: 2, strategy: ddp}\nseeds: [0]\n"
    )
    done = grid_on_one_node(grid, cpus=2, store=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert done.returncode == 0, done.stdout + done.stderr
    (run,) = grid_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "ddp")
    assert run.info.status == "FINISHED"
    assert run.data.params.get("trainer.devices") == "2"
    assert run.data.tags.get("litbench.ray.node_id")


def test_a_node_without_the_data_stops_the_grid_before_anything_runs(two_nodes, tmp_path: Path) -> None:
    cluster, head, worker = two_nodes
    grid = tmp_path / "mnist.yaml"
    grid.write_text(
        "name: nodata\nbase:\n  data: {name: mnist, download: false}\n  model: {name: mlp}\n"
        "  trainer: {max_epochs: 1}\nseeds: [0]\n"
    )
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    (tmp_path / "empty").mkdir()
    done = litbench(
        "grid", str(grid), "--executor", "ray", "--ray-address", cluster.address, "--tracking-uri", store,
        "--data-dir", str(tmp_path / "empty"), cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "the Ray cluster's workers cannot read the grid's data" in done.stderr
    assert f"/{worker[:6]}" in done.stderr and f"/{head[:6]}" in done.stderr  # each node named
    assert "MNIST files are missing" in done.stderr and "Traceback" not in done.stderr
    from mlflow import MlflowClient

    found = MlflowClient(store).get_experiment_by_name("nodata")
    assert found is None or not MlflowClient(store).search_runs([found.experiment_id])


def test_two_grid_commands_on_one_cluster_run_each_cell_once(two_nodes, tmp_path: Path) -> None:
    cluster, _, _ = two_nodes
    grid = tmp_path / "twice.yaml"
    grid.write_text(
        "name: twice\nbase:\n  data: {name: digits, batch_size: 32}\n  model: {name: mlp, hidden: [16]}\n"
        "  trainer: {max_epochs: 1, accelerator: cpu}\naxes:\n  optimizer.lr: [0.001, 0.01]\n"
        "seeds: [0, 1, 2]\n"
    )
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [
        sys.executable, "-m", "cli", "grid", str(grid), "--executor", "ray",
        "--ray-address", cluster.address, "--tracking-uri", store,
    ]  # fmt: skip
    both = [
        subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600)[0].decode() for p in both]
    assert [p.returncode for p in both] == [0, 0], outputs
    assert_each_cell_finished_once(grid_runs(store, "twice"), 6)


def test_a_head_started_with_ray_start_takes_a_grid_as_users_run_it(tmp_path: Path) -> None:
    """`ray start --head` in one shell, `litbench grid --executor ray --ray-address` in another: no
    Ray variables in the grid command's environment (the token comes from ~/.ray/auth_token)."""
    from tests.servers import free_port

    ray_cli = Path(sys.executable).with_name("ray")
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    head = [str(ray_cli), "start", "--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false"]
    started = subprocess.run([*head, "--disable-usage-stats"], env=clean, capture_output=True, text=True)
    assert started.returncode == 0, started.stdout + started.stderr
    grid = tmp_path / "users.yaml"
    grid.write_text(
        "name: users\nbase:\n  data: {name: digits, batch_size: 32}\n  model: {name: mlp, hidden: [16]}\n"
        "  trainer: {max_epochs: 1, accelerator: cpu}\nseeds: [0]\n"
    )
    try:
        done = litbench(
            "grid", str(grid), "--executor", "ray", "--ray-address", f"127.0.0.1:{port}",
            "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", cwd=tmp_path, timeout=300,
            env={**clean, "PYTHONPATH": str(REPO)},
        )  # fmt: skip
    finally:
        subprocess.run([str(ray_cli), "stop", "--force"], env=clean, capture_output=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Ray cluster of 1 nodes" in done.stdout
