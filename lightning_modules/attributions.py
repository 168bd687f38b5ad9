"""Integrated Gradients (Sundararajan et al. 2017, through Captum) for the text and image classifiers,
and an HTML page of token attributions.

IG attributes ``f(x) - f(x')`` for one output (here the predicted class) to the input features: the
attributions of an example sum to that difference (completeness) up to the integral's error, which
Captum returns as the convergence delta. Images are attributed pixel by pixel against the all-zero
image. Token ids are discrete, so text is attributed at the output of the token embedding layer, as
Captum's ``LayerIntegratedGradients`` does, and summed over the embedding dimensions: one score a token.

Why not ``LayerIntegratedGradients`` itself: it assumes row r of the layer's output belongs to example
r, but the siamese pair encoders embed ``a`` and ``b`` in one stacked call (rows ``[a_0..a_B, b_0..b_B]``),
which it would interpolate in the wrong order. So this module does what it does, substitute the
interpolated embeddings with a forward hook on the layer, with ``IntegratedGradients`` over the
layer's output cut into its B-row blocks; Captum expands the other batch tensors step-major, which
is the order the stacked call then sees, so the same code serves every text model here.

Captum is imported inside the functions: registering the models must not pay for it.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lightning_modules.architectures.text_encoders import SPECIAL_TOKENS

UNK_ID = SPECIAL_TOKENS.index("[UNK]")
FIRST_WORD_ID = len(SPECIAL_TOKENS)  # ids below are [PAD], [UNK], [SEP], [CLS]
TOKEN_KEYS = ("tokens", "tokens_a", "tokens_b")  # the batch's token-id tensors (text_encoders' contract)


@dataclass(frozen=True)
class TokenAttributions:
    """IG of a text batch. ``scores`` [B, T] lines up with ``batch["tokens"]`` (0 on padding, and on a
    pair's [SEP] for the siamese encoders, which never embed it); ``delta`` [B] is Captum's convergence
    delta, ``sum(scores) - (f(x) - f(baseline))``; ``outputs`` [B, C] the network's outputs on ``x``."""

    scores: Tensor
    target: Tensor
    delta: Tensor
    outputs: Tensor


@dataclass(frozen=True)
class PixelAttributions:
    """IG of an image batch: ``attributions`` has the images' shape; ``delta`` [B] as above."""

    attributions: Tensor
    target: Tensor
    delta: Tensor


def find_token_embedding(network: nn.Module, vocab_size: int) -> nn.Embedding:
    """The ``nn.Embedding`` of ``vocab_size`` rows that reads the token ids (shared by a siamese pair).

    A learned position table may have as many rows as the vocabulary; the token table is then the one
    with a ``padding_idx`` (every text model here pads its token embedding, none its positions)."""
    tables = [(name, m) for name, m in network.named_modules() if isinstance(m, nn.Embedding)]
    found = [m for _, m in tables if m.num_embeddings == vocab_size]
    if len(found) > 1:
        found = [m for m in found if m.padding_idx is not None]
    if len(found) == 1:
        return found[0]
    seen = ", ".join(f"{name or '(root)'}: {m.num_embeddings}" for name, m in tables) or "none"
    problem = "several" if found else "no"
    raise ValueError(
        f"{type(network).__name__} has {problem} token embedding (an nn.Embedding of "
        f"vocab_size={vocab_size} rows with a padding_idx) to attribute to; embeddings found: {seen}"
    )


def token_baseline(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """The IG baseline of a text batch: every word (id >= 4) becomes [UNK]; specials stay.

    [UNK], not [PAD]: the models derive their padding masks from the ids (``tokens != pad_id``), so a
    [PAD] baseline would be a batch of empty sentences whose masks, pooling denominators and attention
    differ from the input's, and the path's start would not be the model's output on any sentence.
    With [UNK] every mask, length and segment is the input's and only the word identities change;
    [SEP]/[CLS] stay, so the pair structure does too."""
    out = dict(batch)
    for key in TOKEN_KEYS:
        if key in batch:
            out[key] = batch[key].masked_fill(batch[key] >= FIRST_WORD_ID, UNK_ID)
    return out


def token_attributions(
    network: nn.Module,
    batch: dict[str, Tensor],
    vocab_size: int,
    target: Tensor | None = None,
    n_steps: int = 32,
    internal_batch_size: int | None = None,
) -> TokenAttributions:
    """IG of ``network``'s output ``target`` (default: the predicted class; the only output of a
    regression head) for each token of ``batch``, against ``token_baseline(batch)``.

    Computed in eval mode (the mode is restored) and with respect to the embeddings only, so the
    parameters' ``.grad`` are untouched; results are on the CPU."""
    from captum.attr import IntegratedGradients

    layer = find_token_embedding(network, vocab_size)
    was_training = network.training
    param = next(network.parameters(), None)
    device = param.device if param is not None else batch["tokens"].device
    # clones: callers may sit inside Lightning's inference_mode, whose tensors autograd refuses
    batch = {key: value.detach().clone().to(device) for key, value in batch.items()}
    network.eval()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            with torch.no_grad():
                outputs, ids, embedded = _embedded(network, layer, batch)
                _, _, embedded_base = _embedded(network, layer, token_baseline(batch))
            rows = batch["tokens"].shape[0]
            if embedded.shape[0] % rows or embedded.shape != embedded_base.shape:
                raise ValueError(
                    f"{type(network).__name__}'s token embedding gives {tuple(embedded.shape)} for a "
                    f"batch of {rows}: not whole blocks of one row per example, so IG cannot tell them apart"
                )
            if target is None:  # a regression head's only output is its 0
                target = outputs.argmax(dim=1) if outputs.shape[1] > 1 else torch.zeros(rows).long()
            target = target.to(device).long()
            keys = sorted(batch)
            blocks = embedded.split(rows)
            integrated = IntegratedGradients(_substituting(network, layer, keys, len(blocks)))
            attributions, delta = integrated.attribute(
                blocks,
                baselines=embedded_base.split(rows),
                target=target,
                additional_forward_args=tuple(batch[key] for key in keys),
                n_steps=n_steps,
                internal_batch_size=internal_batch_size,
                return_convergence_delta=True,
            )
    finally:
        network.train(was_training)
    per_position = torch.cat([a.sum(dim=-1) for a in attributions]).detach().cpu()  # [rows * k, W]
    scores = _align(ids.cpu(), per_position, {key: value.cpu() for key, value in batch.items()})
    return TokenAttributions(scores, target.cpu(), delta.detach().cpu(), outputs.detach().cpu())


def pixel_attributions(
    network: nn.Module,
    images: Tensor,
    target: Tensor | None = None,
    n_steps: int = 32,
    internal_batch_size: int | None = None,
) -> PixelAttributions:
    """IG of ``network``'s logit ``target`` (default: the predicted class) for each input value of
    ``images`` [B, ...], against zeros. The images arrive normalized with the training split's channel
    mean and std, so zero is that mean colour everywhere: a flat, information-free image.

    Eval mode (restored), parameters' ``.grad`` untouched; results on the images' device."""
    from captum.attr import IntegratedGradients

    was_training = network.training
    param = next(network.parameters(), None)
    device = param.device if param is not None else images.device
    network.eval()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            inputs = images.detach().clone().to(device)
            if target is None:
                with torch.no_grad():
                    target = network(inputs).argmax(dim=1)
            target = target.detach().clone().to(device).long()
            attributions, delta = IntegratedGradients(network).attribute(
                inputs,
                baselines=torch.zeros_like(inputs),
                target=target,
                n_steps=n_steps,
                internal_batch_size=internal_batch_size,
                return_convergence_delta=True,
            )
    finally:
        network.train(was_training)
    back = images.device
    return PixelAttributions(attributions.detach().to(back), target.to(back), delta.detach().to(back))


@contextmanager
def _hooked(layer: nn.Module, hook: Callable[..., Any]) -> Iterator[None]:
    handle = layer.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def _embedded(network: nn.Module, layer: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, ...]:
    """The network's outputs on ``batch``, and the ids its token embedding read and what it gave."""
    seen: list[tuple[Tensor, Tensor]] = []
    with _hooked(layer, lambda module, inputs, output: seen.append((inputs[0], output))):
        outputs = network(batch)
    if len(seen) != 1:
        raise ValueError(
            f"{type(network).__name__} calls its token embedding {len(seen)} times a forward; "
            "attributions need exactly one call"
        )
    return outputs, seen[0][0], seen[0][1]


def _substituting(network: nn.Module, layer: nn.Module, keys: list[str], blocks: int) -> Callable:
    """The forward Captum integrates: ``(*embedding blocks, *batch tensors in keys order) -> outputs``,
    the token embedding's output replaced by the blocks stacked (a forward hook's return replaces it)."""

    def forward(*args: Tensor) -> Tensor:
        replacement = torch.cat(args[:blocks])

        def substitute(module: nn.Module, inputs: Any, output: Tensor) -> Tensor:
            if output.shape != replacement.shape:
                raise RuntimeError(f"embedding output {tuple(output.shape)} != {tuple(replacement.shape)}")
            return replacement

        with _hooked(layer, substitute):
            return network(dict(zip(keys, args[blocks:], strict=True)))

    return forward


def _words_match(expected: Tensor, got: Tensor) -> bool:
    """Whether the layer read ``expected``'s words (ids >= 4); specials may be remapped (MiniLM)."""
    words = expected >= FIRST_WORD_ID
    return len(got) == len(expected) and bool((got[words] == expected[words]).all())


def _align(ids: Tensor, per_position: Tensor, batch: dict[str, Tensor]) -> Tensor:
    """Scores [B, T] of ``batch["tokens"]`` from the layer's per-position scores [R, W] (``ids``: what
    the layer read). Two layouts: one row per example, the tokens at a fixed offset (0; 1 behind BERT's
    [CLS]); or a siamese pair's ``a`` rows then ``b`` rows, shown as ``a [SEP] b``. Every layout is
    checked against the ids, so a model that embeds otherwise fails here instead of drawing nonsense."""
    tokens, lengths = batch["tokens"], batch["lengths"].tolist()
    rows = tokens.shape[0]
    scores = torch.zeros(tokens.shape, dtype=per_position.dtype)
    if ids.shape[0] == rows:
        for offset in range(ids.shape[1]):
            spans = [slice(offset, offset + n) for n in lengths]
            if all(_words_match(tokens[i, :n], ids[i, spans[i]]) for i, n in enumerate(lengths)):
                for i, n in enumerate(lengths):
                    scores[i, :n] = per_position[i, spans[i]]
                return scores
    elif ids.shape[0] == 2 * rows and "tokens_a" in batch:
        pairs = zip(batch["lengths_a"].tolist(), batch["lengths_b"].tolist(), strict=True)
        for i, (n_a, n_b) in enumerate(pairs):
            a, b = slice(0, n_a), slice(n_a + 1, n_a + 1 + n_b)  # the [SEP] between is never embedded
            read_a, read_b = ids[i, :n_a], ids[rows + i, :n_b]
            if not (_words_match(tokens[i, a], read_a) and _words_match(tokens[i, b], read_b)):
                break
            scores[i, a], scores[i, b] = per_position[i, :n_a], per_position[rows + i, :n_b]
        else:
            return scores
    raise ValueError(
        f"cannot line up the token embedding's input {tuple(ids.shape)} with the batch's tokens "
        f"{tuple(tokens.shape)}: neither one row per example nor a siamese a/b stack"
    )


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Integrated Gradients token attributions</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 60em; color: #222; }}
.sentence {{ margin: 1.2em 0; padding: .6em .8em; border: 1px solid #ddd; border-radius: 4px; }}
.meta {{ font-size: .85em; color: #555; margin-bottom: .4em; }}
.tok {{ display: inline-block; padding: .1em .25em; margin: .1em; border-radius: 3px; }}
</style></head><body>
<h1>Integrated Gradients token attributions</h1>
<p>Each token's attribution, summed over its embedding, to the predicted class's logit (a regression's
score): green raises it, red lowers it, shaded relative to the sentence's largest |attribution| (hover
for the value). Baseline: every word replaced by [UNK]. &delta;: convergence delta, sum of attributions
minus (f(x) &minus; f(baseline)); small means the integral is accurate.</p>
{body}
</body></html>
"""


def attributions_html(
    tokens: Sequence[Sequence[str]],
    scores: Tensor | Sequence[Sequence[float]],
    labels: Sequence[str],
    predictions: Sequence[str],
    deltas: Sequence[float] | Tensor,
) -> str:
    """A self-contained page (inline CSS, no scripts): one block per sentence with its label,
    prediction and delta, each token an escaped ``<span>`` shaded by its score over the sentence's
    largest |score|. ``scores[i]`` covers at least ``tokens[i]`` (extra columns, padding, are ignored)."""
    blocks = []
    for row, values, label, predicted, delta in zip(tokens, scores, labels, predictions, deltas, strict=True):
        values = [float(v) for v in values][: len(row)]
        if len(values) < len(row):
            raise ValueError(f"{len(values)} scores for a sentence of {len(row)} tokens")
        scale = max((abs(v) for v in values), default=0.0) or 1.0  # an all-zero sentence stays unshaded
        spans = " ".join(_span(token, value, value / scale) for token, value in zip(row, values, strict=True))
        shown = f"y={html.escape(str(label))} &nbsp; ŷ={html.escape(str(predicted))}"
        meta = f"{shown} &nbsp; &delta;={float(delta):.2e}"
        blocks.append(f'<div class="sentence"><div class="meta">{meta}</div><div>{spans}</div></div>')
    return _PAGE.format(body="\n".join(blocks))


def save_attributions_html(
    tokens: Sequence[Sequence[str]],
    scores: Tensor | Sequence[Sequence[float]],
    labels: Sequence[str],
    predictions: Sequence[str],
    deltas: Sequence[float] | Tensor,
    path: str | Path,
) -> Path:
    """``attributions_html`` written to ``path`` (UTF-8; folders made)."""
    if len(tokens) == 0:
        raise ValueError("save_attributions_html needs at least one sentence")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(attributions_html(tokens, scores, labels, predictions, deltas), encoding="utf-8")
    return path


def _span(token: str, value: float, shade: float) -> str:
    red, green, blue = (22, 163, 74) if shade >= 0 else (220, 38, 38)
    style = f"background: rgba({red}, {green}, {blue}, {abs(shade) * 0.85:.3f})"
    return f'<span class="tok" style="{style}" title="{value:.4g}">{html.escape(token, quote=True)}</span>'
