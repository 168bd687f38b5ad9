"""Bad inputs as a hostile user gives them: each is exit 2, one paragraph naming the culprit, no
traceback, and a store left exactly as it was.

Every case runs the command in-process (``cli.main``), so an exception that escapes it fails the test
as a traceback would reach the user. Each case names the fragment its message must contain: the
field, file, flag or location at fault.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from cli import main
from tests.bad_input_cases import CASES, REPO, TINY, TINY_GRID, Case, closed_port, grid_file, text_spec


def store_state(uri: str) -> tuple | None:
    """What the store holds (None: it does not exist), to compare before and after a command."""
    path = Path(uri.removeprefix("sqlite:///"))
    if not path.exists():
        return None
    client = MlflowClient(uri)
    experiments = client.search_experiments(view_type=3)  # all, deleted ones too
    runs = client.search_runs([e.experiment_id for e in experiments], run_view_type=3) if experiments else []
    return (
        sorted((e.name, e.lifecycle_stage) for e in experiments),
        sorted((r.info.run_id, r.info.status) for r in runs),
    )


def run_case(case: Case, tmp_path: Path, tracking_uri: str, capsys) -> tuple[int, str]:
    build, _ = case
    argv = build(tmp_path)
    if "--tracking-uri" not in argv:
        argv = [*argv, "--tracking-uri", tracking_uri]
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse refusing a flag: its usage line and error, exit 2
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_clear_error(name, tmp_path, tracking_uri, capsys) -> None:
    before = store_state(tracking_uri)
    code, output = run_case(CASES[name], tmp_path, tracking_uri, capsys)
    assert code == 2, output
    assert "Traceback" not in output
    message = output[output.index("error: ") :]  # ours, or argparse's for a bad flag
    assert CASES[name][1] in message, message
    assert store_state(tracking_uri) == before


def test_the_same_with_a_store_that_holds_runs(tmp_path, tracking_uri, capsys) -> None:
    """A store with a finished run is left exactly as it was by a bad run and a bad grid."""
    assert main(["run", text_spec(tmp_path, TINY, "good.yaml"), "--tracking-uri", tracking_uri]) == 0
    capsys.readouterr()
    before = store_state(tracking_uri)
    for name in ("batch size 0", "--set broken list", "grid bad base value", "grid dry-run, bad value"):
        code, output = run_case(CASES[name], tmp_path, tracking_uri, capsys)
        assert code == 2 and "Traceback" not in output, (name, output)
    for argv, culprit in (
        (["report", "no-such-grid"], "no-such-grid"),
        (["ls", "no-such-exp"], "no-such-exp"),
    ):
        assert main([*argv, "--tracking-uri", tracking_uri]) == 2
        captured = capsys.readouterr()
        assert culprit in captured.err and "Traceback" not in captured.out + captured.err
    assert store_state(tracking_uri) == before


def test_dry_run_writes_nothing(tmp_path, capsys) -> None:
    store = tmp_path / "fresh.db"
    assert main(["grid", grid_file(tmp_path), "--dry-run", "--tracking-uri", f"sqlite:///{store}"]) == 0
    assert "missing" in capsys.readouterr().out
    assert not store.exists()


def test_planning_and_listing_without_a_store_create_no_mlruns(tmp_path, monkeypatch, capsys) -> None:
    grid = grid_file(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the default store: ./mlruns/mlflow.db
    assert main(["grid", grid, "--dry-run"]) == 0
    assert "missing" in capsys.readouterr().out
    assert main(["ls"]) == 2
    err = capsys.readouterr().err
    assert "no tracking store at" in err and "--tracking-uri" in err and "Traceback" not in err
    assert list(work.iterdir()) == []  # not even an empty mlruns/


def test_dry_run_leaves_an_existing_store_unchanged(tmp_path, tracking_uri, capsys) -> None:
    assert main(["run", text_spec(tmp_path, TINY, "good.yaml"), "--tracking-uri", tracking_uri]) == 0
    before = store_state(tracking_uri)
    assert main(["grid", grid_file(tmp_path), "--dry-run", "--tracking-uri", tracking_uri]) == 0
    assert store_state(tracking_uri) == before  # no experiment "tiny" created


def test_a_failed_data_check_leaves_no_empty_experiment(tmp_path, tracking_uri, capsys) -> None:
    text = TINY_GRID.replace("name: digits", "name: mnist, download: false")
    code = main(
        [
            "grid",
            grid_file(tmp_path, text),
            "--tracking-uri",
            tracking_uri,
            "--data-dir",
            str(tmp_path / "no"),
        ]
    )
    assert code == 2
    assert "MNIST" in capsys.readouterr().err
    state = store_state(tracking_uri)
    assert state is None or "tiny" not in [name for name, _ in state[0]]


def test_a_missing_glue_task_with_the_hub_unreachable_fails_at_once_and_quietly(tmp_path) -> None:
    """The hub cannot be reached (HF_ENDPOINT at a closed port, an empty cache): the good message is
    the first thing after the command's own line, with none of the hub's retry lines before it."""
    import os
    import subprocess
    import sys

    spec = text_spec(tmp_path, "data: {name: glue, task: cola}\nmodel: {name: cbow}\n")
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}",
        "HF_HOME": str(tmp_path / "hf"),
    }
    env.pop("HF_HUB_OFFLINE", None)
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli",
            "run",
            spec,
            "--data-dir",
            str(tmp_path / "data"),
            "--tracking-uri",
            uri,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines[0].startswith("litbench run ") and lines[1].startswith("litbench: error: GLUE task 'cola'")
    assert "cannot be reached from this machine" in output
    assert "Retrying" not in output and "Traceback" not in output


class _RunsCode:
    """Pickles as a call of os.system: what a hostile weights file holds."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def _bad_weights(kind: str, path: Path, marker: Path) -> None:
    import torch

    if kind == "random bytes":
        path.write_bytes(bytes(range(256)) * 8)
    elif kind == "truncated":
        torch.save({"w": torch.zeros(64, 64)}, path)
        path.write_bytes(path.read_bytes()[:500])
    elif kind == "runs code":
        torch.save({"w": _RunsCode(marker)}, path)
    elif kind == "a tensor":
        torch.save(torch.zeros(3), path)
    elif kind == "another model":
        torch.save({"net.0.weight": torch.zeros(3, 3)}, path)


