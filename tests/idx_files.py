"""Tiny files in the real IDX format (gzipped or not), for tests that must not touch real data."""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import torch


def idx_bytes(array: torch.Tensor, type_byte: int = 0x08) -> bytes:
    header = bytes([0, 0, type_byte, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.to(torch.uint8).numpy().tobytes()


def write_idx(path: Path, array: torch.Tensor) -> Path:
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def write_mnist_files(raw: Path, n_train: int = 200, n_test: int = 50, gz: bool = True) -> dict[str, str]:
    """Tiny random MNIST-format files in ``raw``; returns the MD5 of each .gz name."""
    raw.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(123)
    md5s = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        arrays = {
            f"{prefix}-images-idx3-ubyte": torch.randint(0, 256, (n, 28, 28), generator=generator),
            f"{prefix}-labels-idx1-ubyte": torch.randint(0, 10, (n,), generator=generator),
        }
        for name, array in arrays.items():
            data = gzip.compress(idx_bytes(array)) if gz else idx_bytes(array)
            (raw / (f"{name}.gz" if gz else name)).write_bytes(data)
            md5s[f"{name}.gz"] = hashlib.md5(data).hexdigest()
    return md5s
