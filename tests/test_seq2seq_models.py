"""Seq2seq architectures and decoding on tiny models and a toy reversal task: shapes, no look-ahead,
padding invariance, step == forward, overfitting 20 pairs, and batched beam search against a plain
one-sentence-at-a-time reference."""

from __future__ import annotations

import inspect
import math
import typing
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_modules.architectures.seq2seq import (
    INJECTED,
    SEQ2SEQ_MODELS,
    available_seq2seq_models,
    create_seq2seq_model,
    seq2seq_options,
)
from lightning_modules.decoding import beam_search, gnmt_penalty, greedy_decode

PAD, BOS, EOS = 0, 1, 2
VOCAB = 20  # ids >= 3 are words
SMALL: dict[str, dict[str, Any]] = {
    "gru_seq2seq": {"embed_dim": 16, "hidden": 32},
    "gru_attention": {"embed_dim": 16, "hidden": 32},
    "lstm_attention": {"embed_dim": 16, "hidden": 32},
    "transformer_seq2seq": {"d_model": 32, "heads": 2, "layers": 2, "ff_dim": 64},
}
NAMES = list(SMALL)
# variants that exercise every option path (ids name them)
CONFIGS: list[tuple[str, dict[str, Any]]] = [
    ("gru_seq2seq", {}),
    ("gru_seq2seq", {"layers": 2, "tie_embeddings": True}),
    ("gru_attention", {}),
    ("gru_attention", {"attention": "luong_dot", "input_feed": False}),
    ("gru_attention", {"attention": "bahdanau", "input_feed": False, "layers": 2}),
    ("lstm_attention", {}),
    ("lstm_attention", {"attention": "bahdanau", "tie_embeddings": True, "layers": 2}),
    ("transformer_seq2seq", {}),
    ("transformer_seq2seq", {"share_embeddings": True, "tie_output": False, "layers": 1}),
]
CONFIG_IDS = [name + "".join(f"-{k}={v}" for k, v in opts.items()) for name, opts in CONFIGS]


def build(name: str, seed: int = 0, dropout: float = 0.1, **options: Any) -> nn.Module:
    torch.manual_seed(seed)
    return create_seq2seq_model(
        name,
        src_vocab_size=VOCAB,
        tgt_vocab_size=VOCAB,
        pad_id=PAD,
        bos_id=BOS,
        eos_id=EOS,
        dropout=dropout,
        **{**SMALL[name], **options},
    )


def pad(rows: list[list[int]], width: int | None = None, fill: int = PAD) -> Tensor:
    width = width or max(map(len, rows))
    return torch.tensor([row + [fill] * (width - len(row)) for row in rows])


def toy_pairs(n: int = 20, seed: int = 0) -> list[tuple[list[int], list[int]]]:
    """``n`` random sources of 3-8 words and their reversals."""
    g = torch.Generator().manual_seed(seed)
    pairs = []
    for _ in range(n):
        length = int(torch.randint(3, 9, (1,), generator=g))
        src = torch.randint(3, VOCAB, (length,), generator=g).tolist()
        pairs.append((src, src[::-1]))
    return pairs


def batch(pairs: list[tuple[list[int], list[int]]]) -> dict[str, Tensor]:
    """src [B, S], src_lengths [B], tgt_in = bos + y, tgt_out = y + eos (both padded with PAD)."""
    return {
        "src": pad([s for s, _ in pairs]),
        "src_lengths": torch.tensor([len(s) for s, _ in pairs]),
        "tgt_in": pad([[BOS, *t] for _, t in pairs]),
        "tgt_out": pad([[*t, EOS] for _, t in pairs]),
    }


PAIRS = toy_pairs()
BATCH = batch(PAIRS)
SOME = batch(PAIRS[:4])  # rows of different lengths: real padding in src and tgt


def loss_of(model: nn.Module, b: dict[str, Tensor]) -> Tensor:
    logits = model(b["src"], b["src_lengths"], b["tgt_in"])
    return F.cross_entropy(logits.flatten(0, 1), b["tgt_out"].flatten(), ignore_index=PAD)


