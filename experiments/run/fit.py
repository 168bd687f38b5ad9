"""The Lightning side of one run: its Trainer, its callbacks, fit, and test on the best checkpoint."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

from experiments.run.clock import BenchmarkClock
from experiments.run.prepare import Prepared
from experiments.specs import RunSpec


def build_trainer(
    spec: RunSpec, callbacks: list, logger: Any, root_dir: str, automatic_optimization: bool = False
) -> L.Trainer:
    """The Trainer of ``spec``. litbench's task modules step their optimizer themselves and clip their
    own gradients (``lightning_modules.stepping``); a plugin's module that leaves the steps to
    Lightning (``automatic_optimization``) gets ``regularization.grad_clip`` from the Trainer."""
    clip = spec.regularization.grad_clip if automatic_optimization else 0.0
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
        gradient_clip_val=clip or None,
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


def fit_and_test(
    prepared: Prepared,
    logger: Any,
    workdir: str,
    extra_callbacks: Sequence[L.Callback] = (),
    after_fit: Callable[[], None] | None = None,
) -> tuple[L.Trainer, list, BenchmarkClock]:
    """Fit, then test on the best validation checkpoint (kept in ``workdir``, shared by all ranks).

    The checkpoint, early stopping and the clock watch ``val/<the task's metric>`` in the direction
    that metric declares (``core.metrics``).
    """
    spec, task = prepared.spec, prepared.task
    scoring = task.scoring(prepared.datamodule)
    monitor, mode = f"val/{scoring.metric}", scoring.mode
    clock = BenchmarkClock(monitor=monitor, scoring=scoring, batch_size=task.batch_size)
    best = ModelCheckpoint(
        dirpath=workdir,
        filename="best",
        monitor=monitor,
        mode=mode,
        save_top_k=1,
        save_weights_only=True,
        enable_version_counter=False,
    )
    callbacks = [clock, best, *extra_callbacks]
    if spec.regularization.early_stopping:
        patience = spec.regularization.early_stopping
        callbacks.append(EarlyStopping(monitor=monitor, mode=mode, patience=patience))
    trainer = build_trainer(spec, callbacks, logger, workdir, prepared.module.automatic_optimization)
    trainer.fit(prepared.module, datamodule=prepared.datamodule)
    if after_fit is not None:
        trainer.strategy.barrier("litbench-after-fit")  # what rank 0 wrote during fit is in place
        after_fit()
    ckpt_path = "best" if best.best_model_path else None
    tested = trainer.test(prepared.module, datamodule=prepared.datamodule, ckpt_path=ckpt_path, verbose=False)
    return trainer, tested, clock
