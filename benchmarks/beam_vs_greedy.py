"""Test BLEU of one tracked translation run's checkpoint decoded greedily and by beam search.

    LITBENCH_DATA_DIR=../shared/data python benchmarks/beam_vs_greedy.py RUN_ID [--beam-size 5]

The run must have logged its weights (tracking.log_checkpoint: true). Prints both corpus BLEUs
(sacrebleu, detokenized, against the raw test references), their difference and the decode times.
"""

from __future__ import annotations

import argparse
import math
import time

import sacrebleu

from core.context import Context
from experiments.run.restore import restore_run
from lightning_modules.decoding import beam_search, greedy_decode
from tasks.translation import DecodingSpec


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_id")
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--tracking-uri")
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    prepared = restore_run(args.run_id, Context.resolve(args.tracking_uri, args.data_dir))
    datamodule, network = prepared.datamodule, prepared.network
    decoding = prepared.settings or DecodingSpec()
    references = datamodule.references("test")
    hypotheses: dict[str, list[str]] = {"greedy": [""] * len(references), "beam": [""] * len(references)}
    seconds = {"greedy": 0.0, "beam": 0.0}
    for batch in datamodule.test_dataloader():
        src, lengths = batch["src"], batch["src_lengths"]
        max_len = math.ceil(decoding.max_len_ratio * int(lengths.max()) + decoding.max_len_extra)
        for kind in ("greedy", "beam"):
            start = time.perf_counter()
            if kind == "greedy":
                ids = greedy_decode(network, src, lengths, datamodule.bos_id, datamodule.eos_id, max_len)
            else:
                ids = beam_search(
                    network, src, lengths, datamodule.bos_id, datamodule.eos_id, args.beam_size, max_len,
                    length_penalty=decoding.length_penalty,
                )  # fmt: skip
            seconds[kind] += time.perf_counter() - start
            for index, row in zip(batch["index"].tolist(), ids, strict=True):
                hypotheses[kind][index] = datamodule.decode(row)
    bleu = {kind: sacrebleu.corpus_bleu(hyps, [references]).score for kind, hyps in hypotheses.items()}
    print(f"test sentences: {len(references)}")
    print(f"greedy BLEU {bleu['greedy']:.2f} in {seconds['greedy']:.1f} s")
    print(f"beam {args.beam_size} BLEU {bleu['beam']:.2f} in {seconds['beam']:.1f} s")
    gain, slower = bleu["beam"] - bleu["greedy"], seconds["beam"] / seconds["greedy"]
    print(f"beam - greedy: {gain:+.2f} BLEU; beam search took {slower:.1f}x the greedy time")


if __name__ == "__main__":
    main()
