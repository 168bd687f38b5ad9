"""``litbench ui``: MLflow's UI (``mlflow server``) on the loopback interface, over litbench's store.

The server runs in its own process group, so stopping ``litbench ui`` (Ctrl-C, SIGTERM) stops the
server and every worker it forked: no process outlives the command.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from importlib.metadata import entry_points

from core.errors import InputError
from core.store import default_artifact_location


class StoreIsServerError(InputError):
    """The tracking URI already points at a server: there is nothing to serve."""


APP_NAME = "litbench"  # experiments/ui_app.py, the mlflow.app entry point in pyproject.toml
HOST = "127.0.0.1"  # the store holds unpublished results: never listen beyond this machine by default


# MLflow 3's UI opens an experiment in its GenAI view (traces, prompts) unless the page's URL asks for
# the model-training view; its `mlflow.experimentKind` tag is not read by 3.17, and the toggle's choice
# lives in each browser's localStorage. The parameter is kept as the user navigates (the experiment
# list's links carry it), so every URL litbench prints carries it.
TRAINING_VIEW = "workflowType=machine_learning"


def experiments_url(base: str) -> str:
    """The experiment list, in the model-training view."""
    return f"{base}/#/experiments?{TRAINING_VIEW}"


def runs_url(base: str, experiment_id: str) -> str:
    """An experiment's runs table, in the model-training view."""
    return f"{base}/#/experiments/{experiment_id}/runs?{TRAINING_VIEW}"


def server_command(tracking_uri: str, port: int, host: str = HOST) -> list[str]:
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", tracking_uri]
    command += ["--host", host, "--port", str(port), "--workers", "1"]
    if entry_points(group="mlflow.app", name=APP_NAME):  # absent when litbench runs uninstalled
        command += ["--app-name", APP_NAME]
    artifacts = default_artifact_location(tracking_uri)
    if artifacts:  # runs made by `litbench` keep their artifacts beside the SQLite database
        command += ["--default-artifact-root", artifacts]
    return command


def wait_until_healthy(url: str, server: subprocess.Popen, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        if server.poll() is not None:
            raise RuntimeError(f"mlflow server exited with status {server.returncode} before answering")
        if time.monotonic() > deadline:
            raise TimeoutError(f"mlflow server did not answer on {url} within {timeout_s:.0f} s")
        time.sleep(0.3)


def stop(server: subprocess.Popen, grace_s: float = 15.0) -> None:
    """SIGTERM to the server's whole process group, SIGKILL to whatever is left after ``grace_s``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            return
        try:
            server.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            continue
        with contextlib.suppress(ProcessLookupError):  # the leader is gone; its forked workers may not be
            os.killpg(server.pid, signal.SIGKILL)
        return


def serve(tracking_uri: str, port: int, ready: Callable[[str], None], host: str = HOST) -> int:
    """Run the UI until interrupted; returns the server's exit status (0 after Ctrl-C or SIGTERM)."""
    if tracking_uri.startswith(("http://", "https://")):
        raise StoreIsServerError(
            f"the store {tracking_uri} is already a tracking server: open it in a browser; "
            "`litbench ui` serves a local store (SQLite or a database URI)"
        )
    # MLflow's job runner (eight huey consumers, each importing MLflow) serves GenAI jobs, not a store
    # of training runs: off unless the user's environment turns it on; the UI answers 2 s sooner
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
    server = subprocess.Popen(server_command(tracking_uri, port, host), env=env, start_new_session=True)
    # SIGINT too: a shell starts a background job (`litbench ui ... &`) with SIGINT ignored
    stops = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, signal.default_int_handler) for sig in stops}
    url = f"http://{host}:{port}"
    try:
        wait_until_healthy(url, server)
        ready(url)
        return server.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stop(server)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
