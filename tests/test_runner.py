from __future__ import annotations

import pytest
import torch
from mlflow import MlflowClient

from core import tags as tag
from core.context import Context
from experiments.run.runner import RunFailedError, execute
from lightning_modules.architectures import count_parameters, create_model


def test_tracked_run_reads_back_params_metrics_and_artifacts(
    tiny_spec, shared_tracking_uri, tmp_path
) -> None:
    spec = tiny_spec(trainer={"max_epochs": 2})
    result = execute(spec, Context(shared_tracking_uri, tmp_path), experiment="readback")
    assert result.status == "FINISHED"

    client = MlflowClient(shared_tracking_uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    assert params["optimizer.name"] == "adam" and float(params["optimizer.lr"]) == 0.01
    assert params["model.hidden"] == "[16]"
    assert params["data.size.train"] == str(1797 - 359 - 144)  # 20% test, then 10% of the rest for val
    network = create_model("mlp", input_shape=(1, 8, 8), num_classes=10, hidden=(16,))
    assert int(params["model.num_params"]) == count_parameters(network) == 64 * 16 + 16 + 16 * 10 + 10
    assert tags[tag.SPEC_HASH] == spec.spec_hash
    assert tags[tag.TASK_METRIC] == "acc" and tags[tag.TASK_MODE] == "max"
    assert "litbench.env.torch" in tags

    assert 0.0 <= metrics["test/acc"] <= 1.0
    assert metrics["test/acc"] == pytest.approx(result.metrics["test/acc"])
    assert metrics["perf/fit_time_s"] > 0 and metrics["perf/train_samples_per_s"] > 0
    # every step is in the store: 2 epochs x 2 batches
    steps = client.get_metric_history(result.run_id, "train/loss_step")
    assert sorted(m.step for m in steps) == [0, 1, 2, 3]
    assert len(client.get_metric_history(result.run_id, "val/acc")) == 2

    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"spec.yaml", "model", "heatmaps"} <= artifacts
    local = client.download_artifacts(result.run_id, "model/weights.pt", str(tmp_path))
    state = torch.load(local, weights_only=True)
    network.load_state_dict(state)  # plain state_dict of the network, no Lightning wrapper keys
    assert client.list_artifacts(result.run_id, "heatmaps")[0].path == "heatmaps/saliency.png"


def test_same_spec_same_seed_gives_same_numbers(tiny_spec, shared_tracking_uri, tmp_path) -> None:
    spec = tiny_spec(trainer={"limit_train_batches": 4}, tracking={"heatmaps": 0, "log_checkpoint": False})
    first = execute(spec, Context(shared_tracking_uri, tmp_path), experiment="repro")
    second = execute(spec, Context(shared_tracking_uri, tmp_path), experiment="repro")
    assert first.metrics["test/loss"] == second.metrics["test/loss"]
    assert first.run_id != second.run_id


def test_non_finite_loss_ends_run_failed_with_reason(tiny_spec, shared_tracking_uri, tmp_path) -> None:
    spec = tiny_spec(optimizer={"name": "sgd", "lr": 1e30}, trainer={"limit_train_batches": 10})
    with pytest.raises(RunFailedError) as err:
        execute(spec, Context(shared_tracking_uri, tmp_path), experiment="diverge")
    run = MlflowClient(shared_tracking_uri).get_run(err.value.result.run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags[tag.FAILURE].startswith("NonFiniteLossError: non-finite loss")


def test_data_error_leaves_no_run(tiny_spec, tracking_uri, tmp_path) -> None:
    from datamodules import DataNotFoundError

    spec = tiny_spec(data={"name": "mnist", "download": False})
    with pytest.raises(DataNotFoundError, match="MNIST"):
        execute(spec, Context(tracking_uri, tmp_path / "empty"), experiment="nodata")
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("nodata")
    assert experiment is None or not client.search_runs([experiment.experiment_id])


def test_bad_optimizer_combination_fails_before_tracking(tiny_spec, tracking_uri, tmp_path) -> None:
    from experiments.specs import SpecError

    with pytest.raises(SpecError, match="momentum"):  # refused when the spec is validated
        spec = tiny_spec(optimizer={"name": "sgd", "lr": 0.1, "nesterov": True})
        execute(spec, Context(tracking_uri, tmp_path), experiment="badopt")
    assert MlflowClient(tracking_uri).get_experiment_by_name("badopt") is None


def test_max_minutes_is_the_trainers_time_budget_and_part_of_the_hash(tiny_spec, tmp_path) -> None:
    from lightning.pytorch.callbacks import Timer

    from experiments.run.fit import build_trainer

    budget, unset = tiny_spec(trainer={"max_minutes": 0.5}), tiny_spec()
    timers = [c for c in build_trainer(budget, [], False, str(tmp_path)).callbacks if isinstance(c, Timer)]
    assert [t._duration for t in timers] == [30.0]
    assert not any(isinstance(c, Timer) for c in build_trainer(unset, [], False, str(tmp_path)).callbacks)
    assert budget.spec_hash != unset.spec_hash
    assert "max_minutes" not in unset.identity()["trainer"]  # hashes of specs without it did not change
