"""``litbench dashboard STUDY``: optuna-dashboard over a study's storage, on 127.0.0.1, until Ctrl-C."""

from __future__ import annotations

import argparse
import logging

from cli.common import add_store, console, context_of, error, port

DESCRIPTION = (
    "Serve optuna-dashboard over the Optuna storage of a study of `litbench tune` on 127.0.0.1 until "
    "Ctrl-C (or SIGTERM), and print the URL of the study's page: its optimization history, parameter "
    "importances, slice and parallel-coordinate plots and every trial, live while the study runs. The "
    "storage is --storage if given, else the one the study's MLflow parent run records (tag "
    "litbench.study.storage), else optuna.db beside the MLflow store. It is opened as `litbench report "
    "STUDY` opens it: nothing is created or migrated, a missing storage file is an error, and a SQLite "
    "file is read-only, so the dashboard's edits (notes, renaming or deleting a study) are refused. "
    "Exit status 0 when stopped, 2 for a study the storage does not hold (the studies it holds are "
    "listed), a missing storage, a port in use, or optuna-dashboard not installed "
    "(pip install 'litbench[dashboard]')."
)


def add_parser(commands) -> None:
    dashboard = commands.add_parser(
        "dashboard",
        help="start optuna-dashboard on 127.0.0.1 over a study's Optuna storage",
        description=DESCRIPTION,
    )
    dashboard.add_argument(
        "study",
        help="the study's name, or its YAML file (its `name` is used), e.g. "
        "experiments/studies/digits_lr.yaml",
    )
    dashboard.add_argument(
        "--storage",
        help="Optuna storage: an RDB URL (sqlite:///..., postgresql://...) or a journal file ending in "
        ".log/.journal (default: the one the study's parent run records, else optuna.db beside the "
        "MLflow store)",
    )
    dashboard.add_argument("--port", type=port, default=8080, help="port to listen on (default: 8080)")
    dashboard.add_argument("--open", action="store_true", help="open the study's page in a web browser")
    add_store(dashboard, data=False)
    dashboard.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from experiments.dashboard import open_study, require_dashboard, serve, study_name
    from reports.study_record import open_read_only, redacted

    require_dashboard()
    name = study_name(args.study)
    served = open_study(name, _location(args, name), open_read_only)
    out = console()
    logging.getLogger("optuna_dashboard").addHandler(_RequestFailed())  # one line, not a traceback

    def ready(page: str) -> None:
        shown = redacted(served.location)
        out.print(f"optuna-dashboard for study {name} ({shown}) at [bold]{page}[/] (Ctrl-C stops it)")
        if args.open:
            import webbrowser

            webbrowser.open(page)

    return serve(served, args.port, ready=ready)


class _RequestFailed(logging.Handler):
    """optuna-dashboard logs a failed request (e.g. an edit refused by a read-only SQLite file) with its
    whole traceback; the console gets its first line."""

    def emit(self, record: logging.LogRecord) -> None:
        error(f"optuna-dashboard: a request failed: {record.getMessage().splitlines()[0].strip()}")


def _location(args: argparse.Namespace, name: str) -> str:
    """--storage, else what the study's parent run records, else the default beside the store."""
    from core.store import default_optuna_storage
    from experiments.tuning.storage import resolve_storage

    ctx = context_of(args)
    if args.storage:
        return resolve_storage(args.storage, ctx.tracking_uri)
    from reports.study_record import recorded_storage

    return recorded_storage(ctx.tracking_uri, name) or default_optuna_storage(ctx.tracking_uri)
