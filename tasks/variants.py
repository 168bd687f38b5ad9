"""A trained classifier's test split scored again as precision variants (``lightning_modules.quantize``).

Every variant runs in this process, on the CPU, with one torch thread count, over the same list of
test batches, so the sizes and latencies of ``fp32``, ``int8`` and ``bf16`` are comparable with one
another (not with the Trainer's test, which may have run on a GPU). ``fp32`` is always measured: it is
the baseline that the others' size and latency are read against.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lightning_modules.metrics import metric_collection, predictions
from lightning_modules.quantize import check_variant, make_variant, serialized_mb, timed_forward

STAGE = "test"  # the first test split only: a second one (MNLI mismatched) would double the time


@dataclass(frozen=True)
class VariantReport:
    """``metrics``: ``test_<variant>/<name>`` -> value; ``backends``: variant -> what built it."""

    metrics: dict[str, float] = field(default_factory=dict)
    backends: dict[str, str] = field(default_factory=dict)
    threads: int = 0  # torch's intra-op thread count while timing


def variant_order(variants: Sequence[str]) -> list[str]:
    """``variants`` without repeats, ``fp32`` first (added when missing); empty stays empty."""
    unique = list(dict.fromkeys(variants))
    return ["fp32", *(v for v in unique if v != "fp32")] if unique else []


@contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """Run the block with ``threads`` intra-op threads (None: as set), restoring the count after."""
    before = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def variant_batches(datamodule: Any, max_batches: int | None = None) -> list[tuple[Any, torch.Tensor]]:
    """The first test split's ``(inputs, labels)`` batches, as the Trainer's test step receives them
    (the datamodule's batch hooks applied: images normalized), on the CPU, held in a list so that
    every variant sees the same ones."""
    loaders = datamodule.test_dataloader()
    loader = loaders[0] if isinstance(loaders, (list, tuple)) else loaders
    batches = []
    for batch in loader:
        if max_batches is not None and len(batches) >= max_batches:
            break
        batch = datamodule.on_before_batch_transfer(batch, 0)
        inputs, labels = datamodule.on_after_batch_transfer(batch, 0)
        batches.append((_to_cpu(inputs), labels.cpu()))
    if not batches:
        raise ValueError(f"{type(datamodule).__name__} has no test batches to score the variants on")
    return batches


def _to_cpu(batch: Any) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.cpu()
    if isinstance(batch, dict):
        return {key: _to_cpu(value) for key, value in batch.items()}
    return batch


def evaluate_variants(
    network: nn.Module,
    datamodule: Any,
    variants: Sequence[str],
    metric_names: Sequence[str],
    num_classes: int,
    max_batches: int | None = None,
    threads: int | None = None,
    warmup: int = 2,
    model: str | None = None,
) -> VariantReport:
    """Score ``network`` on the first test split as each of ``variants`` (plus ``fp32``).

    Returns ``test_<v>/<name>`` for each of ``metric_names`` (the protocol's test metrics) and
    ``test_<v>/size_mb``, ``test_<v>/latency_ms_batch``, ``test_<v>/latency_ms_example``.
    ``network`` is left as it was; ``model`` names it in a refusal (``check_variant``).
    """
    order = variant_order(variants)
    if not order:
        return VariantReport()
    for name in order:  # refuse before any batch is read
        check_variant(network, name, model=model)
    batches = variant_batches(datamodule, max_batches)
    inputs = [x for x, _ in batches]
    metrics: dict[str, float] = {}
    backends: dict[str, str] = {}
    with torch_threads(threads) as used:
        for name in order:
            module, backends[name] = make_variant(network, name)
            timed = timed_forward(module, inputs, warmup=warmup)
            scores = metric_collection(metric_names, num_classes)
            for outputs, (_, labels) in zip(timed.outputs, batches, strict=True):
                scores.update(predictions(outputs.float()), labels)
            for metric, value in scores.compute().items():
                metrics[f"{STAGE}_{name}/{metric}"] = float(value)
            ms_batch, ms_example = timed.medians()
            metrics[f"{STAGE}_{name}/size_mb"] = serialized_mb(module)
            metrics[f"{STAGE}_{name}/latency_ms_batch"] = ms_batch
            metrics[f"{STAGE}_{name}/latency_ms_example"] = ms_example
            del module, timed  # one variant's copy in memory at a time
    return VariantReport(metrics, backends, used)
