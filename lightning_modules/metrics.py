"""Task metrics by name, as GLUE and the image benchmarks report them, built from torchmetrics.

A task declares its primary metric and any others (``TaskProtocol.metrics``); the task module logs
each as ``<stage>/<name>``. Classification metrics take class predictions (the argmax of the logits);
regression metrics (one output) take the scalar prediction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import (
    BinaryF1Score,
    MatthewsCorrCoef,
    MulticlassAccuracy,
    MulticlassF1Score,
)
from torchmetrics.regression import MeanSquaredError, PearsonCorrCoef, SpearmanCorrCoef

from core.registry import Registry

TASK_METRICS: Registry[Callable[[int], Metric]] = Registry("metric")


@TASK_METRICS.register("acc")
def accuracy(num_classes: int) -> Metric:
    return MulticlassAccuracy(num_classes, average="micro")


@TASK_METRICS.register("f1")
def f1(num_classes: int) -> Metric:
    """F1 of the positive class for binary tasks (MRPC, QQP, as GLUE reports it), else macro F1."""
    return BinaryF1Score() if num_classes == 2 else MulticlassF1Score(num_classes, average="macro")


@TASK_METRICS.register("mcc")
def matthews(num_classes: int) -> Metric:
    """Matthews correlation (CoLA's metric), robust to the class imbalance accuracy hides."""
    task = "binary" if num_classes == 2 else "multiclass"
    return MatthewsCorrCoef(task=task, num_classes=num_classes)


@TASK_METRICS.register("pearson")
def pearson(num_classes: int) -> Metric:
    return PearsonCorrCoef()


@TASK_METRICS.register("spearman")
def spearman(num_classes: int) -> Metric:
    return SpearmanCorrCoef()


@TASK_METRICS.register("mse")
def mse(num_classes: int) -> Metric:
    return MeanSquaredError()


REGRESSION_METRICS = frozenset({"pearson", "spearman", "mse"})


def metric_collection(names: Sequence[str], num_classes: int) -> MetricCollection:
    """One metric per name; a regression metric on a classifier (or the reverse) is a spec error."""
    regression = num_classes == 1
    for name in names:
        TASK_METRICS.get(name)  # unknown names: one error listing the known ones
        if (name in REGRESSION_METRICS) != regression:
            kind = "regression (one output)" if regression else f"classification ({num_classes} classes)"
            raise ValueError(f"metric {name!r} does not apply to a {kind} task")
    return MetricCollection({name: TASK_METRICS.get(name)(num_classes) for name in dict.fromkeys(names)})


def predictions(outputs: Tensor) -> Tensor:
    """What the metrics compare with the targets: class ids, or the scalar of a regression head."""
    return outputs.squeeze(-1) if outputs.shape[-1] == 1 else outputs.argmax(dim=-1)
