"""A tracked run rebuilt from its spec and weights, and ``litbench predict``: its network on the
unlabelled split, written as submission files.

The run's own spec and weights come back from MLflow (``spec.yaml`` and ``model/weights.pt``, logged
when ``tracking.log_checkpoint`` is on), from the run's logged model (``models:/<model_id>``: the
same two files, see ``experiments.run.logged_model``), or from those files on disk; the datamodule is
rebuilt from the spec, so the tokenizer is the run's (the encoded-text cache hands back the very
same one). For GLUE each file is the TSV the leaderboard expects (``SST-2.tsv``:
``index<TAB>prediction``); other text corpora get ``predict.tsv``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from core.context import Context
from core.errors import SpecError
from core.store import sqlite_missing
from experiments.run.logged_model import download_model, is_model_ref, logged_model
from experiments.run.prepare import Prepared, prepare
from experiments.run.weights_file import read_state_dict
from experiments.specs import load_run_spec
from tasks.text_classification import Submission, TextClassification

WEIGHTS_ARTIFACT = "model/weights.pt"


def load_logged_model(model_uri: str, ctx: Context) -> Prepared:
    """The logged model ``models:/<model_id>`` (or a bare ``m-...`` id) of a litbench run, rebuilt from
    its ``spec.yaml`` and ``weights.pt`` (read with ``weights_only=True``): the ``Prepared`` the runner
    would build, ``.network`` holding the trained weights (in eval mode) and ``.spec`` the run's spec.

    ``load_logged_model("models:/m-...", Context.resolve(tracking_uri))``"""
    _check_store(model_uri, ctx)
    with tempfile.TemporaryDirectory(prefix="litbench-restore-") as tmp:
        spec_file, weights_file = download_model(model_uri, ctx.client, ctx.tracking_uri, Path(tmp))
        return _rebuild(spec_file, weights_file, ctx.data_dir)


def source_run_id(ref: str, ctx: Context) -> str:
    """The run behind ``ref``: ``ref`` itself, or the run that logged model ``ref``."""
    if not is_model_ref(ref):
        return ref
    _check_store(ref, ctx)
    return logged_model(ref, ctx.client, ctx.tracking_uri).source_run_id or ""


def _check_store(ref: str, ctx: Context) -> None:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # two small files: no bars
    if sqlite_missing(ctx.tracking_uri):
        raise SpecError(  # opening it would create an empty store
            f"no run {ref!r}: there is no store at {ctx.tracking_uri}; pass the --tracking-uri the run "
            "was tracked in"
        )


def restore_run(run_id: str, ctx: Context) -> Prepared:
    """Run ``run_id`` rebuilt from its tracked spec and weights: the ``Prepared`` the runner would
    build (datamodule, network, module), the network holding the trained weights. ``run_id`` may
    also be one of its logged models, ``models:/<model_id>`` or a bare ``m-...`` id."""
    from mlflow.exceptions import MlflowException

    if is_model_ref(run_id):
        return load_logged_model(run_id, ctx)
    _check_store(run_id, ctx)
    client = ctx.client
    try:
        client.get_run(run_id)
    except MlflowException:
        raise SpecError(
            f"no run {run_id!r} in {ctx.tracking_uri}; list runs with `litbench ls EXPERIMENT`"
        ) from None
    with tempfile.TemporaryDirectory(prefix="litbench-restore-") as tmp:
        try:
            spec_file = client.download_artifacts(run_id, "spec.yaml", tmp)
            weights_file = client.download_artifacts(run_id, WEIGHTS_ARTIFACT, tmp)
        except (MlflowException, OSError):
            raise SpecError(
                f"run {run_id} has no {WEIGHTS_ARTIFACT} artifact (or no spec.yaml); this needs the "
                "trained weights: train it again with `tracking: {log_checkpoint: true}`"
            ) from None
        return _rebuild(Path(spec_file), Path(weights_file), ctx.data_dir)


def restore_checkpoint(path: Path, data_dir: Path) -> Prepared:
    """A run rebuilt from files on disk: a folder of its artifacts (``mlflow artifacts download -r
    RUN_ID``: ``spec.yaml`` and ``model/weights.pt``), or a ``weights.pt`` with the run's ``spec.yaml``
    in its folder or the folder above."""
    return _rebuild(*checkpoint_files(path), data_dir)


def checkpoint_files(path: Path) -> tuple[Path, Path]:
    """The ``(spec.yaml, weights.pt)`` of a checkpoint: an artifact folder, or a weights file with
    the spec beside it or one folder up; a SpecError saying what is missing otherwise."""
    path = Path(path)
    if path.is_dir():
        weights = next((w for w in (path / WEIGHTS_ARTIFACT, path / "weights.pt") if w.is_file()), None)
        specs = [path / "spec.yaml"]
    else:
        weights = path if path.is_file() else None
        specs = [path.parent / "spec.yaml", path.parent.parent / "spec.yaml"]
    spec = next((s for s in specs if s.is_file()), None)
    if weights is None or spec is None:
        missing = "weights (model/weights.pt)" if weights is None else "spec.yaml of the run"
        raise SpecError(
            f"{path}: found no {missing}. A checkpoint is a run's artifact folder (download it with "
            "`mlflow artifacts download -r RUN_ID -d DIR`) or its weights.pt with spec.yaml beside it "
            "or one folder up; or pass the run id itself."
        )
    return spec, weights


def _rebuild(spec_file: Path, weights_file: Path, data_dir: Path) -> Prepared:
    prepared = prepare(load_run_spec(spec_file), data_dir)
    state = read_state_dict(weights_file)
    try:
        prepared.network.load_state_dict(state)
    except RuntimeError as err:  # another model's weights
        raise SpecError(
            f"{weights_file}: cannot load these weights into the {prepared.spec.model.name} of "
            f"{spec_file} ({str(err).splitlines()[0]}); the weights and the spec must come from the "
            "same run."
        ) from None
    prepared.network.eval()
    return prepared


def predict_run(run_id: str, ctx: Context, out_dir: Path) -> list[Submission]:
    """Write one submission file per unlabelled split of run ``run_id``'s data into ``out_dir``
    and log them to the run under ``submission/``. ``run_id`` may be one of its logged models."""
    prepared = restore_run(run_id, ctx)
    run_id = source_run_id(run_id, ctx)
    if not isinstance(prepared.task, TextClassification):
        raise SpecError(
            f"run {run_id} is a {prepared.task.name.replace('_', ' ')} run; `litbench predict` writes the "
            "predictions of a text classifier on its unlabelled split (translations: `litbench translate`)"
        )
    written = prepared.task.write_predictions(prepared, out_dir)
    for submission in written:
        ctx.client.log_artifact(run_id, str(submission.path), "submission")
    return written
