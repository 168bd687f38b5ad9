"""`litbench ui` serves a grid's store through `mlflow server`'s REST API, and leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from cli import main
from core.store import client_for
from reports import synthetic
from tests.servers import wait_until_healthy

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _command_line(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid``, from /proc (children of children included)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        return json.loads(reply.read())


def test_ui_serves_every_run_over_rest_and_stops_all_its_processes(tracking_uri: str) -> None:
    grid = list(synthetic.cells(configs_per_pair=2, seeds=3))[:24]
    run_ids = synthetic.log_grid(tracking_uri, "served", grid, failed=1)
    client = client_for(tracking_uri)
    logged = {run_id: client.get_run(run_id).data for run_id in run_ids}

    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [
        sys.executable,
        "-m",
        "cli",
        "ui",
        "--port",
        str(port),
        "--tracking-uri",
        tracking_uri,
    ]
    ui = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_until_healthy(url, ui):
            assert ui.poll() is None, ui.communicate()[0]
            raise AssertionError("litbench ui did not answer within 120 s")
        server_processes = _descendants(ui.pid)
        assert server_processes, "litbench ui started no server process"
        commands = [_command_line(pid) for pid in server_processes]
        assert not [c for c in commands if "_job_runner" in c or "huey" in c], commands  # GenAI jobs: off

        experiment = _post(f"{url}/api/2.0/mlflow/experiments/search", {"max_results": 100})
        by_name = {e["name"]: e["experiment_id"] for e in experiment["experiments"]}
        runs, token = [], None
        while True:  # two pages of 15: the REST paging works too
            body = {"experiment_ids": [by_name["served"]], "max_results": 15}
            page = _post(f"{url}/api/2.0/mlflow/runs/search", body | ({"page_token": token} if token else {}))
            runs += page["runs"]
            token = page.get("next_page_token")
            if not token:
                break
        assert sorted(r["info"]["run_id"] for r in runs) == sorted(run_ids)
        for run in runs:
            data = logged[run["info"]["run_id"]]
            params = {p["key"]: p["value"] for p in run["data"]["params"]}
            metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
            tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
            assert params == data.params
            assert metrics == data.metrics and "val/acc" in metrics
            assert tags["litbench.factor.model.name"] == data.tags["litbench.factor.model.name"]
        assert sum(r["info"]["status"] == "FAILED" for r in runs) == 1
    finally:
        ui.send_signal(signal.SIGTERM)
        output = ui.communicate(timeout=60)[0]
    assert ui.returncode == 0, output
    assert f"MLflow UI for {tracking_uri} at {url}" in output
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in server_processes) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in server_processes if _alive(pid)], "a server process outlived litbench ui"


def test_ui_refuses_a_store_that_is_already_a_server(capsys) -> None:
    assert main(["ui", "--tracking-uri", "http://127.0.0.1:5999"]) == 2
    assert "already a tracking server" in capsys.readouterr().err
