"""The cost of litbench's machinery: `litbench run` against a plain PyTorch loop, in one process.

All sides train the shipped MNIST MLP spec (experiments/runs/mnist_mlp_adam.yaml: 3 epochs, batch
256) from the same seed, on the same batches (litbench's in-memory loader, identical order), with the
same optimizer, validating once an epoch:
- plain: a hand-written loop;
- lightning: the same LightningModule in a bare Lightning Trainer (no logger, no callbacks), to show
  what Lightning's loop itself costs;
- litbench: `litbench run` as users run it: Lightning, the best-checkpoint callback, the clock, and
  MLflow tracking with the training loss logged every step into a fresh SQLite store.

Prints the fit times, the ratio litbench / plain (target: at most 1.12x, issue 15; median over
repeats whose order alternates, because a shared 2-core machine drifts by 20% between minutes)
and the final training losses of plain and litbench, which must agree.

    LITBENCH_DATA_DIR=../shared/data python benchmarks/overhead.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core.context import Context  # noqa: E402
from experiments.environment import quiet_libraries  # noqa: E402
from experiments.run.fit import build_trainer  # noqa: E402
from experiments.run.prepare import prepare  # noqa: E402
from experiments.run.runner import execute  # noqa: E402
from experiments.specs import RunSpec, load_run_spec  # noqa: E402
from lightning_modules.optim import build_optimizer  # noqa: E402

SPEC = REPO / "experiments" / "runs" / "mnist_mlp_adam.yaml"


def plain_loop(spec: RunSpec, data_dir: Path) -> tuple[float, float]:
    """Fit time and last epoch's mean training loss of a hand-written loop."""
    prepared = prepare(spec, data_dir)  # seeds, then builds the data and the network, as litbench does
    dm, network = prepared.datamodule, prepared.network
    # fused, as the ClassificationModule builds it in 32-bit precision: the same update on both sides
    optimizer = build_optimizer(
        spec.optimizer.factory(spec.regularization.l2), network.named_parameters(), fused=True
    )
    train_loader, val_loader = dm.train_dataloader(), dm.val_dataloader()
    start = time.perf_counter()
    for _ in range(spec.trainer.max_epochs):
        network.train()
        total, count = torch.zeros(()), 0
        for images, labels in train_loader:
            loss = F.cross_entropy(network(dm.transform_batch(images, train=True)), labels)
            if not torch.isfinite(loss):
                raise FloatingPointError("non-finite loss")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(labels)
            count += len(labels)
        network.eval()
        with torch.no_grad():
            for images, labels in val_loader:
                (network(dm.transform_batch(images, train=False)).argmax(1) == labels).sum().item()
    return time.perf_counter() - start, (total / count).item()


def bare_lightning(spec: RunSpec, data_dir: Path) -> float:
    prepared = prepare(spec, data_dir)
    with tempfile.TemporaryDirectory() as workdir:
        trainer = build_trainer(spec, callbacks=[], logger=False, root_dir=workdir)
        start = time.perf_counter()
        trainer.fit(prepared.module, datamodule=prepared.datamodule)
        return time.perf_counter() - start


def litbench_run(spec: RunSpec, data_dir: Path) -> tuple[float, float, int]:
    """Fit time, last epoch's training loss and step-loss count, read back from MLflow."""
    from mlflow import MlflowClient

    with tempfile.TemporaryDirectory() as store:
        uri = f"sqlite:///{store}/mlflow.db"
        result = execute(spec, Context(uri, data_dir), experiment="overhead")
        client = MlflowClient(uri)
        steps = len(client.get_metric_history(result.run_id, "train/loss_step"))
        train_loss = client.get_metric_history(result.run_id, "train/loss")[-1].value
    return result.metrics["perf/fit_time_s"], train_loss, steps


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    default_data = os.environ.get("LITBENCH_DATA_DIR", str(REPO.parent / "shared" / "data"))
    parser.add_argument("--data-dir", default=default_data, help="holds MNIST/raw (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=5, help="alternating repeats of the three")
    args = parser.parse_args()
    quiet_libraries()
    spec = load_run_spec(SPEC, ["trainer.accelerator=cpu", "tracking.log_every_n_steps=1"])
    data_dir = Path(args.data_dir)
    print(
        f"{SPEC.relative_to(REPO)}: {spec.model.name} {spec.model.options}, "
        f"{spec.trainer.max_epochs} epochs, "
        f"batch {spec.data.options['batch_size']}, {torch.get_num_threads()} torch threads"
    )
    ratios = []
    for repeat in range(1, args.repeats + 1):
        if repeat % 2:
            plain_time, plain_loss = plain_loop(spec, data_dir)
            lightning_time = bare_lightning(spec, data_dir)
            ours, our_loss, steps = litbench_run(spec, data_dir)
        else:  # the other order, so that neither side always runs on a warmer machine
            ours, our_loss, steps = litbench_run(spec, data_dir)
            lightning_time = bare_lightning(spec, data_dir)
            plain_time, plain_loss = plain_loop(spec, data_dir)
        ratios.append(ours / plain_time)
        agree = abs(our_loss - plain_loss) <= 1e-4 * max(1.0, abs(plain_loss))
        print(
            f"[{repeat}] plain {plain_time:6.2f} s  lightning {lightning_time:6.2f} s  litbench {ours:6.2f} s"
            f"  ratio {ratios[-1]:.3f}x  train loss plain {plain_loss:.6f} litbench {our_loss:.6f}"
            f" ({steps} step losses tracked)  agree: {agree}"
        )
        if not agree:
            return 1
    ratio = statistics.median(ratios)
    print(f"median ratio litbench / plain: {ratio:.3f}x over {len(ratios)} repeats (target <= 1.12x)")
    return 0 if ratio <= 1.12 else 1


if __name__ == "__main__":
    sys.exit(main())