def train(model: nn.Module, steps: int, lr: float, stop_when_exact: bool = False) -> int:
    """Full-batch Adam on the 20 toy pairs; returns the steps taken (stops early once greedy is exact)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for step in range(1, steps + 1):
        model.train()
        opt.zero_grad()
        loss_of(model, BATCH).backward()
        opt.step()
        if stop_when_exact and step % 25 == 0 and greedy_exact(model):
            return step
    return steps


def greedy_exact(model: nn.Module) -> bool:
    hyps = greedy_decode(model, BATCH["src"], BATCH["src_lengths"], BOS, EOS, max_len=12)
    return hyps == [t for _, t in PAIRS]


# ---------------------------------------------------------------------------------------- protocol


def test_registry_holds_the_four_families() -> None:
    assert available_seq2seq_models() == sorted(NAMES)
    assert available_seq2seq_models("*attention") == ["gru_attention", "lstm_attention"]


@pytest.mark.parametrize(("name", "options"), CONFIGS, ids=CONFIG_IDS)
def test_forward_shapes_and_gradients(name: str, options: dict[str, Any]) -> None:
    model = build(name, **options)
    logits = model(SOME["src"], SOME["src_lengths"], SOME["tgt_in"])
    assert logits.shape == (*SOME["tgt_in"].shape, VOCAB)
    assert torch.isfinite(logits).all()
    loss_of(model, SOME).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"


@pytest.mark.parametrize(("name", "options"), CONFIGS, ids=CONFIG_IDS)
def test_no_look_ahead(name: str, options: dict[str, Any]) -> None:
    model = build(name, **options).eval()
    tgt = SOME["tgt_in"]
    reference = model(SOME["src"], SOME["src_lengths"], tgt)
    for k in range(1, tgt.shape[1]):
        changed = tgt.clone()
        changed[:, k:] = torch.randint(
            3, VOCAB, changed[:, k:].shape, generator=torch.Generator().manual_seed(k)
        )
        logits = model(SOME["src"], SOME["src_lengths"], changed)
        torch.testing.assert_close(logits[:, :k], reference[:, :k], rtol=1e-5, atol=1e-5)
        assert not torch.allclose(logits[:, k], reference[:, k])  # the test can see a change


@pytest.mark.parametrize(("name", "options"), CONFIGS, ids=CONFIG_IDS)
def test_padded_source_positions_change_nothing(name: str, options: dict[str, Any]) -> None:
    model = build(name, **options).eval()
    src, lengths = SOME["src"], SOME["src_lengths"]
    reference = model(src, lengths, SOME["tgt_in"])
    # garbage words (not PAD) in the padded positions and three extra padded columns
    noisy = pad(src.tolist(), src.shape[1] + 3, fill=0)
    mask = torch.arange(noisy.shape[1]) < lengths.unsqueeze(1)
    noisy = torch.where(
        mask, noisy, torch.randint(3, VOCAB, noisy.shape, generator=torch.Generator().manual_seed(1))
    )
    torch.testing.assert_close(model(noisy, lengths, SOME["tgt_in"]), reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("name", "options"), CONFIGS, ids=CONFIG_IDS)
def test_step_loop_equals_forward_and_attention_is_a_masked_distribution(
    name: str, options: dict[str, Any]
) -> None:
    model = build(name, **options).eval()
    src, lengths, tgt = SOME["src"], SOME["src_lengths"], SOME["tgt_in"]
    with torch.no_grad():
        reference = model(src, lengths, tgt)
        memory = model.encode(src, lengths)
        assert memory["src_mask"].tolist() == (src != PAD).tolist()
        state = model.start(memory)
        for t in range(tgt.shape[1]):
            logits, state, attention = model.step(memory, state, tgt[:, t])
            torch.testing.assert_close(logits, reference[:, t], rtol=1e-5, atol=1e-5)
            if name == "gru_seq2seq":
                assert attention is None
                continue
            assert attention.shape == src.shape
            torch.testing.assert_close(attention.sum(-1), torch.ones(src.shape[0]))
            assert (attention[src == PAD] == 0).all()


RECURRENT = [(n, o) for n, o in CONFIGS if n != "transformer_seq2seq"]


RECURRENT_IDS = [i for i in CONFIG_IDS if not i.startswith("transformer")]


@pytest.mark.parametrize(("name", "options"), RECURRENT, ids=RECURRENT_IDS)
def test_teacher_forced_forward_has_the_step_loops_gradients(name: str, options: dict[str, Any]) -> None:
    """forward runs the decoder over all gold steps at once (or projects all steps at once); training
    through it must give the very gradients of the one-step-at-a-time decoding protocol."""
    model = build(name, dropout=0.0, **options)
    src, lengths, tgt, out = SOME["src"], SOME["src_lengths"], SOME["tgt_in"], SOME["tgt_out"]

    def gradients(logits: Tensor) -> list[Tensor]:
        model.zero_grad()
        F.cross_entropy(logits.flatten(0, 1), out.flatten(), ignore_index=PAD).backward()
        return [p.grad.clone() for p in model.parameters()]

    fast = gradients(model(src, lengths, tgt))
    memory = model.encode(src, lengths)
    state, steps = model.start(memory), []
    for t in range(tgt.shape[1]):
        logits, state, _ = model.step(memory, state, tgt[:, t])
        steps.append(logits)
    for a, b in zip(fast, gradients(torch.stack(steps, dim=1)), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_reorder_selects_rows_of_memory_and_state() -> None:
    for name in NAMES:
        model = build(name).eval()
        with torch.no_grad():
            memory = model.encode(SOME["src"], SOME["src_lengths"])
            state = model.start(memory)
            _, state, _ = model.step(memory, state, SOME["tgt_in"][:, 0])
            index = torch.tensor([2, 2, 0])
            picked, picked_state = model.reorder(memory, state, index)
            logits, _, _ = model.step(picked, picked_state, SOME["tgt_in"][index, 1])
            full, _, _ = model.step(memory, state, SOME["tgt_in"][:, 1])
        torch.testing.assert_close(logits, full[index])


def test_teacher_forcing() -> None:
    model = build("gru_attention").eval()
    src, lengths, tgt = SOME["src"], SOME["src_lengths"], SOME["tgt_in"]
    with torch.no_grad():
        own = model(src, lengths, tgt, teacher_forcing=0.0)  # feeds its own argmax after bos
        greedy = greedy_decode(model, src, lengths, BOS, EOS, max_len=tgt.shape[1])
    for row, hyp in zip(own.argmax(-1).tolist(), greedy, strict=True):
        assert row[: len(hyp)] == hyp
    with pytest.raises(ValueError, match="teacher_forcing"):
        build("transformer_seq2seq")(src, lengths, tgt, teacher_forcing=0.5)


# ------------------------------------------------------------------------------------------ options


@pytest.mark.parametrize("name", NAMES)
def test_builder_signature_is_an_options_schema(name: str) -> None:
    builder = SEQ2SEQ_MODELS.get(name)
    params = inspect.signature(builder).parameters
    hints = typing.get_type_hints(builder)  # what experiments.specs.options_model will read
    assert list(params)[: len(INJECTED)] == list(INJECTED)
    for option in seq2seq_options(name):
        assert params[option].default is not inspect.Parameter.empty, option
        assert option in hints, option
    with pytest.raises(TypeError, match="takes no option"):
        build(name, no_such_option=1)


def test_bad_arguments_fail_at_build_time() -> None:
    with pytest.raises(ValueError, match="joint vocabulary"):
        ids = {"pad_id": PAD, "bos_id": BOS, "eos_id": EOS}
        create_seq2seq_model(
            "transformer_seq2seq", src_vocab_size=30, tgt_vocab_size=20, share_embeddings=True, **ids
        )
    with pytest.raises(ValueError, match="must differ"):
        create_seq2seq_model(
            "gru_seq2seq", src_vocab_size=20, tgt_vocab_size=20, pad_id=0, bos_id=0, eos_id=2
        )
    with pytest.raises(ValueError, match="unknown attention"):
        build("gru_attention", attention="cosine")


# ---------------------------------------------------------------------------------- overfit 20 pairs

OVERFIT_LR = {"gru_seq2seq": 1e-2, "gru_attention": 1e-2, "lstm_attention": 1e-2, "transformer_seq2seq": 3e-3}


@pytest.mark.parametrize("name", NAMES)
def test_overfits_twenty_reversals(name: str) -> None:
    options = {"embed_dim": 32, "hidden": 64} if name != "transformer_seq2seq" else {}
    model = build(name, dropout=0.0, **options)
    steps = train(model, steps=400, lr=OVERFIT_LR[name], stop_when_exact=True)
    assert greedy_exact(model), f"{name} did not reproduce the 20 pairs in {steps} steps"


# ------------------------------------------------------------------------------------- beam search


def beam_search_reference(
    model: nn.Module,
    src: Tensor,
    src_lengths: Tensor,
    bos_id: int,
    eos_id: int,
    beam_size: int,
    max_len: int,
    length_penalty: float = 1.0,
) -> list[list[int]]:
    """The rule of ``lightning_modules.decoding`` written plainly: one sentence (unpadded) at a time,
    one ``step`` call per beam, candidates sorted in Python. For tests only."""
    k = beam_size
    model.eval()
    results = []
    with torch.no_grad():
        for i in range(src.shape[0]):
            n = int(src_lengths[i])
            memory = model.encode(src[i : i + 1, :n], src_lengths[i : i + 1])
            beams = [(torch.tensor(0.0), [], model.start(memory), bos_id)]  # score, tokens, state, prev
            finished: list[tuple[float, list[int]]] = []
            for t in range(max_len):
                candidates = []
                for b, (score, _, state, prev) in enumerate(beams):
                    logits, new_state, _ = model.step(memory, state, torch.tensor([prev]))
                    logp = logits[0].float().log_softmax(-1)
                    candidates += [(score + logp[tok], b, tok, new_state) for tok in range(len(logp))]
                candidates.sort(key=lambda c: -float(c[0]))
                top = candidates[: 2 * k]
                for score, b, tok, _ in top[:k]:
                    if tok == eos_id and math.isfinite(score):
                        finished.append((float(score) / gnmt_penalty(t + 1, length_penalty), beams[b][1]))
                beams = [(s, beams[b][1] + [tok], st, tok) for s, b, tok, st in top if tok != eos_id][:k]
                if t == max_len - 1:
                    if len(finished) < k:
                        lp = gnmt_penalty(max_len, length_penalty)
                        finished += [(float(s) / lp, toks) for s, toks, _, _ in beams if math.isfinite(s)]
                    break
                if len(finished) >= k:
                    break
            results.append(max(finished, key=lambda f: f[0])[1])
    return results


def hypothesis_scores(
    model: nn.Module, src: Tensor, lengths: Tensor, hyps: list[list[int]], max_len: int, alpha: float
) -> list[float]:
    """log P(hyp (+ eos unless it ran to max_len) | src) / lp(its length), by teacher forcing."""
    scores = []
    model.eval()
    with torch.no_grad():
        for i, hyp in enumerate(hyps):
            full = hyp + ([EOS] if len(hyp) < max_len else [])
            tgt_in = torch.tensor([[BOS, *full[:-1]]])
            logp = model(src[i : i + 1], lengths[i : i + 1], tgt_in)[0].log_softmax(-1)
            total = logp[torch.arange(len(full)), torch.tensor(full)].sum()
            scores.append(float(total) / gnmt_penalty(len(full), alpha))
    return scores


@pytest.fixture(scope="module", params=["gru_attention", "transformer_seq2seq"])
def half_trained(request: pytest.FixtureRequest) -> nn.Module:
    """Trained a little: peaked enough to be a real model, unsure enough for beams to matter."""
    model = build(request.param, dropout=0.0)
    train(model, steps=30, lr=1e-2 if request.param != "transformer_seq2seq" else 3e-3)
    return model.eval()


EVAL = batch(toy_pairs(6, seed=1))  # unseen sentences
MAX_LEN = 10  # shorter than some reversals + eos: the max_len path is exercised too


@pytest.mark.parametrize("alpha", [0.0, 1.0])
@pytest.mark.parametrize("beam_size", [1, 2, 4])
def test_batched_beam_search_equals_reference(half_trained: nn.Module, beam_size: int, alpha: float) -> None:
    src, lengths = EVAL["src"], EVAL["src_lengths"]
    batched = beam_search(half_trained, src, lengths, BOS, EOS, beam_size, MAX_LEN, length_penalty=alpha)
    reference = beam_search_reference(half_trained, src, lengths, BOS, EOS, beam_size, MAX_LEN, alpha)
    assert batched == reference


def test_beam_size_one_is_greedy(half_trained: nn.Module) -> None:
    src, lengths = EVAL["src"], EVAL["src_lengths"]
    greedy = greedy_decode(half_trained, src, lengths, BOS, EOS, MAX_LEN)
    assert beam_search(half_trained, src, lengths, BOS, EOS, 1, MAX_LEN) == greedy


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_beam_scores_at_least_greedy(half_trained: nn.Module, alpha: float) -> None:
    src, lengths = EVAL["src"], EVAL["src_lengths"]
    greedy = greedy_decode(half_trained, src, lengths, BOS, EOS, MAX_LEN)
    beams = beam_search(half_trained, src, lengths, BOS, EOS, 4, MAX_LEN, length_penalty=alpha)
    g = hypothesis_scores(half_trained, src, lengths, greedy, MAX_LEN, alpha)
    b = hypothesis_scores(half_trained, src, lengths, beams, MAX_LEN, alpha)
    assert all(bs >= gs - 1e-5 for bs, gs in zip(b, g, strict=True)), (b, g)
