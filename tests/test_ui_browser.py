"""`litbench ui` in a real browser: the printed URL opens the grid's runs table in the model-training
view, with each run's name, dataset and logged model; the experiment list leads there too; the compare
view plots the grid's axes first. Screenshots go to $LITBENCH_SCREENSHOTS (default: the test's tmp)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.parse
from pathlib import Path

import mlflow
import pytest

from cli import main
from core.store import client_for
from tests.browser import needs_browser, screenshot_dir, wait_for
from tests.servers import wait_until_healthy

REPO = Path(__file__).resolve().parents[1]
GRID = """name: ui_tiny
base:
  data: {name: digits, batch_size: 64}
  model: {name: mlp, hidden: [16]}
  trainer: {max_epochs: 1, limit_train_batches: 2, limit_val_batches: 1, accelerator: cpu}
  tracking: {heatmaps: 0}
axes:
  optimizer:
    - {name: adam, lr: 0.01}
    - {name: sgd, lr: 0.05}
seeds: [0]
"""
pytestmark = [needs_browser]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def served_grid(tmp_path: Path, tracking_uri: str):
    """The tiny grid run into a fresh store, and `litbench ui GRID` serving it; yields what it printed."""
    grid = tmp_path / "ui_tiny.yaml"
    grid.write_text(GRID)
    assert main(["grid", str(grid), "--tracking-uri", tracking_uri]) == 0
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "cli",
        "ui",
        str(grid),
        "--port",
        str(port),
        "--tracking-uri",
        tracking_uri,
    ]
    # started with SIGINT ignored, as a shell starts a background job (`litbench ui GRID &`): the
    # ignore survives the exec, and Ctrl-C must stop the ui all the same
    ui = subprocess.Popen(
        ["sh", "-c", 'trap "" INT; exec "$@"', "sh", *command],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    lines: list[str] = []
    try:
        assert wait_until_healthy(base, ui), "litbench ui did not answer"
        while not any(line.startswith("all experiments:") for line in lines):
            lines.append(ui.stdout.readline().strip())
        yield base, lines
    finally:
        ui.send_signal(signal.SIGINT)
        output = ui.communicate(timeout=60)[0]
    assert ui.returncode == 0, output


def test_the_printed_url_shows_the_runs_with_their_dataset_and_model(
    served_grid, browser, tracking_uri: str, tmp_path: Path
) -> None:
    base, lines = served_grid
    shots = screenshot_dir(tmp_path)
    client = client_for(tracking_uri)
    experiment = client.get_experiment_by_name("ui_tiny")
    runs = client.search_runs([experiment.experiment_id])
    names = sorted(r.info.run_name for r in runs)
    assert len(names) == 2
    datasets = {i.dataset.name for r in runs for i in r.inputs.dataset_inputs}
    logged = mlflow.search_logged_models(experiment_ids=[experiment.experiment_id], output_format="list")
    models = {m.name for m in logged}
    assert len(models) == 2  # one per run
    printed = next(line for line in lines if line.startswith("runs of ui_tiny:"))
    url = printed.split(": ", 1)[1]
    assert url == f"{base}/#/experiments/{experiment.experiment_id}/runs?workflowType=machine_learning"

    browser.get(url)
    text = wait_for(browser, lambda t: all(n in t for n in names), f"the run names {names}")
    browser.save_screenshot(str(shots / "runs_table.png"))
    assert "Model training" in text and "Traces" not in text.split("Runs", 1)[0][-40:]
    assert datasets and any(d in text for d in datasets), f"none of the datasets {datasets} is shown"
    assert all(m in text for m in models), f"the models {models} are not all shown"

    # a browser that never chose a view, opening the experiment from the list, lands on the runs too
    # cleared from outside the page: a live page that sees its storage cleared opens the assistant
    browser.get("about:blank")
    browser.execute_cdp_cmd("Storage.clearDataForOrigin", {"origin": base, "storageTypes": "local_storage"})
    browser.get(f"{base}/#/experiments")  # the page starts as a first visit's
    assert browser.execute_script("return window.localStorage.getItem('mlflow.workflowType_v1')")
    wait_for(browser, lambda t: "ui_tiny" in t, "the experiment list")
    from selenium.webdriver.common.by import By

    browser.find_element(By.PARTIAL_LINK_TEXT, "ui_tiny").click()
    wait_for(browser, lambda t: all(n in t for n in names), "the runs after a click in the list")
    assert re.search(rf"/experiments/{experiment.experiment_id}/runs", browser.current_url)

    ids = [r.info.run_id for r in runs]
    compare = (
        f"{base}/#/compare-runs?runs={urllib.parse.quote(json.dumps(ids))}"
        f"&experiments={urllib.parse.quote(json.dumps([experiment.experiment_id]))}"
    )
    browser.get(compare)
    text = wait_for(
        browser, lambda t: "Parallel Coordinates Plot" in t and "Parameters:" in t, "the compare view"
    )
    wait_for(
        browser,
        lambda _: browser.execute_script("return !!document.querySelector('.js-plotly-plot .parcoords')"),
        "the parallel-coordinates plot",
    )
    browser.save_screenshot(str(shots / "compare_view.png"))
    shown = browser.find_element(By.TAG_NAME, "body").text
    assert "Ask questions about your experiments" not in shown, "the AI assistant's panel opened itself"
    plotted = text.split("Parameters:", 1)[1].split("Metrics:", 1)[0]
    assert "axis/optimizer" in plotted, f"the parallel-coordinates plot starts on {plotted!r}"
