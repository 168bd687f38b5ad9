"""``litbench translate RUN_ID``: a tracked translation run's model on new sentences (or a checkpoint:
a run's artifact folder on disk, or its weights.pt beside its spec.yaml).

The run comes back from MLflow as ``litbench predict`` brings it (its ``spec.yaml`` and
``model/weights.pt``; the corpus is read again, so its BPE vocabulary is the run's, from the encoded
cache). Sentences are tokenized like the run's sources, decoded by batched beam search (the run's
``decoding`` settings unless overridden) and detokenized, one output line per input line.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch

from experiments.predict import restore_checkpoint, restore_run
from experiments.specs import DecodingSpec, SpecError


def translate_run(
    run_id: str,
    lines: Iterable[str],
    *,
    tracking_uri: str,
    data_dir: Path,
    beam_size: int | None = None,
    length_penalty: float | None = None,
    batch_size: int = 64,
) -> Iterator[str]:
    """The translation of each line (an empty line stays empty), in order, batch by batch.
    ``run_id`` may also be the path of a checkpoint (see ``restore_checkpoint``)."""
    if Path(run_id).exists():
        prepared = restore_checkpoint(Path(run_id), data_dir)
    else:
        prepared = restore_run(run_id, tracking_uri, data_dir)
    datamodule = prepared.datamodule
    if not hasattr(datamodule, "references"):
        raise SpecError(
            f"run {run_id} is a {prepared.spec.data.name} run, not a translation run; "
            "`litbench predict` writes a classifier's predictions"
        )
    decoding = prepared.spec.decoding or DecodingSpec()
    beam = beam_size or decoding.beam_size
    penalty = decoding.length_penalty if length_penalty is None else length_penalty
    batch: list[str] = []
    for line in lines:
        batch.append(line.rstrip("\r\n"))
        if len(batch) == batch_size:
            yield from _translate_batch(prepared, batch, decoding, beam, penalty)
            batch = []
    if batch:
        yield from _translate_batch(prepared, batch, decoding, beam, penalty)


def _translate_batch(prepared, texts: list[str], decoding: DecodingSpec, beam: int, penalty: float):
    from lightning_modules.decoding import beam_search

    datamodule, network = prepared.datamodule, prepared.network
    real = [i for i, text in enumerate(texts) if text.strip()]
    out = [""] * len(texts)
    if not real:
        return out
    ids = datamodule.encode([texts[i] for i in real], "source")
    lengths = torch.tensor([max(1, len(row)) for row in ids])
    src = torch.full((len(ids), int(lengths.max())), datamodule.pad_id, dtype=torch.long)
    for row, tokens in enumerate(ids):
        src[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
    max_len = math.ceil(decoding.max_len_ratio * int(lengths.max()) + decoding.max_len_extra)
    hypotheses = beam_search(
        network, src, lengths, datamodule.bos_id, datamodule.eos_id, beam, max_len, length_penalty=penalty
    )
    for i, tokens in zip(real, hypotheses, strict=True):
        out[i] = datamodule.decode(tokens)
    return out
