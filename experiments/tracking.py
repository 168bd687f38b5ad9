"""How a run is tracked: its params in batches, its environment tags, its cell's runs by hash.

Where the store is and how to open it is ``core.store``; the tag names are ``core.tags``.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from core import tags as tag

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

MAX_PARAMS_PER_BATCH = 100  # MLflow's limit for one log_batch call


def runs_with_hashes(client: MlflowClient, experiment_id: str, hashes: Iterable[str]) -> dict[str, list[Run]]:
    """Every run of the experiment whose spec hash is among ``hashes``, grouped by hash."""
    wanted = set(hashes)
    found: dict[str, list[Run]] = {h: [] for h in wanted}
    page_token = None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{tag.SPEC_HASH}` != ''",
            max_results=1000,
            page_token=page_token,
        )
        for run in page:
            spec_hash = run.data.tags.get(tag.SPEC_HASH)
            if spec_hash in wanted:
                found[spec_hash].append(run)
        page_token = page.token
        if not page_token:
            return found


def log_params(client: MlflowClient, run_id: str, params: dict[str, Any]) -> None:
    from mlflow.entities import Param

    entries = [Param(key, _param_value(value)) for key, value in sorted(params.items())]
    for start in range(0, len(entries), MAX_PARAMS_PER_BATCH):
        client.log_batch(run_id, params=entries[start : start + MAX_PARAMS_PER_BATCH])


def current_command() -> str | None:
    """The litbench command line this process works for ($LITBENCH_COMMAND, set by the CLI)."""
    return os.environ.get(tag.COMMAND_ENV)


def adopt_command(command: str | None) -> None:
    """Work for ``command`` from now on. A worker forked from a long-lived process (the fork server, a
    Ray worker) inherited the environment of whichever command started that process; its task says
    which command it runs for."""
    if command:
        os.environ[tag.COMMAND_ENV] = command
    else:
        os.environ.pop(tag.COMMAND_ENV, None)


def source_name(command: str) -> str:
    """``litbench grid grids/x.yaml --workers 2`` without its options: ``litbench grid grids/x.yaml``."""
    words = shlex.split(command)
    first_option = next((i for i, word in enumerate(words) if word.startswith("-")), len(words))
    return shlex.join(words[:first_option])


def param_strings(params: dict[str, Any]) -> dict[str, str]:
    """Params as the run records them (lists in brackets, floats by repr)."""
    return {key: _param_value(value) for key, value in params.items()}


def _param_value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_param_value(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def environment_tags() -> dict[str, str]:
    """Versions, device and code revision: what it takes to tell whether two numbers are comparable."""
    import platform
    import socket

    import lightning
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu"
    env = {
        "litbench.env.python": platform.python_version(),
        "litbench.env.torch": torch.__version__,
        "litbench.env.lightning": lightning.__version__,
        "litbench.env.platform": platform.platform(),
        "litbench.env.device": device,
        "litbench.env.cpu_count": str(os.cpu_count()),
        "litbench.env.torch_threads": str(torch.get_num_threads()),
        "litbench.env.hostname": socket.gethostname(),
    }
    if command := current_command():
        env |= {tag.COMMAND: command, tag.SOURCE_NAME: source_name(command), tag.SOURCE_TYPE: "LOCAL"}
    commit = _git_commit()
    if commit:
        env[tag.GIT_COMMIT] = commit
    return env


def _git_commit() -> str | None:
    import subprocess

    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
