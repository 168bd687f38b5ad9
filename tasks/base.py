"""The task-kind protocol: everything the engine needs to know about one kind of task, in one object.

A task kind (image classification, text classification, translation, ...) says which models fit its
data, builds the network and the LightningModule, declares how it is scored and which metrics it logs,
counts the samples of a batch, and logs its own artifacts. The engine (``experiments.run``) only calls
these methods; adding a task kind is one file with a ``TaskKind`` subclass registered in
``tasks.TASKS``, plus the datamodules that name it in their ``task_kind``.

The data decides the kind: a datamodule class declares ``task_kind`` (a name in ``TASKS``) and its
``protocol`` (``core.metrics.TaskProtocol``). A spec whose model does not fit its data's task kind is
rejected when it is validated, before any data loads.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import lightning
from torch import nn

from core.datasets import DataSplit
from core.errors import SpecError
from core.metrics import TaskProtocol
from core.registry import Registry
from lightning_modules.optim import OptimizerFactory, ScheduleFactory
from lightning_modules.regularization import LossOptions


@dataclass(frozen=True)
class Training:
    """How a task module trains, as the engine resolved it from the spec (no spec types here)."""

    optimizer: OptimizerFactory
    schedule: ScheduleFactory
    loss: LossOptions
    grad_clip: float = 0.0  # the global gradient norm the module clips at each step; 0 disables


class ArtifactSink(Protocol):
    """Where a task writes its run's artifacts: files made in ``workdir``, logged under ``folder``."""

    workdir: Path

    def log(self, path: Path, folder: str | None = None) -> None: ...


@dataclass
class Built:
    """A task's run, built: the datamodule (set up), the network and the LightningModule that trains it."""

    datamodule: Any
    network: nn.Module
    module: lightning.LightningModule
    settings: Any = None  # the task's own spec section (translation: its decoding), or None


class TaskKind(ABC):
    """One kind of task. Subclasses set ``name`` and implement the abstract methods; register an
    instance with ``TASKS.add(kind.name, kind)`` (or ``register_task``)."""

    name: ClassVar[str]
    # the RunSpec section that holds this kind's own settings (translation: "decoding"), if any
    settings_section: ClassVar[str | None] = None
    # the RunSpec strategy sections this kind can take: "distill", "variants" (classifiers do)
    strategies: ClassVar[frozenset[str]] = frozenset()

    # ---- what fits

    @abstractmethod
    def model_registry(self) -> Registry:
        """The registry this kind's models are built from."""

    def fits_model(self, name: str) -> bool:
        return name in self.model_registry()

    def models(self) -> list[str]:
        """Every registered model that fits this kind, for messages."""
        return [name for name in self.model_registry().names() if self.fits_model(name)]

    # what this kind's models read, for messages: "tensor data", "text", "a translation corpus"
    inputs: ClassVar[str] = "this data"

    def check_model(self, model: str, data: str) -> None:
        """A SpecError naming the models that fit, when ``model`` does not fit this kind's data."""
        if not self.fits_model(model):
            raise SpecError(
                f"model {model!r} does not fit data {data!r}: {self.mismatch(model)}; choose one of the "
                f"models for {self.inputs}: {', '.join(self.models()) or 'none registered'}"
            )

    def mismatch(self, model: str) -> str:
        """Why ``model`` does not fit, in a few words."""
        return f"it is not a {self.name.replace('_', ' ')} model"

    # ---- scoring

    def scoring(self, datamodule: Any) -> TaskProtocol:
        """How runs of this data are scored; by default the datamodule's declared ``protocol``."""
        return datamodule.protocol

    def logged_metrics(self, scoring: TaskProtocol) -> tuple[str, ...]:
        """The metric names logged on every evaluation split (``val/<name>``, ``test/<name>``)."""
        return ("loss", scoring.metric, *scoring.metrics)

    # ---- building

    @abstractmethod
    def build_network(
        self, datamodule: Any, model: str, options: dict[str, Any], dropout: float
    ) -> nn.Module:
        """The network for the set-up ``datamodule``; bad option values raise TypeError or ValueError."""

    @abstractmethod
    def build_module(
        self, datamodule: Any, network: nn.Module, training: Training, settings: Any
    ) -> lightning.LightningModule:
        """The LightningModule that trains ``network`` on ``datamodule``."""

    # ---- what a run records

    def batch_size(self, batch: Any) -> int:
        """Samples in a training batch (throughput); by default the length of its last element."""
        return len(batch[-1])

    def tracking_params(self, datamodule: Any) -> dict[str, Any]:
        """Params a run records beyond its spec (a fitted vocabulary's size, say)."""
        return {}

    def dataset_splits(self, datamodule: Any, name: str) -> dict[str, DataSplit]:
        """Every split the run reads (train, val, test, predict ...) as ``DataSplit``s: the run's
        dataset inputs. ``name`` is the spec's data name; by default the datamodule describes them, and
        a datamodule of a plugin that does not (no ``dataset_splits``) records none."""
        describe = getattr(datamodule, "dataset_splits", None)
        return describe(name) if describe is not None else {}

    def fit_metrics(self, datamodule: Any) -> dict[str, float]:
        """Metrics a run records once, beside its fit time (the time tokenizing took, say)."""
        return {}

    def log_artifacts(self, built: Built, sink: ArtifactSink, heatmaps: int) -> None:  # noqa: B027
        """Figures and outputs of a finished run (``heatmaps``: how many examples to draw; 0: none)."""
