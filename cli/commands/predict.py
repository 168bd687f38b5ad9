"""``litbench predict RUN_ID`` and ``litbench translate RUN_ID``: a tracked run's model on new inputs."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from cli.common import EXIT_BAD_INPUT, EXIT_OK, add_store, console, context_of, error, positive_int


def add_parser(commands) -> None:
    predict = commands.add_parser(
        "predict",
        help="write a run's predictions on the unlabelled test split as GLUE-style submission TSVs",
        description=(
            "Rebuild run RUN_ID's network from its tracked spec.yaml and model/weights.pt (runs log them "
            "with tracking.log_checkpoint: true), predict the data's unlabelled split (GLUE's test.tsv; "
            "for MNLI matched and mismatched) and write the files GLUE expects (SST-2.tsv, MNLI-m.tsv, "
            "...: index<TAB>prediction) into OUT; they are also logged to the run under submission/."
        ),
    )
    predict.add_argument(
        "run_id",
        metavar="RUN_ID|MODEL",
        help="the MLflow run id (see `litbench ls EXPERIMENT`), or its logged model: models:/<model_id>",
    )
    predict.add_argument("--out", default="submissions", help="output directory (default: ./submissions)")
    add_store(predict)
    predict.set_defaults(handler=handle_predict)

    translate = commands.add_parser(
        "translate",
        help="translate sentences with a tracked translation run (one per line, stdin or a file)",
        description=(
            "Rebuild translation run RUN_ID from MLflow (its spec.yaml and model/weights.pt, logged with "
            "tracking.log_checkpoint: true), or from those files on disk (CHECKPOINT), reading the corpus "
            "again for its BPE vocabulary, and translate each line of FILE (default: standard input) by "
            "batched beam search, printing one line per input line (an empty line stays empty)."
        ),
    )
    translate.add_argument(
        "run_id",
        metavar="RUN_ID|MODEL|CHECKPOINT",
        help="the MLflow run id (see `litbench ls EXPERIMENT`), its logged model (models:/<model_id>), "
        "or a checkpoint: the run's artifact folder "
        "(`mlflow artifacts download -r RUN_ID -d DIR`) or its model/weights.pt beside spec.yaml",
    )
    translate.add_argument("file", nargs="?", help="a text file, one source sentence a line (default: stdin)")
    translate.add_argument("--beam-size", type=positive_int, help="beam width (default: the run's decoding)")
    translate.add_argument("--length-penalty", type=float, help="GNMT alpha (default: the run's decoding)")
    add_store(translate)
    translate.set_defaults(handler=handle_translate)


def handle_predict(args: argparse.Namespace) -> int:
    from experiments.run.restore import predict_run

    ctx = context_of(args)
    out = console()
    with out.status(f"predicting with run {args.run_id}", spinner="dots"):
        written = predict_run(args.run_id, ctx, Path(args.out))
    for submission in written:
        out.print(f"wrote {submission.rows} predictions of split {submission.split!r} to {submission.path}")
    return EXIT_OK


def handle_translate(args: argparse.Namespace) -> int:
    from experiments.environment import quiet_libraries
    from experiments.run.translate import translate_run

    quiet_libraries()
    ctx = context_of(args)
    if args.file and not Path(args.file).is_file():
        error(f"no file {args.file!r} to translate; give a text file, one sentence a line, or use stdin")
        return EXIT_BAD_INPUT
    with open(args.file, encoding="utf-8") if args.file else contextlib.nullcontext(sys.stdin) as lines:
        for line in translate_run(
            args.run_id, lines, ctx, beam_size=args.beam_size, length_penalty=args.length_penalty
        ):
            print(line, flush=True)
    return EXIT_OK
