"""The base of every image classification datamodule: whole sets in memory, batched on the device.

Images stay uint8 (4x less memory than float) in host or device memory; batches are index slices of
a seeded permutation, and conversion, augmentation and normalization run on whole batches after the
transfer, on the device. This removes the per-sample Python and collate cost of a Dataset/DataLoader.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, ClassVar

import lightning
import torch
from torch import Tensor

from core.datasets import DataSplit, tensor_digest
from core.metrics import TaskProtocol
from datamodules.augment import AugmentationPolicy, augment_batch
from datamodules.download import CorruptDataError, DataError
from datamodules.sharding import shard, shard_size, trainer_rank


class InMemoryBatchLoader:
    """Batches of ``(images[idx], labels[idx])`` over in-memory tensors, sharded across DDP ranks.

    Each ``iter()`` starts an epoch whose permutation comes from a generator seeded with
    ``seed + epoch``, so every epoch reshuffles and every run with the same seed sees the same order.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        pad_shards: bool = False,
        with_index: bool = False,
    ) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.seed, self.drop_last = batch_size, shuffle, seed, drop_last
        self.rank, self.world_size, self.pad_shards = rank, world_size, pad_shards
        self.with_index = with_index  # also yield the sample indices (a distilled run's soft targets)
        self.epoch = 0  # the next epoch's number; public so a resumed run can set it

    def __len__(self) -> int:
        size = shard_size(len(self.labels), self.rank, self.world_size, self.pad_shards)
        return size // self.batch_size if self.drop_last else math.ceil(size / self.batch_size)

    def indices(self, epoch: int) -> Tensor:
        """This rank's sample indices for ``epoch``, in order, on the tensors' device."""
        n = len(self.labels)
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + epoch)
            order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
        return shard(order, self.rank, self.world_size, self.pad_shards).to(self.images.device)

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        order = self.indices(self.epoch)
        self.epoch += 1
        stop = len(self) * self.batch_size
        for start in range(0, stop, self.batch_size):
            idx = order[start : start + self.batch_size]
            batch = self.images.index_select(0, idx), self.labels.index_select(0, idx)
            yield (*batch, idx) if self.with_index else batch


