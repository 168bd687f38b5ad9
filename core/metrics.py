"""Every metric litbench tracks, with its direction, declared once; and how a task is scored.

Tracked names are ``stage/name`` (``val/acc``, ``test/ppl``, ``train/loss``) or ``perf/name``. A
direction is declared for a metric's name (``acc``: higher is better, ``ppl``: lower) and holds in
every stage; a ``perf/`` metric is declared under its full name. Reports, early stopping, the best
checkpoint, tuning objectives and time-to-target all read ``direction_of``; nothing guesses a
direction from a substring. A new task that logs a new metric declares it with ``declare``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Literal

from core.errors import InputError
from core.registry import Registry

Direction = Literal["max", "min"]


@dataclass(frozen=True)
class MetricDeclaration:
    name: str  # "acc", or a full "perf/..." name
    direction: Direction
    description: str


METRICS: Registry[MetricDeclaration] = Registry("metric")


class UnknownMetricError(InputError):
    """A tracked metric whose direction nobody declared."""


def declare(name: str, direction: Direction, description: str) -> MetricDeclaration:
    """Declare a metric's direction (``mae``: "min"); raises if ``name`` is declared already."""
    if direction not in ("max", "min"):
        raise ValueError(f"metric {name!r}: direction must be 'max' or 'min', got {direction!r}")
    entry = MetricDeclaration(name, direction, description)
    caller = inspect.currentframe().f_back  # the module that declares it, for core.plugins
    return METRICS.add(name, entry, module=caller.f_globals.get("__name__") if caller else None)


for _name, _direction, _text in (
    ("loss", "min", "the training objective (cross-entropy, MSE) on a split"),
    ("acc", "max", "accuracy"),
    ("f1", "max", "F1 of the positive class (binary) or macro F1"),
    ("mcc", "max", "Matthews correlation"),
    ("pearson", "max", "Pearson correlation of a regression head"),
    ("spearman", "max", "Spearman correlation of a regression head"),
    ("mse", "min", "mean squared error of a regression head"),
    ("ppl", "min", "perplexity: exp of the token-level cross-entropy"),
    ("bleu", "max", "sacrebleu corpus BLEU"),
    ("chrf", "max", "sacrebleu corpus chrF"),
    ("loss_step", "min", "the training loss of one optimizer step"),
    ("mlm_loss", "min", "masked-language-model cross-entropy over the masked positions"),
    ("mlm_acc", "max", "accuracy of the masked-language-model predictions at the masked positions"),
    ("distill_loss", "min", "the distillation objective: a*T^2*KL(teacher_T || student_T) + (1-a)*CE"),
    ("size_mb", "min", "serialized size in MB of the weights tested as a variant (test_int8/size_mb)"),
    ("latency_ms_batch", "min", "median CPU latency of one test batch (test_<variant>/latency_ms_batch), ms"),
    ("latency_ms_example", "min", "median CPU latency per example (test_<variant>/latency_ms_example), ms"),
    ("perf/fit_time_s", "min", "wall seconds of the fit"),
    ("perf/train_samples_per_s", "max", "training samples per second of the fit"),
    ("perf/time_to_target_s", "min", "seconds of fit until val/<metric> first reached the target"),
    ("perf/epochs_to_target", "min", "epochs until val/<metric> first reached the target"),
    ("perf/best_epoch", "min", "the epoch of the best validation value (earlier is cheaper)"),
    ("perf/tokenize_s", "min", "seconds to tokenize the corpus (or read it from the cache)"),
    ("perf/teacher_logits_s", "min", "seconds to compute (or read from the cache) a teacher's logits"),
):
    METRICS.add(_name, MetricDeclaration(_name, _direction, _text), module=__name__)


def base_name(tracked: str) -> str:
    """``acc`` for ``val/acc`` and ``test_mismatched/acc``; a ``perf/`` metric keeps its full name."""
    if tracked.startswith("perf/") or "/" not in tracked:
        return tracked
    return tracked.split("/", 1)[1]


def direction_of(tracked: str) -> Direction:
    """Whether higher (``max``) or lower (``min``) values of a tracked metric are better."""
    name = base_name(tracked)
    if name not in METRICS:
        known = ", ".join(METRICS.names())
        raise UnknownMetricError(
            f"no direction is declared for metric {tracked!r} ({name!r}); declared: {known}. Say which "
            "way is better (e.g. --mode max), or declare it with core.metrics.declare(name, direction, ...)"
        )
    return METRICS.get(name).direction


def is_declared(tracked: str) -> bool:
    return base_name(tracked) in METRICS


def better(direction: Direction, a: float, b: float) -> bool:
    """Whether ``a`` is strictly better than ``b``."""
    return a > b if direction == "max" else a < b


@dataclass(frozen=True, kw_only=True)  # keyword-only: defaults come before the required fields
class TaskProtocol:
    """How a task is scored: its primary metric (logged as ``val/<metric>``, ``test/<metric>``), the
    metrics logged beside it, a time-to-target threshold and the default epoch budget.

    The direction is never stated here: it is the metric's declared one (``mode``).
    """

    metric: str = "acc"  # the primary metric: reports rank by it, early stopping and checkpoints watch it
    metrics: tuple[str, ...] = ()  # further metrics logged beside it, e.g. ("acc",) next to MRPC's F1
    # time-to-target is the first time val/<metric> reaches this (in its direction); None: no target
    target: float | None
    max_epochs: int  # the default epoch budget: recorded on every run, the horizon of time-to-target

    def __post_init__(self) -> None:
        for name in (self.metric, *self.metrics):
            direction_of(name)  # every metric a task scores by has a declared direction
        if self.max_epochs < 1:
            raise ValueError(f"a task's epoch budget must be at least 1, got {self.max_epochs}")

    @property
    def mode(self) -> Direction:
        return direction_of(self.metric)

    def reached(self, value: float) -> bool:
        """Whether a validation value of the primary metric meets the target."""
        if self.target is None or value != value:  # NaN never reaches
            return False
        return value >= self.target if self.mode == "max" else value <= self.target
