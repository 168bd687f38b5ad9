"""``litbench suite SUITE.yaml``: run every workload's grid of a suite, one grid after the other."""

from __future__ import annotations

import argparse
import time

from cli.commands import grid
from cli.common import EXIT_OK, EXIT_RUN_FAILED, console, error

DESCRIPTION = (
    "Run a suite: one method axis (e.g. the optimizer) compared across several workloads, each a grid "
    "file (see experiments/suites/optimizers.yaml). Each workload's grid runs as `litbench grid` runs "
    "it, in the MLflow experiment <suite>-<workload>, with the suite's methods as an axis and the "
    "suite's seeds; every grid option applies to each. Cells that FINISHED before are not run again, "
    "so the same command continues a suite that stopped. A workload whose cells did not all finish "
    "does not stop the others; exit status 0 when every cell of every workload finished, 1 otherwise. "
    "Then `litbench report SUITE.yaml` compares the methods across the workloads."
)


def add_parser(commands) -> None:
    suite = commands.add_parser(
        "suite",
        help="run every workload's grid of a suite file, then compare with `report`",
        description=DESCRIPTION,
    )
    suite.add_argument("suite", help="a suite YAML file, e.g. experiments/suites/optimizers.yaml")
    grid.add_grid_options(suite, "override a field of every workload's base spec for every cell")
    suite.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    ctx = grid.start(args)
    from experiments.sweeps.suite import load_suite

    suite = load_suite(args.suite, args.overrides)  # every grid checked before the first cell runs
    out = console()
    cells = sum(len(_expand(w)) for w in suite.workloads)
    out.print(
        f"[bold]litbench suite[/] {suite.name}: {len(suite.workloads)} workloads, {cells} runs, "
        f"methods: {suite.method}"
    )
    started, unfinished = time.monotonic(), []
    for i, workload in enumerate(suite.workloads, 1):
        out.rule(f"workload {i}/{len(suite.workloads)}: {workload.name} ({workload.grid_path.name})")
        if grid.run_loaded(args, ctx, workload.grid, where=str(workload.grid_path)) != EXIT_OK:
            unfinished.append(workload.name)
    if args.dry_run:
        return EXIT_OK
    out.print(f"suite {suite.name}: {len(suite.workloads)} workloads in {time.monotonic() - started:.0f} s")
    if unfinished:
        error(
            f"workloads with unfinished cells: {', '.join(unfinished)}; the same command runs the cells "
            "that did not finish (add --retry-failed for failed ones), then `litbench report` compares"
        )
        return EXIT_RUN_FAILED
    out.print(f"compare the methods: litbench report {args.suite}")
    return EXIT_OK


def _expand(workload):
    from experiments.sweeps.grid import expand

    return expand(workload.grid, where=str(workload.grid_path))
