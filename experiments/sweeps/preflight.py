"""Every data set a grid needs, checked (and downloaded) once, before any worker starts.

It runs in a process forked from the fork server, which has torch and Lightning imported already, so
the grid command never pays for those imports, and it runs while the grid command reads the store.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from core.errors import InputError
from core.plugins import plugin_modules
from experiments.processes import bootstrap, fork_context
from experiments.sweeps.grid import GridCell


class PreflightError(InputError):
    """A data set the grid needs is missing or corrupt; nothing was run or tracked."""


class Preflight:
    """Starts the check at once; ``wait()`` gives the GPUs this machine offers, or PreflightError."""

    def __init__(self, cells: Sequence[GridCell], data_dir: Path) -> None:
        specs = sorted({json.dumps(c.spec.data.model_dump(mode="json"), sort_keys=True) for c in cells})
        self._scratch = tempfile.TemporaryDirectory(prefix="litbench-preflight-")
        self._report = Path(self._scratch.name) / "report.json"
        self._child = fork_context().Process(
            target=_check_data, args=(specs, str(data_dir), str(self._report), plugin_modules())
        )
        self._child.start()

    def wait(self) -> list[int]:
        """The GPUs this machine offers, once every data set is in place; else PreflightError."""
        self._child.join()
        try:
            report = json.loads(self._report.read_text()) if self._report.exists() else {}
            if self._child.exitcode != 0 or "gpus" not in report:
                died = f"the data check died with exit code {self._child.exitcode}"
                raise PreflightError(report.get("error", died))
            return report["gpus"]
        finally:
            self._scratch.cleanup()


def _check_data(data_specs: list[str], data_dir: str, report: str, plugins: list[str]) -> None:
    try:
        bootstrap(plugins=plugins)
        from datamodules import create_datamodule
        from experiments.specs import DataSpec
        from experiments.sweeps.devices import visible_gpus

        for text in data_specs:
            data = DataSpec.model_validate(json.loads(text))
            create_datamodule(data.name, data_dir=data_dir, **data.typed_options()).prepare_data()
    except Exception as err:
        _write_report(report, {"error": str(err)})
        sys.exit(2)
    _write_report(report, {"gpus": visible_gpus()})


def _write_report(report: str, content: dict) -> None:
    """The report for the grid command; if the command already stopped (a bad store, Ctrl-C) and took
    its folder with it, nobody reads it, and a traceback here would only confuse its terminal."""
    try:
        Path(report).write_text(json.dumps(content))
    except OSError:
        sys.exit(2)
