"""A synthetic grid logged through MLflow's own API, tagged as ``litbench grid`` tags its runs.

For report benchmarks and tests: thousands of runs in seconds, with known true means per config
(``true_mean``), so a report over them can be checked and timed without training anything.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from core import tags as tag
from core.store import client_for, experiment_id_for

MODELS = ("mlp", "cnn", "cnn_deep", "lstm", "transformer")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")


@dataclass(frozen=True)
class SyntheticCell:
    model: str
    optimizer: str
    lr: float
    seed: int

    @property
    def config(self) -> str:
        return f"{self.model}-{self.optimizer}-lr{self.lr:g}"


def cells(configs_per_pair: int, seeds: int) -> Iterator[SyntheticCell]:
    """models x optimizers x ``configs_per_pair`` learning rates x ``seeds``."""
    lrs = [float(f"{x:.3g}") for x in np.geomspace(1e-4, 1e-1, configs_per_pair)]
    for model, optimizer, lr, seed in itertools.product(MODELS, OPTIMIZERS, lrs, range(seeds)):
        yield SyntheticCell(model, optimizer, lr, seed)


def true_mean(cell: SyntheticCell) -> float:
    """A smooth, known accuracy surface: best near lr 3e-3, cnn and adam a little ahead."""
    bonus = 0.01 * MODELS.index(cell.model) / len(MODELS) + 0.005 * (cell.optimizer.startswith("adam"))
    return 0.9 + bonus - 0.01 * (np.log10(cell.lr) + 2.5) ** 2


def log_grid(
    tracking_uri: str, experiment: str, grid: list[SyntheticCell], epochs: int = 5, failed: int = 0
) -> list[str]:
    """Log every cell as a FINISHED run (the last ``failed`` as FAILED ones); returns the run ids."""
    from mlflow.entities import Metric, Param

    client = client_for(tracking_uri)
    experiment_id = experiment_id_for(client, experiment, tracking_uri)
    rng = np.random.default_rng(0)
    now = int(time.time() * 1000)
    run_ids = []
    for i, cell in enumerate(grid):
        fails = i >= len(grid) - failed
        run_tags = {
            tag.SPEC_HASH: uuid.uuid5(uuid.NAMESPACE_URL, f"{experiment}/{cell}").hex,
            tag.CONFIG: cell.config,
            tag.GRID: experiment,
            tag.TASK_METRIC: "acc",
            tag.TASK_MODE: "max",
            tag.TASK_TARGET: "0.9",
            **tag.factor_tags(
                {"model.name": cell.model, "optimizer.name": cell.optimizer, "optimizer.lr": f"{cell.lr:g}"}
            ),
        }
        if fails:
            run_tags[tag.FAILURE] = "NonFiniteLossError: train/loss is nan at step 12"
        run = client.create_run(experiment_id, run_name=f"{cell.config}-s{cell.seed}", tags=run_tags)
        params = {
            "seed": cell.seed,
            "model.name": cell.model,
            "optimizer.name": cell.optimizer,
            "optimizer.lr": cell.lr,
            "model.num_params": 10_000 * (1 + MODELS.index(cell.model)),
        }
        accuracy = float(np.clip(true_mean(cell) + rng.normal(0, 0.004), 0, 1))
        curve = accuracy - 0.3 * np.exp(-np.arange(1, epochs + 1))
        metrics = [Metric("val/acc", float(v), now + e, e * 10) for e, v in enumerate(curve)]
        metrics += [Metric("epoch", float(e), now + e, e * 10) for e in range(epochs)]
        if not fails:
            metrics += [
                Metric("test/acc", accuracy, now + epochs, epochs * 10),
                Metric("test/loss", float(1 - accuracy), now + epochs, epochs * 10),
                Metric("perf/fit_time_s", float(rng.uniform(5, 15)), now + epochs, epochs * 10),
                Metric("perf/best_epoch", float(epochs), now + epochs, epochs * 10),
            ]
        client.log_batch(
            run.info.run_id, metrics=metrics, params=[Param(k, str(v)) for k, v in params.items()]
        )
        client.set_terminated(run.info.run_id, "FAILED" if fails else "FINISHED")
        run_ids.append(run.info.run_id)
    return run_ids
