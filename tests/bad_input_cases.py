"""The bad inputs of ``test_bad_inputs.py``: tiny specs, grids and studies, and each case as the argv a
hostile user types and the fragment its error must name (the field, file, flag or location at fault)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

from tests.idx_files import write_mnist_files

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


def mnist_spec(tmp: Path, damage: str) -> list[str]:
    """``run`` of the tiny spec on MNIST files in ``tmp`` damaged as ``damage`` says, download off."""
    raw = tmp / "MNIST" / "raw"
    if damage == "not the release":  # well-formed, but not the official files' bytes
        write_mnist_files(raw, gz=True)
    elif damage == "bad header":
        write_mnist_files(raw, gz=False)
        (raw / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x07 not an IDX header")
    elif damage == "truncated":
        write_mnist_files(raw, gz=False)
        labels = raw / "t10k-labels-idx1-ubyte"
        labels.write_bytes(labels.read_bytes()[:20])
    spec = spec_with(tmp, "name: digits", "name: mnist, download: false")
    return ["run", spec, "--data-dir", str(tmp)]


def csv_spec(tmp: Path, **files: str) -> list[str]:
    """``run`` of a text classifier on CSV files in ``tmp``: train.csv and test.csv exist, ``files``
    names others (a missing val_file, say)."""
    rows = "text,label\n" + "".join(f"sentence number {i},{i % 2}\n" for i in range(12))
    for name in ("train.csv", "test.csv"):
        (tmp / name).write_text(rows)
    options = "".join(f", {key}: {value}" for key, value in files.items())
    text = f"data: {{name: text_classification, batch_size: 4{options}}}\nmodel: {{name: cbow}}\n"
    return ["run", text_spec(tmp, text), "--data-dir", str(tmp)]


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
    # data files
    "MNIST files not the release": (lambda t: mnist_spec(t, "not the release"), "MD5"),
    "MNIST header corrupt": (lambda t: mnist_spec(t, "bad header"), "train-images-idx3-ubyte"),
    "MNIST labels truncated": (lambda t: mnist_spec(t, "truncated"), "t10k-labels-idx1-ubyte"),
    "MNIST missing, download off": (lambda t: mnist_spec(t, "missing"), "download is off"),
    "CSV val file missing": (lambda t: csv_spec(t, val_file="dev.csv"), "dev.csv"),
    "CSV train file missing": (lambda t: csv_spec(t, train_file="nothere.csv"), "nothere.csv"),
    "CSV label column unknown": (lambda t: csv_spec(t, label_column="stars"), "stars"),
    # run ids
    "translate unknown run": (
        lambda t: ["translate", "0123456789abcdef0123456789abcdef", str(a_file(t))],
        "0123456789abcdef",
    ),
    "predict unknown logged model": (lambda t: ["predict", "models:/m-0123"], "m-0123"),
    "predict unknown run": (lambda t: ["predict", "0123456789abcdef0123456789abcdef"], "0123456789abcdef"),
}
