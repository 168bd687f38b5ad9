"""`litbench dashboard` serves a real study's trials through optuna-dashboard's HTTP API, from a SQLite
file and a journal file, stops on SIGINT or SIGTERM with exit 0 and frees its port; bad inputs are one
paragraph."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.storages.journal import JournalFileBackend, JournalStorage

from cli import main
from core import tags as tag
from experiments.dashboard import study_page
from tests.servers import free_port

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def storages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Two real studies of 3 trials: ``tiny`` in a SQLite file, ``tiny_journal`` in a journal file."""
    root = tmp_path_factory.mktemp("dashboard")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    sqlite = f"sqlite:///{root / 'optuna.db'}"
    journal = str(root / "optuna.journal")
    for name, storage in (("tiny", sqlite), ("tiny_journal", JournalStorage(JournalFileBackend(journal)))):
        study = optuna.create_study(study_name=name, storage=storage)
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    optuna.create_study(study_name="other", storage=sqlite)  # a second study, empty
    return {"sqlite": sqlite, "journal": journal}


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return json.loads(reply.read())


def _port_free(port: int) -> bool:
    """Whether a server can listen on ``port`` again (as servers do, past closed connections' TIME_WAIT)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return False
        return True


@contextlib.contextmanager
def running_dashboard(
    study: str, storage: str, port: int, timeout_s: float = 120
) -> Iterator[tuple[subprocess.Popen, str]]:
    """`litbench dashboard STUDY --storage STORAGE --port PORT`, started as a user starts it and
    answering; yields the process and the base URL, and SIGINTs it afterwards if still running."""
    command = [sys.executable, "-m", "cli", "dashboard", study, "--storage", storage, "--port", str(port)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                _get(f"{url}/api/studies")
                break
            except OSError:
                pass
            if process.poll() is not None:
                raise AssertionError(
                    f"litbench dashboard exited {process.returncode}: {process.stdout.read()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"litbench dashboard did not answer on {url} within {timeout_s:.0f} s")
            time.sleep(0.2)
        yield process, url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        if process.poll() is None:
            process.kill()


@pytest.mark.parametrize(
    "kind,name,stop",
    [("sqlite", "tiny", signal.SIGINT), ("journal", "tiny_journal", signal.SIGTERM)],
    ids=["sqlite-ctrl-c", "journal-sigterm"],
)
def test_dashboard_serves_the_study_and_its_trials_and_stops(storages, kind, name, stop) -> None:
    storage = storages[kind]
    file = Path(storage.removeprefix("sqlite:///"))
    before = file.read_bytes()
    port = free_port()
    with running_dashboard(name, storage, port) as (process, url):
        listed = {s["study_name"]: s["study_id"] for s in _get(f"{url}/api/studies")["study_summaries"]}
        assert name in listed
        detail = _get(f"{url}/api/studies/{listed[name]}")
        assert detail["name"] == name
        assert [t["number"] for t in detail["trials"]] == [0, 1, 2]
        assert all(t["state"] == "Complete" and t["params"][0]["name"] == "x" for t in detail["trials"])
        page = study_page(url, listed[name])
        with urllib.request.urlopen(page, timeout=10) as reply:  # the single-page app's study route
            assert reply.status == 200 and b"<html" in reply.read().lower()

        if kind == "sqlite":  # opened read-only: an edit in the dashboard is refused, in one line
            note = json.dumps({"version": 1, "body": "edited"}).encode()
            edit = urllib.request.Request(f"{url}/api/studies/{listed[name]}/note", data=note, method="PUT")
            with pytest.raises(urllib.error.HTTPError, match="500"):
                urllib.request.urlopen(edit, timeout=10)

        started = time.monotonic()
        process.send_signal(stop)
        output = process.communicate(timeout=10)[0]
    assert process.returncode == 0, output
    assert time.monotonic() - started < 5
    assert f"optuna-dashboard for study {name}" in output and page in output
    assert "Traceback" not in output and 'File "' not in output
    if kind == "sqlite":
        assert "optuna-dashboard: a request failed" in output
    assert _port_free(port)
    assert file.read_bytes() == before  # opened read-only: nothing written


def test_an_unknown_study_names_the_studies_there(storages, capsys) -> None:
    assert main(["dashboard", "nope", "--storage", storages["sqlite"]]) == 2
    err = capsys.readouterr().err
    assert "holds no study 'nope'" in err and "studies there: other, tiny" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("missing", ["sqlite:///{}/absent.db", "{}/absent.journal"])
def test_a_missing_storage_is_an_error_and_is_not_created(tmp_path: Path, capsys, missing: str) -> None:
    storage = missing.format(tmp_path)
    assert main(["dashboard", "tiny", "--storage", storage]) == 2
    err = capsys.readouterr().err
    assert "no Optuna storage at" in err and "nothing was created" in err
    assert list(tmp_path.iterdir()) == []


def test_the_storage_the_parent_run_records_is_used_and_a_busy_port_is_an_error(
    storages, tmp_path: Path, capsys
) -> None:
    """No --storage: the study's parent run says where it lives (a journal here, not the default)."""
    from mlflow import MlflowClient

    tracking_uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    (tmp_path / "mlruns").mkdir()
    client = MlflowClient(tracking_uri)
    experiment = client.create_experiment("tiny_journal")
    run_tags = {tag.STUDY: "tiny_journal", tag.STUDY_ROLE: "parent", tag.STUDY_STORAGE: storages["journal"]}
    client.create_run(experiment, tags=run_tags)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = main(["dashboard", "tiny_journal", "--tracking-uri", tracking_uri, "--port", str(port)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"port {port} on 127.0.0.1 is in use" in err  # got as far as serving the recorded storage
    assert not (tmp_path / "mlruns" / "optuna.db").exists()  # the default was not touched


def test_a_study_file_names_its_study(storages, tmp_path: Path, capsys) -> None:
    study_file = tmp_path / "renamed.yaml"
    study_file.write_text("name: ghost\nbase: {data: {name: digits}}\n")
    assert main(["dashboard", str(study_file), "--storage", storages["sqlite"]]) == 2
    assert "holds no study 'ghost'" in capsys.readouterr().err


def test_without_optuna_dashboard_the_error_names_the_extra(monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "optuna_dashboard", None)  # how Python spells "not installed"
    assert main(["dashboard", "tiny"]) == 2
    assert "pip install 'litbench[dashboard]'" in capsys.readouterr().err
