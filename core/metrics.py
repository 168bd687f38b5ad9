"""Every metric litbench tracks, with its direction and range, declared once; and how a task is scored.

Tracked names are ``stage/name`` (``val/acc``, ``test/ppl``, ``train/loss``) or ``perf/name``. A
direction is declared for a metric's name (``acc``: higher is better, ``ppl``: lower) and holds in
every stage; a ``perf/`` metric is declared under its full name. Reports, early stopping, the best
checkpoint, tuning objectives and time-to-target all read ``direction_of``; nothing guesses a
direction from a substring. The range a metric's values can take (``acc`` in [0, 1], ``mcc`` in
[-1, 1], a loss in [0, inf)) is declared beside it and read with ``bounds_of``: a report keeps its
confidence intervals inside it. A new task that logs a new metric declares it with ``declare``.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Literal

from core.errors import InputError
from core.registry import Registry

Direction = Literal["max", "min"]
Bounds = tuple[float, float]  # (low, high); an open end is -inf or inf

UNIT = (0.0, 1.0)  # a proportion
CORRELATION = (-1.0, 1.0)
PERCENT = (0.0, 100.0)  # sacrebleu's BLEU and chrF are reported on 0-100
NONNEGATIVE = (0.0, math.inf)  # losses, errors, sizes, durations, counts


@dataclass(frozen=True)
class MetricDeclaration:
    name: str  # "acc", or a full "perf/..." name
    direction: Direction
    description: str
    bounds: Bounds | None = None  # the values it can take; None: not declared, any real number


METRICS: Registry[MetricDeclaration] = Registry("metric")


class UnknownMetricError(InputError):
    """A tracked metric whose direction nobody declared."""


def declare(
    name: str, direction: Direction, description: str, bounds: Bounds | None = None
) -> MetricDeclaration:
    """Declare a metric's direction (``mae``: "min") and, optionally, the range of its values
    (``(0.0, math.inf)``); raises if ``name`` is declared already."""
    if direction not in ("max", "min"):
        raise ValueError(f"metric {name!r}: direction must be 'max' or 'min', got {direction!r}")
    entry = MetricDeclaration(name, direction, description, _checked_bounds(name, bounds))
    caller = inspect.currentframe().f_back  # the module that declares it, for core.plugins
    return METRICS.add(name, entry, module=caller.f_globals.get("__name__") if caller else None)


def _checked_bounds(name: str, bounds: Bounds | None) -> Bounds | None:
    if bounds is None:
        return None
    low, high = (float(b) for b in bounds)
    if not low < high:  # NaN fails this too
        raise ValueError(f"metric {name!r}: bounds must be (low, high) with low < high, got {bounds!r}")
    return (low, high)


for _name, _direction, _bounds, _text in (
    ("loss", "min", NONNEGATIVE, "the training objective (cross-entropy, MSE) on a split"),
    ("acc", "max", UNIT, "accuracy"),
    ("f1", "max", UNIT, "F1 of the positive class (binary) or macro F1"),
    ("mcc", "max", CORRELATION, "Matthews correlation"),
    ("pearson", "max", CORRELATION, "Pearson correlation of a regression head"),
    ("spearman", "max", CORRELATION, "Spearman correlation of a regression head"),
    ("mse", "min", NONNEGATIVE, "mean squared error of a regression head"),
    ("ppl", "min", (1.0, math.inf), "perplexity: exp of the token-level cross-entropy"),
    ("bleu", "max", PERCENT, "sacrebleu corpus BLEU"),
    ("chrf", "max", PERCENT, "sacrebleu corpus chrF"),
    ("loss_step", "min", NONNEGATIVE, "the training loss of one optimizer step"),
    ("mlm_loss", "min", NONNEGATIVE, "masked-language-model cross-entropy over the masked positions"),
    ("mlm_acc", "max", UNIT, "accuracy of the masked-language-model predictions at the masked positions"),
    # KL and cross-entropy are both >= 0, and so is any mix of them with a in [0, 1]
    (
        "distill_loss",
        "min",
        NONNEGATIVE,
        "the distillation objective: a*T^2*KL(teacher_T || student_T) + (1-a)*CE",
    ),
    (
        "size_mb",
        "min",
        NONNEGATIVE,
        "serialized size in MB of the weights tested as a variant (test_int8/size_mb)",
    ),
    (
        "latency_ms_batch",
        "min",
        NONNEGATIVE,
        "median CPU latency of one test batch (test_<variant>/latency_ms_batch), ms",
    ),
    (
        "latency_ms_example",
        "min",
        NONNEGATIVE,
        "median CPU latency per example (test_<variant>/latency_ms_example), ms",
    ),
    ("perf/fit_time_s", "min", NONNEGATIVE, "wall seconds of the fit"),
    ("perf/train_samples_per_s", "max", NONNEGATIVE, "training samples per second of the fit"),
    (
        "perf/time_to_target_s",
        "min",
        NONNEGATIVE,
        "seconds of fit until val/<metric> first reached the target",
    ),
    (
        "perf/val_elapsed_s",
        "min",
        NONNEGATIVE,
        "seconds of fit until this validation ended (one value per epoch)",
    ),
    ("perf/epochs_to_target", "min", NONNEGATIVE, "epochs until val/<metric> first reached the target"),
    ("perf/best_epoch", "min", NONNEGATIVE, "the epoch of the best validation value (earlier is cheaper)"),
    ("perf/tokenize_s", "min", NONNEGATIVE, "seconds to tokenize the corpus (or read it from the cache)"),
    (
        "perf/teacher_logits_s",
        "min",
        NONNEGATIVE,
        "seconds to compute (or read from the cache) a teacher's logits",
    ),
):
    METRICS.add(_name, MetricDeclaration(_name, _direction, _text, _bounds), module=__name__)


def base_name(tracked: str) -> str:
    """``acc`` for ``val/acc`` and ``test_mismatched/acc``; a ``perf/`` metric keeps its full name."""
    if tracked.startswith("perf/") or "/" not in tracked:
        return tracked
    return tracked.split("/", 1)[1]


def direction_of(tracked: str) -> Direction:
    """Whether higher (``max``) or lower (``min``) values of a tracked metric are better."""
    return _declaration(tracked).direction


def bounds_of(tracked: str) -> Bounds | None:
    """The range a tracked metric's values can take, ``(low, high)`` with open ends as -inf or inf
    (``val/acc``: (0.0, 1.0), ``test/loss``: (0.0, inf)); None when its declaration gives none."""
    return _declaration(tracked).bounds


def _declaration(tracked: str) -> MetricDeclaration:
    name = base_name(tracked)
    if name not in METRICS:
        known = ", ".join(METRICS.names())
        raise UnknownMetricError(
            f"no direction is declared for metric {tracked!r} ({name!r}); declared: {known}. Say which "
            "way is better (e.g. --mode max), or declare it with core.metrics.declare(name, direction, ...)"
        )
    return METRICS.get(name)


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
