"""Datamodules on tiny real-format files: splits, shuffling, sharding, normalization, augmentation, errors."""

from __future__ import annotations

import os
import typing
from pathlib import Path

import lightning
import pydantic
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core.registry import UnknownNameError
from datamodules import (
    DATAMODULES,
    AugmentationPolicy,
    CorruptDataError,
    DataNotFoundError,
    ImageClassificationDataModule,
    InMemoryBatchLoader,
    augment_batch,
    available_datamodules,
    create_datamodule,
)
from datamodules.digits import DigitsDataModule
from datamodules.mnist import MNISTDataModule
from tests.idx_files import idx_bytes, write_mnist_files

N_TEST = 50  # the test-split size write_mnist_files makes by default
NO_AUGMENT = AugmentationPolicy(shift=0, rotate=0.0)


@pytest.fixture
def tiny_mnist(tmp_path: Path) -> tuple[type[MNISTDataModule], str]:
    """A MNIST datamodule class whose checksums are those of tiny files, and their data_dir."""
    local_md5s = write_mnist_files(tmp_path / "MNIST" / "raw")

    class TinyMNIST(MNISTDataModule):
        md5s = local_md5s

    return TinyMNIST, str(tmp_path)


def collect(loader: typing.Iterable[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = zip(*loader, strict=True)
    return torch.cat(images), torch.cat(labels)


def ready(cls: type[MNISTDataModule], data_dir: str, **kwargs: typing.Any) -> MNISTDataModule:
    dm = cls(data_dir=data_dir, download=False, **kwargs)
    dm.prepare_data()
    dm.setup("fit")
    return dm


# ---- registry and declared protocols ----------------------------------------------------------


def test_registry() -> None:
    # the built-in ones; a plugin (tests/test_task_protocol.py registers one) adds its own beside them
    built_in = [n for n in available_datamodules() if DATAMODULES.module_of(n).startswith("datamodules.")]
    assert built_in == [
        "digits",
        "fashion_mnist",
        "glue",
        "kmnist",
        "masked_text",
        "mnist",
        "text_classification",
        "translation",
    ]
    assert isinstance(create_datamodule("digits", batch_size=32), DigitsDataModule)
    with pytest.raises(UnknownNameError, match="Did you mean 'mnist'"):
        create_datamodule("mnsit")


IMAGE_DATAMODULES = [
    n for n in DATAMODULES.names() if issubclass(DATAMODULES.get(n), ImageClassificationDataModule)
]


@pytest.mark.parametrize("name", IMAGE_DATAMODULES)
def test_declared_protocol_and_options(name: str) -> None:
    cls = DATAMODULES.get(name)
    assert cls.protocol.mode in ("max", "min") and 0 < cls.protocol.target <= 1
    assert cls.protocol.metric == "acc" and cls.protocol.max_epochs >= 1
    assert len(cls.input_shape) == 3 and cls.num_classes == 10
    assert cls.default_augmentation.flip is False
    # the spec system builds a pydantic model from the constructor's resolved annotations
    hints = typing.get_type_hints(cls.__init__)
    fields = {key: (hint, None) for key, hint in hints.items() if key != "return"}
    options = pydantic.create_model("Options", **fields)
    parsed = options.model_validate(
        {"augmentation": {"shift": 3, "erase_scale": [0.1, 0.2]}, "train_subset": 5}
    )
    assert parsed.augmentation == AugmentationPolicy(shift=3, erase_scale=(0.1, 0.2))
    with pytest.raises(pydantic.ValidationError, match="shfit"):
        options.model_validate({"augmentation": {"shfit": 3}})
    dm = cls(augmentation={"shift": 4})
    assert dm.augmentation.shift == 4 and dm.augmentation.rotate == 10.0
    assert cls().augmentation == cls.default_augmentation


@pytest.mark.parametrize("name", ["glue", "text_classification"])
def test_text_datamodule_options_validate_through_the_spec(name: str) -> None:
    from experiments.specs import options_model

    options = options_model("data", name)
    parsed = options.model_validate({"tokenizer": {"kind": "bpe", "vocab_size": 500}, "batch_size": 8})
    assert (parsed.tokenizer.kind, parsed.tokenizer.vocab_size, parsed.batch_size) == ("bpe", 500, 8)
    with pytest.raises(pydantic.ValidationError, match="vocab_szie"):
        options.model_validate({"tokenizer": {"vocab_szie": 500}})
    with pytest.raises(pydantic.ValidationError, match="kind"):
        options.model_validate({"tokenizer": {"kind": "sentencepiece"}})


def test_expected_protocols() -> None:
    targets = {
        name: (DATAMODULES.get(name).protocol.target, DATAMODULES.get(name).protocol.max_epochs)
        for name in ("mnist", "fashion_mnist", "kmnist", "digits")
    }
    assert targets == {
        "mnist": (0.99, 10),
        "fashion_mnist": (0.90, 15),
        "kmnist": (0.95, 15),
        "digits": (0.95, 20),
    }


# ---- digits -----------------------------------------------------------------------------------


def test_digits() -> None:
    dm = DigitsDataModule(batch_size=100)
    sizes = dm.sizes()
    assert sum(sizes.values()) == 1797
    assert sizes["test"] == 359 and sizes["val"] == round(1438 * 0.1)
    images, labels = collect(dm.train_dataloader())
    assert images.shape == (sizes["train"], 1, 8, 8) and images.dtype == torch.uint8
    assert int(images.max()) == 255 and int(images.min()) == 0
    assert labels.dtype == torch.int64
    test_labels = collect(dm.test_dataloader())[1]
    assert set(torch.cat([labels, test_labels]).tolist()) == set(range(10))
    again = collect(DigitsDataModule(seed=9).test_dataloader())[1]
    assert torch.equal(test_labels, again)  # the test split depends on split_seed only


# ---- MNIST on tiny files ----------------------------------------------------------------------


def test_split_is_deterministic_and_independent_of_seed(
    tiny_mnist: tuple[type[MNISTDataModule], str],
) -> None:
    cls, data_dir = tiny_mnist
    a = ready(cls, data_dir, seed=0, val_fraction=0.25)
    b = ready(cls, data_dir, seed=7, val_fraction=0.25)
    assert a.sizes() == b.sizes() == {"train": 150, "val": 50, "test": N_TEST}
    val_a, val_b = collect(a.val_dataloader()), collect(b.val_dataloader())
    assert torch.equal(val_a[0], val_b[0]) and torch.equal(val_a[1], val_b[1])
    other = ready(cls, data_dir, split_seed=1, val_fraction=0.25)
    assert not torch.equal(collect(other.val_dataloader())[0], val_a[0])


def test_shuffle_reshuffles_each_epoch_reproducibly(tiny_mnist: tuple[type[MNISTDataModule], str]) -> None:
    cls, data_dir = tiny_mnist
    loader = ready(cls, data_dir, seed=3, batch_size=32).train_dataloader()
    epoch0, epoch1 = collect(loader)[0], collect(loader)[0]
    assert epoch0.shape == epoch1.shape == (180, 1, 28, 28)
    assert not torch.equal(epoch0, epoch1)
    same = ready(cls, data_dir, seed=3, batch_size=32).train_dataloader()
    assert torch.equal(collect(same)[0], epoch0) and torch.equal(collect(same)[0], epoch1)
    other = ready(cls, data_dir, seed=4, batch_size=32).train_dataloader()
    assert not torch.equal(collect(other)[0], epoch0)
    # a shuffle reorders, it never drops or repeats samples
    assert torch.equal(epoch0.sum(dim=0, dtype=torch.int64), epoch1.sum(dim=0, dtype=torch.int64))


def test_train_subset(tiny_mnist: tuple[type[MNISTDataModule], str]) -> None:
    cls, data_dir = tiny_mnist
    full = ready(cls, data_dir)
    subset = ready(cls, data_dir, train_subset=40, seed=5)
    assert subset.sizes() == {"train": 40, "val": 20, "test": N_TEST}
    rows = {bytes(image.numpy()) for image in collect(full.train_dataloader())[0]}
    sub_images = collect(subset.train_dataloader())[0]
    assert len(sub_images) == 40 and all(bytes(image.numpy()) in rows for image in sub_images)
    again = ready(cls, data_dir, train_subset=40, seed=6)
    assert sorted(map(bytes, (i.numpy() for i in collect(again.train_dataloader())[0]))) == sorted(
        bytes(i.numpy()) for i in sub_images
    )


def test_normalization(tiny_mnist: tuple[type[MNISTDataModule], str]) -> None:
    cls, data_dir = tiny_mnist
    dm = ready(cls, data_dir, augment=True)
    images = collect(dm.train_dataloader())[0]
    x = dm.transform_batch(images, train=False)
    assert x.dtype == torch.float32 and x.shape == images.shape
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std(unbiased=False)) - 1) < 1e-4
    expected = (images.float() / 255 - images.float().div(255).mean()) / images.float().div(255).std(
        unbiased=False
    )
    assert torch.allclose(x, expected, atol=1e-4)  # train=False: no augmentation even with augment on
    assert not torch.allclose(dm.transform_batch(images, train=True), x)


