"""MLflow conventions: where the store is, what an experiment and a run are called, which tags they carry.

The embedded default is MLflow's SQLite store in ``mlruns/mlflow.db`` with artifacts in
``mlruns/artifacts/``; ``--tracking-uri`` or ``MLFLOW_TRACKING_URI`` point everything at a real server.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

STORE_DIR = Path("mlruns")  # relative to the working directory, like MLflow's own default

TAG_SPEC_HASH = "litbench.spec_hash"  # the run's identity: hash of its canonical spec
TAG_CONFIG = "litbench.config"  # the run's name without its seed: runs that differ only by seed share it
TAG_GRID = "litbench.grid"
TAG_FAILURE = "litbench.failure"  # why a FAILED run failed, in one line
TAG_TASK_METRIC = "litbench.metric"  # the task's primary metric, e.g. "acc"
TAG_TASK_MODE = "litbench.mode"  # "max" or "min"
TAG_TASK_TARGET = "litbench.target"
FACTOR_TAG_PREFIX = "litbench.factor."  # one tag per grid axis: litbench.factor.optimizer = adam-lr0.002

MAX_PARAMS_PER_BATCH = 100  # MLflow's limit for one log_batch call


def resolve_tracking_uri(uri: str | None = None) -> str:
    """The flag, else ``MLFLOW_TRACKING_URI``, else the SQLite store under ``./mlruns``."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    STORE_DIR.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(STORE_DIR / 'mlflow.db').resolve()}"


def default_artifact_location(tracking_uri: str) -> str | None:
    """Artifacts of the embedded SQLite store go beside the database; a server chooses its own."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    db_path = Path(tracking_uri.removeprefix("sqlite:///"))
    return (db_path.parent / "artifacts").resolve().as_uri()


@functools.cache
def client_for(tracking_uri: str) -> MlflowClient:
    """One client per store and process: opening a SQLite store costs seconds (schema checks)."""
    from mlflow import MlflowClient

    if not tracking_uri.startswith("sqlite:///"):
        return MlflowClient(tracking_uri=tracking_uri)
    # Opening a SQLite store runs MLflow's migrations on it; two processes doing that at once (two
    # grid commands started together on a fresh store) collide, so one at a time does it.
    with _file_lock(Path(tracking_uri.removeprefix("sqlite:///")).with_suffix(".init.lock")):
        return MlflowClient(tracking_uri=tracking_uri)


@contextlib.contextmanager
def _file_lock(path: Path):
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def experiment_id_for(client: MlflowClient, name: str, tracking_uri: str) -> str:
    """The id of experiment ``name``, created (or restored from deletion) when needed."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=default_artifact_location(tracking_uri))
    except MlflowException:
        # Another process created it between our lookup and our create.
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def runs_with_hashes(client: MlflowClient, experiment_id: str, hashes: Iterable[str]) -> dict[str, list[Run]]:
    """Every run of the experiment whose spec hash is among ``hashes``, grouped by hash."""
    wanted = set(hashes)
    found: dict[str, list[Run]] = {h: [] for h in wanted}
    page_token = None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{TAG_SPEC_HASH}` != ''",
            max_results=1000,
            page_token=page_token,
        )
        for run in page:
            spec_hash = run.data.tags.get(TAG_SPEC_HASH)
            if spec_hash in wanted:
                found[spec_hash].append(run)
        page_token = page.token
        if not page_token:
            return found


def factor_tags(factors: dict[str, str]) -> dict[str, str]:
    """The grid axes a run sets, as tags the UI can filter by and a report groups by."""
    return {f"{FACTOR_TAG_PREFIX}{axis}": value for axis, value in factors.items()}


def log_params(client: MlflowClient, run_id: str, params: dict[str, Any]) -> None:
    from mlflow.entities import Param

    entries = [Param(key, _param_value(value)) for key, value in sorted(params.items())]
    for start in range(0, len(entries), MAX_PARAMS_PER_BATCH):
        client.log_batch(run_id, params=entries[start : start + MAX_PARAMS_PER_BATCH])


def _param_value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_param_value(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def environment_tags() -> dict[str, str]:
    """Versions, device and code revision: what it takes to tell whether two numbers are comparable."""
    import platform
    import socket

    import lightning
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu"
    tags = {
        "litbench.env.python": platform.python_version(),
        "litbench.env.torch": torch.__version__,
        "litbench.env.lightning": lightning.__version__,
        "litbench.env.platform": platform.platform(),
        "litbench.env.device": device,
        "litbench.env.cpu_count": str(os.cpu_count()),
        "litbench.env.torch_threads": str(torch.get_num_threads()),
        "litbench.env.hostname": socket.gethostname(),
    }
    commit = _git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags


def _git_commit() -> str | None:
    import subprocess

    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
