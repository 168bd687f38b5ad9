"""The baseline of `benchmarks/run_vs_script.py`: the MNIST MLP trained by a plain PyTorch script.

The same work as `litbench run benchmarks/run_vs_script.yaml`, written the way a researcher writes it
without a framework: read the four IDX files, hold out 10% of the training images for validation,
normalize with the training split's mean and std, train a 784-256-128-10 MLP with Adam (lr 1e-3,
batch 128) for 3 epochs, validate after each epoch, keep the best epoch's weights and report their
test accuracy. Nothing is tracked.

    python benchmarks/plain_mnist_mlp.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import copy
import gzip
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        correct = sum(
            (model(x[i : i + 1000]).argmax(1) == y[i : i + 1000]).sum().item() for i in range(0, len(x), 1000)
        )
    return correct / len(x)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, required=True, help="holds MNIST/raw/*.gz")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    raw = args.data_dir / "MNIST" / "raw"
    images = (
        torch.from_numpy(read_idx(raw / "train-images-idx3-ubyte.gz").copy()).float().div_(255).flatten(1)
    )
    labels = torch.from_numpy(read_idx(raw / "train-labels-idx1-ubyte.gz").copy()).long()
    test_x = torch.from_numpy(read_idx(raw / "t10k-images-idx3-ubyte.gz").copy()).float().div_(255).flatten(1)
    test_y = torch.from_numpy(read_idx(raw / "t10k-labels-idx1-ubyte.gz").copy()).long()
    order = torch.randperm(len(images))
    n_val = round(0.1 * len(images))
    val_x, val_y = images[order[:n_val]], labels[order[:n_val]]
    train_x, train_y = images[order[n_val:]], labels[order[n_val:]]
    mean, std = train_x.mean(), train_x.std()
    train_x, val_x, test_x = ((x - mean) / std for x in (train_x, val_x, test_x))

    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    best, best_state = -1.0, None
    start = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        for idx in torch.randperm(len(train_x)).split(128):
            loss = F.cross_entropy(model(train_x[idx]), train_y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        val_acc = accuracy(model, val_x, val_y)
        if val_acc > best:
            best, best_state = val_acc, copy.deepcopy(model.state_dict())
        print(f"epoch {epoch}: train loss {loss.item():.4f}, val acc {val_acc:.4f}")
    fit = time.perf_counter() - start
    model.load_state_dict(best_state)
    print(f"fit {fit:.2f} s; best val acc {best:.4f}; test acc {accuracy(model, test_x, test_y):.4f}")


if __name__ == "__main__":
    main()
