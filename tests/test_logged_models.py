"""What a tracked run records beyond params and metrics: its data splits as MLflow dataset inputs,
the command that ran it as ``mlflow.source.name``, and its best weights as an MLflow 3 logged model
that ``restore.load_logged_model``, ``litbench predict`` and ``litbench translate`` load back."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import mlflow
import pytest
import torch
from mlflow import MlflowClient

from cli.app import main
from core.context import Context
from core.errors import SpecError
from experiments.run.restore import load_logged_model
from experiments.specs import validate_run_spec
from tests.test_bad_inputs import TINY
from tests.test_glue_datamodule import glue_spec, write_glue

GRID = "name: tiny\nbase:\n" + "".join(f"  {line}\n" for line in TINY.splitlines()) + "seeds: [0, 1]\n"
GRID = GRID.replace("log_checkpoint: false", "log_checkpoint: true")
SPLITS = {"train", "val", "test"}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A 2-cell grid (seeds 0 and 1, checkpoints on) and one run on another split without a checkpoint."""
    root = tmp_path_factory.mktemp("logged")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    grid, spec = root / "tiny.yaml", root / "other.yaml"
    grid.write_text(GRID)
    spec.write_text(TINY.replace("batch_size: 32}", "batch_size: 32, split_seed: 1}"))
    data = ["--tracking-uri", uri, "--data-dir", str(root)]
    assert main(["grid", str(grid), *data]) == 0
    assert main(["run", str(spec), "--experiment", "other", *data]) == 0
    client = MlflowClient(uri)
    runs = {
        name: sorted(
            client.search_runs([client.get_experiment_by_name(name).experiment_id]),
            key=lambda r: r.data.params["seed"],
        )
        for name in ("tiny", "other")
    }
    return {"uri": uri, "root": root, "client": client, "runs": runs, "grid": str(grid), "spec": str(spec)}


def inputs_of(run) -> dict:
    """context tag (split) -> the dataset input's dataset."""
    found = {}
    for dataset_input in run.inputs.dataset_inputs:
        (context,) = [t.value for t in dataset_input.tags if t.key == "mlflow.data.context"]
        found[context] = dataset_input.dataset
    return found


def test_every_run_records_its_splits_as_dataset_inputs(store: dict) -> None:
    first, second = (store["client"].get_run(r.info.run_id) for r in store["runs"]["tiny"])
    for run in (first, second):
        datasets = inputs_of(run)
        assert set(datasets) == SPLITS
        for split, dataset in datasets.items():
            assert dataset.name == f"digits/{split}"
            assert len(dataset.digest) == 16
            assert dataset.source_type == "code"
            assert json.loads(dataset.source) == {"uri": "sklearn.datasets.load_digits"}
            assert json.loads(dataset.profile)["num_rows"] == int(run.data.params[f"data.size.{split}"])
    # the seed shuffles training, not the data: the same digests; the three splits differ
    assert {s: d.digest for s, d in inputs_of(first).items()} == {
        s: d.digest for s, d in inputs_of(second).items()
    }
    assert len({d.digest for d in inputs_of(first).values()}) == 3
    # another split seed is other data: every digest changes
    (other,) = store["runs"]["other"]
    moved = inputs_of(store["client"].get_run(other.info.run_id))
    assert all(moved[s].digest != inputs_of(first)[s].digest for s in SPLITS)


def test_search_runs_shows_the_dataset_inputs_with_their_digests(store: dict) -> None:
    mlflow.set_tracking_uri(store["uri"])
    experiment_id = store["runs"]["tiny"][0].info.experiment_id
    found = mlflow.search_runs(experiment_ids=[experiment_id], output_format="list")
    assert len(found) == 2
    for run in found:
        shown = {(i.dataset.name, i.dataset.digest) for i in run.inputs.dataset_inputs}
        recorded = {(d.name, d.digest) for d in inputs_of(store["client"].get_run(run.info.run_id)).values()}
        assert shown == recorded and {name for name, _ in shown} == {f"digits/{s}" for s in SPLITS}


def test_the_source_tag_is_the_litbench_command(store: dict) -> None:
    for run in store["runs"]["tiny"]:
        # the UI shows what follows the source's last "/": the grid's file, not the store's
        assert run.data.tags["mlflow.source.name"] == f"litbench grid {store['grid']}"
        assert run.data.tags["litbench.command"].startswith(f"litbench grid {store['grid']} --tracking-uri")
        assert run.data.tags["mlflow.source.type"] == "LOCAL"
    (other,) = store["runs"]["other"]
    assert other.data.tags["mlflow.source.name"] == f"litbench run {store['spec']}"
    assert other.data.tags["litbench.command"].startswith(f"litbench run {store['spec']} --experiment other")
    assert "LITBENCH_COMMAND" not in os.environ  # set for the command only


