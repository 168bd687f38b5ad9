"""Precision variants of a trained network for CPU inference: ``fp32``, ``int8`` and ``bf16``.

``fp32`` is the reference whose size and latency the others are compared with. ``int8`` is
post-training *dynamic* quantization: weights of ``nn.Linear``, ``nn.LSTM`` and ``nn.GRU`` are stored
as int8, activations are quantized per batch at run time, so no calibration data is needed. ``bf16``
casts weights and floating activations to bfloat16 (token ids stay int64).

**The int8 backend is ``torch.ao.quantization.quantize_dynamic``**, measured with torch 2.13.0 (CPU,
x86 engine) and torchao 0.18 on a 2-core AMD EPYC without AVX-512: median ms of a batch of 32, one
thread, best of 5 rounds, through ``make_variant`` and ``measure_latency``:

    model (fp32 size)              fp32     torch.ao int8      torchao int8      bf16
    MLP 512-1024-1024-10 (6.34 MB)  4.2 ms   4.5 ms, 1.63 MB    61 ms, 1.61 MB    21 ms, 3.17 MB
    biLSTM 128->256 (3.27 MB)       23 ms    20 ms, 0.91 MB     (LSTM untouched)  125 ms, 1.64 MB
    transformer d=128 (1.17 MB)     10 ms    11 ms, 0.80 MB                       66 ms, 0.59 MB
    minilm (90.3 MB; 2 threads)     1750 ms  1220 ms, 58.8 MB                     4280 ms, 45.2 MB

Both int8 backends shrink Linear weights 4x and keep the logits (argmax agreement >= 98% on
random inputs). torchao's ``quantize_(model, Int8DynamicActivationInt8WeightConfig())`` runs its
``Int8Tensor`` weights through unfused eager ops on CPU (its fast paths need ``torch.compile`` or a
GPU), ~14x *slower* than fp32, and leaves ``nn.LSTM``/``nn.GRU`` untouched; torch.ao has fbgemm/x86
int8 kernels for all three layer types. So torch.ao quantizes everything (Linear with per-channel
weight scales, recurrent layers per-tensor). It warns that it is deprecated (torchao is its
successor), but exists and works in 2.13: the warning is silenced here, and if a later torch drops
``quantize_dynamic`` the variant falls back to torchao for ``nn.Linear`` only. ``make_variant``
returns the backend it used, so a run records which one it measured. bf16 is slower on CPUs without
native bf16 instructions (AVX512-BF16, AMX): there it measures size and accuracy, not a speed-up.

Attention: ``nn.MultiheadAttention`` keeps its packed ``in_proj_weight`` as a bare parameter and its
``out_proj`` is a ``NonDynamicallyQuantizableLinear``, which neither backend touches, so a
transformer's attention stays fp32 and only its feed-forward and head layers become int8. HF
``BertModel`` (``minilm``) is built from plain ``nn.Linear`` (query, key, value, output, FFN), so all
of its projections are quantized; embeddings and LayerNorm stay fp32 in every model.
"""

from __future__ import annotations

import copy
import io
import statistics
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

