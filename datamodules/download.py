"""Fetching data files from mirrors with an MD5 check, and the errors every loader raises.

A download lands in a temporary file next to its destination and is renamed only once its checksum
matches, so an interrupted or corrupted download never leaves a file that looks complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from core.errors import InputError

DATA_DIR_HINT = "choose the data directory with --data-dir or the LITBENCH_DATA_DIR environment variable"


class DataError(InputError, RuntimeError):
    """A data set that cannot be loaded; the message names the file, the problem and the fix."""


class DataNotFoundError(DataError):
    """The files are neither on disk nor downloadable."""


class CorruptDataError(DataError):
    """A file exists but its checksum, header or size is not what the format promises."""


def md5sum(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(
    filename: str,
    mirrors: Sequence[str],
    dest_dir: str | os.PathLike[str],
    md5: str,
    timeout: float = 20.0,
) -> Path:
    """Download ``mirror + filename`` from the first mirror that serves it with the right MD5.

    A mirror that is unreachable or serves a wrong checksum is skipped for the next one. If none
    succeeds, a mirror that served wrong bytes raises CorruptDataError, otherwise DataNotFoundError,
    and the folders this call created for the file are removed again.
    """
    dest_dir = Path(dest_dir)
    created = [d for d in (dest_dir, *dest_dir.parents) if not d.exists()]
    dest_dir.mkdir(parents=True, exist_ok=True)
    try:
        return _fetch_into(filename, mirrors, dest_dir, md5, timeout)
    except DataError:
        # An empty <data>/MNIST/raw left behind would pass for a data set whose files went missing.
        for folder in created:  # deepest first
            with contextlib.suppress(OSError):  # not empty: another process put a file there
                folder.rmdir()
        raise


def _fetch_into(filename: str, mirrors: Sequence[str], dest_dir: Path, md5: str, timeout: float) -> Path:
    dest = dest_dir / filename
    unreachable: list[str] = []
    corrupt: list[str] = []
    for mirror in mirrors:
        url = mirror + filename
        fd, tmp_name = tempfile.mkstemp(dir=dest_dir, prefix=f".{filename}.", suffix=".part")
        tmp = Path(tmp_name)
        try:
            try:
                with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
                    shutil.copyfileobj(response, out, length=1 << 20)
            except (urllib.error.URLError, OSError) as err:  # HTTP errors, refused, DNS, timeouts
                reason = getattr(err, "reason", None) or err
                unreachable.append(f"{url} ({reason})")
                continue
            got = md5sum(tmp)
            if got != md5:
                corrupt.append(f"{url} (MD5 {got}, expected {md5})")
                continue
            os.replace(tmp, dest)  # atomic on one filesystem: dest is either absent or complete
            return dest
        finally:
            tmp.unlink(missing_ok=True)
    if corrupt:
        raise CorruptDataError(
            f"{filename}: the download does not match its checksum, so it was discarded: "
            f"{'; '.join(corrupt + unreachable)}. The mirror may serve a changed or truncated file; "
            f"try again later, or put the official file into {dest_dir} yourself ({DATA_DIR_HINT})."
        )
    raise DataNotFoundError(
        f"{filename}: could not download it from any mirror: {'; '.join(unreachable) or 'no mirrors given'}. "
        f"Check the network connection, or download the file yourself and put it into {dest_dir} "
        f"({DATA_DIR_HINT})."
    )
