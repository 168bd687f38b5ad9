"""Real servers for tests, started the way users start them: a fresh PostgreSQL database, and
`mlflow server` on it bound to 127.0.0.1. Skips with a clear reason where no PostgreSQL answers."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "test"}


def postgres_or_skip():
    psycopg2 = pytest.importorskip("psycopg2", reason="psycopg2 is not installed (pip install -e '.[dev]')")
    try:
        connection = psycopg2.connect(connect_timeout=3, **PG)
    except psycopg2.OperationalError as err:
        pytest.skip(f"no PostgreSQL answers on {PG['host']}:{PG['port']} ({err})")
    connection.autocommit = True
    return connection


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    """A fresh database, dropped afterwards."""
    connection = postgres_or_skip()
    name = f"litbench_{uuid.uuid4().hex[:12]}"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql+psycopg2://{PG['user']}@{PG['host']}:{PG['port']}/{name}"
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        connection.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def mlflow_server_on(postgres_database: str, tmp_path: Path) -> Iterator[str]:
    """`mlflow server` on ``postgres_database``, its artifacts under ``tmp_path``; yields its URL."""
    port = free_port()
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", postgres_database,
        "--artifacts-destination", str(tmp_path / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    log = (tmp_path / "server.log").open("wb")
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # nine idle processes less
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_until_healthy(url, server):
            pytest.fail(f"mlflow server did not start: {(tmp_path / 'server.log').read_text()[-2000:]}")
        yield url
    finally:
        stop_process_group(server)
        log.close()


def wait_until_healthy(url: str, process: subprocess.Popen, timeout: float = 120) -> bool:
    """Whether the MLflow server at ``url`` answered /health before ``process`` ended or time ran out."""
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as reply:
                if reply.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


def stop_process_group(server: subprocess.Popen) -> None:
    """The server and every process it started (its workers share its process group)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            break
        try:
            server.wait(timeout=30)
            break
        except subprocess.TimeoutExpired:
            continue
