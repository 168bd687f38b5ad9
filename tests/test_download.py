"""fetch() against a real HTTP server on 127.0.0.1, and MNIST's prepare_data download path."""

from __future__ import annotations

import functools
import gzip
import hashlib
import socket
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from datamodules.download import CorruptDataError, DataNotFoundError, fetch, md5sum
from datamodules.mnist import MNISTDataModule

PAYLOAD = b"litbench test payload\n" * 100


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(base URL ending in '/', the folder it serves)."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(QuietHandler, directory=str(served))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", served
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"  # nothing listens there once the socket is closed


def test_md5sum(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(PAYLOAD)
    assert md5sum(path) == hashlib.md5(PAYLOAD).hexdigest()


def test_fetch_success(server: tuple[str, Path], tmp_path: Path) -> None:
    url, served = server
    (served / "file.bin").write_bytes(PAYLOAD)
    dest = tmp_path / "dest"
    path = fetch("file.bin", [url], dest, hashlib.md5(PAYLOAD).hexdigest())
    assert path == dest / "file.bin"
    assert path.read_bytes() == PAYLOAD
    assert sorted(p.name for p in dest.iterdir()) == ["file.bin"]  # no temporary file left


def test_fetch_falls_back_to_next_mirror(server: tuple[str, Path], tmp_path: Path) -> None:
    url, served = server
    (served / "file.bin").write_bytes(PAYLOAD)
    path = fetch(
        "file.bin", [closed_port_url(), url + "missing/", url], tmp_path, hashlib.md5(PAYLOAD).hexdigest()
    )
    assert path.read_bytes() == PAYLOAD


def test_fetch_wrong_md5_leaves_nothing(server: tuple[str, Path], tmp_path: Path) -> None:
    url, served = server
    (served / "file.bin").write_bytes(PAYLOAD)
    dest = tmp_path / "dest"
    with pytest.raises(CorruptDataError, match=r"file\.bin.*checksum") as err:
        fetch("file.bin", [url], dest, "0" * 32)
    assert str(dest) in str(err.value)  # says where to put the file instead
    assert not dest.exists()  # neither a partial file nor the folder made for it


def test_fetch_unreachable(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match=r"file\.bin") as err:
        fetch("file.bin", [closed_port_url()], tmp_path, "0" * 32, timeout=5)
    message = str(err.value)
    assert "127.0.0.1" in message and str(tmp_path) in message and "LITBENCH_DATA_DIR" in message
    assert list(tmp_path.iterdir()) == []


def test_a_failed_mnist_download_leaves_no_empty_folder(tmp_path: Path) -> None:
    class OfflineMNIST(MNISTDataModule):
        mirrors = (closed_port_url(),)

    data = tmp_path / "data"
    (data / "other").mkdir(parents=True)  # a folder that was there before stays
    with pytest.raises(DataNotFoundError, match=r"train-images-idx3-ubyte\.gz"):
        OfflineMNIST(data_dir=str(data)).prepare_data()
    assert sorted(p.name for p in data.iterdir()) == ["other"]  # no MNIST/raw, empty, left behind


def test_mnist_prepare_data_downloads_missing_files(server: tuple[str, Path], tmp_path: Path) -> None:
    url, served = server
    local_md5s = {}
    for name in MNISTDataModule.md5s:
        data = gzip.compress(name.encode())  # content is irrelevant: prepare_data only fetches and checks
        (served / name).write_bytes(data)
        local_md5s[name] = hashlib.md5(data).hexdigest()

    class LocalMNIST(MNISTDataModule):
        mirrors = (url,)
        md5s = local_md5s

    dm = LocalMNIST(data_dir=str(tmp_path / "data"))
    dm.prepare_data()
    raw = tmp_path / "data" / "MNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(local_md5s)
    assert all(md5sum(raw / name) == md5 for name, md5 in local_md5s.items())
    dm.prepare_data()  # everything present and intact now: nothing to do, nothing raised
