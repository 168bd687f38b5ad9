"""Checks of a tracking URI or an Optuna storage URL before anything opens it.

Left to MLflow, SQLAlchemy and Optuna, a bad location surfaces late and as a traceback. A driver that
is not installed shows up as ``No module named 'psycopg'``. A closed PostgreSQL port fails after
108 s, a closed MLflow server after 252 s of silent retries, and an unknown scheme raises
``UnsupportedModelRegistryStoreURIException``. So each location is checked once per process, in a
few seconds: a known scheme, its driver installed, its server answering, its SQLite folder usable.
Each check raises a ``StoreError`` whose one paragraph names the location, the problem and the fix.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from core.errors import InputError

CONNECT_TIMEOUT_S = 5.0  # a server that accepts nothing within this is reported, not waited for

# (dialect, driver) -> the module SQLAlchemy 2.1 imports for it, and the install that provides it
DRIVERS: dict[tuple[str, str], tuple[str, str]] = {
    ("postgresql", ""): ("psycopg", "pip install 'litbench[postgres]'"),
    ("postgresql", "psycopg"): ("psycopg", "pip install 'litbench[postgres]'"),
    ("postgresql", "psycopg2"): ("psycopg2", "pip install 'litbench[postgres]'"),
    ("postgresql", "pg8000"): ("pg8000", "pip install pg8000"),
    ("mysql", ""): ("MySQLdb", "pip install mysqlclient"),
    ("mysql", "mysqldb"): ("MySQLdb", "pip install mysqlclient"),
    ("mysql", "pymysql"): ("pymysql", "pip install pymysql"),
    ("mssql", ""): ("pyodbc", "pip install pyodbc"),
    ("mssql", "pyodbc"): ("pyodbc", "pip install pyodbc"),
}
DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433, "http": 80, "https": 443}


class StoreError(InputError):
    """A tracking store or an Optuna storage that cannot be used as given."""


_CHECKED: set[str] = set()  # locations that passed in this process: the command asks, then its client


def check_tracking_uri(uri: str, flag: str = "tracking URI") -> None:
    """A usable MLflow tracking URI: an RDB URL, an MLflow server (``http(s)://``), ``databricks``."""
    if uri in _CHECKED:
        return
    _check_tracking_uri(uri, flag)
    _CHECKED.add(uri)


def _check_tracking_uri(uri: str, flag: str) -> None:
    scheme = uri.partition("://")[0].lower() if "://" in uri else ""
    if scheme in ("http", "https"):
        _check_mlflow_server(uri, flag)
    elif scheme == "databricks" or uri == "databricks":
        return
    elif scheme.split("+")[0] in ("sqlite", *(d for d, _ in DRIVERS)):
        check_database_url(uri, flag, "tracking store")
    else:
        raise StoreError(
            f"{flag} {uri!r}: MLflow cannot track to this location (scheme {scheme or 'none'!r}); give "
            "sqlite:///path/mlflow.db, postgresql://user@host/db (with litbench[postgres]), or the "
            "http://host:port of an `mlflow server`"
        )


def check_database_url(url: str, flag: str, what: str) -> None:
    """A SQLAlchemy URL whose dialect and driver are known and installed, and whose server accepts a
    connection (or, for SQLite, whose folder can hold the file)."""
    scheme, sep, _ = url.partition("://")
    dialect, _, driver = scheme.lower().partition("+")
    if not sep or (dialect != "sqlite" and (dialect, driver) not in DRIVERS):
        known = "sqlite, postgresql, postgresql+psycopg2, mysql, mysql+pymysql, mssql"
        raise StoreError(
            f"{flag} {url!r}: not a database URL this {what} can open (dialect {scheme or 'none'!r}); "
            f"use one of {known}, e.g. sqlite:///path/file.db or postgresql://user@host/db"
        )
    if dialect == "sqlite":
        check_sqlite_path(url, flag, what)
        return
    module, install = DRIVERS[(dialect, driver)]
    if importlib.util.find_spec(module) is None:
        raise StoreError(
            f"{flag} {url!r}: the {what} needs the database driver {module!r}, which is not installed; "
            f"run `{install}`, or name an installed driver in the URL (postgresql+psycopg2://...)"
        )
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    if host.startswith("/") or not parts.hostname:  # a Unix socket: nothing to dial here
        return
    _dial(host, parts.port or DEFAULT_PORTS[dialect], url, flag, what, "database server")


def check_sqlite_path(url: str, flag: str, what: str) -> None:
    """The database file's folder exists (or can be made) as a folder. A file that exists but cannot
    be written is left to the command: reading a read-only store is allowed."""
    raw = url.split("://", 1)[1]
    if raw in ("", "/", "/:memory:"):
        return
    path = Path(raw[1:] if raw.startswith("/") else raw)
    if path.is_dir():
        raise StoreError(
            f"{flag} {url!r}: {path} is a folder; the {what} is a file, e.g. {path / 'store.db'}"
        )
    if path.exists():
        return
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise StoreError(
                    f"{flag} {url!r}: {parent} is a file, so {path} cannot be created below it; "
                    "choose a path in a folder"
                )
            if not os.access(parent, os.W_OK | os.X_OK):
                raise StoreError(
                    f"{flag} {url!r}: the {what} {path} does not exist and {parent} is not writable "
                    "(a read-only filesystem or folder); choose a writable path"
                )
            return


def check_store_writable(uri: str, flag: str = "tracking URI") -> None:
    """An existing SQLite store whose file and folder can be written (SQLite writes its journal beside
    the file). A read-only store (a read-only mount, another user's files) is fine to read, so only the
    commands that track runs ask this."""
    if not uri.startswith("sqlite:///"):
        return  # a server or a database says itself whether this user may write
    path = Path(uri.removeprefix("sqlite:///"))
    if not path.exists():
        return  # a new store: check_sqlite_path checked that its folder can be made and written
    folder = path.parent
    if not (os.access(path, os.W_OK) and os.access(folder, os.W_OK | os.X_OK)):
        raise StoreError(
            f"{flag} {uri!r}: the store {path} is read-only (the file or its folder {folder} cannot be "
            "written: a read-only mount, or another user's files). `litbench ls`, `report` and `ui` "
            f"read it as it is, but tracking a run writes to it; copy {folder} to a writable place and "
            "pass the copy with --tracking-uri, or get write access to it"
        )


def _check_mlflow_server(uri: str, flag: str) -> None:
    parts = urlsplit(uri)
    if not parts.hostname:
        raise StoreError(f"{flag} {uri!r}: no host in the URL; give http://host:port of an `mlflow server`")
    port = parts.port or DEFAULT_PORTS[parts.scheme.lower()]
    _dial(parts.hostname, port, uri, flag, "tracking store", "`mlflow server`")
    health = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(health, timeout=CONNECT_TIMEOUT_S) as answer:
            answer.read(64)
    except urllib.error.HTTPError:
        return  # it answers HTTP (a proxy, or auth in front of the server): MLflow says the rest
    except (OSError, urllib.error.URLError) as err:
        reason = getattr(err, "reason", err)
        raise StoreError(
            f"{flag} {uri!r}: the server accepts connections but did not answer {health} within "
            f"{CONNECT_TIMEOUT_S:.0f} s ({reason}); check that it is an `mlflow server` and that it is "
            "not overloaded, then run the command again"
        ) from None


def _dial(host: str, port: int, url: str, flag: str, what: str, server: str) -> None:
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            return
    except OSError as err:
        why = "timed out" if isinstance(err, TimeoutError) else (err.strerror or str(err))
        raise StoreError(
            f"{flag} {url!r}: no {server} answers at {host}:{port} ({why}, within "
            f"{CONNECT_TIMEOUT_S:.0f} s); start it, or fix the host and port, then run the command again"
        ) from None
