"""Training-batch throughput on CPU: the in-memory batched pipeline against a per-sample DataLoader.

Both paths produce the same thing (augmented, normalized float batches of the MNIST training split)
in the same process, so the ratio measures the pipeline, not the machine. The target is ours >= 5x.

    python benchmarks/mnist_pipeline.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from datamodules.augment import AugmentationPolicy, augment_batch
from datamodules.mnist import MNISTDataModule

WARMUP_BATCHES = 10


class PerSampleDataset(Dataset[tuple[torch.Tensor, int]]):
    """The conventional pipeline: one image at a time, the same augmentation and normalization."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        mean: torch.Tensor,
        std: torch.Tensor,
        policy: AugmentationPolicy,
    ) -> None:
        self.images, self.labels = images, labels
        self.mean, self.std = mean[:, None, None], std[:, None, None]
        self.policy = policy

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x = self.images[index].to(torch.float32) / 255
        x = augment_batch(x[None], self.policy)[0]
        return (x - self.mean) / self.std, int(self.labels[index])


def ours(dm: MNISTDataModule) -> Iterator[torch.Tensor]:
    while True:
        for images, _ in dm.train_dataloader():
            yield dm.transform_batch(images, train=True)


def baseline(dataset: PerSampleDataset, batch_size: int) -> Iterator[torch.Tensor]:
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=0)
    while True:
        for images, _ in loader:
            yield images


def images_per_second(batches: Iterable[torch.Tensor], n_batches: int) -> float:
    batches = iter(batches)
    for _ in range(WARMUP_BATCHES):
        next(batches)
    count = 0
    start = time.perf_counter()
    for _ in range(n_batches):
        count += len(next(batches))
    return count / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    default_dir = os.environ.get("LITBENCH_DATA_DIR") or str(
        Path(__file__).resolve().parents[2] / "shared" / "data"
    )
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", default=default_dir, help="holds MNIST/raw/ (default: %(default)s)")
    parser.add_argument("--batches", type=int, default=100, help="timed batches per pipeline (default: 100)")
    parser.add_argument("--batch-size", type=int, default=128, help="(default: 128)")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch CPU threads for both pipelines (default: 0, torch's choice)",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    dm = MNISTDataModule(data_dir=args.data_dir, augment=True, batch_size=args.batch_size, download=False)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.mean is not None and dm.std is not None
    train = dm.train_dataloader()
    dataset = PerSampleDataset(train.images, train.labels, dm.mean, dm.std, dm.augmentation)

    fast = images_per_second(ours(dm), args.batches)
    slow = images_per_second(baseline(dataset, args.batch_size), args.batches)
    print(
        f"MNIST train split: {len(train.labels)} images, batch {args.batch_size}, {args.batches} batches, "
        f"augmentation {dm.augmentation.model_dump()}, {torch.get_num_threads()} CPU threads"
    )
    print(f"in-memory batched pipeline : {fast:12,.0f} images/s")
    print(f"per-sample DataLoader      : {slow:12,.0f} images/s")
    print(f"ratio                      : {fast / slow:12.1f}x (target >= 5x)")


if __name__ == "__main__":
    main()
