"""A RunSpec built into what trains it: the task kind sets up the data, builds the network and the
LightningModule. Nothing here is tracked, so a bad input raises before any run exists."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import lightning as L

from core.errors import SpecError
from experiments.specs import RunSpec
from tasks import Built, TaskKind, Training


@dataclass
class Prepared(Built):
    """A built run and the spec and task kind it came from."""

    spec: RunSpec | None = None
    task: TaskKind | None = None


def training_of(spec: RunSpec) -> Training:
    """The optimizer and schedule factories and the loss options a task module trains with."""
    return Training(
        optimizer=spec.optimizer.factory(weight_decay=spec.regularization.l2),
        schedule=spec.schedule.factory(),
        loss=spec.regularization.loss_options(),
        grad_clip=spec.regularization.grad_clip,
    )


def prepare(spec: RunSpec, data_dir: Path) -> Prepared:
    """Seed, load and check the data, build the network and its task module. Raises before tracking."""
    L.seed_everything(spec.seed, workers=True, verbose=False)
    task = spec.task
    datamodule = spec_datamodule(spec, data_dir)
    datamodule.prepare_data()
    datamodule.setup("fit")
    try:
        network = task.build_network(
            datamodule, spec.model.name, spec.model.typed_options(), spec.regularization.dropout
        )
    except (TypeError, ValueError) as err:  # option values the builder refuses
        raise SpecError(f"model {spec.model.name!r} with data {spec.data.name!r}: {err}") from None
    settings = spec.settings()
    module = task.build_module(datamodule, network, training_of(spec), settings)
    return Prepared(datamodule, network, module, settings, spec=spec, task=task)


def spec_datamodule(spec: RunSpec, data_dir: Path):
    """The datamodule of ``spec`` (nothing read yet)."""
    from datamodules import create_datamodule

    return create_datamodule(
        spec.data.name,
        data_dir=str(data_dir),
        seed=spec.seed,
        augment=spec.regularization.augment,
        **spec.data.typed_options(),
    )
