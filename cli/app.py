"""``litbench``: the parser of every command and the one place errors become exit codes."""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
from collections.abc import Iterator, Sequence

from cli.commands import dashboard, grid, ls, predict, report, run, suite, tune, ui
from cli.common import EXIT_BAD_INPUT, error

COMMANDS = (run, grid, suite, tune, ls, report, predict, ui, dashboard)  # each adds its parser(s) and handler


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="litbench",
        description="Benchmark PyTorch Lightning models: YAML specs and grids in, MLflow-tracked runs out.",
        epilog="Run `litbench COMMAND --help` for a command's options. Modules of your own that register "
        "data sets, models or task kinds are named in $LITBENCH_PLUGINS (comma-separated).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from core.errors import InputError
    from experiments.environment import quiet_libraries

    quiet_libraries()  # before any command starts a process or imports MLflow: the workers inherit it

    try:
        from core.plugins import load_plugins

        load_plugins()
        with command_line(sys.argv[1:] if argv is None else argv):
            return args.handler(args)
    except KeyboardInterrupt:
        error("interrupted; finished runs are kept, re-run the same command to continue")
        return 130
    except InputError as err:  # a file, a flag, the data or the store: one paragraph, exit 2
        error(str(err))
        return EXIT_BAD_INPUT
    except FileNotFoundError as err:
        error(str(err))
        return EXIT_BAD_INPUT


@contextlib.contextmanager
def command_line(argv: Sequence[str]) -> Iterator[None]:
    """``litbench ARGS`` in $LITBENCH_COMMAND while the command runs: its runs' ``mlflow.source.name``."""
    from core.tags import COMMAND_ENV

    before = os.environ.get(COMMAND_ENV)
    os.environ[COMMAND_ENV] = shlex.join(["litbench", *argv])
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(COMMAND_ENV, None)
        else:
            os.environ[COMMAND_ENV] = before


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("litbench")
    except PackageNotFoundError:
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
