"""Where the tracking store and the Optuna storage are, and how a process opens the store.

The embedded default is MLflow's SQLite store in ``./mlruns/mlflow.db`` with artifacts in
``./mlruns/artifacts/``; ``--tracking-uri`` or ``MLFLOW_TRACKING_URI`` point everything at a real
server. A study's default Optuna storage is ``optuna.db`` beside the SQLite store.
"""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING

from core.store_check import check_tracking_uri

if TYPE_CHECKING:
    from mlflow import MlflowClient

STORE_DIR = Path("mlruns")  # relative to the working directory, like MLflow's own default
# An `mlflow server` that stops answering: MLflow's defaults retry a request 7 times over about 250 s,
# and wait 120 s for each answer. These ride out a server restart of a minute (5 retries, waits of
# 2, 4, 8, 16 and 32 s) and report a hung one in half a minute; MLFLOW_HTTP_REQUEST_* set by the
# user are kept.
SERVER_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "5", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


def resolve_tracking_uri(uri: str | None = None) -> str:
    """The flag, else ``MLFLOW_TRACKING_URI``, else the SQLite store under ``./mlruns``. Nothing is
    created here: the folder is made when a run is first tracked (``client_for``), so a command that
    only reads or plans leaves the working directory as it was."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{(STORE_DIR / 'mlflow.db').resolve()}"


def sqlite_missing(uri: str) -> bool:
    """Whether ``uri`` is a SQLite store (or storage) whose file does not exist: opening it would
    create it, which a command that only reads must not do."""
    return uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists()


def default_artifact_location(tracking_uri: str) -> str | None:
    """Artifacts of the embedded SQLite store go beside the database; a server chooses its own."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    db_path = Path(tracking_uri.removeprefix("sqlite:///"))
    return (db_path.parent / "artifacts").resolve().as_uri()


def default_optuna_storage(tracking_uri: str) -> str:
    """``optuna.db`` beside the embedded MLflow SQLite store, else in ``./mlruns``."""
    if tracking_uri.startswith("sqlite:///"):
        folder = Path(tracking_uri.removeprefix("sqlite:///")).parent
    else:
        folder = STORE_DIR
    return f"sqlite:///{(folder / 'optuna.db').resolve()}"


@functools.cache
def client_for(tracking_uri: str) -> MlflowClient:
    """One client per store and process: opening a SQLite store costs seconds (schema checks)."""
    check_tracking_uri(tracking_uri)  # seconds, not minutes, and one paragraph, for a bad location
    from mlflow import MlflowClient

    if tracking_uri.startswith(("http://", "https://")):
        for name, value in SERVER_RETRIES.items():  # the user's own settings win
            os.environ.setdefault(name, value)
    if not tracking_uri.startswith("sqlite:///"):
        return MlflowClient(tracking_uri=tracking_uri)
    db_path = Path(tracking_uri.removeprefix("sqlite:///"))
    if db_path.exists() and not os.access(db_path.parent, os.W_OK):
        return MlflowClient(tracking_uri=tracking_uri)  # a read-only store: read it, no lock to take
    # Opening a SQLite store runs MLflow's migrations on it; two processes doing that at once (two
    # grid commands started together on a fresh store) collide, so one at a time does it.
    with _file_lock(db_path.with_suffix(".init.lock")):
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
