"""One RunSpec -> its task kind's datamodule, network and LightningModule -> fit, test -> one tracked
MLflow run.

Everything that can be checked without training (the spec, the model against the data, the optimizer's
options, the data files) is checked before the MLflow run is created, so a bad input leaves nothing
half-written. Once the run exists, any exception ends it as FAILED with the reason in the
``litbench.failure`` tag; an exception the caller lists in ``stop_on`` (a tuning trial's pruning) ends
it as KILLED instead, with the same tag, and raises RunStoppedError rather than RunFailedError.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
import yaml

from core import tags as tag
from core.context import Context
from core.datasets import DataSplit
from core.errors import SpecError
from experiments import claims, tracking
from experiments.environment import launched_rank, quiet_libraries
from experiments.run.buffered_logger import BufferedMLFlowLogger
from experiments.run.datasets import log_dataset_inputs, run_splits
from experiments.run.fit import fit_and_test
from experiments.run.lineage import init_weights, resolve_refs, teacher_targets
from experiments.run.logged_model import log_best_model
from experiments.run.prepare import Prepared, prepare
from experiments.specs import RunSpec
from lightning_modules.architectures import count_parameters
from lightning_modules.quantize import check_variant
from tasks.variants import evaluate_variants

WORKDIR_ENV = "LITBENCH_RUN_WORKDIR"  # the checkpoint folder rank 0 shares with the other DDP ranks


class RunFailedError(RuntimeError):
    """A tracked run that ended FAILED; ``result`` holds its id and reason."""

    def __init__(self, result: RunResult) -> None:
        super().__init__(f"run {result.run_name} ({result.run_id}) failed: {result.failure}")
        self.result = result


class RunStoppedError(RuntimeError):
    """A tracked run that a caller's ``stop_on`` exception ended early (KILLED, not a failure)."""

    def __init__(self, result: RunResult) -> None:
        super().__init__(f"run {result.run_name} ({result.run_id}) stopped: {result.failure}")
        self.result = result


@dataclass
class RunResult:
    run_id: str
    run_name: str
    spec_hash: str
    status: str  # FINISHED, FAILED, or KILLED (interrupted, or stopped by a ``stop_on`` exception)
    metrics: dict[str, float] = field(default_factory=dict)
    failure: str | None = None


@dataclass
class MlflowArtifacts:
    """The task kind's ``ArtifactSink``: files made in ``workdir``, logged to the run."""

    client: object
    run_id: str
    workdir: Path

    def log(self, path: Path, folder: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), folder)


def run_tags(prepared: Prepared, run_name: str) -> dict[str, str]:
    """What every run records about its task: its kind, metric, direction, target and budget."""
    scoring = prepared.task.scoring(prepared.datamodule)
    found = {
        tag.SPEC_HASH: prepared.spec.spec_hash,
        tag.CONFIG: run_name,
        tag.TASK_KIND: prepared.task.name,
        tag.TASK_METRIC: scoring.metric,
        tag.TASK_MODE: scoring.mode,
        tag.TASK_BUDGET: str(scoring.max_epochs),
    }
    if scoring.target is not None:
        found[tag.TASK_TARGET] = str(scoring.target)
    return found


def execute(
    spec: RunSpec,
    ctx: Context,
    *,
    experiment: str,
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
    attempt: int | None = None,
    extra_callbacks: Sequence[L.Callback] = (),
    stop_on: tuple[type[BaseException], ...] = (),
    after_fit: Callable[[], None] | None = None,
) -> RunResult:
    """Train, test and track one run in ``ctx``'s store. Returns a FINISHED result or raises
    RunFailedError.

    ``extra_callbacks`` join the trainer's own (a tuning trial's pruning callback). An exception of a
    type in ``stop_on`` ends the run as KILLED and raises RunStoppedError (the exception is its cause).
    ``after_fit`` is called on every rank once all ranks have fitted, before the test: a DDP tuning
    trial raises its pruning there, on every rank alike, so no rank is left waiting in the test.

    Under DDP the launcher starts this same command again for every other rank; those processes
    train with the same spec but track nothing, so a DDP run is one tracked run.
    """
    quiet_libraries()
    spec = resolve_refs(spec, ctx)  # a parent's or teacher's hash is part of this run's identity
    if launched_rank() > 0:
        return _execute_other_rank(spec, ctx, experiment, extra_callbacks, after_fit)
    prepared = prepare(spec, ctx.data_dir)
    strategy_tags, strategy_metrics = _apply_strategies(prepared, ctx, experiment)
    run_name = run_name or spec.default_run_name()
    client = ctx.client
    all_tags = {
        **run_tags(prepared, run_name),
        **strategy_tags,
        **tracking.environment_tags(),
        **claims.worker_tags(attempt),
        **(tags or {}),
    }
    run = client.create_run(ctx.experiment_id(experiment), run_name=run_name, tags=all_tags)
    run_id = run.info.run_id
    result = RunResult(run_id, run_name, spec.spec_hash, "RUNNING")
    try:
        params = spec.flat_params()
        params["model.num_params"] = count_parameters(prepared.network)
        params.update({f"data.size.{k}": v for k, v in prepared.datamodule.sizes().items()})
        params.update(prepared.task.tracking_params(prepared.datamodule))
        params.update(tag.axis_params(all_tags))  # the grid's axes, first in MLflow's compare view
        tracking.log_params(client, run_id, params)
        splits = run_splits(prepared)
        log_dataset_inputs(client, run_id, splits)
        logger = BufferedMLFlowLogger(
            experiment_name=experiment, tracking_uri=ctx.tracking_uri, run_id=run_id
        )
        with claims.Heartbeat(client, run_id), tempfile.TemporaryDirectory(prefix="litbench-") as workdir:
            os.environ[WORKDIR_ENV] = workdir  # DDP ranks started during fit inherit it
            trainer, tested, clock = fit_and_test(prepared, logger, workdir, extra_callbacks, after_fit)
            summary = clock.summary() | prepared.task.fit_metrics(prepared.datamodule) | strategy_metrics
            summary |= _test_variants(prepared, client, run_id)
            logger.log_metrics(summary, step=trainer.global_step)
            logger.wait()
            sink = MlflowArtifacts(client, run_id, Path(workdir))
            _log_artifacts(prepared, sink, run_name, trainer.global_step, splits.get("test"))
        # one dict per test set (MNLI has two); their keys differ by stage name
        result.metrics = {k: float(v) for results in tested for k, v in results.items()} | summary
        client.set_terminated(run_id, "FINISHED")
        result.status = "FINISHED"
        return result
    except BaseException as err:
        stopped = isinstance(err, stop_on)
        result.status = "KILLED" if stopped or isinstance(err, KeyboardInterrupt) else "FAILED"
        result.failure = one_line(err)
        client.set_tag(run_id, tag.FAILURE, result.failure)
        client.set_terminated(run_id, result.status)
        if isinstance(err, KeyboardInterrupt | SystemExit):
            raise
        if stopped:
            raise RunStoppedError(result) from err
        raise RunFailedError(result) from err
    finally:
        os.environ.pop(WORKDIR_ENV, None)