def test_each_checkpointed_run_has_one_logged_model_that_reproduces_its_test_accuracy(store: dict) -> None:
    mlflow.set_tracking_uri(store["uri"])
    client, runs = store["client"], store["runs"]["tiny"]
    models = mlflow.search_logged_models(experiment_ids=[runs[0].info.experiment_id], output_format="list")
    by_run = {m.source_run_id: m for m in models}
    assert len(models) == 2 and set(by_run) == {r.info.run_id for r in runs}
    for run in runs:
        model = by_run[run.info.run_id]
        assert model.name == run.info.run_name.replace(".", "_") and str(model.status) == "READY"
        assert model.tags["litbench.spec_hash"] == run.data.tags["litbench.spec_hash"]
        assert model.params["optimizer.lr"] == run.data.params["optimizer.lr"]
        assert [o.model_id for o in client.get_run(run.info.run_id).outputs.model_outputs] == [model.model_id]
        linked = {m.key: m for m in model.metrics}
        assert linked["test/acc"].value == run.data.metrics["test/acc"]
        assert linked["test/acc"].dataset_name == "digits/test"
        assert len(client.get_metric_history(run.info.run_id, "test/acc")) == 1  # not logged twice
        assert {a.path for a in client.list_logged_model_artifacts(model.model_id)} == {
            "spec.yaml",
            "weights.pt",
        }

        prepared = load_logged_model(f"models:/{model.model_id}", Context(store["uri"], store["root"]))
        assert prepared.spec.spec_hash == run.data.tags["litbench.spec_hash"]
        data, right, total = prepared.datamodule, 0, 0
        with torch.no_grad():
            for images, labels in data.test_dataloader():
                predicted = prepared.network(data.transform_batch(images, train=False)).argmax(dim=1)
                right, total = right + int((predicted == labels).sum()), total + len(labels)
        assert right / total == pytest.approx(run.data.metrics["test/acc"], abs=1e-6)
    # a bare model id loads too
    assert load_logged_model(models[0].model_id, Context(store["uri"], store["root"])).network is not None


def test_a_run_without_checkpoint_logs_no_model(store: dict) -> None:
    mlflow.set_tracking_uri(store["uri"])
    (other,) = store["runs"]["other"]
    assert not mlflow.search_logged_models(experiment_ids=[other.info.experiment_id], output_format="list")
    assert not store["client"].get_run(other.info.run_id).outputs.model_outputs


class Boom:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/litbench-pwned",))


def test_a_hostile_or_unknown_logged_model_is_a_clear_error(store: dict, tmp_path: Path) -> None:
    client, ctx = store["client"], Context(store["uri"], store["root"])
    run = store["runs"]["tiny"][0]
    model = client.create_logged_model(run.info.experiment_id, name="hostile", source_run_id=run.info.run_id)
    folder = tmp_path / "hostile"
    folder.mkdir()
    client.download_artifacts(run.info.run_id, "spec.yaml", str(folder))
    (folder / "weights.pt").write_bytes(pickle.dumps({"w": Boom()}))
    client.log_model_artifacts(model.model_id, str(folder))
    with pytest.raises(SpecError, match="cannot read these weights"):
        load_logged_model(f"models:/{model.model_id}", ctx)
    assert not Path("/tmp/litbench-pwned").exists()
    with pytest.raises(SpecError, match="no logged model 'm-0123'"):
        load_logged_model("models:/m-0123", ctx)
    with pytest.raises(SpecError, match="not a logged model"):
        load_logged_model("models:/my-registered-model/1", ctx)


def test_predict_takes_a_logged_model_of_a_glue_run(tmp_path: Path) -> None:
    from experiments.run.runner import execute

    glue_dir, uri = write_glue(tmp_path / "data"), f"sqlite:///{tmp_path / 'mlflow.db'}"
    raw = glue_spec("sst2", epochs=1)
    raw["tracking"] = {"heatmaps": 0, "log_checkpoint": True}
    result = execute(validate_run_spec(raw), Context(uri, glue_dir), experiment="sst2")
    client = MlflowClient(uri)
    run = client.get_run(result.run_id)
    datasets = inputs_of(run)
    assert set(datasets) == SPLITS | {"predict"}
    assert {d.name for d in datasets.values()} == {f"glue/sst2/{s}" for s in datasets}
    assert json.loads(datasets["predict"].profile)["num_rows"] == 10
    (output,) = run.outputs.model_outputs

    out = tmp_path / "submissions"
    argv = ["predict", f"models:/{output.model_id}", "--tracking-uri", uri, "--data-dir", str(glue_dir)]
    assert main([*argv, "--out", str(out)]) == 0
    assert len((out / "SST-2.tsv").read_text().splitlines()) == 11
    assert [a.path for a in client.list_artifacts(result.run_id, "submission")] == ["submission/SST-2.tsv"]
