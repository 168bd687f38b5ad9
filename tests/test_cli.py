"""The command line as a user meets it: exit codes, one-paragraph errors, nothing half-written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from cli import main
from tests.idx_files import write_mnist_files

REPO = Path(__file__).resolve().parents[1]
TINY_RUN = """
seed: 0
data: {name: digits, batch_size: 32}
model: {name: mlp, hidden: [16]}
optimizer: {name: adam, lr: 0.01}
trainer: {max_epochs: 1, limit_train_batches: 2, limit_val_batches: 1, accelerator: cpu}
tracking: {heatmaps: 0, log_checkpoint: false}
"""


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def no_runs(tracking_uri: str) -> bool:
    if not Path(tracking_uri.removeprefix("sqlite:///")).exists():
        return True
    client = MlflowClient(tracking_uri)
    return not client.search_runs([e.experiment_id for e in client.search_experiments()])


def test_help_does_not_import_the_heavy_libraries() -> None:
    code = (
        "import sys; from cli.app import build_parser; build_parser().format_help();"
        "print(sorted(m for m in ('torch', 'lightning', 'mlflow', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_command_has_help(capsys) -> None:
    for command in ([], ["run"], ["grid"], ["ls"]):
        with pytest.raises(SystemExit) as exit_info:
            main([*command, "--help"])
        assert exit_info.value.code == 0
        assert "usage: litbench" in capsys.readouterr().out


def test_run_tracks_and_exits_zero(tmp_path, tracking_uri, capsys) -> None:
    spec = write(tmp_path, TINY_RUN)
    assert main(["run", spec, "--tracking-uri", tracking_uri, "--set", "optimizer.lr=0.02"]) == 0
    assert "FINISHED" in capsys.readouterr().out
    client = MlflowClient(tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("spec").experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["optimizer.lr"] == "0.02"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (TINY_RUN.replace("optimizer:", "optimiser:"), "unknown key 'optimiser'"),
        (TINY_RUN.replace("{name: mlp,", "{name: resnet,"), "unknown model 'resnet'"),
        (TINY_RUN.replace("lr: 0.01", "lr: fast"), "optimizer.lr"),
        (TINY_RUN + "  extra: [", "not valid YAML"),
    ],
    ids=["misspelled-key", "unknown-model", "wrong-type", "bad-yaml"],
)
def test_bad_spec_is_one_error_and_nothing_tracked(tmp_path, tracking_uri, capsys, text, expected) -> None:
    code = main(["run", write(tmp_path, text), "--tracking-uri", tracking_uri])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("litbench: error: ") and expected in err
    assert err.count("\n") == 1  # one paragraph, no traceback
    assert no_runs(tracking_uri)


def test_missing_data_directory(tmp_path, tracking_uri, capsys) -> None:
    spec = write(tmp_path, TINY_RUN.replace("name: digits", "name: mnist, download: false"))
    missing = tmp_path / "no-such-dir"
    code = main(["run", spec, "--tracking-uri", tracking_uri, "--data-dir", str(missing)])
    err = capsys.readouterr().err
    assert code == 2
    assert str(missing / "MNIST" / "raw") in err and "LITBENCH_DATA_DIR" in err
    assert no_runs(tracking_uri) and not missing.exists()


def test_corrupt_idx_file(tmp_path, tracking_uri, capsys) -> None:
    raw = tmp_path / "data" / "MNIST" / "raw"
    write_mnist_files(raw, gz=False)
    truncated = raw / "train-images-idx3-ubyte"
    truncated.write_bytes(truncated.read_bytes()[:-100])
    spec = write(tmp_path, TINY_RUN.replace("name: digits", "name: mnist, download: false"))
    code = main(["run", spec, "--tracking-uri", tracking_uri, "--data-dir", str(tmp_path / "data")])
    err = capsys.readouterr().err
    assert code == 2 and "train-images-idx3-ubyte" in err
    assert no_runs(tracking_uri)


def test_wrong_md5(tmp_path, tracking_uri, capsys) -> None:
    write_mnist_files(tmp_path / "data" / "MNIST" / "raw", gz=True)  # valid IDX, not the official bytes
    spec = write(tmp_path, TINY_RUN.replace("name: digits", "name: mnist, download: false"))
    code = main(["run", spec, "--tracking-uri", tracking_uri, "--data-dir", str(tmp_path / "data")])
    err = capsys.readouterr().err
    assert code == 2 and "MD5" in err and ".gz" in err
    assert no_runs(tracking_uri)


def test_grid_isolates_a_diverging_cell_and_resumes_exactly(tmp_path, tracking_uri, capsys) -> None:
    grid = write(
        tmp_path,
        "name: tiny\nbase:\n"
        + "".join(f"  {line}\n" for line in TINY_RUN.replace("[16]", "[256, 128]").strip().splitlines())
        + "axes:\n  optimizer:\n    - {name: adam, lr: 0.01}\n    - {name: sgd, lr: 1.0e+3}\n"  # diverges
        + "seeds: [0, 1]\n",
        "tiny.yaml",
    )
    command = ["grid", grid, "--tracking-uri", tracking_uri, "--set", "trainer.limit_train_batches=10"]
    assert main([*command, "--workers", "2"]) == 1
    captured = capsys.readouterr()
    assert "non-finite loss" in captured.out and "2 of 4 runs did not finish (2 failed)" in captured.err

    client = MlflowClient(tracking_uri)
    experiment_id = client.get_experiment_by_name("tiny").experiment_id
    first = {r.info.run_id: r.info.status for r in client.search_runs([experiment_id])}
    assert sorted(first.values()) == ["FAILED", "FAILED", "FINISHED", "FINISHED"]
    failures = [r.data.tags.get("litbench.failure", "") for r in client.search_runs([experiment_id])]
    assert sum(f.startswith("NonFiniteLossError: non-finite loss") for f in failures) == 2

    # the same command again runs nothing: finished cells are kept, failed ones wait for --retry-failed
    assert main(command) == 1
    assert "--retry-failed" in capsys.readouterr().err
    assert {r.info.run_id: r.info.status for r in client.search_runs([experiment_id])} == first

    # --retry-failed runs exactly the failed cells again (they fail again); finished runs are untouched
    assert main([*command, "--retry-failed"]) == 1
    runs = client.search_runs([experiment_id])
    assert sorted(r.info.status for r in runs) == ["FAILED"] * 4 + ["FINISHED"] * 2
    assert {r.info.run_id for r in runs if r.info.status == "FINISHED"} == {
        run_id for run_id, status in first.items() if status == "FINISHED"
    }


def test_dry_run_trains_nothing(tmp_path, tracking_uri, capsys) -> None:
    assert (
        main(
            [
                "grid",
                str(REPO / "experiments/grids/quickstart.yaml"),
                "--dry-run",
                "--tracking-uri",
                tracking_uri,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.count("missing") == 12 and "cnn-adam-lr0.002-s1" in out
    assert no_runs(tracking_uri)


def test_ls_lists_runs_and_names(tmp_path, tracking_uri, capsys) -> None:
    main(["run", write(tmp_path, TINY_RUN), "--tracking-uri", tracking_uri, "--experiment", "exp1"])
    capsys.readouterr()
    assert main(["ls", "--tracking-uri", tracking_uri]) == 0
    assert "exp1" in capsys.readouterr().out
    assert main(["ls", "exp1", "--tracking-uri", tracking_uri]) == 0
    assert "FINISHED" in capsys.readouterr().out
    assert main(["ls", "nope", "--tracking-uri", tracking_uri]) == 2
    assert "no experiment 'nope'" in capsys.readouterr().err
    assert main(["ls", "--names"]) == 0
    names = capsys.readouterr().out
    assert "mlp" in names and "mnist" in names and "rmsprop" in names and "onecycle" in names


def test_grid_with_missing_data_stops_before_any_run(tmp_path, tracking_uri, capsys) -> None:
    grid = write(
        tmp_path,
        "name: nodata\nbase:\n"
        + "".join(
            f"  {line}\n"
            for line in TINY_RUN.replace("name: digits", "name: mnist, download: false").strip().splitlines()
        )
        + "seeds: [0, 1]\n",
        "nodata.yaml",
    )
    missing = tmp_path / "empty"
    assert main(["grid", grid, "--tracking-uri", tracking_uri, "--data-dir", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("litbench: error: ") and str(missing / "MNIST" / "raw") in err
    assert no_runs(tracking_uri)
