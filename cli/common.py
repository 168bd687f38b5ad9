"""What every command shares: exit codes, the console, the error line, and the store/data flags."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.context import Context
from core.store import sqlite_missing

EXIT_OK, EXIT_RUN_FAILED, EXIT_BAD_INPUT = 0, 1, 2

TRACKING_HELP = "MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///./mlruns/mlflow.db)"
DATA_HELP = "directory holding the data sets (default: $LITBENCH_DATA_DIR, else ./data)"


def add_store(command: argparse.ArgumentParser, data: bool = True) -> None:
    """``--tracking-uri`` (and ``--data-dir``): what the command's ``Context`` is resolved from."""
    if data:
        command.add_argument("--data-dir", help=DATA_HELP)
    command.add_argument("--tracking-uri", help=TRACKING_HELP)


def add_executor(command: argparse.ArgumentParser, what: str) -> None:
    """``--executor``, ``--ray-address`` and ``--cpus-per-run``: where a command's runs execute."""
    command.add_argument(
        "--executor",
        choices=("process", "ray"),
        default="process",
        help=f"where {what} run: process (worker processes on this machine, the default) or ray (tasks "
        "on a Ray cluster; pip install 'litbench[ray]')",
    )
    command.add_argument(
        "--ray-address",
        metavar="HOST:PORT",
        help="the Ray head node that `ray start --head` printed, or auto (default: $RAY_ADDRESS, else a "
        "local Ray cluster of this machine's cores); with --executor ray",
    )
    command.add_argument(
        "--cpus-per-run",
        type=positive_int,
        default=1,
        help="CPUs (torch threads) each run asks of Ray, per device for a DDP run (default: 1); with "
        "--executor ray",
    )


def add_overrides(command: argparse.ArgumentParser, set_help: str) -> None:
    command.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"{set_help} (repeatable)",
    )


def context_of(args: argparse.Namespace, writes: bool = False) -> Context:
    """The one place a command resolves its tracking URI and data directory; a store that cannot be
    used (or, for a command that ``writes`` runs, cannot be written) is one clear error now (seconds),
    before the command starts anything."""
    from core.store_check import check_store_writable, check_tracking_uri

    ctx = Context.resolve(getattr(args, "tracking_uri", None), getattr(args, "data_dir", None))
    check_tracking_uri(ctx.tracking_uri)
    if writes:
        check_store_writable(ctx.tracking_uri)
    return ctx


def existing_store(ctx: Context) -> Context:
    """For commands that only read: a SQLite store that does not exist is an error, not a new store."""
    from core.errors import InputError

    uri = ctx.tracking_uri
    if sqlite_missing(uri):
        raise InputError(
            f"no tracking store at {uri}: nothing was tracked there yet; run from the folder that holds "
            "mlruns/, or pass the store with --tracking-uri (or MLFLOW_TRACKING_URI)"
        )
    return ctx


def experiment_name(grid: str) -> str:
    """The experiment a grid or study file runs in: its `name` (default: the file's stem); any other
    text is taken as an experiment's name."""
    path = Path(grid)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        from experiments.specs import read_yaml

        return str(read_yaml(path).get("name") or path.stem)
    return grid


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def port(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is at most 65535, got {value}")
    return value


def error(message: str) -> None:
    print(f"litbench: error: {message}", file=sys.stderr)


def console():
    from rich.console import Console

    # wide when piped (CI logs, files), so tables keep whole run ids and reasons
    return Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)


def cell(value) -> str:
    """A table cell: floats to 4 places; a std over a single seed is undefined, shown as a dash."""
    if isinstance(value, float):
        return "-" if value != value else f"{value:.4f}"
    return str(value)


def short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def params_text(params: dict) -> str:
    return " ".join(f"{k}={short(v)}" for k, v in params.items())
