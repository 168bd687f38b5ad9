"""Optuna storages and studies: where a study lives, opened once per process, through public APIs only.

``--storage`` takes an RDB URL (``sqlite:///...``, ``postgresql://...``; with Optuna's heartbeat) or a
path ending in ``.log``/``.journal`` (Optuna's JournalStorage over a file, for workers on a shared
filesystem). The default is ``optuna.db`` beside the embedded MLflow store (``core.store``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from core import tags as tag
from core.errors import SpecError
from core.store import default_optuna_storage, sqlite_missing
from core.store_check import check_database_url, check_sqlite_path
from experiments.tuning.study_spec import StudySpec, resolve_objective

RDB_HEARTBEAT_S, RDB_GRACE_S = 60, 180


def quiet_optuna() -> None:
    """The command prints its own line per trial; Optuna marks its (long-standing) heartbeat API
    experimental, which says nothing a user can act on."""
    import warnings

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def resolve_storage(storage: str | None, tracking_uri: str) -> str:
    """An RDB URL or an absolute journal-file path, as every process will open it."""
    if not storage:
        return default_optuna_storage(tracking_uri)
    if storage.endswith((".log", ".journal")) and "://" not in storage:
        path = Path(storage).resolve()
        check_sqlite_path(f"sqlite:///{path}", "--storage", "Optuna journal")  # the same folder rules
        return str(path)
    if "://" in storage:
        check_database_url(storage, "--storage", "Optuna storage")
        if storage.startswith("sqlite:///") and not storage.startswith("sqlite:////"):
            return f"sqlite:///{Path(storage.removeprefix('sqlite:///')).resolve()}"
        return storage
    raise SpecError(
        f"--storage {storage!r}: give an RDB URL (sqlite:///path/optuna.db, postgresql://user@host/db) or "
        "a journal file ending in .log or .journal (for workers on a shared filesystem)"
    )


_STORAGES: dict[str, optuna.storages.BaseStorage] = {}


def open_storage(location: str) -> optuna.storages.BaseStorage:
    """One storage object per location and process (a journal replays its file once)."""
    quiet_optuna()
    if location not in _STORAGES:
        if "://" not in location:
            from optuna.storages.journal import JournalFileBackend, JournalStorage

            Path(location).parent.mkdir(parents=True, exist_ok=True)
            _STORAGES[location] = JournalStorage(JournalFileBackend(location))
        else:
            engine: dict[str, Any] = {}
            if location.startswith("sqlite:///"):
                Path(location.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
                engine = {"connect_args": {"timeout": 60}}  # workers wait for each other's writes
            _STORAGES[location] = _rdb_storage(location, engine)
    return _STORAGES[location]


def _rdb_storage(location: str, engine: dict[str, Any]) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage; commands started together on a fresh database (two machines, one study)
    both create its tables, and on PostgreSQL the slower one fails on a duplicate type or table: by
    then the tables exist, so it tries again."""
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    for attempt in range(6):
        try:
            return optuna.storages.RDBStorage(
                location, engine_kwargs=engine, heartbeat_interval=RDB_HEARTBEAT_S, grace_period=RDB_GRACE_S
            )
        except (IntegrityError, ProgrammingError, OperationalError) as err:
            raced = not isinstance(err, OperationalError) or "already exists" in str(err)  # SQLite's way
            if attempt == 5 or not raced:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def trial_id(storage: optuna.storages.BaseStorage, study_name: str, number: int) -> int:
    """The storage's id of trial ``number`` of a study (the storage API's key for a trial)."""
    study_id = storage.get_study_id_from_name(study_name)
    return storage.get_trial_id_from_study_id_trial_number(study_id, number)


def prepare_study(spec: StudySpec, location: str) -> optuna.Study:
    """Create the study (or load it), once, before any worker starts; refuse a different study file."""
    objective = resolve_objective(spec)
    study = optuna.create_study(
        study_name=spec.name,
        storage=open_storage(location),
        direction=objective.direction,
        load_if_exists=True,
    )
    identity = spec.identity()
    stored = study.user_attrs.get(tag.STUDY_ATTR_IDENTITY)
    if stored is None:
        study.set_user_attr(tag.STUDY_ATTR_IDENTITY, identity)
    elif stored != identity:
        raise SpecError(
            f"study {spec.name!r} in {location} was created from a different study file (its base, space, "
            "objective or direction differ), and its trials would not be comparable; give the study "
            "another name or use another --storage"
        )
    return study


def stored_study(name: str, location: str) -> optuna.Study | None:
    """The study in the storage, or None; never creates the storage or the study."""
    if sqlite_missing(location):
        return None
    if "://" not in location and not Path(location).exists():
        return None
    storage = open_storage(location)
    if name not in optuna.get_all_study_names(storage):
        return None
    return optuna.load_study(study_name=name, storage=storage)


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    try:
        return study.best_trial
    except ValueError:  # no COMPLETE trial yet
        return None
