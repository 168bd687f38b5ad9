"""``litbench translate RUN_ID``: a tracked translation run's model on new sentences (or a checkpoint:
a run's artifact folder on disk, or its weights.pt beside its spec.yaml).

The run comes back from MLflow as ``litbench predict`` brings it (its ``spec.yaml`` and
``model/weights.pt``; the corpus is read again, so its BPE vocabulary is the run's, from the encoded
cache). Sentences are tokenized like the run's sources, decoded by batched beam search (the run's
``decoding`` settings unless overridden) and detokenized, one output line per input line.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from core.context import Context
from core.errors import SpecError
from experiments.run.restore import restore_checkpoint, restore_run
from tasks.translation import DecodingSpec, Translation


def translate_run(
    run_id: str,
    lines: Iterable[str],
    ctx: Context,
    *,
    beam_size: int | None = None,
    length_penalty: float | None = None,
    batch_size: int = 64,
) -> Iterator[str]:
    """The translation of each line (an empty line stays empty), in order, batch by batch.
    ``run_id`` may also be the path of a checkpoint (see ``restore_checkpoint``)."""
    if Path(run_id).exists():
        prepared = restore_checkpoint(Path(run_id), ctx.data_dir)
    else:
        prepared = restore_run(run_id, ctx)
    task = prepared.task
    if not isinstance(task, Translation):
        raise SpecError(
            f"run {run_id} is a {prepared.spec.data.name} run, not a translation run; "
            "`litbench predict` writes a classifier's predictions"
        )
    decoding = prepared.settings or DecodingSpec()
    beam = beam_size or decoding.beam_size
    penalty = decoding.length_penalty if length_penalty is None else length_penalty
    batch: list[str] = []
    for line in lines:
        batch.append(line.rstrip("\r\n"))
        if len(batch) == batch_size:
            yield from task.translate(prepared, batch, beam, penalty)
            batch = []
    if batch:
        yield from task.translate(prepared, batch, beam, penalty)
