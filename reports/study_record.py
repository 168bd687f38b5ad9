"""Finding an Optuna study's parent run, opening its storage read-only, and joining its trials to their
MLflow runs: the :class:`StudyRecord` that ``litbench report STUDY`` is written from (reports/study.py).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.request import pathname2url

import optuna
from optuna.trial import FrozenTrial

from core import tags as tag
from core.store import client_for, default_optuna_storage, sqlite_missing
from reports.collect import ReportInputError

# the tags and user attrs `litbench tune` writes (core.tags)
TAG_STUDY = tag.STUDY
TAG_ROLE = tag.STUDY_ROLE
TAG_STORAGE = tag.STUDY_STORAGE
TAG_TRIAL_NUMBER = tag.TRIAL_NUMBER
TAG_PARENT = tag.PARENT
ATTR_RUN_ID = tag.ATTR_RUN_ID
ATTR_FAILURE = tag.ATTR_FAILURE


class StudyInputError(ReportInputError):
    """The study's storage cannot be read, or it holds nothing to report yet."""


@dataclass(frozen=True)
class StudyRecord:
    name: str
    objective: str  # the tracked metric the trials' values are, e.g. val/acc
    direction: str  # maximize or minimize, as the storage says
    sampler: str | None
    pruner: str | None
    storage: str
    parent_run_id: str
    study: optuna.Study
    run_ids: dict[int, str]  # trial number -> its MLflow run


def study_parent(tracking_uri: str, experiment: str):
    """The study's parent run, or None when ``experiment`` is no study (or does not exist)."""
    client = client_for(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    runs = client.search_runs(
        [found.experiment_id],
        filter_string=f"tags.`{TAG_ROLE}` = 'parent'",
        order_by=["attributes.start_time ASC"],
        max_results=1,
    )
    return runs[0] if runs else None


def is_study(tracking_uri: str, experiment: str) -> bool:
    return study_parent(tracking_uri, experiment) is not None


def load_study_record(tracking_uri: str, experiment: str) -> StudyRecord:
    parent = study_parent(tracking_uri, experiment)
    if parent is None:
        raise StudyInputError(f"experiment {experiment!r} in {tracking_uri} has no study parent run")
    tags = parent.data.tags
    name = tags.get(TAG_STUDY, experiment)
    location = tags.get(TAG_STORAGE) or _default_storage(tracking_uri)
    study = _load(name, location, parent.info.run_id)
    trials = study.get_trials(deepcopy=False)
    if not trials:
        raise StudyInputError(
            f"study {name!r} has no trials yet (its storage {redacted(location)} holds the study, but no "
            f"trial has started); run `litbench tune STUDY.yaml --tracking-uri {tracking_uri}` with its "
            "study file first, then report again"
        )
    return StudyRecord(
        name=name,
        objective=tags.get(tag.STUDY_OBJECTIVE, "objective"),
        direction="maximize" if study.direction == optuna.study.StudyDirection.MAXIMIZE else "minimize",
        sampler=tags.get(tag.STUDY_SAMPLER),
        pruner=tags.get(tag.STUDY_PRUNER),
        storage=location,
        parent_run_id=parent.info.run_id,
        study=study,
        run_ids=_run_ids(tracking_uri, parent, trials),
    )


def _default_storage(tracking_uri: str) -> str:
    return default_optuna_storage(tracking_uri)  # only for parent runs older than their storage tag


def _load(name: str, location: str, parent_run_id: str) -> optuna.Study:
    """The study, opened read-only: a report must never create, migrate or repair a storage."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    fix = (
        f"put the storage back there, or point the parent run {parent_run_id} at where it is now: "
        f"`MlflowClient(URI).set_tag('{parent_run_id}', '{TAG_STORAGE}', 'sqlite:////new/path/optuna.db')`"
    )
    path = storage_file(location)
    if path is not None and not path.is_file():
        raise StudyInputError(
            f"the Optuna storage of study {name!r} is missing: its parent run records {location} (tag "
            f"{TAG_STORAGE}) and there is no file {path}. If it was moved, {fix}; if it is lost, the "
            "trials' MLflow runs remain, and `litbench tune` with the study file starts the study afresh"
        )
    try:
        storage = open_read_only(location)
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = ", ".join(optuna.get_all_study_names(storage)) or "none"
        raise StudyInputError(
            f"the Optuna storage {redacted(location)} holds no study {name!r} (studies there: {names}); {fix}"
        ) from None
    except Exception as err:  # SQLAlchemy, a corrupt journal, a server that is down: all one message
        cause = " ".join(str(err.__cause__ or err).split())[:300]
        raise StudyInputError(
            f"cannot read the Optuna storage {redacted(location)} of study {name!r}: {type(err).__name__}: "
            f"{cause}. Check that it is an Optuna storage this user can read; if it moved, {fix}"
        ) from None


def recorded_storage(tracking_uri: str, experiment: str) -> str | None:
    """The storage the study's parent run records (tag ``litbench.study.storage``); None when the store
    does not exist (it is not created), ``experiment`` is no study, or its parent run predates the tag."""
    if sqlite_missing(tracking_uri):
        return None
    parent = study_parent(tracking_uri, experiment)
    return None if parent is None else parent.data.tags.get(TAG_STORAGE)


def open_read_only(location: str) -> optuna.storages.BaseStorage:
    """The Optuna storage at ``location``, opened so that nothing is created, migrated or written: a
    SQLite file with ``mode=ro``, a journal file as it is, a server's tables as they are. A missing file
    is the caller's to report first (``storage_file``); errors are the storage's own."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    path = storage_file(location)
    if "://" not in location:  # a journal file, as `litbench tune --storage x.journal` writes
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(location))
    if path is not None:
        return optuna.storages.RDBStorage(
            "sqlite://", skip_table_creation=True, engine_kwargs={"creator": _read_only(path)}
        )
    return optuna.storages.RDBStorage(location, skip_table_creation=True)


