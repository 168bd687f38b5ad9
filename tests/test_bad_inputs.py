"""Bad inputs as a hostile user gives them: each is exit 2, one paragraph naming the culprit, no
traceback, and a store left exactly as it was.

Every case runs the command in-process (``cli.main``), so an exception that escapes it fails the test
as a traceback would reach the user. Each case names the fragment its message must contain: the
field, file, flag or location at fault.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from mlflow import MlflowClient

from cli import main

REPO = Path(__file__).resolve().parents[1]
STUDY = str(REPO / "experiments" / "studies" / "digits_lr.yaml")
TINY = """seed: 0
data: {name: digits, batch_size: 32}
model: {name: mlp, hidden: [16]}
optimizer: {name: adam, lr: 0.01}
trainer: {max_epochs: 1, limit_train_batches: 2, limit_val_batches: 1, accelerator: cpu}
tracking: {heatmaps: 0, log_checkpoint: false}
"""
TINY_GRID = "name: tiny\nbase:\n" + "".join(f"  {line}\n" for line in TINY.splitlines()) + "seeds: [0]\n"


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spec_with(tmp: Path, old: str, new: str, name: str = "spec.yaml") -> str:
    path = tmp / name
    path.write_text(TINY.replace(old, new))
    return str(path)


def text_spec(tmp: Path, text: str | bytes, name: str = "spec.yaml") -> str:
    path = tmp / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


def grid_file(tmp: Path, text: str = TINY_GRID) -> str:
    path = tmp / "tiny.yaml"
    path.write_text(text)
    return str(path)


def a_file(tmp: Path) -> Path:
    path = tmp / "plain-file"
    path.write_text("not a folder")
    return path


# name -> (argv builder given tmp_path, a fragment the message must contain); "--tracking-uri STORE"
# is appended to every command that takes it unless the case gives its own
Case = tuple[Callable[[Path], list[str]], str]
CASES: dict[str, Case] = {
    # spec values
    "batch size 0": (lambda t: ["run", spec_with(t, "batch_size: 32", "batch_size: 0")], "batch sizes"),
    "batch size negative": (lambda t: ["run", spec_with(t, "batch_size: 32", "batch_size: -4")], "batch"),
    "eval batch size 0": (
        lambda t: ["run", spec_with(t, "batch_size: 32", "batch_size: 32, eval_batch_size: 0")],
        "batch sizes",
    ),
    "val_fraction 1": (
        lambda t: ["run", spec_with(t, "batch_size: 32", "batch_size: 32, val_fraction: 1.0")],
        "val_fraction",
    ),
    "val_fraction negative": (
        lambda t: ["run", spec_with(t, "batch_size: 32", "batch_size: 32, val_fraction: -0.1")],
        "val_fraction",
    ),
    "train_subset 0": (
        lambda t: ["run", spec_with(t, "batch_size: 32", "batch_size: 32, train_subset: 0")],
        "train_subset",
    ),
    "batch size a word": (
        lambda t: ["run", spec_with(t, "batch_size: 32", "batch_size: many")],
        "batch_size",
    ),
    "lr negative": (lambda t: ["run", spec_with(t, "lr: 0.01", "lr: -0.01")], "lr"),
    "lr a word": (lambda t: ["run", spec_with(t, "lr: 0.01", "lr: fast")], "lr"),
    "unknown datamodule": (lambda t: ["run", spec_with(t, "name: digits", "name: digitz")], "digitz"),
    "unknown model": (lambda t: ["run", spec_with(t, "name: mlp", "name: mpl")], "mpl"),
    "unknown optimizer": (lambda t: ["run", spec_with(t, "name: adam", "name: adamm")], "adamm"),
    "unknown model option": (lambda t: ["run", spec_with(t, "hidden: [16]", "hiden: [16]")], "hiden"),
    "unknown section": (lambda t: ["run", spec_with(t, "optimizer:", "optimiser:")], "optimiser"),
    "unknown trainer key": (
        lambda t: ["run", spec_with(t, "max_epochs: 1", "max_epoch: 1")],
        "max_epoch",
    ),
    "translation with augment": (
        lambda t: [
            "run",
            text_spec(
                t,
                "data: {name: translation}\nmodel: {name: gru_attention}\nregularization: {augment: true}\n",
            ),
        ],
        "augment",
    ),
    "masked LM with augment": (
        lambda t: [
            "run",
            text_spec(
                t, "data: {name: masked_text}\nmodel: {name: transformer}\nregularization: {augment: true}\n"
            ),
        ],
        "augment",
    ),
    "mask rate 0": (
        lambda t: [
            "run",
            text_spec(t, "data: {name: masked_text, mask_rate: 0.0}\nmodel: {name: transformer}\n"),
        ],
        "mask_rate",
    ),
    # spec files
    "spec not UTF-8": (lambda t: ["run", text_spec(t, TINY.encode() + b"# caf\xe9\n")], "UTF-8"),
    "spec not YAML": (lambda t: ["run", text_spec(t, "seed: [0\n")], "not valid YAML"),
    "spec a list": (lambda t: ["run", text_spec(t, "- seed: 0\n")], "mapping"),
    "spec missing": (lambda t: ["run", str(t / "nope.yaml")], "nope.yaml"),
    "spec a folder": (lambda t: ["run", str(t)], "is a folder"),
    # --set
    "--set broken list": (
        lambda t: ["run", text_spec(t, TINY), "--set", "optimizer.lr=[0.1"],
        "optimizer.lr",
    ),
    "--set under a number": (
        lambda t: ["run", text_spec(t, TINY), "--set", "trainer.max_epochs.x=1"],
        "trainer.max_epochs.x",
    ),
    "--set without =": (lambda t: ["run", text_spec(t, TINY), "--set", "optimizer.lr"], "key=value"),
    "--set unknown option": (lambda t: ["run", text_spec(t, TINY), "--set", "optimizer.warp=1"], "warp"),
    "--set bad value": (lambda t: ["run", text_spec(t, TINY), "--set", "data.batch_size=0"], "batch sizes"),
    # grids
    "grid missing": (lambda t: ["grid", str(t / "none.yaml")], "none.yaml"),
    "grid unknown key": (lambda t: ["grid", grid_file(t, TINY_GRID + "axis: {}\n")], "axis"),
    "grid bad base value": (
        lambda t: ["grid", grid_file(t, TINY_GRID.replace("batch_size: 32", "batch_size: 0"))],
        "batch sizes",
    ),
    "grid --set broken": (lambda t: ["grid", grid_file(t), "--set", "seed=[1"], "seed"),
    "grid dry-run, bad value": (
        lambda t: ["grid", grid_file(t, TINY_GRID.replace("lr: 0.01", "lr: 0")), "--dry-run"],
        "lr",
    ),
    # tracking stores
    "store unknown scheme": (lambda t: ["ls", "--tracking-uri", "foo://bar"], "foo://bar"),
    "store postgres closed port": (
        lambda t: ["ls", "--tracking-uri", f"postgresql://127.0.0.1:{closed_port()}/test"],
        "no database server answers",
    ),
    "store psycopg2 closed port": (
        lambda t: ["ls", "--tracking-uri", f"postgresql+psycopg2://127.0.0.1:{closed_port()}/test"],
        "127.0.0.1",
    ),
    "store mlflow server gone": (
        lambda t: ["ls", "--tracking-uri", f"http://127.0.0.1:{closed_port()}/"],
        "no `mlflow server` answers",
    ),
    "store driver missing": (lambda t: ["ls", "--tracking-uri", "mysql://127.0.0.1/x"], "MySQLdb"),
    "store unknown driver": (lambda t: ["ls", "--tracking-uri", "postgresql+nodriver://h/x"], "nodriver"),
    "store under a file": (
        lambda t: ["ls", "--tracking-uri", f"sqlite:///{a_file(t) / 'mlflow.db'}"],
        "is a file",
    ),
    "store is a folder": (lambda t: ["ls", "--tracking-uri", f"sqlite:///{t}"], "is a folder"),
    "run into a bad store": (
        lambda t: ["run", text_spec(t, TINY), "--tracking-uri", f"http://127.0.0.1:{closed_port()}"],
        "mlflow server",
    ),
    "grid into a bad store": (lambda t: ["grid", grid_file(t), "--tracking-uri", "foo://bar"], "foo://bar"),
    "report from a bad store": (lambda t: ["report", "tiny", "--tracking-uri", "foo://bar"], "foo://bar"),
    # Optuna storages
    "storage unknown scheme": (lambda t: ["tune", STUDY, "--storage", "redis://127.0.0.1/0"], "redis"),
    "storage driver missing": (lambda t: ["tune", STUDY, "--storage", "mysql://127.0.0.1/x"], "MySQLdb"),
    "storage closed port": (
        lambda t: ["tune", STUDY, "--storage", f"postgresql://127.0.0.1:{closed_port()}/test"],
        "no database server answers",
    ),
    "storage under a file": (
        lambda t: ["tune", STUDY, "--storage", f"sqlite:///{a_file(t) / 'optuna.db'}"],
        "is a file",
    ),
    "journal under a file": (
        lambda t: ["tune", STUDY, "--storage", str(a_file(t) / "study.journal")],
        "is a file",
    ),
    "storage neither": (lambda t: ["tune", STUDY, "--storage", "optuna.txt"], "optuna.txt"),
    # more spec values
    "max_epochs 0": (lambda t: ["run", spec_with(t, "max_epochs: 1", "max_epochs: 0")], "max_epochs"),
    "max_epochs negative": (lambda t: ["run", spec_with(t, "max_epochs: 1", "max_epochs: -3")], "max_epochs"),
    "dropout 1.5": (
        lambda t: ["run", spec_with(t, "tracking:", "regularization: {dropout: 1.5}\ntracking:")],
        "dropout",
    ),
    "label smoothing negative": (
        lambda t: ["run", spec_with(t, "tracking:", "regularization: {label_smoothing: -0.1}\ntracking:")],
        "label_smoothing",
    ),
    "unknown schedule": (
        lambda t: ["run", spec_with(t, "tracking:", "schedule: {name: cosinee}\ntracking:")],
        "cosinee",
    ),
    "unknown precision": (
        lambda t: ["run", spec_with(t, "accelerator: cpu", "accelerator: cpu, precision: '17'")],
        "precision",
    ),
    "unknown accelerator": (
        lambda t: ["run", spec_with(t, "accelerator: cpu", "accelerator: tpuu")],
        "accelerator",
    ),
    "heatmaps negative": (lambda t: ["run", spec_with(t, "heatmaps: 0", "heatmaps: -1")], "heatmaps"),
    "seed a word": (lambda t: ["run", spec_with(t, "seed: 0", "seed: zero")], "seed"),
    "hidden a word": (lambda t: ["run", spec_with(t, "hidden: [16]", "hidden: wide")], "hidden"),
    "model for other data": (
        lambda t: ["run", spec_with(t, "name: mlp, hidden: [16]", "name: gru_attention")],
        "gru_attention",
    ),
    # flags
    "--workers 0": (lambda t: ["grid", grid_file(t), "--workers", "0"], "--workers"),
    "--runs-per-gpu 0": (lambda t: ["grid", grid_file(t), "--runs-per-gpu", "0"], "--runs-per-gpu"),
    "--workers a word": (lambda t: ["grid", grid_file(t), "--workers", "two"], "--workers"),
    "unknown executor": (lambda t: ["grid", grid_file(t), "--executor", "slurm"], "--executor"),
    "--trials 0": (lambda t: ["tune", STUDY, "--trials", "0"], "--trials"),
    # more grids
    "grid unknown axis field": (
        lambda t: ["grid", grid_file(t, TINY_GRID + "axes:\n  optimizer.lrr: [0.1, 0.01]\n")],
        "lrr",
    ),
    "grid axis not a list": (
        lambda t: ["grid", grid_file(t, TINY_GRID + "axes:\n  optimizer.lr: 0.1\n")],
        "optimizer.lr",
    ),
    "grid seeds a word": (
        lambda t: ["grid", grid_file(t, TINY_GRID.replace("seeds: [0]", "seeds: many"))],
        "seeds",
    ),
    "grid not YAML": (lambda t: ["grid", grid_file(t, "name: [x\n")], "not valid YAML"),
    "grid zip of unequal lengths": (
        lambda t: [
            "grid",
            grid_file(t, TINY_GRID + "zip:\n  - {optimizer.lr: [0.1, 0.01], trainer.max_epochs: [1]}\n"),
        ],
        "zip",
    ),
    # studies
    "study missing": (lambda t: ["tune", str(t / "nostudy.yaml")], "nostudy.yaml"),
    "study unknown key": (
        lambda t: ["tune", text_spec(t, Path(STUDY).read_text() + "samplerr: {}\n", "study.yaml")],
        "samplerr",
    ),
    "study low above high": (
        lambda t: [
            "tune",
            text_spec(
                t,
                Path(STUDY).read_text().replace("low: 1.0e-4, high: 0.3", "low: 0.3, high: 1.0e-4"),
                "s.yaml",
            ),
        ],
        "low",
    ),
    "study unknown objective": (
        lambda t: [
            "tune",
            text_spec(
                t, Path(STUDY).read_text().replace("objective: val/acc", "objective: val/acc2"), "s.yaml"
            ),
        ],
        "val/acc2",
    ),
    "study unknown space field": (
        lambda t: [
            "tune",
            text_spec(
                t, Path(STUDY).read_text().replace("optimizer.lr: {type", "optimizer.lrr: {type"), "s.yaml"
            ),
        ],
        "lrr",
    ),
    # reports and listings
    "report from no store": (lambda t: ["report", "no-such-grid"], "no tracking store"),
    "ls from no store": (lambda t: ["ls", "no-such-experiment"], "no tracking store"),
    # run ids
    "predict unknown run": (lambda t: ["predict", "0123456789abcdef0123456789abcdef"], "0123456789abcdef"),
}


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


@pytest.mark.parametrize("kind", ["random bytes", "truncated", "runs code", "a tensor", "another model"])
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


@pytest.mark.parametrize("command", [["ls"], ["grid", "GRID"]])
def test_a_tracking_server_that_accepts_but_never_answers_is_reported_within_seconds(
    command, tmp_path, capsys
) -> None:
    """A server that takes the connection and says nothing (hung, overloaded): one clear error within
    15 s, from `ls` and from `grid`, not MLflow's minutes of retries."""
    import time

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # the kernel completes the handshakes; nobody ever reads or answers
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        argv = [grid_file(tmp_path) if part == "GRID" else part for part in command]
        start = time.monotonic()
        code = main([*argv, "--tracking-uri", uri])
        elapsed = time.monotonic() - start
    captured = capsys.readouterr()
    assert code == 2, captured.out + captured.err
    assert elapsed < 15
    assert "did not answer" in captured.err and uri in captured.err
    assert "Traceback" not in captured.out + captured.err