VARIANTS = ("fp32", "int8", "bf16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}

# Below this share of the weights in quantizable layers, int8 would measure the fp32 model again
# (a bag-of-words model's head next to its embeddings). Kept low because embeddings hold most of a
# text model's weights but little of its compute: a transformer with a large vocabulary has ~5%.
MIN_QUANTIZED_SHARE = 0.01


def _torch_ao_quantize_dynamic() -> Callable[..., nn.Module] | None:
    """torch.ao's eager dynamic quantization, or None once a torch release has removed it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated")
        try:
            from torch.ao.quantization import quantize_dynamic
        except ImportError:
            return None
    return quantize_dynamic


def int8_backend() -> str:
    """``"torch.ao"`` where torch still has ``quantize_dynamic`` (see the module docstring), else
    ``"torchao"`` (Linear only), else ``""``: no int8 backend is installed."""
    if _torch_ao_quantize_dynamic() is not None:
        return "torch.ao"
    try:
        import torchao.quantization  # noqa: F401
    except ImportError:
        return ""
    return "torchao"


def _quantizable_types(backend: str) -> tuple[type[nn.Module], ...]:
    return (nn.Linear, nn.LSTM, nn.GRU) if backend == "torch.ao" else (nn.Linear,)


def quantizable_share(network: nn.Module, backend: str | None = None) -> float:
    """The share of ``network``'s weights that int8 stores as int8 under ``backend``.

    Types match exactly, as both backends match them: ``NonDynamicallyQuantizableLinear`` (attention's
    ``out_proj``) is a subclass of ``nn.Linear`` and is not quantized.
    """
    types = _quantizable_types(int8_backend() if backend is None else backend)
    total = sum(p.numel() for p in network.parameters())
    covered = sum(
        p.numel() for m in network.modules() if type(m) in types for p in m.parameters(recurse=False)
    )
    return covered / total if total else 0.0


def check_variant(network: nn.Module, name: str, model: str | None = None) -> None:
    """Raise ValueError, with the reason and a fix, when ``network`` cannot be run as variant ``name``.

    ``model`` names the network in the message (the spec's model name); its class name otherwise.
    """
    label = f"model {model!r}" if model else f"model {type(network).__name__}"
    if name not in VARIANTS:
        raise ValueError(f"unknown precision variant {name!r}; choose from {', '.join(VARIANTS)}")
    if name != "int8":
        return
    backend = int8_backend()
    if not backend:
        raise ValueError(
            f"{label} cannot be tested as int8: this torch has no torch.ao.quantization.quantize_dynamic "
            "and torchao is not installed; install torchao or drop int8 from the variants"
        )
    share = quantizable_share(network, backend)
    layers = "Linear, LSTM or GRU" if backend == "torch.ao" else "Linear"
    if share < MIN_QUANTIZED_SHARE:
        raise ValueError(
            f"{label} cannot be tested as int8: only {share:.2%} of its weights are in {layers} layers "
            f"(dynamic int8 quantizes nothing else, need {MIN_QUANTIZED_SHARE:.0%}); drop int8 from "
            "the variants for this model"
        )


def make_variant(network: nn.Module, name: str) -> tuple[nn.Module, str]:
    """A new CPU module in eval mode holding ``network`` as variant ``name``, and the backend that
    made it. ``network`` itself is never modified (every variant starts from a deep copy)."""
    check_variant(network, name)
    # float32 first, also for int8: a network trained in bf16-true still gets an fp32 reference
    module = copy.deepcopy(network).cpu().to(torch.float32).eval()
    if name == "fp32":
        return module, "eager/float32"
    if name == "bf16":
        return module.to(torch.bfloat16), "eager/bfloat16"
    quantize_dynamic = _torch_ao_quantize_dynamic()
    if quantize_dynamic is not None:
        with warnings.catch_warnings():  # chosen knowingly, see the module docstring
            warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated")
            warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor")
            from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig

            # per-output-channel scales for Linear: on MiniLM they keep pooled vectors at cosine
            # 0.97 of fp32 (per-tensor: 0.92) and run faster; recurrent layers stay per-tensor,
            # per-channel only grows them and gains nothing measurable
            qconfigs = {
                nn.Linear: per_channel_dynamic_qconfig,
                nn.LSTM: default_dynamic_qconfig,
                nn.GRU: default_dynamic_qconfig,
            }
            quantized = quantize_dynamic(module, qconfigs, dtype=torch.qint8)
        return quantized, f"torch.ao.quantize_dynamic/{torch.backends.quantized.engine}"
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    quantize_(module, Int8DynamicActivationInt8WeightConfig())  # in place, on our copy
    return module, "torchao/Int8DynamicActivationInt8WeightConfig"


def serialized_mb(module: nn.Module) -> float:
    """Size of ``torch.save(module.state_dict())`` in MB (1e6 bytes): what a checkpoint would take."""
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    return buffer.tell() / 1e6


def input_dtype(module: nn.Module) -> torch.dtype:
    """The floating dtype ``module`` computes in: its first floating parameter's (an int8 module's
    LayerNorm or embedding is float32), float32 when it has none."""
    for p in module.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def cast_inputs(batch: Any, dtype: torch.dtype) -> Any:
    """``batch`` on the CPU with its floating tensors in ``dtype``; integer tensors (token ids,
    lengths) keep theirs. Tensors, dicts, lists and tuples of them."""
    if isinstance(batch, Tensor):
        return batch.to("cpu", dtype) if batch.is_floating_point() else batch.cpu()
    if isinstance(batch, dict):
        return {key: cast_inputs(value, dtype) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(cast_inputs(value, dtype) for value in batch)
    return batch


def batch_size(batch: Any) -> int:
    """Examples in an input batch: the first dimension of its (first) tensor."""
    if isinstance(batch, Tensor):
        return int(batch.shape[0])
    values = batch.values() if isinstance(batch, dict) else batch
    for value in values:
        if isinstance(value, Tensor):
            return int(value.shape[0])
    raise TypeError(f"cannot tell the batch size of a {type(batch).__name__} without tensors")


@dataclass(frozen=True)
class TimedOutputs:
    """One pass over a list of input batches: each batch's outputs, forward time and size."""

    outputs: list[Tensor]
    ms: list[float]
    sizes: list[int]

    def medians(self) -> tuple[float, float]:
        """Median ms per batch and median ms per example (each batch's ms over its size)."""
        per_example = [ms / n for ms, n in zip(self.ms, self.sizes, strict=True)]
        return statistics.median(self.ms), statistics.median(per_example)


def timed_forward(module: nn.Module, batches: Sequence[Any], warmup: int = 2) -> TimedOutputs:
    """Forward every batch once and time each forward alone (inputs are cast beforehand).

    The first ``warmup`` batches are run once more before the timed pass and not timed: the first
    calls pay for allocations and kernel selection (one-time packing of quantized weights).
    """
    if not batches:
        raise ValueError("timing needs at least one batch")
    inputs = [cast_inputs(batch, input_dtype(module)) for batch in batches]
    outputs, times = [], []
    with torch.inference_mode():
        for x in inputs[:warmup]:
            module(x)
        for x in inputs:
            start = time.perf_counter()
            out = module(x)
            times.append((time.perf_counter() - start) * 1e3)
            outputs.append(out)
    return TimedOutputs(outputs, times, [batch_size(x) for x in inputs])


def measure_latency(module: nn.Module, batches: Iterable[Any], warmup: int = 2) -> tuple[float, float]:
    """Median CPU latency of ``module`` on ``batches`` in ms: per batch and per example."""
    return timed_forward(module, list(batches), warmup).medians()