def test_sample_batch(tiny_mnist: tuple[type[MNISTDataModule], str]) -> None:
    cls, data_dir = tiny_mnist
    dm = ready(cls, data_dir, augment=True)
    x, y = dm.sample_batch(6)
    test_images, test_labels = collect(dm.test_dataloader())
    assert torch.equal(y, test_labels[:6])
    assert torch.equal(x, dm.transform_batch(test_images[:6], train=False))


def test_missing_files_without_download(tmp_path: Path) -> None:
    dm = MNISTDataModule(data_dir=str(tmp_path), download=False)
    with pytest.raises(DataNotFoundError) as err:
        dm.prepare_data()
    message = str(err.value)
    raw = str((tmp_path / "MNIST" / "raw").resolve())
    assert raw in message and "t10k-labels-idx1-ubyte.gz" in message
    assert "LITBENCH_DATA_DIR" in message and "--data-dir" in message
    with pytest.raises(DataNotFoundError, match="MNIST/raw"):
        dm.setup("fit")


def test_wrong_md5_of_existing_gz(tmp_path: Path) -> None:
    write_mnist_files(tmp_path / "MNIST" / "raw")  # tiny files cannot carry the official checksums
    with pytest.raises(CorruptDataError, match=r"train-images-idx3-ubyte\.gz.*Delete it"):
        MNISTDataModule(data_dir=str(tmp_path), download=False).prepare_data()