BAD_WEIGHTS = ["random bytes", "truncated", "runs code", "a tensor", "another model"]


@pytest.mark.parametrize("kind", BAD_WEIGHTS)
def test_weights_that_cannot_be_loaded_are_one_clear_error(kind, tmp_path, tracking_uri, capsys) -> None:
    """A checkpoint (model.init_from) whose weights.pt is not loadable: exit 2 naming the file and
    why, nothing tracked, and nothing in it executed."""
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    (checkpoint / "spec.yaml").write_text(TINY)
    marker = tmp_path / "code-ran"
    _bad_weights(kind, checkpoint / "weights.pt", marker)
    child = TINY.replace("hidden: [16]", f"hidden: [16], init_from: {{checkpoint: {checkpoint}}}")
    before = store_state(tracking_uri)
    code = main(["run", text_spec(tmp_path, child), "--tracking-uri", tracking_uri])
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert code == 2, output
    assert "Traceback" not in output
    assert str(checkpoint / "weights.pt") in output or "init_from" in output
    assert not marker.exists()
    assert store_state(tracking_uri) == before


@pytest.fixture(scope="module")
def run_with_weights(tmp_path_factory) -> tuple[str, str, Path]:
    """A store holding one FINISHED run with its weights: (tracking URI, run id, the weights.pt the
    store keeps for it, which a case overwrites as a hostile or careless user would)."""
    root = tmp_path_factory.mktemp("weights-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    spec = text_spec(root, TINY.replace("log_checkpoint: false", "log_checkpoint: true"), "good.yaml")
    assert main(["run", spec, "--tracking-uri", uri]) == 0
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("good").experiment_id])
    stored = Path(run.info.artifact_uri.removeprefix("file://")) / "model" / "weights.pt"
    assert stored.is_file()
    return uri, run.info.run_id, stored


@pytest.mark.parametrize("kind", BAD_WEIGHTS)
@pytest.mark.parametrize("command", ["predict", "translate", "translate a checkpoint"])
def test_predict_and_translate_refuse_weights_that_cannot_be_loaded(
    command, kind, run_with_weights, tmp_path, capsys
) -> None:
    """`litbench predict RUN_ID` and `litbench translate RUN_ID|CHECKPOINT` when the run's weights in
    the store (or the checkpoint's on disk) were overwritten: exit 2 naming the file and why, nothing
    in it executed, nothing written to the store."""
    uri, run_id, stored = run_with_weights
    marker = tmp_path / "code-ran"
    if command == "translate a checkpoint":
        target = tmp_path / "checkpoint"
        target.mkdir()
        (target / "spec.yaml").write_text(TINY)
        weights, argv = target / "weights.pt", ["translate", str(target)]
    else:
        weights, argv = stored, [command, run_id]
    _bad_weights(kind, weights, marker)
    if command.startswith("translate"):
        sentences = tmp_path / "sentences.txt"
        sentences.write_text("ein Satz\n")
        argv.append(str(sentences))
    before = store_state(uri)
    code = main([*argv, "--tracking-uri", uri, "--data-dir", str(tmp_path)])
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert code == 2, output
    assert "Traceback" not in output
    assert "weights.pt" in output and ("cannot" in output or "not a state dict" in output), output
    assert not marker.exists()
    assert store_state(uri) == before


@contextlib.contextmanager
def _silent_server() -> Iterator[str]:
    """A server that takes the connection and says nothing (hung, overloaded); yields its URL."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # the kernel completes the handshakes; nobody ever reads or answers
        yield f"http://127.0.0.1:{silent.getsockname()[1]}"


@contextlib.contextmanager
def _gone_server() -> Iterator[str]:
    """No server on the port at all (stopped, crashed); yields its URL."""
    yield f"http://127.0.0.1:{closed_port()}"


@pytest.mark.parametrize("command", [["ls"], ["grid", "GRID"]])
@pytest.mark.parametrize(
    ("server", "message"),
    [(_silent_server, "did not answer"), (_gone_server, "no `mlflow server` answers")],
    ids=["never answers", "gone"],
)
def test_a_tracking_server_that_is_silent_or_gone_is_reported_within_seconds(
    server, message, command, tmp_path, capsys
) -> None:
    """One clear error within 15 s, from `ls` and from `grid`, not MLflow's minutes of retries."""
    import time

    with server() as uri:
        argv = [grid_file(tmp_path) if part == "GRID" else part for part in command]
        start = time.monotonic()
        code = main([*argv, "--tracking-uri", uri])
        elapsed = time.monotonic() - start
    captured = capsys.readouterr()
    assert code == 2, captured.out + captured.err
    assert elapsed < 15
    assert message in captured.err and uri in captured.err
    assert "Traceback" not in captured.out + captured.err
