"""scikit-learn's bundled 8x8 digits: 1,797 images, no download, a seconds-long benchmark."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from core.metrics import TaskProtocol
from datamodules.augment import AugmentationPolicy
from datamodules.base import ImageClassificationDataModule
from datamodules.registry import DATAMODULES


@DATAMODULES.register("digits")
class DigitsDataModule(ImageClassificationDataModule):
    """UCI optical digits as shipped with scikit-learn; the test split is drawn from ``split_seed``."""

    protocol = TaskProtocol(target=0.95, max_epochs=20)
    input_shape = (1, 8, 8)
    num_classes = 10
    default_augmentation = AugmentationPolicy(shift=1, rotate=10.0)
    test_fraction: ClassVar[float] = 0.2  # the set ships without a test split
    source_type: ClassVar[str] = "code"  # bundled with scikit-learn: no file of ours to point at
    data_source = "sklearn.datasets.load_digits"

    def _load_arrays(self) -> dict[str, tuple[Tensor, Tensor]]:
        from sklearn.datasets import load_digits  # imported here: scikit-learn is slow to import

        digits = load_digits()
        # values are 0..16; scaling to 0..255 lets the uint8 path and [0, 1] floats match MNIST's
        images = torch.from_numpy(np.round(digits.images * (255 / 16)).astype(np.uint8)).unsqueeze(1)
        labels = torch.from_numpy(digits.target).to(torch.int64)
        generator = torch.Generator().manual_seed(self.split_seed)
        order = torch.randperm(len(labels), generator=generator)
        n_test = round(len(order) * self.test_fraction)
        test, train = order[:n_test], order[n_test:]
        return {"train": (images[train], labels[train]), "test": (images[test], labels[test])}
