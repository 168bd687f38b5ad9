"""IDX reading: round trips of tiny files, every kind of damage, and the real MNIST files."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest
import torch

from datamodules.download import CorruptDataError, DataNotFoundError, md5sum
from datamodules.idx import read_idx
from datamodules.mnist import MNISTDataModule
from tests.idx_files import idx_bytes, write_idx


def real_mnist_dir() -> Path:
    root = os.environ.get("LITBENCH_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data"
    return Path(root) / "MNIST" / "raw"


@pytest.mark.parametrize("suffix", [".gz", ""])
@pytest.mark.parametrize("shape", [(7,), (3, 4, 5)])
def test_round_trip(tmp_path: Path, suffix: str, shape: tuple[int, ...]) -> None:
    array = torch.randint(0, 256, shape, dtype=torch.uint8)
    loaded = read_idx(write_idx(tmp_path / f"tiny-idx{suffix}", array))
    assert loaded.dtype == torch.uint8
    assert loaded.shape == shape
    assert torch.equal(loaded, array)
    loaded[0] = 0  # must be writable (torch warns and misbehaves on read-only numpy memory)


def test_truncated_gzip(tmp_path: Path) -> None:
    compressed = gzip.compress(idx_bytes(torch.randint(0, 256, (50, 28, 28), dtype=torch.uint8)))
    path = tmp_path / "cut-images-idx3-ubyte.gz"
    path.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(CorruptDataError, match=r"cut-images-idx3-ubyte\.gz") as err:
        read_idx(path)
    assert "gzip" in str(err.value)


def test_bad_magic(tmp_path: Path) -> None:
    path = tmp_path / "magic-idx1-ubyte"
    path.write_bytes(b"\x01\x02" + idx_bytes(torch.zeros(4))[2:])
    with pytest.raises(CorruptDataError, match=r"magic-idx1-ubyte.*magic"):
        read_idx(path)


def test_wrong_type(tmp_path: Path) -> None:
    path = tmp_path / "float-idx1"
    path.write_bytes(idx_bytes(torch.zeros(4), type_byte=0x0D))
    with pytest.raises(CorruptDataError, match=r"float-idx1.*0x0d"):
        read_idx(path)


@pytest.mark.parametrize("cut", [1, 100])
def test_short_payload(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "short-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(torch.zeros(2, 10, 10))[:-cut]))
    with pytest.raises(CorruptDataError, match=r"short-idx3-ubyte.gz.*truncated") as err:
        read_idx(path)
    assert f"{200 - cut} bytes" in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="nothing-here"):
        read_idx(tmp_path / "nothing-here.gz")


@pytest.mark.realdata
def test_real_mnist_files() -> None:
    raw = real_mnist_dir()
    if not (raw / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"the real MNIST files are not in {raw}")
    for name, md5 in MNISTDataModule.md5s.items():
        assert md5sum(raw / name) == md5, name
    train_x, train_y = (
        read_idx(raw / "train-images-idx3-ubyte.gz"),
        read_idx(raw / "train-labels-idx1-ubyte.gz"),
    )
    test_x, test_y = read_idx(raw / "t10k-images-idx3-ubyte.gz"), read_idx(raw / "t10k-labels-idx1-ubyte.gz")
    assert train_x.shape == (60000, 28, 28) and train_y.shape == (60000,)
    assert test_x.shape == (10000, 28, 28) and test_y.shape == (10000,)
    assert set(train_y.unique().tolist()) == set(range(10)) == set(test_y.unique().tolist())
    assert int(train_x.max()) == 255 and int(train_x.min()) == 0
    assert train_y[:5].tolist() == [5, 0, 4, 1, 9]  # the well-known first labels
