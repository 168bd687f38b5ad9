"""``litbench dashboard``: optuna-dashboard over one study's storage, on the loopback interface.

The dashboard runs in this process (optuna-dashboard's WSGI app under the standard library's threaded
server), so Ctrl-C or SIGTERM ends the serving loop and the command: there is no child process to
outlive it. The storage is opened by the opener the CLI hands down (``reports.study_record.
open_read_only``: the engine may not import the reports), so the dashboard never creates or migrates a
storage, and a SQLite file, opened read-only, refuses optuna-dashboard's edits (notes, renaming or
deleting a study). A journal file is opened as Optuna opens it: edits made in the dashboard are
appended to it.
"""

from __future__ import annotations

import errno
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from core.errors import InputError
from core.store import sqlite_missing

if TYPE_CHECKING:
    import optuna

HOST = "127.0.0.1"  # a study holds unpublished results: never listen beyond this machine
INSTALL = "pip install 'litbench[dashboard]'"  # also in the [dev] extra


class DashboardError(InputError):
    """The dashboard cannot start: not installed, no such study or storage, or the port is taken."""


@dataclass(frozen=True)
class ServedStudy:
    name: str
    location: str  # the storage, as resolved: an RDB URL or a journal file's path
    storage: optuna.storages.BaseStorage
    study_id: int  # the storage's id of the study: the dashboard's URLs name it


def require_dashboard() -> None:
    """Said first, before any store or storage is opened."""
    try:
        import optuna_dashboard  # noqa: F401
    except ImportError:
        raise DashboardError(
            f"`litbench dashboard` needs optuna-dashboard, which is not installed: {INSTALL}"
        ) from None


def study_name(study: str) -> str:
    """A study YAML file names its study with its ``name`` (default: the file's stem); else the name."""
    path = Path(study)
    if path.suffix not in (".yaml", ".yml"):
        return study
    if not path.is_file():
        raise DashboardError(f"no study file {study}: give a study YAML file or the study's name")
    import yaml

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        first = " ".join(str(err).split())[:300]
        raise DashboardError(f"cannot read the study file {study}: {first}") from None
    name = raw.get("name") if isinstance(raw, dict) else None
    return str(name or path.stem)


def missing_file(location: str) -> Path | None:
    """The file behind a SQLite URL or a journal path when it does not exist (opening would create it)."""
    if sqlite_missing(location):
        return Path(location.removeprefix("sqlite:///"))
    if "://" not in location and not Path(location).is_file():
        return Path(location)
    return None


def open_study(
    name: str, location: str, open_storage: Callable[[str], optuna.storages.BaseStorage]
) -> ServedStudy:
    """The study ``name`` in the storage at ``location``; a missing file, an unreadable storage or an
    absent study is one paragraph (the last lists the studies there)."""
    shown = _redacted(location)
    missing = missing_file(location)
    if missing is not None:
        raise DashboardError(
            f"no Optuna storage at {shown}: there is no file {missing} (nothing was created). Pass the "
            "storage the study was tuned in with --storage (an RDB URL or a .journal/.log file), or the "
            "store that recorded it with --tracking-uri"
        )
    try:
        storage = open_storage(location)
        names = sorted(s.study_name for s in storage.get_all_studies())
        study_id = storage.get_study_id_from_name(name) if name in names else None
    except Exception as err:  # SQLAlchemy, a corrupt journal, a server that is down: all one message
        cause = " ".join(str(err.__cause__ or err).split())[:300]
        raise DashboardError(
            f"cannot read the Optuna storage {shown}: {type(err).__name__}: {cause}. Check that it is an "
            "Optuna storage this user can read"
        ) from None
    if study_id is None:
        there = ", ".join(names) or "none"
        raise DashboardError(
            f"the Optuna storage {shown} holds no study {name!r} (studies there: {there}); give one of "
            "those names, or the storage the study was tuned in with --storage"
        )
    return ServedStudy(name, location, storage, study_id)


def _redacted(location: str) -> str:
    """A storage URL without its password: error messages end up in CI logs."""
    if "://" not in location or location.startswith("sqlite:"):
        return location
    from sqlalchemy.engine import make_url

    return make_url(location).render_as_string(hide_password=True)


def study_page(url: str, study_id: int) -> str:
    """The dashboard's page of one study (optuna-dashboard's client route ``/dashboard/studies/<id>``)."""
    return f"{url}/dashboard/studies/{study_id}"


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a request still being answered does not hold up Ctrl-C
    block_on_close = False


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args) -> None:
        """No line per request: the CLI is the only code that writes to the console."""


def serve(served: ServedStudy, port: int, ready: Callable[[str], None], host: str = HOST) -> int:
    """Serve the dashboard until Ctrl-C or SIGTERM; ``ready`` gets the study's page URL once the port
    is bound. Returns 0."""
    from optuna_dashboard import wsgi

    app = wsgi(served.storage)
    try:
        server = make_server(host, port, app, server_class=_Server, handler_class=_QuietHandler)
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise DashboardError(
                f"port {port} on {host} is in use (another dashboard or server listens there): stop it, "
                "or pick another port with --port"
            ) from None
        raise DashboardError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    # SIGINT too: a shell starts a background job (`litbench dashboard ... &`) with SIGINT ignored
    stops = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, signal.default_int_handler) for sig in stops}
    try:
        ready(study_page(f"http://{host}:{port}", served.study_id))
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
