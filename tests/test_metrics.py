"""The GLUE metrics the task module logs, against values computed by hand on fixed predictions."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_modules.classification import ClassificationModule
from lightning_modules.metrics import metric_collection
from lightning_modules.optim import OptimizerFactory, ScheduleFactory
from lightning_modules.regularization import LossOptions

# 10 binary predictions: TP = 4, TN = 3, FP = 2, FN = 1
PREDICTED = [1, 1, 1, 1, 0, 0, 0, 1, 1, 0]
TARGETS = [1, 1, 1, 1, 0, 0, 0, 0, 0, 1]
TP, TN, FP, FN = 4, 3, 2, 1


def _logged(num_classes: int, outputs: torch.Tensor, targets: torch.Tensor, metric: str, extra=()) -> dict:
    """What `trainer.test` logs for a network whose outputs are the given ones (split in 2 batches)."""
    module = ClassificationModule(
        nn.Identity(), num_classes, OptimizerFactory(), ScheduleFactory(), LossOptions(), metric, extra
    )
    batches = DataLoader(TensorDataset(outputs, targets), batch_size=len(targets) // 2)
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    return trainer.test(module, dataloaders=batches, verbose=False)[0]


def _binary_logits(predicted: list[int]) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(predicted), 2).float()


def test_cola_logs_matthews_correlation() -> None:
    logged = _logged(2, _binary_logits(PREDICTED), torch.tensor(TARGETS), "mcc")
    expected = (TP * TN - FP * FN) / math.sqrt((TP + FP) * (TP + FN) * (TN + FP) * (TN + FN))
    assert logged["test/mcc"] == pytest.approx(expected, abs=1e-6)  # 10 / sqrt(6*5*5*4) = 0.4082


def test_mrpc_logs_f1_of_the_positive_class_and_accuracy() -> None:
    logged = _logged(2, _binary_logits(PREDICTED), torch.tensor(TARGETS), "f1", ("acc",))
    assert logged["test/f1"] == pytest.approx(2 * TP / (2 * TP + FP + FN), abs=1e-6)  # 8/11
    assert logged["test/acc"] == pytest.approx((TP + TN) / 10, abs=1e-6)


def test_stsb_logs_pearson_and_spearman_of_the_scores() -> None:
    predicted = [0.5, 1.0, 2.5, 2.0, 4.0, 3.0]
    targets = [0.0, 1.2, 2.0, 3.0, 4.6, 4.0]
    logged = _logged(1, torch.tensor(predicted)[:, None], torch.tensor(targets), "pearson", ("spearman",))
    mean_p, mean_t = sum(predicted) / 6, sum(targets) / 6
    covariance = sum((p - mean_p) * (t - mean_t) for p, t in zip(predicted, targets, strict=True))
    spread_p = math.sqrt(sum((p - mean_p) ** 2 for p in predicted))
    spread_t = math.sqrt(sum((t - mean_t) ** 2 for t in targets))
    assert logged["test/pearson"] == pytest.approx(covariance / (spread_p * spread_t), abs=1e-5)
    # ranks: predicted 1 2 4 3 6 5, targets 1 2 3 4 6 5: d^2 = 0+0+1+1+0+0 = 2; rho = 1 - 6*2/(6*35)
    assert logged["test/spearman"] == pytest.approx(1 - 6 * 2 / (6 * 35), abs=1e-5)
    assert "test/loss" in logged  # mean squared error of the regression head
    mse = sum((p - t) ** 2 for p, t in zip(predicted, targets, strict=True)) / 6
    assert logged["test/loss"] == pytest.approx(mse, rel=1e-5)


def test_a_regression_metric_on_a_classifier_is_refused() -> None:
    with pytest.raises(ValueError, match="does not apply to a classification"):
        metric_collection(["pearson"], num_classes=2)
    with pytest.raises(ValueError, match="does not apply to a regression"):
        metric_collection(["acc"], num_classes=1)