class ImageClassificationDataModule(lightning.LightningDataModule):
    """Train/val/test image classification from whole in-memory uint8 tensors.

    Subclasses declare the class attributes and implement ``_load_arrays``; they may override
    ``prepare_data`` to download or check files (it runs once per node, before ``setup``).
    """

    task_kind: ClassVar[str] = "image_classification"  # the task kind in tasks.TASKS that trains it
    protocol: ClassVar[TaskProtocol]
    input_shape: ClassVar[tuple[int, int, int]]  # (C, H, W)
    num_classes: ClassVar[int]
    default_augmentation: ClassVar[AugmentationPolicy] = AugmentationPolicy()
    source_type: ClassVar[str] = "local"  # MLflow's dataset source type of ``data_source``

    def __init__(
        self,
        data_dir: str = "./data",
        seed: int = 0,
        augment: bool = False,
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        train_subset: int | None = None,
        augmentation: AugmentationPolicy | None = None,
        download: bool = True,
    ) -> None:
        super().__init__()
        if batch_size < 1 or eval_batch_size < 1:
            raise ValueError(f"batch sizes must be at least 1, got {batch_size} and {eval_batch_size}")
        if not 0 <= val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if train_subset is not None and train_subset < 1:
            raise ValueError(f"train_subset must be at least 1 (or None for all), got {train_subset}")
        self.data_dir = data_dir
        self.seed = seed  # drives the training shuffle; the split depends on split_seed only
        self.augment = augment
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.train_subset = train_subset
        self.augmentation = (
            self.default_augmentation
            if augmentation is None
            else AugmentationPolicy.model_validate(augmentation)  # YAML hands it over as a dict
        )
        self.download = download
        self._splits: dict[str, tuple[Tensor, Tensor]] | None = None
        self.mean: Tensor | None = None  # per channel, of [0, 1] images of the training split
        self.std: Tensor | None = None
        self._stats_on: dict[torch.device, tuple[Tensor, Tensor]] = {}
        self.index_train_batches = False  # training batches carry sample indices (distillation)

    def _load_arrays(self) -> dict[str, tuple[Tensor, Tensor]]:
        """uint8 images ``[N, C, H, W]`` and int64 labels ``[N]`` for "train" and "test"."""
        raise NotImplementedError

    # ---- setup ---------------------------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        if self._splits is not None:
            return
        arrays = self._load_arrays()
        for name in ("train", "test"):
            self._check(name, *arrays[name])
        train_x, train_y = arrays["train"]
        generator = torch.Generator().manual_seed(self.split_seed)
        order = torch.randperm(len(train_y), generator=generator)
        n_val = round(len(order) * self.val_fraction)
        val_idx, train_idx = order[:n_val], order[n_val:]
        if self.train_subset is not None:
            train_idx = train_idx[: self.train_subset]
        test_x, test_y = arrays["test"]
        self._splits = {
            "train": (train_x[train_idx], train_y[train_idx].long()),
            "val": (train_x[val_idx], train_y[val_idx].long()),
            "test": (test_x, test_y.long()),
        }
        self.mean, self.std = channel_stats(self._splits["train"][0])

    def _check(self, name: str, images: Tensor, labels: Tensor) -> None:
        problem = None
        if images.dtype != torch.uint8 or tuple(images.shape[1:]) != self.input_shape:
            problem = (
                f"images are {images.dtype} {list(images.shape)}, expected uint8 [N, {self.input_shape}]"
            )
        elif labels.ndim != 1 or len(labels) != len(images):
            problem = f"{len(images)} images but labels of shape {list(labels.shape)}"
        elif len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < self.num_classes:
            problem = (
                f"labels span {int(labels.min())}..{int(labels.max())}, expected 0..{self.num_classes - 1}"
            )
        if problem:
            raise CorruptDataError(
                f"{type(self).__name__} {name} split under {self.data_dir}: {problem}. Replace the files "
                "with the official ones (or delete them so they are downloaded again)."
            )

    def sizes(self) -> dict[str, int]:
        self.setup()
        assert self._splits is not None
        return {name: len(labels) for name, (_, labels) in self._splits.items()}

    @property
    def data_source(self) -> str:
        """Where the sets are read from, as a run's dataset inputs record it."""
        return str(self.data_dir)

    def dataset_splits(self, name: str) -> dict[str, DataSplit]:
        """Each split of data set ``name`` with a digest of its images and labels (the seeded split
        and ``train_subset`` included), for the run's dataset inputs."""
        self.setup()
        assert self._splits is not None
        return {
            split: DataSplit(name, self.data_source, tensor_digest(x, y), len(y), self.source_type)
            for split, (x, y) in self._splits.items()
        }

    # ---- loaders -------------------------------------------------------------------------------

    def _split(self, name: str) -> tuple[Tensor, Tensor]:
        self.setup()
        assert self._splits is not None
        device = self._root_device()
        images, labels = self._splits[name]
        if device.type == "cuda" and images.device != device:
            # the whole set moves once and then lives in device memory; batches are device slices
            self._splits[name] = images, labels = images.to(device), labels.to(device)
        return images, labels

    def _root_device(self) -> torch.device:
        trainer = self.trainer
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def _loader(self, name: str, train: bool) -> InMemoryBatchLoader:
        rank, world_size = trainer_rank(self.trainer)
        return InMemoryBatchLoader(
            *self._split(name),
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            seed=self.seed,
            rank=rank,
            world_size=world_size,
            pad_shards=train,  # DDP needs equal step counts; evaluation must count each sample once
            with_index=train and self.index_train_batches,
        )

    def train_dataloader(self) -> InMemoryBatchLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> InMemoryBatchLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> InMemoryBatchLoader:
        return self._loader("test", train=False)

    def predict_dataloader(self) -> InMemoryBatchLoader:
        return self._loader("test", train=False)

    # ---- batch transforms ----------------------------------------------------------------------

    def transform_batch(self, images_uint8: Tensor, train: bool) -> Tensor:
        """uint8 ``[B, C, H, W]`` -> float in [0, 1] -> augmentation (training only) -> normalized."""
        # a copy, so the in-place ops below never touch the stored set
        x = images_uint8.to(torch.float32, copy=True).div_(255)
        if train and self.augment:
            x = augment_batch(x, self.augmentation)
        mean, std = self._stats(x.device)
        return x.sub_(mean).div_(std)

    def _stats(self, device: torch.device) -> tuple[Tensor, Tensor]:
        if device not in self._stats_on:
            self.setup()  # the statistics come from the training split
            self._stats_on[device] = (self.mean.to(device)[:, None, None], self.std.to(device)[:, None, None])
        return self._stats_on[device]

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> tuple[Tensor, ...]:
        images, labels, *index = batch  # the sample indices, when training batches carry them
        trainer = self.trainer
        x = self.transform_batch(images, train=trainer is not None and trainer.training)
        if trainer is not None:
            # Lightning casts inputs for "true" precisions before this hook, when they were still uint8
            x = trainer.precision_plugin.convert_input(x)
        return x, labels, *index

    # ---- a teacher's view of another run's examples (distillation) ------------------------------

    def train_examples(self) -> Tensor:
        """The training images (uint8, ``[N, C, H, W]``), in the order of the training loader's indices."""
        images, _ = self._split("train")
        return images.cpu()

    def batches_for(self, examples: Tensor, batch_size: int) -> Iterator[Tensor]:
        """``examples`` (uint8 images, maybe another run's) as this datamodule's model inputs, in order."""
        if tuple(examples.shape[1:]) != tuple(self.input_shape):
            raise DataError(
                f"{type(self).__name__} reads images of shape {list(self.input_shape)}, the examples are "
                f"{list(examples.shape[1:])}"
            )
        for start in range(0, len(examples), batch_size):
            yield self.transform_batch(examples[start : start + batch_size], train=False)

    def sample_batch(self, n: int) -> tuple[Tensor, Tensor]:
        """The first ``n`` test images, transformed without augmentation, and their labels."""
        images, labels = self._split("test")
        return self.transform_batch(images[:n], train=False), labels[:n]


def channel_stats(images: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and std of uint8 images read as [0, 1] floats, exact, without a float copy."""
    values = torch.arange(256, dtype=torch.float64) / 255
    means, stds = [], []
    for channel in images.transpose(0, 1):  # C iterations; histograms avoid a float copy of the set
        counts = torch.bincount(channel.reshape(-1), minlength=256).to(torch.float64)
        total = counts.sum().clamp_min(1)
        mean = (counts * values).sum() / total
        var = (counts * (values - mean) ** 2).sum() / total
        means.append(mean)
        stds.append(var.sqrt().clamp_min(1e-6))  # a constant channel must not divide by zero
    return torch.stack(means).float(), torch.stack(stds).float()
