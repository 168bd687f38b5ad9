"""What one command works on, resolved once and passed down: the tracking store and the data.

The CLI builds a ``Context`` from its flags (``--tracking-uri``, ``--data-dir``) and the environment
(``MLFLOW_TRACKING_URI``, ``LITBENCH_DATA_DIR``); the engine and the reports take it and never resolve
these again. A context also remembers the experiment ids it looked up, so a command asks the store for
each experiment once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from core.store import client_for, experiment_id_for, resolve_tracking_uri

if TYPE_CHECKING:
    from mlflow import MlflowClient

DEFAULT_DATA_DIR = Path("data")
DATA_ENV = "LITBENCH_DATA_DIR"


def resolve_data_dir(flag: str | os.PathLike | None = None) -> Path:
    """``--data-dir``, else ``LITBENCH_DATA_DIR``, else ``./data``."""
    return Path(flag or os.environ.get(DATA_ENV) or DEFAULT_DATA_DIR)


@dataclass(frozen=True)
class Context:
    tracking_uri: str
    data_dir: Path
    experiment_ids: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def resolve(cls, tracking_uri: str | None = None, data_dir: str | os.PathLike | None = None) -> Context:
        """From a command's flags, else the environment, else the defaults (``./mlruns``, ``./data``)."""
        return cls(resolve_tracking_uri(tracking_uri), resolve_data_dir(data_dir))

    @property
    def client(self) -> MlflowClient:
        return client_for(self.tracking_uri)

    def experiment_id(self, name: str) -> str:
        """The id of experiment ``name`` (created when missing), looked up once per context."""
        if name not in self.experiment_ids:
            self.experiment_ids[name] = experiment_id_for(self.client, name, self.tracking_uri)
        return self.experiment_ids[name]
