"""Text architectures on hand-built token batches that follow the datamodule contract (real padding):
shapes, gradients, padding invariance, the pair combination, attention maps, positional encodings."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import lightning_modules.architectures.cbow
import lightning_modules.architectures.recurrent
import lightning_modules.architectures.textcnn
import lightning_modules.architectures.transformer  # noqa: F401  (the imports register the builders)
from lightning_modules.architectures import MODELS
from lightning_modules.architectures.text_encoders import pair_features, sinusoidal_table

PAD, UNK, SEP, CLS = 0, 1, 2, 3
VOCAB = 50
MAX_LEN = 32
# tiny widths keep the file fast; pooling "last" on the rnn/gru exercises the final-state path
SMALL: dict[str, dict[str, Any]] = {
    "cbow": {"embed_dim": 8, "hidden": 8},
    "rnn": {"embed_dim": 8, "hidden": 6, "pooling": "last"},
    "gru": {"embed_dim": 8, "hidden": 6, "layers": 2, "pooling": "mean"},
    "lstm": {"embed_dim": 8, "hidden": 6, "layers": 2},
    "textcnn": {"embed_dim": 8, "channels": 4},
    "transformer": {"d_model": 8, "heads": 2, "layers": 2, "ff_dim": 16},
}
NAMES = list(SMALL)
SIAMESE = ["cbow", "rnn", "gru", "lstm", "textcnn"]  # encode a and b separately with shared weights

# sentences of different lengths, so every batch has real padding; ids >= 4 are words
SENTS_A = [[5, 6, 7, 8, 9, 10], [11, 12], [13], [14, 15, 16]]
SENTS_B = [[20, 21], [22, 23, 24, 25, 26], [27, 28, 29], [30]]


def build(name: str, pair: bool = False, num_classes: int = 3, seed: int = 0, **options: Any) -> nn.Module:
    torch.manual_seed(seed)
    options = {**SMALL[name], **options}
    builder = MODELS.get(name)
    injected = {"vocab_size": VOCAB, "pad_id": PAD, "pair": pair}
    return builder(input_shape=(MAX_LEN,), num_classes=num_classes, dropout=0.1, **injected, **options)


def pad(rows: list[list[int]], extra: int = 0) -> tuple[Tensor, Tensor]:
    """Right-pad with PAD to the longest row plus ``extra`` columns; also return the lengths."""
    width = max(map(len, rows)) + extra
    tokens = torch.tensor([row + [PAD] * (width - len(row)) for row in rows])
    return tokens, torch.tensor([len(row) for row in rows])


def make_batch(
    pair: bool, extra: int = 0, a: list[list[int]] = SENTS_A, b: list[list[int]] = SENTS_B
) -> dict:
    """A batch as the text datamodules build it; ``extra`` appends padding columns to every tensor."""
    if not pair:
        tokens, lengths = pad(a, extra)
        return {"tokens": tokens, "lengths": lengths, "segments": torch.zeros_like(tokens)}
    joint = [[*x, SEP, *y] for x, y in zip(a, b, strict=True)]
    tokens, lengths = pad(joint, extra)
    segments, _ = pad([[0] * (len(x) + 1) + [1] * len(y) for x, y in zip(a, b, strict=True)], extra)
    tokens_a, lengths_a = pad(a, extra)
    tokens_b, lengths_b = pad(b, extra)
    return {
        "tokens": tokens,
        "lengths": lengths,
        "segments": segments,
        "tokens_a": tokens_a,
        "lengths_a": lengths_a,
        "tokens_b": tokens_b,
        "lengths_b": lengths_b,
    }


def token_embedding(model: nn.Module) -> nn.Embedding:
    return next(m for m in model.modules() if isinstance(m, nn.Embedding) and m.num_embeddings == VOCAB)


@pytest.mark.parametrize("num_classes", [2, 3, 1])
@pytest.mark.parametrize("pair", [False, True], ids=["single", "pair"])
@pytest.mark.parametrize("name", NAMES)
def test_forward_backward(name: str, pair: bool, num_classes: int) -> None:
    model = build(name, pair, num_classes)
    assert any(isinstance(m, nn.Dropout) and m.p == 0.1 for m in model.modules())
    out = model(make_batch(pair))
    assert out.shape == (4, num_classes)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    grad = token_embedding(model).weight.grad
    assert grad is not None and torch.isfinite(grad).all()
    assert grad[4:].abs().sum() > 0
    assert grad[PAD].abs().sum() == 0  # padding is no input: it learns nothing
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("pair", [False, True], ids=["single", "pair"])
@pytest.mark.parametrize("name", NAMES)
def test_padding_invariance(name: str, pair: bool) -> None:
    model = build(name, pair).eval()
    with torch.no_grad():
        reference = model(make_batch(pair))
        assert torch.allclose(model(make_batch(pair, extra=5)), reference, atol=1e-5)
        # each row alone, without the padding its batch-mates forced on it
        for i in range(len(SENTS_A)):
            alone = model(make_batch(pair, a=[SENTS_A[i]], b=[SENTS_B[i]]))
            assert torch.allclose(alone, reference[i : i + 1], atol=1e-5), f"row {i}"


@pytest.mark.parametrize("name", NAMES)
def test_vocab_size_below_specials_is_rejected(name: str) -> None:
    with pytest.raises(ValueError, match="vocab_size >= 4"):
        MODELS.get(name)(input_shape=(MAX_LEN,), num_classes=2, vocab_size=3)


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_model(name: str) -> None:
    batch = make_batch(True)
    first, second = build(name, True, seed=7).eval(), build(name, True, seed=7).eval()
    with torch.no_grad():
        assert torch.equal(first(batch), second(batch))


@pytest.mark.parametrize("name", NAMES)
def test_missing_pair_keys_name_the_problem(name: str) -> None:
    model = build(name, pair=True)
    batch = {k: v for k, v in make_batch(True).items() if k in ("tokens", "lengths")}
    with pytest.raises(KeyError, match="pair"):
        model(batch)


def test_pair_features_layout() -> None:
    u, v = torch.tensor([[1.0, -2.0]]), torch.tensor([[3.0, 0.5]])
    expected = torch.tensor([[1.0, -2.0, 3.0, 0.5, 2.0, 2.5, 3.0, -1.0]])
    assert torch.equal(pair_features(u, v), expected)


@pytest.mark.parametrize("name", SIAMESE)
def test_swapping_the_pair_swaps_u_and_v_only(name: str) -> None:
    model = build(name, pair=True).eval()
    with torch.no_grad():
        forward = model.features(make_batch(True))
        swapped = model.features(make_batch(True, a=SENTS_B, b=SENTS_A))
    u, v, diff, prod = forward.chunk(4, dim=1)
    su, sv, sdiff, sprod = swapped.chunk(4, dim=1)
    assert torch.allclose(su, v, atol=1e-6) and torch.allclose(sv, u, atol=1e-6)
    assert torch.allclose(sdiff, diff, atol=1e-6) and torch.allclose(sprod, prod, atol=1e-6)
    assert torch.allclose(diff, (u - v).abs()) and torch.allclose(prod, u * v)
    assert not torch.allclose(u, v)  # the two sentences do differ


@pytest.mark.parametrize("name", SIAMESE)
def test_pair_encoder_is_shared(name: str) -> None:
    """The same sentence as a and as b gives u == v: one set of weights reads both."""
    model = build(name, pair=True).eval()
    with torch.no_grad():
        u, v, diff, _ = model.features(make_batch(True, b=SENTS_A)).chunk(4, dim=1)
    assert torch.allclose(u, v, atol=1e-6) and torch.allclose(diff, torch.zeros_like(diff), atol=1e-6)


def test_sinusoidal_table_matches_the_formula_by_hand() -> None:
    table = sinusoidal_table(5, 4)
    # d = 4: column 2i uses pos / 10000^(2i/4): i=0 -> pos, i=1 -> pos / 100
    hand = {
        (0, 0): 0.0,  # sin(0)
        (0, 1): 1.0,  # cos(0)
        (1, 0): 0.8414709848,  # sin(1)
        (1, 1): 0.5403023059,  # cos(1)
        (2, 2): 0.0199986667,  # sin(0.02)
        (2, 3): 0.9998000067,  # cos(0.02)
        (4, 0): -0.7568024953,  # sin(4)
        (4, 3): 0.9992001067,  # cos(0.04)
    }
    for (pos, col), value in hand.items():
        assert table[pos, col].item() == pytest.approx(value, abs=1e-7), (pos, col)
    wide = sinusoidal_table(50, 16)
    pos, i = 37, 3
    assert wide[pos, 2 * i].item() == pytest.approx(math.sin(pos / 10000 ** (2 * i / 16)), abs=1e-6)
    assert wide[pos, 2 * i + 1].item() == pytest.approx(math.cos(pos / 10000 ** (2 * i / 16)), abs=1e-6)
    assert sinusoidal_table(3, 5).shape == (3, 5)  # odd widths drop the last cosine


@pytest.mark.parametrize("pair", [False, True], ids=["single", "pair"])
def test_attention_maps(pair: bool) -> None:
    model = build("transformer", pair, layers=3).train()
    batch = make_batch(pair, extra=2)
    maps = model.attention_maps(batch)
    assert model.training  # the mode it was called in is restored
    width = batch["tokens"].shape[1]
    padding = batch["tokens"] == PAD
    assert len(maps) == 3
    for weights in maps:
        assert weights.shape == (4, 2, width, width)
        assert torch.isfinite(weights).all()
        on_pad_keys = weights.masked_select(padding[:, None, None, :].expand_as(weights))
        assert on_pad_keys.numel() > 0 and torch.equal(on_pad_keys, torch.zeros_like(on_pad_keys))
        assert torch.allclose(weights.sum(dim=-1), torch.ones(4, 2, width), atol=1e-5)


@pytest.mark.parametrize("positional", ["sinusoidal", "learned"])
@pytest.mark.parametrize("pooling", ["mean", "first"])
def test_transformer_options(positional: str, pooling: str) -> None:
    model = build("transformer", True, positional=positional, pooling=pooling).eval()
    with torch.no_grad():
        out = model(make_batch(True))
        assert torch.allclose(model(make_batch(True, extra=3)), out, atol=1e-5)
    assert out.shape == (4, 3) and torch.isfinite(out).all()


def test_transformer_segments_matter_for_pairs() -> None:
    model = build("transformer", True).eval()
    batch = make_batch(True)
    with torch.no_grad():
        out = model(batch)
        flat = model({**batch, "segments": torch.zeros_like(batch["segments"])})
    assert not torch.allclose(out, flat)


def test_transformer_rejects_bad_heads_and_too_long_learned_positions() -> None:
    with pytest.raises(ValueError, match="divisible"):
        build("transformer", d_model=10, heads=4)
    model = MODELS.get("transformer")(
        input_shape=(4,), num_classes=2, vocab_size=VOCAB, positional="learned", d_model=8, heads=2
    )
    with pytest.raises(ValueError, match="learned positions"):
        model(make_batch(False))


@pytest.mark.parametrize("pooling", ["last", "max"])
def test_lstm_packed_equals_unpacked_without_padding(pooling: str) -> None:
    model = build("lstm", pooling=pooling).eval()
    encoder = model.encoder
    tokens = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16]])
    lengths = torch.full((3,), 4)
    with torch.no_grad():
        packed = encoder(tokens, lengths)
        outputs, (h, _) = encoder.rnn(encoder.embedding(tokens))
    expected = torch.cat([h[-2], h[-1]], dim=1) if pooling == "last" else outputs.amax(dim=1)
    assert torch.allclose(packed, expected, atol=1e-6)


def test_rnn_last_state_reads_each_rows_own_end() -> None:
    """With padding, the forward state after the last real token equals that of the row run alone."""
    model = build("gru", pooling="last", bidirectional=False, layers=1).eval()
    encoder = model.encoder
    tokens, lengths = pad(SENTS_A)
    with torch.no_grad():
        batched = encoder(tokens, lengths)
        for i, row in enumerate(SENTS_A):
            _, h = encoder.rnn(encoder.embedding(torch.tensor([row])))
            assert torch.allclose(batched[i], h[-1, 0], atol=1e-6)


@pytest.mark.parametrize("pair", [False, True], ids=["single", "pair"])
def test_textcnn_sentences_shorter_than_the_widest_kernel(pair: bool) -> None:
    model = build("textcnn", pair, kernel_sizes=(2, 5, 7)).eval()
    short_a, short_b = [[5], [6, 7], [8]], [[9, 10], [11], [12, 13]]
    batch = make_batch(pair, a=short_a, b=short_b)
    with torch.no_grad():
        out = model(batch)
        assert torch.allclose(model(make_batch(pair, extra=9, a=short_a, b=short_b)), out, atol=1e-5)
    assert out.shape == (3, 3) and torch.isfinite(out).all()
    model.train()
    model(batch).sum().backward()
    assert token_embedding(model).weight.grad[5:14].abs().sum() > 0


def test_textcnn_ignores_windows_over_padding() -> None:
    """Windows that reach into padding are excluded, so a ReLU feature of a pad-only window can't win."""
    model = build("textcnn", kernel_sizes=(3,)).eval()
    encoder = model.encoder
    with torch.no_grad():
        for conv in encoder.convs:
            conv.bias.fill_(5.0)  # a window of zeros (padding) would now give a large positive feature
        tokens, lengths = pad([[5, 6, 7, 8], [9, 10, 11]], extra=4)
        out = encoder(tokens, lengths)
        alone = encoder(*pad([[9, 10, 11]]))
    assert torch.allclose(out[1], alone[0], atol=1e-6)


@pytest.mark.gpu
@pytest.mark.parametrize("name", NAMES)
def test_cuda_matches_cpu(name: str) -> None:
    model = build(name, True).eval()
    batch = make_batch(True, extra=2)
    with torch.no_grad():
        expected = model(batch)
        got = model.cuda()({k: v.cuda() for k, v in batch.items()})
    assert torch.allclose(got.cpu(), expected, atol=1e-4)