def test_uncompressed_files_and_gz_preference(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    write_mnist_files(raw, n_train=30, n_test=10, gz=False)  # no official MD5 exists for these
    dm = ready(MNISTDataModule, str(tmp_path), val_fraction=0.0)
    assert dm.sizes() == {"train": 30, "val": 0, "test": 10}
    write_mnist_files(raw, n_train=40, n_test=12, gz=True)
    dm = MNISTDataModule(data_dir=str(tmp_path), val_fraction=0.0)
    dm.setup()  # prepare_data would reject the tiny .gz files' checksums
    assert dm.sizes() == {"train": 40, "val": 0, "test": 12}


def test_mismatched_counts(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    write_mnist_files(raw, gz=False)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(torch.zeros(N_TEST - 1)))
    with pytest.raises(CorruptDataError, match="t10k-labels-idx1-ubyte"):
        MNISTDataModule(data_dir=str(tmp_path)).setup()


@pytest.mark.realdata
def test_real_mnist_datamodule() -> None:
    root = os.environ.get("LITBENCH_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data"
    if not (Path(root) / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"the real MNIST files are not in {root}/MNIST/raw")
    dm = ready(MNISTDataModule, str(root))
    assert dm.sizes() == {"train": 54000, "val": 6000, "test": 10000}
    assert dm.mean is not None and dm.std is not None
    assert abs(float(dm.mean[0]) - 0.1307) < 2e-3 and abs(float(dm.std[0]) - 0.3081) < 2e-3
    x, y = dm.sample_batch(5)
    assert x.shape == (5, 1, 28, 28) and y.tolist() == [7, 2, 1, 0, 4]  # the well-known first test labels


# ---- InMemoryBatchLoader ----------------------------------------------------------------------


def index_loader(n: int, **kwargs: typing.Any) -> InMemoryBatchLoader:
    labels = torch.arange(n)  # labels are the sample indices, so batches show which samples they hold
    return InMemoryBatchLoader(torch.zeros(n, 1, 1, 1, dtype=torch.uint8), labels, **kwargs)


def test_sharding_with_padding_covers_everything_in_equal_steps() -> None:
    ranks = [
        index_loader(11, batch_size=2, shuffle=True, seed=1, rank=r, world_size=2, pad_shards=True)
        for r in range(2)
    ]
    shards = [collect(loader)[1] for loader in ranks]
    assert len(ranks[0]) == len(ranks[1]) == 3
    assert [len(s) for s in shards] == [6, 6]
    assert set(torch.cat(shards).tolist()) == set(range(11))


def test_sharding_without_padding_partitions() -> None:
    ranks = [index_loader(11, batch_size=4, shuffle=True, seed=1, rank=r, world_size=2) for r in range(2)]
    shards = [collect(loader)[1] for loader in ranks]
    assert [len(s) for s in shards] == [6, 5] and [len(loader) for loader in ranks] == [2, 2]
    assert sorted(torch.cat(shards).tolist()) == list(range(11))


def test_loader_lengths_and_order() -> None:
    plain = index_loader(10, batch_size=4, shuffle=False)
    assert len(plain) == 3 and [len(b[1]) for b in plain] == [4, 4, 2]
    assert collect(plain)[1].tolist() == list(range(10))
    dropped = index_loader(10, batch_size=4, shuffle=True, drop_last=True)
    assert len(dropped) == 2 and len(list(dropped)) == 2
    assert index_loader(10, batch_size=4, shuffle=True, seed=0).indices(1).tolist() != list(range(10))


@pytest.mark.gpu
def test_loader_indexes_on_cuda() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    loader = InMemoryBatchLoader(
        torch.zeros(10, 1, 2, 2, dtype=torch.uint8, device="cuda"),
        torch.arange(10, device="cuda"),
        batch_size=4,
        shuffle=True,
    )
    images, labels = next(iter(loader))
    assert images.is_cuda and labels.is_cuda and len(labels) == 4


# ---- augmentation -----------------------------------------------------------------------------


def one_hot_images(batch: int, size: int, row: int, col: int) -> torch.Tensor:
    x = torch.zeros(batch, 1, size, size)
    x[:, :, row, col] = 1.0
    return x


def test_augment_preserves_shape_dtype_device() -> None:
    x = torch.rand(8, 3, 12, 10, dtype=torch.float64)
    policy = AugmentationPolicy(shift=2, rotate=20, erase=0.5, flip=True)
    out = augment_batch(x, policy)
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    assert float(out.min()) >= 0 and float(out.max()) <= 1 + 1e-6


def test_no_shift_no_rotation_is_identity() -> None:
    x = torch.rand(4, 1, 9, 9)
    assert torch.equal(augment_batch(x, NO_AUGMENT), x)


def test_shift_moves_pixels_by_at_most_shift() -> None:
    torch.manual_seed(0)
    out = augment_batch(one_hot_images(200, 15, 7, 7), AugmentationPolicy(shift=3, rotate=0.0))
    flat = out.flatten(1)
    assert torch.allclose(flat.max(dim=1).values, torch.ones(200), atol=1e-5)  # whole-pixel moves only
    assert torch.allclose(flat.sum(dim=1), torch.ones(200), atol=1e-4)
    pos = flat.argmax(dim=1)
    dy, dx = pos // 15 - 7, pos % 15 - 7
    assert int(dy.abs().max()) == 3 and int(dx.abs().max()) == 3  # reaches, and never exceeds, the bound
    assert len(set(zip(dy.tolist(), dx.tolist(), strict=True))) > 20


def test_rotation_turns_about_the_centre() -> None:
    torch.manual_seed(0)
    policy = AugmentationPolicy(shift=0, rotate=30.0)
    centre = augment_batch(one_hot_images(16, 11, 5, 5), policy)
    assert torch.allclose(centre[:, 0, 5, 5], torch.ones(16), atol=1e-5)
    edge = augment_batch(one_hot_images(16, 11, 5, 9), policy)
    assert not torch.allclose(edge, one_hot_images(16, 11, 5, 9), atol=1e-2)


def test_erasing_zeroes_one_rectangle_of_the_right_area() -> None:
    torch.manual_seed(0)
    h = w = 20
    out = augment_batch(
        torch.ones(64, 1, h, w), AugmentationPolicy(shift=0, rotate=0.0, erase=1.0, erase_scale=(0.1, 0.2))
    )
    zero = out[:, 0] == 0
    rows, cols = zero.any(dim=2), zero.any(dim=1)
    assert torch.equal(zero, rows[:, :, None] & cols[:, None, :])  # exactly a rectangle
    area = zero.flatten(1).sum(dim=1)
    slack = max(h, w) / 2  # rounding a side to whole pixels
    assert float(area.min()) >= 0.1 * h * w - slack and float(area.max()) <= 0.2 * h * w + slack
    assert len(set(area.tolist())) > 5
    assert torch.equal(out[~zero[:, None]], torch.ones(int((~zero).sum())))


def test_flip() -> None:
    torch.manual_seed(0)
    x = torch.rand(200, 1, 5, 5)
    out = augment_batch(x, AugmentationPolicy(shift=0, rotate=0.0, flip=True))
    flipped = (out == x.flip(-1)).flatten(1).all(dim=1)
    kept = (out == x).flatten(1).all(dim=1)
    assert bool((flipped | kept).all())
    assert 60 < int(flipped.sum()) < 140


def test_augment_is_deterministic_under_manual_seed() -> None:
    x = torch.rand(16, 1, 28, 28)
    policy = AugmentationPolicy(shift=2, rotate=15, erase=0.5, flip=True)
    torch.manual_seed(42)
    first = augment_batch(x, policy)
    torch.manual_seed(42)
    assert torch.equal(augment_batch(x, policy), first)
    torch.manual_seed(43)
    assert not torch.equal(augment_batch(x, policy), first)


def test_policy_validation() -> None:
    with pytest.raises(pydantic.ValidationError, match="erase_scale"):
        AugmentationPolicy(erase_scale=(0.5, 0.1))
    with pytest.raises(pydantic.ValidationError, match="extra"):
        AugmentationPolicy.model_validate({"rotation": 5})


# ---- inside a Lightning Trainer ---------------------------------------------------------------


class Probe(lightning.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(64, 10)
        self.train_inputs: list[torch.Tensor] = []
        self.val_inputs: list[torch.Tensor] = []

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        self.train_inputs.append(x)
        return F.cross_entropy(self.net(x.flatten(1)), y)

    def on_validation_epoch_start(self) -> None:
        self.val_inputs.clear()  # keep the last epoch's only

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self.val_inputs.append(batch[0])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_trainer_gets_float_normalized_batches() -> None:
    dm = DigitsDataModule(batch_size=64, train_subset=256, augment=True)
    probe = Probe()
    trainer = lightning.Trainer(
        max_epochs=2,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(probe, datamodule=dm)
    assert trainer.global_step == 8
    assert all(x.dtype == torch.float32 and x.shape == (64, 1, 8, 8) for x in probe.train_inputs)
    val = torch.cat(probe.val_inputs)
    assert len(val) == dm.sizes()["val"]
    val_images = collect(dm.val_dataloader())[0]
    assert torch.equal(val, dm.transform_batch(val_images, train=False))  # no augmentation at eval
    train = torch.cat(probe.train_inputs[:4])
    assert abs(float(train.mean())) < 0.3  # augmented, so only roughly standardized
