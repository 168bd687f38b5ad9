"""Reading IDX files (the MNIST family's format), gzipped or not, into uint8 tensors.

The format: two zero bytes, a type byte (0x08 = unsigned byte, the only one these sets use), the
number of dimensions, then each dimension as a big-endian uint32, then the payload in C order.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from datamodules.download import DATA_DIR_HINT, CorruptDataError, DataNotFoundError

UBYTE = 0x08


def read_idx(path: str | os.PathLike[str]) -> torch.Tensor:
    """The array stored in an IDX file as a writable uint8 tensor of the file's shape."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"{path}: no such file; put the file there ({DATA_DIR_HINT}).")
    data = _read_bytes(path)
    fix = "delete it so it is downloaded again, or replace it with the official file"
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise CorruptDataError(
            f"{path}: not an IDX file (bad magic number {data[:4].hex() or 'empty'}, expected 0000 followed "
            f"by type and rank bytes); {fix}."
        )
    dtype, ndim = data[2], data[3]
    if dtype != UBYTE:
        raise CorruptDataError(
            f"{path}: IDX element type 0x{dtype:02x} is not supported (only 0x08, unsigned byte); {fix}."
        )
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise CorruptDataError(f"{path}: the IDX header is truncated or declares {ndim} dimensions; {fix}.")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = math.prod(shape)
    payload = len(data) - header
    if payload != expected:
        raise CorruptDataError(
            f"{path}: the payload has {payload} bytes but the header's shape {list(shape)} needs {expected} "
            f"(the file is {'truncated' if payload < expected else 'too long'}); {fix}."
        )
    array = np.frombuffer(data, dtype=np.uint8, count=expected, offset=header).reshape(shape)
    return torch.from_numpy(array.copy())  # frombuffer over bytes is read-only


def _read_bytes(path: Path) -> bytes:
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (EOFError, OSError, zlib.error) as err:  # truncated stream, not gzip, bad CRC
        raise CorruptDataError(
            f"{path}: the gzip stream cannot be decompressed ({err}); the file is probably truncated or "
            "damaged. Delete it so it is downloaded again, or replace it with the official file."
        ) from None
