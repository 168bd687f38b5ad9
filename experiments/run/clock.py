"""Wall time, throughput and time-to-target of a fit, measured as Lightning sees it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lightning.pytorch import Callback

from core.metrics import TaskProtocol, better

ELAPSED = "perf/val_elapsed_s"  # logged at every validation: seconds of fit until it ended


@dataclass
class EpochMark:
    epoch: int
    elapsed_s: float  # since the start of fit, at the end of this epoch's validation
    value: float  # the task's validation metric


@dataclass
class BenchmarkClock(Callback):
    """Records when each validation ends and how many training samples went through."""

    monitor: str  # e.g. "val/acc"
    scoring: TaskProtocol  # the task's metric (its direction) and time-to-target threshold
    batch_size: Callable[[Any], int] = len  # samples in a training batch: the task kind counts them
    marks: list[EpochMark] = field(default_factory=list)
    train_samples: int = 0
    fit_time_s: float = 0.0
    _start: float = 0.0

    def on_fit_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_fit_end(self, trainer, pl_module) -> None:
        self.fit_time_s = time.perf_counter() - self._start

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.train_samples += self.batch_size(batch)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None:
            return
        elapsed = time.perf_counter() - self._start
        self.marks.append(EpochMark(trainer.current_epoch, elapsed, float(value)))
        # beside val/<metric> at the same step: a report can find the time-to-target of any target
        pl_module.log(ELAPSED, elapsed, on_epoch=True, on_step=False)

    def summary(self) -> dict[str, float]:
        """Metrics for the tracker; time-to-target only when the target was reached."""
        out = {"perf/fit_time_s": self.fit_time_s}
        if self.fit_time_s > 0:
            out["perf/train_samples_per_s"] = self.train_samples / self.fit_time_s
        hit = next((m for m in self.marks if self.scoring.reached(m.value)), None)
        if hit is not None:
            out["perf/time_to_target_s"] = hit.elapsed_s
            out["perf/epochs_to_target"] = float(hit.epoch + 1)
        if self.marks:
            best = self.marks[0]
            for mark in self.marks[1:]:
                if better(self.scoring.mode, mark.value, best.value):
                    best = mark
            out["perf/best_epoch"] = float(best.epoch + 1)
        return out
