"""``litbench run SPEC.yaml``: train, test and track one run."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.common import EXIT_OK, EXIT_RUN_FAILED, add_overrides, add_store, console, context_of, error


def add_parser(commands) -> None:
    run = commands.add_parser(
        "run",
        help="train, test and track one run from a spec file",
        description="Train, test and track one run. The spec is validated (the model against the data, the "
        "optimizer's options) before anything trains. Exit 0 when the run FINISHED, 1 when it FAILED (the "
        "reason is in its litbench.failure tag), 2 for bad input (nothing is tracked).",
    )
    run.add_argument("spec", help="a RunSpec YAML file (see README, 'YAML reference')")
    add_overrides(run, "override a spec field, e.g. --set optimizer.lr=0.01 --set model.name=cnn")
    add_store(run)
    run.add_argument("--experiment", help="MLflow experiment (default: the spec file's name)")
    run.add_argument("--name", help="run name (default: model-optimizer-lr-seed)")
    run.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    ctx = context_of(args, writes=True)  # a store that cannot be used: said first, in seconds
    from experiments.specs import load_run_spec

    spec = load_run_spec(args.spec, args.overrides)  # validate before the heavy imports
    from experiments.environment import launched_rank
    from experiments.run.runner import RunFailedError, execute

    if launched_rank() > 0:  # a DDP rank that Lightning started by running this command again
        execute(spec, ctx, experiment="")
        return EXIT_OK
    out = console()
    experiment = args.experiment or Path(args.spec).stem
    out.print(f"[bold]litbench run[/] {args.spec}  spec {spec.spec_hash}  experiment {experiment!r}")
    try:
        result = execute(spec, ctx, experiment=experiment, run_name=args.name)
    except RunFailedError as err:
        error(f"{err}. The run is tracked as FAILED in experiment {experiment!r} with this reason.")
        return EXIT_RUN_FAILED
    from rich.table import Table

    table = Table("metric", "value")
    for key in sorted(result.metrics):
        table.add_row(key, f"{result.metrics[key]:.4f}")
    out.print(table)
    out.print(f"[green]FINISHED[/] run {result.run_name} ({result.run_id}) in {ctx.tracking_uri}")
    return EXIT_OK
