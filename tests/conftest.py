"""Shrunk-config fixtures: tiny specs on the bundled digits, MLflow stores under tmp_path."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.browser import browser  # noqa: F401  (the headless chromium fixture of the UI tests)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LITBENCH_SHARED_DATA", REPO.parent / "shared" / "data"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device; torch.cuda.is_available() is false")
    skip_data = pytest.mark.skip(reason=f"the real data sets are not in {SHARED_DATA}")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
        if "realdata" in item.keywords and not SHARED_DATA.is_dir():
            item.add_marker(skip_data)


@pytest.fixture(scope="session", autouse=True)
def _text_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Encoded-text caches go to a per-session folder, not the user's ~/.cache (subprocesses inherit it)."""
    os.environ["LITBENCH_CACHE_DIR"] = str(tmp_path_factory.mktemp("litbench-cache"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return SHARED_DATA


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    """A fresh SQLite MLflow store for one test."""
    return f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"


@pytest.fixture(scope="session")
def shared_tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite store for the session: creating a store runs MLflow's migrations (seconds)."""
    root = tmp_path_factory.mktemp("store")
    (root / "mlruns").mkdir()
    return f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"


def tiny_raw_spec(**sections: Any) -> dict[str, Any]:
    """A run that trains for two batches of the digits: seconds on any CPU."""
    raw: dict[str, Any] = {
        "seed": 0,
        "data": {"name": "digits", "batch_size": 32},
        "model": {"name": "mlp", "hidden": [16]},
        "optimizer": {"name": "adam", "lr": 0.01},
        "trainer": {"max_epochs": 1, "limit_train_batches": 2, "limit_val_batches": 2, "accelerator": "cpu"},
        "tracking": {"heatmaps": 2},
    }
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    return raw


@pytest.fixture
def tiny_spec() -> Callable[..., Any]:
    from experiments.specs import validate_run_spec

    return lambda **sections: validate_run_spec(tiny_raw_spec(**sections))


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for a tracking server (skips where no PostgreSQL answers)."""
    from tests.servers import fresh_database

    with fresh_database() as url:
        yield url


@pytest.fixture
def optuna_database() -> Iterator[str]:
    """A study's RDB storage: a database of its own (Optuna and MLflow both keep alembic_version)."""
    from tests.servers import fresh_database

    with fresh_database() as url:
        yield url


@pytest.fixture
def mlflow_server(postgres_database: str, tmp_path: Path) -> Iterator[str]:
    """`mlflow server` on 127.0.0.1 backed by a fresh PostgreSQL database; its URL."""
    from tests.servers import mlflow_server_on

    with mlflow_server_on(postgres_database, tmp_path) as url:
        yield url