def _apply_strategies(prepared: Prepared, ctx: Context, experiment: str) -> tuple[dict, dict]:
    """Start from the parent's weights and learn from the teacher, as the spec asks; the lineage tags
    and the metrics (the teacher's logit time) the run records. Raises before the run exists."""
    spec, found_tags, metrics = prepared.spec, {}, {}
    for variant in spec.variants:  # a variant the model cannot take is refused before training
        try:
            check_variant(prepared.network, variant, model=spec.model.name)
        except ValueError as err:
            raise SpecError(f"variants: {err}") from None
    if spec.model.init_from is not None:
        found_tags |= init_weights(prepared, ctx, experiment)
    if spec.distill is not None:
        teacher = teacher_targets(prepared, ctx, experiment)
        prepared.module.distill_from(teacher.soft_targets)
        prepared.datamodule.index_train_batches = True
        found_tags |= teacher.tags
        metrics["perf/teacher_logits_s"] = teacher.seconds
    return found_tags, metrics


def _test_variants(prepared: Prepared, client, run_id: str) -> dict[str, float]:
    """The best weights tested again as the spec's variants, on the CPU in this process: their task
    metrics, sizes and latencies (``test_int8/acc``, ``test_int8/size_mb``, ...)."""
    spec = prepared.spec
    if not spec.variants:
        return {}
    scoring = prepared.task.scoring(prepared.datamodule)
    prepared.network = prepared.network.cpu()
    report = evaluate_variants(
        prepared.network,
        prepared.datamodule,
        spec.variants,
        (scoring.metric, *scoring.metrics),
        prepared.datamodule.num_classes,
        model=spec.model.name,
    )
    params = {f"variants.{name}_backend": backend for name, backend in report.backends.items()}
    tracking.log_params(client, run_id, params | {"variants.threads": report.threads})
    return report.metrics


def _execute_other_rank(
    spec: RunSpec,
    ctx: Context,
    experiment: str,
    extra_callbacks: Sequence[L.Callback] = (),
    after_fit: Callable[[], None] | None = None,
) -> RunResult:
    """A DDP rank other than 0: the same fit and test (and callbacks: they may talk across ranks),
    no tracking; rank 0 owns the run. DDP hands every rank rank 0's initial weights, so an
    ``init_from`` is loaded there only; a distilled run's soft targets are read here from the cache
    rank 0 wrote before the fit started."""
    prepared = prepare(spec, ctx.data_dir)
    if spec.distill is not None:
        _apply_strategies(prepared, ctx, experiment)
    workdir = os.environ.get(WORKDIR_ENV)
    if not workdir:
        raise RuntimeError(f"DDP rank {launched_rank()} started without {WORKDIR_ENV} from rank 0")
    fit_and_test(prepared, False, workdir, extra_callbacks, after_fit)
    return RunResult("", spec.default_run_name(), spec.spec_hash, "FINISHED")


def _log_artifacts(
    prepared: Prepared, sink: MlflowArtifacts, name: str, step: int, test: DataSplit | None
) -> None:
    """The spec, the best weights and their logged model (unless switched off), then the task kind's
    own artifacts."""
    spec = prepared.spec
    spec_file = sink.workdir / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    sink.log(spec_file)
    prepared.network = prepared.network.cpu()
    if spec.tracking.log_checkpoint:
        # A plain state_dict of the network: loads with torch.load(weights_only=True), no Lightning needed.
        weights = sink.workdir / "weights.pt"
        torch.save(prepared.network.state_dict(), weights)
        sink.log(weights, "model")
        log_best_model(sink.client, sink.run_id, name, (spec_file, weights), spec.flat_params(), step, test)
    prepared.task.log_artifacts(prepared, sink, spec.tracking.heatmaps)


def one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or "(no message)"
    return f"{type(err).__name__}: {text}"[:5000]
