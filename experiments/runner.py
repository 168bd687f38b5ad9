"""One RunSpec -> datamodule + network + LightningModule + Trainer -> fit, test -> one tracked MLflow run.

Everything that can be checked without training (the data files, the model's options, the optimizer's
options) is checked before the MLflow run is created, so a bad input leaves nothing half-written. Once
the run exists, any exception ends it as FAILED with the reason in the ``litbench.failure`` tag;
an exception the caller lists in ``stop_on`` (a tuning trial's pruning) ends it as KILLED instead,
with the same tag, and raises RunStoppedError rather than RunFailedError.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

from datamodules import create_datamodule
from experiments import claims, tracking
from experiments.buffered_logger import BufferedMLFlowLogger, FlushMetricsAtEpochEnd
from experiments.clock import BenchmarkClock
from experiments.environment import launched_rank, quiet_libraries
from experiments.specs import DecodingSpec, RunSpec, SpecError, options_model
from lightning_modules.architectures import count_parameters, create_model
from lightning_modules.attention_figures import save_attention_figure
from lightning_modules.classification import ClassificationModule
from lightning_modules.interpret import saliency_maps, save_saliency_figure
from lightning_modules.metrics import predictions as predictions_of
from lightning_modules.optim import build_optimizer

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
class Prepared:
    """What a run needs that can be built and checked before anything is tracked."""

    spec: RunSpec
    datamodule: Any
    network: torch.nn.Module
    module: L.LightningModule  # ClassificationModule, or Seq2SeqModule for a translation corpus


def prepare(spec: RunSpec, data_dir: Path) -> Prepared:
    """Seed, load and check the data, build the network and its task module. Raises before tracking."""
    L.seed_everything(spec.seed, workers=True, verbose=False)
    data_options = options_model("data", spec.data.name).model_validate(spec.data.options)
    datamodule = create_datamodule(
        spec.data.name,
        data_dir=str(data_dir),
        seed=spec.seed,
        augment=spec.regularization.augment,
        **dict(data_options),
    )
    datamodule.prepare_data()
    datamodule.setup("fit")
    model_options = options_model("model", spec.model.name).model_validate(spec.model.options)
    if _translates(spec, datamodule):
        return _prepare_seq2seq(spec, datamodule, dict(model_options))
    # a text datamodule tells a text model its vocabulary and whether inputs are sentence pairs
    token_inputs = datamodule.token_inputs() if hasattr(datamodule, "token_inputs") else None
    try:
        network = create_model(
            spec.model.name,
            input_shape=datamodule.input_shape,
            num_classes=datamodule.num_classes,
            dropout=spec.regularization.dropout,
            token_inputs=token_inputs,
            **dict(model_options),
        )
    except (TypeError, ValueError) as err:  # the model does not fit the data, or bad option values
        raise SpecError(f"model {spec.model.name!r} with data {spec.data.name!r}: {err}") from None
    # Build the optimizer once on the real parameters: a bad option combination fails here, not mid-run.
    try:
        build_optimizer(spec.optimizer, network.named_parameters(), weight_decay=spec.regularization.l2)
    except ValueError as err:
        raise SpecError(f"optimizer {spec.optimizer.name!r}: {err}") from None
    module = ClassificationModule(
        network,
        num_classes=datamodule.num_classes,
        optimizer=spec.optimizer,
        schedule=spec.schedule,
        regularization=spec.regularization,
        metric=datamodule.protocol.metric,
        extra_metrics=datamodule.protocol.metrics,
        test_stages=getattr(datamodule, "eval_splits", ("test",)),
    )
    return Prepared(spec, datamodule, network, module)


def _translates(spec: RunSpec, datamodule: Any) -> bool:
    """Whether this is a translation run; a seq2seq model on classification data (or the reverse) is
    a SpecError naming the models that fit."""
    from lightning_modules.architectures import MODELS
    from lightning_modules.architectures.seq2seq import SEQ2SEQ_MODELS

    seq2seq_model = spec.model.name in SEQ2SEQ_MODELS
    parallel_data = hasattr(datamodule, "references")
    if seq2seq_model != parallel_data:
        fitting = (SEQ2SEQ_MODELS if parallel_data else MODELS).names()
        what = "a translation corpus" if parallel_data else "classification data"
        raise SpecError(
            f"model {spec.model.name!r} does not fit data {spec.data.name!r} ({what}); choose one of: "
            f"{', '.join(fitting)}"
        )
    return parallel_data


def _prepare_seq2seq(spec: RunSpec, datamodule: Any, model_options: dict[str, Any]) -> Prepared:
    from lightning_modules.architectures.seq2seq import create_seq2seq_model
    from lightning_modules.seq2seq import Seq2SeqModule

    try:
        network = create_seq2seq_model(
            spec.model.name, dropout=spec.regularization.dropout, **datamodule.token_inputs(), **model_options
        )
    except (TypeError, ValueError) as err:
        raise SpecError(f"model {spec.model.name!r} with data {spec.data.name!r}: {err}") from None
    try:
        build_optimizer(spec.optimizer, network.named_parameters(), weight_decay=spec.regularization.l2)
    except ValueError as err:
        raise SpecError(f"optimizer {spec.optimizer.name!r}: {err}") from None
    decoding = spec.decoding or DecodingSpec()
    module = Seq2SeqModule(
        network,
        spec.optimizer,
        spec.schedule,
        spec.regularization,
        pad_id=datamodule.pad_id,
        bos_id=datamodule.bos_id,
        eos_id=datamodule.eos_id,
        detokenize=datamodule.decode,
        references=datamodule.references,
        sources=datamodule.sources,
        teacher_forcing=decoding.teacher_forcing,
        beam_size=decoding.beam_size,
        length_penalty=decoding.length_penalty,
        max_len_ratio=decoding.max_len_ratio,
        max_len_extra=decoding.max_len_extra,
        val_beam_size=decoding.val_beam_size,
    )
    return Prepared(spec, datamodule, network, module)


def build_trainer(spec: RunSpec, callbacks: list, logger: Any, root_dir: str) -> L.Trainer:
    reg = spec.regularization
    return L.Trainer(
        max_epochs=spec.trainer.max_epochs,
        max_time=None if spec.trainer.max_minutes is None else timedelta(minutes=spec.trainer.max_minutes),
        accelerator=spec.trainer.accelerator,
        devices=spec.trainer.devices,
        strategy=spec.trainer.strategy,
        precision=spec.trainer.precision,
        limit_train_batches=spec.trainer.limit_train_batches,
        limit_val_batches=spec.trainer.limit_val_batches,
        limit_test_batches=spec.trainer.limit_test_batches,
        deterministic=spec.trainer.deterministic,
        gradient_clip_val=reg.grad_clip or None,
        gradient_clip_algorithm="norm",
        log_every_n_steps=spec.tracking.log_every_n_steps,
        num_sanity_val_steps=0,
        # Our loaders shard themselves across ranks; Lightning's sampler injection needs a DataLoader.
        use_distributed_sampler=False,
        enable_model_summary=False,
        enable_progress_bar=sys.stderr.isatty(),
        default_root_dir=root_dir,
        logger=logger,
        callbacks=callbacks,
    )


def execute(
    spec: RunSpec,
    *,
    experiment: str,
    tracking_uri: str,
    data_dir: Path,
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
    attempt: int | None = None,
    extra_callbacks: Sequence[L.Callback] = (),
    stop_on: tuple[type[BaseException], ...] = (),
    after_fit: Callable[[], None] | None = None,
) -> RunResult:
    """Train, test and track one run. Returns a FINISHED result or raises RunFailedError.

    ``extra_callbacks`` join the trainer's own (a tuning trial's pruning callback). An exception of a
    type in ``stop_on`` ends the run as KILLED and raises RunStoppedError (the exception is its cause).
    ``after_fit`` is called on every rank once all ranks have fitted, before the test: a DDP tuning
    trial raises its pruning there, on every rank alike, so no rank is left waiting in the test.

    Under DDP the launcher starts this same command again for every other rank; those processes
    train with the same spec but track nothing, so a DDP run is one tracked run.
    """
    quiet_libraries()
    if launched_rank() > 0:
        return _execute_other_rank(spec, data_dir, extra_callbacks, after_fit)
    prepared = prepare(spec, data_dir)
    run_name = run_name or spec.default_run_name()
    protocol = prepared.datamodule.protocol
    client = tracking.client_for(tracking_uri)
    experiment_id = tracking.experiment_id_for(client, experiment, tracking_uri)
    run_tags = {
        tracking.TAG_SPEC_HASH: spec.spec_hash,
        tracking.TAG_CONFIG: run_name,
        tracking.TAG_TASK_METRIC: protocol.metric,
        tracking.TAG_TASK_MODE: protocol.mode,
        tracking.TAG_TASK_TARGET: str(protocol.target),
        **tracking.environment_tags(),
        **claims.worker_tags(attempt),
        **(tags or {}),
    }
    run = client.create_run(experiment_id, run_name=run_name, tags=run_tags)
    run_id = run.info.run_id
    result = RunResult(run_id, run_name, spec.spec_hash, "RUNNING")
    try:
        params = spec.flat_params()
        params["model.num_params"] = count_parameters(prepared.network)
        params.update({f"data.size.{k}": v for k, v in prepared.datamodule.sizes().items()})
        if hasattr(prepared.datamodule, "tracking_params"):  # e.g. a text task's fitted vocabulary size
            params.update(prepared.datamodule.tracking_params())
        tracking.log_params(client, run_id, params)
        logger = BufferedMLFlowLogger(experiment_name=experiment, tracking_uri=tracking_uri, run_id=run_id)
        with claims.Heartbeat(client, run_id), tempfile.TemporaryDirectory(prefix="litbench-") as workdir:
            os.environ[WORKDIR_ENV] = workdir  # DDP ranks started during fit inherit it
            trainer, tested, clock = _fit_and_test(prepared, logger, workdir, extra_callbacks, after_fit)
            summary = clock.summary()
            if (
                getattr(prepared.datamodule, "tokenize_s", None) is not None
            ):  # text: tokenizing or a cache read
                summary["perf/tokenize_s"] = prepared.datamodule.tokenize_s
            logger.log_metrics(summary, step=trainer.global_step)
            logger.wait()
            _log_artifacts(prepared, client, run_id, Path(workdir))
        # one dict per test set (MNLI has two); their keys differ by stage name
        result.metrics = {k: float(v) for results in tested for k, v in results.items()} | summary
        client.set_terminated(run_id, "FINISHED")
        result.status = "FINISHED"
        return result
    except BaseException as err:
        stopped = isinstance(err, stop_on)
        result.status = "KILLED" if stopped or isinstance(err, KeyboardInterrupt) else "FAILED"
        result.failure = _one_line(err)
        client.set_tag(run_id, tracking.TAG_FAILURE, result.failure)
        client.set_terminated(run_id, result.status)
        if isinstance(err, KeyboardInterrupt | SystemExit):
            raise
        if stopped:
            raise RunStoppedError(result) from err
        raise RunFailedError(result) from err
    finally:
        os.environ.pop(WORKDIR_ENV, None)


def _execute_other_rank(
    spec: RunSpec,
    data_dir: Path,
    extra_callbacks: Sequence[L.Callback] = (),
    after_fit: Callable[[], None] | None = None,
) -> RunResult:
    """A DDP rank other than 0: the same fit and test (and callbacks: they may talk across ranks),
    no tracking; rank 0 owns the run."""
    prepared = prepare(spec, data_dir)
    workdir = os.environ.get(WORKDIR_ENV)
    if not workdir:
        raise RuntimeError(f"DDP rank {launched_rank()} started without {WORKDIR_ENV} from rank 0")
    _fit_and_test(prepared, False, workdir, extra_callbacks, after_fit)
    return RunResult("", spec.default_run_name(), spec.spec_hash, "FINISHED")


def _fit_and_test(
    prepared: Prepared,
    logger: Any,
    workdir: str,
    extra_callbacks: Sequence[L.Callback] = (),
    after_fit: Callable[[], None] | None = None,
) -> tuple[L.Trainer, list, BenchmarkClock]:
    """Fit, then test on the best validation checkpoint (kept in ``workdir``, shared by all ranks)."""
    spec, datamodule = prepared.spec, prepared.datamodule
    protocol = datamodule.protocol
    monitor = f"val/{protocol.metric}"
    clock = BenchmarkClock(monitor=monitor, mode=protocol.mode, target=protocol.target)
    best = ModelCheckpoint(
        dirpath=workdir,
        filename="best",
        monitor=monitor,
        mode=protocol.mode,
        save_top_k=1,
        save_weights_only=True,
        enable_version_counter=False,
    )
    callbacks = [clock, best, FlushMetricsAtEpochEnd(), *extra_callbacks]
    if spec.regularization.early_stopping:
        patience = spec.regularization.early_stopping
        callbacks.append(EarlyStopping(monitor=monitor, mode=protocol.mode, patience=patience))
    trainer = build_trainer(spec, callbacks, logger, workdir)
    trainer.fit(prepared.module, datamodule=datamodule)
    if after_fit is not None:
        trainer.strategy.barrier("litbench-after-fit")  # what rank 0 wrote during fit is in place
        after_fit()
    ckpt_path = "best" if best.best_model_path else None
    tested = trainer.test(prepared.module, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False)
    return trainer, tested, clock


def _log_artifacts(prepared: Prepared, client, run_id: str, workdir: Path) -> None:
    spec, network = prepared.spec, prepared.network
    spec_file = workdir / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    client.log_artifact(run_id, str(spec_file))
    network = network.cpu()
    if spec.tracking.log_checkpoint:
        # A plain state_dict of the network: loads with torch.load(weights_only=True), no Lightning needed.
        weights = workdir / "weights.pt"
        torch.save(network.state_dict(), weights)
        client.log_artifact(run_id, str(weights), "model")
    for stage, rows in getattr(prepared.module, "hypotheses", {}).items():  # a translation run's output
        if stage != "val":
            path = workdir / f"{stage}.txt"  # one line per source sentence, in the corpus's order
            path.write_text("".join(f"{text}\n" for _, text in sorted(rows)))
            client.log_artifact(run_id, str(path), "translations")
    if spec.tracking.heatmaps and hasattr(prepared.datamodule, "references"):
        figure = _alignment_figure(prepared, network, spec.tracking.heatmaps, workdir / "attention.png")
        if figure is not None:
            client.log_artifact(run_id, str(figure), "heatmaps")
    elif spec.tracking.heatmaps and hasattr(prepared.datamodule, "token_inputs"):
        if hasattr(network, "attention_maps"):  # attention models only; recurrent/bag encoders have none
            figure = _attention_figure(prepared, network, spec.tracking.heatmaps, workdir / "attention.png")
            client.log_artifact(run_id, str(figure), "heatmaps")
    elif spec.tracking.heatmaps:
        images, labels = prepared.datamodule.sample_batch(spec.tracking.heatmaps)
        images, labels = images.cpu(), labels.cpu()
        with torch.no_grad():
            predictions = network.eval()(images).argmax(dim=1)
        maps = saliency_maps(network, images)
        figure = save_saliency_figure(images, maps, labels, predictions, workdir / "saliency.png")
        client.log_artifact(run_id, str(figure), "heatmaps")


def _alignment_figure(prepared: Prepared, network: torch.nn.Module, count: int, path: Path) -> Path | None:
    """A translation model's attention over the source at each word it writes, for the first
    ``count`` (at most 4) test sentences, decoded greedily; None for a model without attention."""
    import math

    from lightning_modules.attention_figures import save_alignment_figure
    from lightning_modules.decoding import greedy_decode_with_attention

    datamodule, decoding = prepared.datamodule, prepared.spec.decoding or DecodingSpec()
    sources = datamodule.sources("test")[: min(count, 4)]
    ids = datamodule.encode(sources, "source")
    lengths = torch.tensor([max(1, len(row)) for row in ids])
    src = torch.full((len(ids), int(lengths.max())), datamodule.pad_id, dtype=torch.long)
    for row, tokens in enumerate(ids):
        src[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
    max_len = math.ceil(decoding.max_len_ratio * int(lengths.max()) + decoding.max_len_extra)
    hypotheses, attention = greedy_decode_with_attention(
        network, src, lengths, datamodule.bos_id, datamodule.eos_id, max_len
    )
    if attention is None:
        return None

    def pieces(tokenizer, row: list[int]) -> list[str]:
        return [tokenizer.id_to_token(i) or "?" for i in row]

    source_tokens = [pieces(datamodule.src_tokenizer, row) for row in ids]
    target_tokens = [[*pieces(datamodule.tgt_tokenizer, row), "</s>"] for row in hypotheses]
    titles = [datamodule.decode(row)[:40] for row in hypotheses]
    return save_alignment_figure(list(attention), source_tokens, target_tokens, titles, path)


def _attention_figure(prepared: Prepared, network: torch.nn.Module, count: int, path: Path) -> Path:
    """The last layer's head-averaged attention over the first ``count`` (at most 4) dev sentences."""
    inputs, labels, tokens = prepared.datamodule.sample_batch(min(count, 4))
    with torch.no_grad():
        predictions = predictions_of(network.eval()(inputs))
    names = prepared.datamodule.label_names
    shown = lambda v: names[int(v)] if names else f"{float(v):.2f}"  # noqa: E731  (scores for STS-B)
    titles = [f"y={shown(y)}  ŷ={shown(p)}" for y, p in zip(labels, predictions, strict=True)]
    return save_attention_figure(network.attention_maps(inputs), tokens, titles, path)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or "(no message)"
    return f"{type(err).__name__}: {text}"[:5000]
