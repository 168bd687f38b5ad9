"""Greedy and beam-search decoding for models that follow the seq2seq protocol
(``lightning_modules.architectures.seq2seq``): ``encode``, ``start``, ``step``, ``reorder``.

Both run without gradients and in eval mode (the model's mode is restored after). ``max_len`` bounds
the decoding steps, eos included: a hypothesis that has not produced eos after ``max_len`` tokens
ends there. Returned hypotheses are token ids without bos and eos.

Beam search scores a finished hypothesis y_1..y_n by log P(y | x) / lp(n) with the GNMT length penalty
lp(n) = ((5 + n) / 6) ** length_penalty (Wu et al. 2016), where n counts eos when it was produced;
``length_penalty=0`` is the plain log-probability. Each step takes the 2k best (beam, token)
extensions of a sentence's k beams by log-probability: eos extensions among the best k are finished
hypotheses, the best k other extensions go on. A sentence is done when it holds k finished
hypotheses (or at ``max_len``, when its live beams are finished as they are); its rows then leave the
batch (``model.reorder`` drops them). The answer is its finished hypothesis of highest score.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn


@contextlib.contextmanager
def _inference(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def gnmt_penalty(length: int, alpha: float) -> float:
    """((5 + length) / 6) ** alpha: divides a log-probability so longer hypotheses are not punished."""
    return ((5.0 + length) / 6.0) ** alpha


def greedy_decode(
    model: nn.Module, src: Tensor, src_lengths: Tensor, bos_id: int, eos_id: int, max_len: int
) -> list[list[int]]:
    """The argmax token at every step, for each sentence of the batch, until eos or ``max_len``."""
    return greedy_decode_with_attention(model, src, src_lengths, bos_id, eos_id, max_len)[0]


def greedy_decode_with_attention(
    model: nn.Module, src: Tensor, src_lengths: Tensor, bos_id: int, eos_id: int, max_len: int
) -> tuple[list[list[int]], Tensor | None]:
    """``greedy_decode``, plus the attention over the source at every step: ``[B, steps, S]``, or
    None for a model without attention."""
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1; got {max_len}")
    with _inference(model):
        memory = model.encode(src, src_lengths)
        state = model.start(memory)
        prev = torch.full((src.shape[0],), bos_id, dtype=torch.long, device=src.device)
        done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
        steps, attentions = [], []
        for _ in range(max_len):
            logits, state, attention = model.step(memory, state, prev)
            prev = logits.argmax(dim=-1)
            steps.append(prev)
            if attention is not None:
                attentions.append(attention)
            done |= prev == eos_id
            if bool(done.all()):
                break
    hypotheses = []
    for row in torch.stack(steps, dim=1).tolist():
        hypotheses.append(row[: row.index(eos_id)] if eos_id in row else row)
    return hypotheses, torch.stack(attentions, dim=1) if attentions else None


def beam_search(
    model: nn.Module,
    src: Tensor,
    src_lengths: Tensor,
    bos_id: int,
    eos_id: int,
    beam_size: int,
    max_len: int,
    length_penalty: float = 1.0,
) -> list[list[int]]:
    """The best hypothesis per sentence, all sentences x beams decoded as one batch (see the module)."""
    if beam_size < 1 or max_len < 1:
        raise ValueError(f"beam_size and max_len must be >= 1; got {beam_size}, {max_len}")
    k = beam_size
    batch = src.shape[0]
    device = src.device
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
    with _inference(model):
        memory = model.encode(src, src_lengths)
        rows = torch.arange(batch, device=device).repeat_interleave(k)  # k copies of each sentence
        memory, state = model.reorder(memory, model.start(memory), rows)
        active = list(range(batch))  # the sentences still in the batch, in row-block order
        # [A, k] running log-probs; all but one beam start at -inf so step 0 expands a single beam
        scores = torch.full((batch, k), float("-inf"), device=device)
        scores[:, 0] = 0.0
        tokens = torch.empty(batch * k, 0, dtype=torch.long, device=device)  # hypotheses so far
        prev = torch.full((batch * k,), bos_id, dtype=torch.long, device=device)
        for t in range(max_len):
            logits, state, _ = model.step(memory, state, prev)
            logp = logits.float().log_softmax(dim=-1)
            vocab = logp.shape[-1]
            extended = scores.unsqueeze(-1) + logp.view(len(active), k, vocab)  # [A, k, V]
            candidates = extended.view(len(active), k * vocab)
            top_scores, top_index = candidates.topk(min(2 * k, k * vocab), dim=1)  # sorted, best first
            top_beam, top_token = top_index // vocab, top_index % vocab
            is_eos = top_token == eos_id
            # finish the eos extensions ranked among the best k (few: one loop over them on the host)
            for a, rank in (is_eos[:, :k] & top_scores[:, :k].isfinite()).nonzero().tolist():
                row = a * k + int(top_beam[a, rank])
                score = float(top_scores[a, rank]) / gnmt_penalty(t + 1, length_penalty)
                finished[active[a]].append((score, tokens[row].tolist()))
            # the best k non-eos extensions go on (at most k of the 2k are eos, one per beam)
            order = torch.where(is_eos, 2 * k, 0) + torch.arange(top_index.shape[1], device=device)
            keep = order.argsort(dim=1)[:, :k]
            scores = top_scores.gather(1, keep)
            beam = top_beam.gather(1, keep)
            next_tokens = top_token.gather(1, keep)
            source_rows = (torch.arange(len(active), device=device).unsqueeze(1) * k + beam).view(-1)
            tokens = torch.cat([tokens[source_rows], next_tokens.view(-1, 1)], dim=1)
            if t == max_len - 1:  # out of steps: the live beams end here, without eos
                for a, sentence in enumerate(active):
                    if len(finished[sentence]) < k:
                        for b in range(k):
                            if bool(scores[a, b].isfinite()):
                                score = float(scores[a, b]) / gnmt_penalty(max_len, length_penalty)
                                finished[sentence].append((score, tokens[a * k + b].tolist()))
                break
            still = [a for a, sentence in enumerate(active) if len(finished[sentence]) < k]
            if not still:
                break
            if len(still) < len(active):  # drop the rows of sentences that are done
                kept = torch.tensor(still, device=device)
                active = [active[a] for a in still]
                scores, beam_rows = scores[kept], source_rows.view(-1, k)[kept].view(-1)
                tokens = tokens.view(-1, k, tokens.shape[1])[kept].view(-1, tokens.shape[1])
                next_tokens = next_tokens[kept]
            else:
                beam_rows = source_rows
            memory, state = model.reorder(memory, state, beam_rows)
            prev = next_tokens.reshape(-1)
    return [max(hyps, key=lambda hyp: hyp[0])[1] if hyps else [] for hyps in finished]
