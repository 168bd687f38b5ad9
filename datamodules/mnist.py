"""MNIST, Fashion-MNIST and KMNIST: four IDX files each, in torchvision's ``<data_dir>/<Folder>/raw`` layout.

The sets differ only in folder, mirrors and checksums, so each is a subclass that sets those.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor

from core.metrics import TaskProtocol
from datamodules.augment import AugmentationPolicy
from datamodules.base import ImageClassificationDataModule
from datamodules.download import DATA_DIR_HINT, CorruptDataError, DataNotFoundError, fetch, md5sum
from datamodules.idx import read_idx
from datamodules.registry import DATAMODULES

SPLIT_FILES = {  # split -> (images, labels) base names, without ".gz"
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@DATAMODULES.register("mnist")
class MNISTDataModule(ImageClassificationDataModule):
    """Handwritten digits, 60,000 train + 10,000 test, 28x28 grey."""

    folder: ClassVar[str] = "MNIST"
    mirrors: ClassVar[tuple[str, ...]] = (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    )
    md5s: ClassVar[dict[str, str]] = {  # the official .gz files
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    }
    protocol = TaskProtocol(target=0.99, max_epochs=10)
    input_shape = (1, 28, 28)
    num_classes = 10
    default_augmentation = AugmentationPolicy(shift=2, rotate=10.0, flip=False)

    @property
    def raw_dir(self) -> Path:
        return Path(self.data_dir) / self.folder / "raw"

    @property
    def data_source(self) -> str:
        return str(self.raw_dir)

    def _present(self, gz_name: str) -> Path | None:
        """The file on disk, gzipped preferred over uncompressed, or None."""
        for path in (self.raw_dir / gz_name, self.raw_dir / gz_name.removesuffix(".gz")):
            if path.is_file():
                return path
        return None

    def prepare_data(self) -> None:
        missing = []
        for gz_name, md5 in self.md5s.items():
            path = self._present(gz_name)
            if path is None:
                missing.append(gz_name)
            elif path.suffix == ".gz" and (got := md5sum(path)) != md5:
                raise CorruptDataError(
                    f"{path}: MD5 {got} differs from the official {md5}, so the file is damaged or "
                    f"not the {self.folder} release. Delete it so it is downloaded again, or replace it with "
                    "the official file."
                )
        if missing and not self.download:
            raise self._not_found(missing, "download is off (data option download: false)")
        for gz_name in missing:
            fetch(gz_name, self.mirrors, self.raw_dir, self.md5s[gz_name])

    def _not_found(self, missing: list[str], why: str) -> DataNotFoundError:
        where = self.raw_dir.resolve()
        return DataNotFoundError(
            f"{self.folder} files are missing from {where}: {', '.join(missing)} (gzipped or uncompressed), "
            f"and {why}. Put the four official files at {where}/train-images-idx3-ubyte.gz, "
            f"{where}/train-labels-idx1-ubyte.gz, {where}/t10k-images-idx3-ubyte.gz and "
            f"{where}/t10k-labels-idx1-ubyte.gz, or turn download on; {DATA_DIR_HINT} "
            f"(the files go under <data-dir>/{self.folder}/raw/)."
        )

    def _load_arrays(self) -> dict[str, tuple[Tensor, Tensor]]:
        missing = [name for name in self.md5s if self._present(name) is None]
        if missing:
            raise self._not_found(missing, "prepare_data() has not fetched them")
        arrays = {}
        for split, (images_name, labels_name) in SPLIT_FILES.items():
            images_path = self._present(images_name + ".gz")
            labels_path = self._present(labels_name + ".gz")
            assert images_path is not None and labels_path is not None
            images, labels = read_idx(images_path), read_idx(labels_path)
            if images.ndim != 3 or tuple(images.shape[1:]) != self.input_shape[1:]:
                raise CorruptDataError(
                    f"{images_path}: images of shape {list(images.shape)}, expected [N, 28, 28]; replace it "
                    "with the official file."
                )
            if labels.shape != images.shape[:1]:
                raise CorruptDataError(
                    f"{labels_path}: labels of shape {list(labels.shape)} do not match the {len(images)} "
                    f"images in {images_path.name}; replace both with the official files."
                )
            arrays[split] = (images.unsqueeze(1), labels.to(torch.int64))
        return arrays


@DATAMODULES.register("fashion_mnist")
class FashionMNISTDataModule(MNISTDataModule):
    """Zalando's clothing images, MNIST's sizes and format."""

    folder: ClassVar[str] = "FashionMNIST"
    mirrors: ClassVar[tuple[str, ...]] = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
    md5s: ClassVar[dict[str, str]] = {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    }
    protocol = TaskProtocol(target=0.90, max_epochs=15)
    # flip stays off: torchvision and the Fashion-MNIST benchmarks train without it


@DATAMODULES.register("kmnist")
class KMNISTDataModule(MNISTDataModule):
    """Kuzushiji-MNIST: cursive Japanese characters, MNIST's sizes and format."""

    folder: ClassVar[str] = "KMNIST"
    mirrors: ClassVar[tuple[str, ...]] = ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",)
    md5s: ClassVar[dict[str, str]] = {
        "train-images-idx3-ubyte.gz": "bdb82020997e1d708af4cf47b453dcf7",
        "train-labels-idx1-ubyte.gz": "e144d726b3acfaa3e44228e80efcd344",
        "t10k-images-idx3-ubyte.gz": "5c965bf0a639b31b8f53240b1b52f4d7",
        "t10k-labels-idx1-ubyte.gz": "7320c461ea6c1c855c0b718fb2a4b134",
    }
    protocol = TaskProtocol(target=0.95, max_epochs=15)