def storage_file(location: str) -> Path | None:
    """The file behind a SQLite URL or a journal path; None for a server."""
    if location.startswith("sqlite:///"):
        return Path(location.removeprefix("sqlite:///"))
    return None if "://" in location else Path(location)


def _read_only(path: Path) -> Callable[[], sqlite3.Connection]:
    """SQLite connections that cannot write (``mode=ro``), whatever characters the path holds."""

    def connect() -> sqlite3.Connection:
        # a running `litbench tune` may hold a write lock: wait for it rather than fail the report
        return sqlite3.connect(f"file:{pathname2url(str(path))}?mode=ro", uri=True, timeout=60)

    return connect


def redacted(location: str) -> str:
    """A storage URL without its password: error messages end up in CI logs."""
    if "://" not in location or location.startswith("sqlite:"):
        return location
    from sqlalchemy.engine import make_url

    return make_url(location).render_as_string(hide_password=True)


def _run_ids(tracking_uri: str, parent, trials: list[FrozenTrial]) -> dict[int, str]:
    """From each trial's ``litbench.run_id``; a trial still running has none yet: its nested run's."""
    client = client_for(tracking_uri)
    nested = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`{TAG_PARENT}` = '{parent.info.run_id}'",
        order_by=["attributes.start_time ASC"],  # a number run twice (never, but) keeps its latest
        max_results=50_000,
    )
    found = {
        int(run.data.tags[TAG_TRIAL_NUMBER]): run.info.run_id
        for run in nested
        if run.data.tags.get(TAG_TRIAL_NUMBER, "").isdigit()
    }
    for trial in trials:
        if trial.user_attrs.get(ATTR_RUN_ID):
            found[trial.number] = str(trial.user_attrs[ATTR_RUN_ID])
    return found


def best_trial_or_none(study: optuna.Study) -> FrozenTrial | None:
    try:
        return study.best_trial
    except ValueError:  # no complete trial
        return None
