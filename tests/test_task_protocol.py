"""A new kind of task is one file: this one registers a regression task on synthetic data (its
datamodule, its model registry, its metric and its task kind) and runs it through `litbench run` and a
two-cell grid in worker processes, without a line of engine code knowing about it.

The workers import this module again (``core.plugins``: it registered entries), so the registrations
exist in every process that builds a run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cli import main
from core import tags as tag
from core.metrics import TaskProtocol, declare
from core.registry import Registry
from core.store import client_for
from datamodules import DATAMODULES
from experiments.specs import validate_run_spec
from lightning_modules.optim import configure_optimizers
from tasks import TaskKind, register_task

declare("mae", "min", "mean absolute error of a regression")

TOY_MODELS: Registry = Registry("toy model", injected=("features",))


@TOY_MODELS.register("toy_linear")
def toy_linear(features: int, hidden: int = 0) -> nn.Module:
    """A linear model, or one hidden ReLU layer of ``hidden`` units."""
    if hidden:
        return nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, 1))
    return nn.Linear(features, 1)


@DATAMODULES.register("toy_regression")
class ToyRegressionData(lightning.LightningDataModule):
    """y = x · w + noise, for a fixed w; the seed drives the noise only."""

    task_kind = "toy_regression"
    protocol = TaskProtocol(metric="mae", target=0.2, max_epochs=8)

    def __init__(
        self,
        data_dir: str = ".",
        seed: int = 0,
        augment: bool = False,
        n: int = 256,
        features: int = 4,
        batch_size: int = 32,
    ) -> None:
        super().__init__()
        self.n, self.features, self.batch_size, self.seed = n, features, batch_size, seed

    def setup(self, stage: str | None = None) -> None:
        generator = torch.Generator().manual_seed(self.seed)
        x = torch.randn(self.n, self.features, generator=generator)
        w = torch.arange(1.0, self.features + 1) / self.features
        y = x @ w + 0.05 * torch.randn(self.n, generator=generator)
        third = self.n // 3
        self.splits = {
            "train": TensorDataset(x[third:], y[third:]),
            "val": TensorDataset(x[: third // 2], y[: third // 2]),
            "test": TensorDataset(x[third // 2 : third], y[third // 2 : third]),
        }

    def sizes(self) -> dict[str, int]:
        return {name: len(split) for name, split in self.splits.items()}

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.splits["train"], batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.splits["val"], batch_size=self.batch_size)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.splits["test"], batch_size=self.batch_size)


class RegressionModule(lightning.LightningModule):
    def __init__(self, network: nn.Module, training: Any) -> None:
        super().__init__()
        self.network, self.training_setup = network, training

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.mse_loss(self.network(x).squeeze(-1), y)
        self.log("train/loss", loss, on_step=False, on_epoch=True)
        return loss

    def _evaluate(self, batch, stage: str) -> None:
        x, y = batch
        prediction = self.network(x).squeeze(-1)
        self.log(f"{stage}/loss", F.mse_loss(prediction, y), on_epoch=True, batch_size=len(y))
        self.log(f"{stage}/mae", (prediction - y).abs().mean(), on_epoch=True, batch_size=len(y))

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, "val")

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, "test")

    def configure_optimizers(self):
        return configure_optimizers(
            self.trainer,
            self.network.named_parameters(),
            self.training_setup.optimizer,
            self.training_setup.schedule,
        )


class ToyRegression(TaskKind):
    name = "toy_regression"
    inputs = "toy regression data"

    def model_registry(self) -> Registry:
        return TOY_MODELS

    def build_network(self, datamodule, model: str, options: dict[str, Any], dropout: float) -> nn.Module:
        return TOY_MODELS.get(model)(features=datamodule.features, **options)

    def build_module(self, datamodule, network: nn.Module, training, settings) -> lightning.LightningModule:
        return RegressionModule(network, training)

    def log_artifacts(self, built, sink, heatmaps: int) -> None:
        path = sink.workdir / "weights_norm.txt"
        path.write_text(f"{sum(p.norm().item() for p in built.network.parameters()):.6f}\n")
        sink.log(path, "toy")


register_task(ToyRegression())

SPEC = """\
data: {name: toy_regression, n: 192}
model: {name: toy_linear}
optimizer: {name: adam, lr: 0.05}
trainer: {max_epochs: 4, accelerator: cpu}
tracking: {heatmaps: 0}
"""


def test_litbench_run_trains_and_tracks_the_new_task_kind(tmp_path: Path, capsys) -> None:
    (tmp_path / "toy.yaml").write_text(SPEC)
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    assert main(["run", str(tmp_path / "toy.yaml"), "--tracking-uri", uri]) == 0
    assert "FINISHED" in capsys.readouterr().out
    client = client_for(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("toy").experiment_id])
    tags, metrics = run.data.tags, run.data.metrics
    assert (tags[tag.TASK_KIND], tags[tag.TASK_METRIC], tags[tag.TASK_MODE]) == (
        "toy_regression",
        "mae",
        "min",
    )
    assert tags[tag.TASK_TARGET] == "0.2" and tags[tag.TASK_BUDGET] == "8"
    assert 0 <= metrics["test/mae"] < 1.0 and "perf/fit_time_s" in metrics
    assert run.data.params["data.size.train"] == "128"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "toy")}
    assert artifacts == {"toy/weights_norm.txt"}


def test_a_model_of_another_task_kind_is_refused_before_any_data_loads(tmp_path: Path, capsys) -> None:
    (tmp_path / "toy.yaml").write_text(SPEC.replace("toy_linear", "mlp"))
    assert main(["run", str(tmp_path / "toy.yaml"), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"]) == 2
    err = capsys.readouterr().err
    assert "model 'mlp' does not fit data 'toy_regression'" in err and "toy_linear" in err


def test_a_two_cell_grid_of_the_new_task_kind_runs_in_worker_processes(tmp_path: Path) -> None:
    grid = tmp_path / "toy_grid.yaml"
    grid.write_text(
        "name: toy_grid\nbase:\n"
        + "".join(f"  {line}\n" for line in SPEC.splitlines())
        + "axes:\n  model.hidden: [0, 8]\nseeds: [0]\n"
    )
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    assert main(["grid", str(grid), "--tracking-uri", uri, "--workers", "2"]) == 0
    client = client_for(uri)
    runs = client.search_runs([client.get_experiment_by_name("toy_grid").experiment_id])
    assert sorted(r.info.status for r in runs) == ["FINISHED", "FINISHED"]
    assert sorted(r.data.params["model.hidden"] for r in runs) == ["0", "8"]
    pids = {r.data.tags[tag.PID] for r in runs}
    assert str(os.getpid()) not in pids  # trained in the workers, not in this process
    # the report ranks the cells by the task's own metric, lowest mae first (its declared direction)
    out = tmp_path / "report"
    assert main(["report", "toy_grid", "--tracking-uri", uri, "--out", str(out)]) == 0
    table = pd.read_csv(out / "configurations.csv").sort_values("rank")
    assert table["test/mae mean"].is_monotonic_increasing


def test_a_plugin_named_in_the_environment_is_loaded_by_the_command(tmp_path: Path) -> None:
    """How a user adds a task kind: one file, named in LITBENCH_PLUGINS; a bad name is one clear error."""
    import subprocess
    import sys

    (tmp_path / "toy.yaml").write_text(SPEC)
    here = Path(__file__).resolve()
    env = {
        **os.environ,
        "LITBENCH_PLUGINS": here.stem,
        "PYTHONPATH": f"{here.parent}{os.pathsep}{here.parents[1]}",
    }
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    command = [sys.executable, "-m", "cli", "run", str(tmp_path / "toy.yaml"), "--tracking-uri", uri]
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "test/mae" in done.stdout
    env["LITBENCH_PLUGINS"] = "no_such_plugin"
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2
    assert "plugin module 'no_such_plugin'" in done.stderr and "Traceback" not in done.stderr


def test_grad_clip_reaches_a_plugin_module_that_leaves_its_steps_to_lightning(tmp_path: Path) -> None:
    """litbench's own modules clip in their own step; a plugin's automatic-optimization module gets
    regularization.grad_clip from the Trainer, so the spec field means the same for both."""
    from experiments.run.fit import build_trainer
    from experiments.run.prepare import prepare

    spec = validate_run_spec(
        {
            "data": {"name": "toy_regression"},
            "model": {"name": "toy_linear"},
            "regularization": {"grad_clip": 0.5},
            "trainer": {"accelerator": "cpu"},
        }
    )
    prepared = prepare(spec, tmp_path)
    assert prepared.module.automatic_optimization  # the plugin's RegressionModule
    plugin = build_trainer(spec, [], False, str(tmp_path), prepared.module.automatic_optimization)
    assert (plugin.gradient_clip_val, plugin.gradient_clip_algorithm) == (0.5, "norm")
    ours = build_trainer(spec, [], False, str(tmp_path), automatic_optimization=False)
    assert ours.gradient_clip_val is None
