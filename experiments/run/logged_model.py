"""A run's best weights as an MLflow 3 logged model: what the runs table's Models column shows and
``mlflow.search_logged_models`` finds.

Its artifacts are the run's own two files, ``spec.yaml`` and ``weights.pt`` (a plain state dict), not
an ``mlflow.pytorch`` pickle: loading it (``experiments.run.restore.load_logged_model``) rebuilds the
network from the spec and reads the weights with ``torch.load(weights_only=True)``, never unpickling
code. The model is named after its run, is the run's output, carries the spec's params and hash, and
holds the run's test metrics, linked to the test split's dataset input.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core import tags as tag
from core.errors import SpecError
from experiments import tracking
from experiments.run.datasets import dataset_name

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import LoggedModel

    from core.datasets import DataSplit

MODEL_TYPE = "litbench"  # the model_type of every logged model litbench creates
MODEL_URI_PREFIX = "models:/"
MODEL_ID_PREFIX = "m-"  # MLflow's logged model ids
FILES = ("spec.yaml", "weights.pt")  # the artifacts of a logged model, at its root
NAME_REFUSED = "/:.%\"'"  # characters MLflow refuses in a logged model's name


def model_name(run_name: str) -> str:
    """The run's name as a logged model may be named: ``cnn-adam-lr0.002-s0`` -> ``cnn-adam-lr0_002-s0``."""
    return "".join("_" if c in NAME_REFUSED else c for c in run_name) or "model"


def log_best_model(
    client: MlflowClient,
    run_id: str,
    name: str,
    files: Sequence[Path],
    params: dict[str, Any],
    step: int,
    test: DataSplit | None = None,
) -> str:
    """Log ``files`` (spec.yaml and weights.pt) as a READY logged model of run ``run_id`` named after
    the run (``name``), output at ``step``, with the spec's ``params``; its test metrics are the run's,
    linked to the ``test`` split's dataset. Returns the model id."""
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus

    run = client.get_run(run_id)
    model = client.create_logged_model(
        run.info.experiment_id,
        name=model_name(name),
        source_run_id=run_id,
        tags={tag.SPEC_HASH: run.data.tags.get(tag.SPEC_HASH, "")},
        params=tracking.param_strings(params),
        model_type=MODEL_TYPE,
    )
    folder = Path(files[0]).parent / f"logged-model-{model.model_id}"
    folder.mkdir()
    for file in files:
        shutil.copy2(file, folder / Path(file).name)
    client.log_model_artifacts(model.model_id, str(folder))
    client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step)])
    _link_test_metrics(client, run, model.model_id, test)
    client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    return model.model_id


def _link_test_metrics(client, run, model_id: str, test: DataSplit | None) -> None:
    """The run's ``test*/`` metrics logged again with the model id (``test/`` ones also with the test
    dataset): MLflow keeps them once in the run (same key, step, value and timestamp) and adds them to
    the model."""
    from mlflow.entities import Metric

    on_test = (
        {} if test is None else {"dataset_name": dataset_name("test", test), "dataset_digest": test.digest}
    )
    metrics = []
    for key in sorted(k for k in run.data.metrics if k.startswith("test")):
        dataset = on_test if key.startswith("test/") else {}  # not test_mismatched/, test_int8/
        for point in client.get_metric_history(run.info.run_id, key)[-1:]:
            metrics.append(
                Metric(key, point.value, point.timestamp, point.step, model_id=model_id, **dataset)
            )
    if metrics:
        client.log_batch(run.info.run_id, metrics=metrics)


def is_model_ref(ref: str) -> bool:
    """Whether ``ref`` names a logged model (``models:/m-...`` or a bare ``m-...``), not a run."""
    return ref.startswith((MODEL_URI_PREFIX, MODEL_ID_PREFIX))


def model_id_of(ref: str) -> str:
    """The model id in ``models:/<model_id>`` (or a bare id); a SpecError for registry names."""
    model_id = ref.removeprefix(MODEL_URI_PREFIX).strip("/")
    if not model_id.startswith(MODEL_ID_PREFIX) or "/" in model_id:
        raise SpecError(
            f"{ref!r} is not a logged model of a litbench run: pass models:/<model_id> (an id like "
            "m-0123abcd..., see mlflow.search_logged_models or the run's Models column) or a run id"
        )
    return model_id


def logged_model(ref: str, client: MlflowClient, tracking_uri: str) -> LoggedModel:
    """The logged model ``ref`` names; a SpecError when the store has none of that id."""
    from mlflow.exceptions import MlflowException

    model_id = model_id_of(ref)
    try:
        return client.get_logged_model(model_id)
    except MlflowException:
        raise SpecError(
            f"no logged model {model_id!r} in {tracking_uri}; list them with "
            "mlflow.search_logged_models(experiment_ids=[...]) or pass the run id"
        ) from None


def download_model(ref: str, client: MlflowClient, tracking_uri: str, dst: Path) -> tuple[Path, Path]:
    """The ``(spec.yaml, weights.pt)`` of logged model ``ref``, downloaded into ``dst``."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    model = logged_model(ref, client, tracking_uri)
    model_id = model.model_id
    try:
        folder = mlflow.artifacts.download_artifacts(
            artifact_uri=model.artifact_location, dst_path=str(dst), tracking_uri=tracking_uri
        )
    except (MlflowException, OSError):
        folder = str(dst)
    spec, weights = (Path(folder) / name for name in FILES)
    if not (spec.is_file() and weights.is_file()):
        raise SpecError(
            f"logged model {model_id} has no {' and '.join(FILES)} artifacts: it was not logged by a "
            "litbench run with tracking.log_checkpoint: true; pass that run's id instead"
        )
    return spec, weights
