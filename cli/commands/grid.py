"""``litbench grid GRID.yaml``: run every cell of a grid that has no FINISHED run yet."""

from __future__ import annotations

import argparse

from cli.common import (
    EXIT_OK,
    EXIT_RUN_FAILED,
    add_executor,
    add_overrides,
    add_store,
    cell,
    console,
    context_of,
    error,
    params_text,
    positive_int,
)

DESCRIPTION = (
    "Expand a grid (base spec x axes x seeds) and run, in worker processes, each cell that has no "
    "FINISHED run in the grid's MLflow experiment: missing cells and cells whose worker died (orphaned "
    "runs); failed cells with --retry-failed; everything with --force. Several grid commands, on one "
    "machine or several sharing a tracking server, can work one grid at once: each cell runs exactly "
    "once. A failed cell is recorded and the grid goes on; exit status 0 when every cell finished, 1 "
    "otherwise. Each cell's start and end show at once (a live line on a terminal: done, running, "
    "failed, ETA); the command ends with a table of every cell and a summary. A grid with a `tune:` "
    "block first tunes each configuration (a cell less its seed) in an Optuna study of its own "
    "(<grid>-<config>, resumed when it exists), then runs each configuration's best trial with every "
    "seed; exit status 1, before any grid run, when a study stopped short. With --executor ray each cell "
    'is a task on a Ray cluster (see the README\'s "On a cluster").'
)


def add_parser(commands) -> None:
    grid = commands.add_parser(
        "grid", help="run every cell of a grid file that has no FINISHED run yet", description=DESCRIPTION
    )
    grid.add_argument("grid", help="a grid YAML file, e.g. experiments/grids/quickstart.yaml")
    add_grid_options(grid, "override a field of the grid's base spec for every cell")
    grid.set_defaults(handler=handle)


def add_grid_options(parser, overrides_help: str) -> None:
    """The options of running grids, shared by ``litbench grid`` and ``litbench suite``."""
    add_overrides(parser, overrides_help)
    add_store(parser)
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan (runs, hashes, done/missing/failed/running; a tuned grid's studies) only",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        help="runs (and a tuned grid's trials) at once on CPU; each gets cores/N threads (default: 1); "
        "with --executor ray the cluster's free CPUs decide instead",
    )
    parser.add_argument(
        "--runs-per-gpu",
        type=positive_int,
        default=1,
        help="runs packed on each GPU where GPUs exist (default: 1)",
    )
    add_executor(parser, "cells")
    parser.add_argument("--retry-failed", action="store_true", help="run cells whose last run FAILED again")
    parser.add_argument("--force", action="store_true", help="run every cell again, FINISHED ones included")


def handle(args: argparse.Namespace) -> int:
    ctx = start(args)
    from experiments.sweeps.grid import load_grid

    return run_loaded(args, ctx, load_grid(args.grid, args.overrides), where=args.grid)


def start(args: argparse.Namespace):
    """Start what the workers fork from (or warm the Ray workers), then check the store: the store's
    problems are said before the grid's imports and checks. Returns the command's context."""
    if not args.dry_run and args.executor == "process":
        from experiments.processes import start_fork_server

        start_fork_server()  # its imports (seconds) overlap with ours
    elif not args.dry_run:  # the Ray workers import what a cell needs while this command starts
        from experiments import ray_cluster

        cluster = ray_cluster.connect(ray_cluster.resolve_address(args.ray_address))
        ray_cluster.warm_workers(cluster, args.cpus_per_run)
    return context_of(args, writes=not args.dry_run)


def run_loaded(args: argparse.Namespace, ctx, grid, where: str) -> int:
    """Run (or with --dry-run, plan) a loaded grid; ``where`` names its file in messages."""
    from experiments.sweeps.grid import expand

    cells = expand(grid, where=where)
    from experiments.environment import quiet_libraries
    from experiments.sweeps.preflight import Preflight
    from experiments.sweeps.scheduler import Policy, preview, resolve_cells

    quiet_libraries()
    out = console()
    cells = resolve_cells(cells, ctx)  # runs and checkpoints named by init_from or a teacher
    if grid.tune is not None:  # each configuration's study first; its cells then run its best spec
        from cli.progress import print_study_event
        from experiments.tuning.tuned_grid import tune_grid

        tuned = tune_grid(
            grid,
            cells,
            ctx,
            workers=args.workers,
            dry_run=args.dry_run,
            where=where,
            on_event=lambda event: print_study_event(out, event),
            ray=_ray_options(args),
        )
        if args.dry_run:
            _print_studies(out, tuned)
        if tuned.problem:
            error(tuned.problem)
            return EXIT_RUN_FAILED
        cells = tuned.cells
    if args.dry_run:
        if cells or grid.tune is None:  # a tuned grid's cells may all wait for their studies
            _print_plan(out, cells, preview(cells, grid.name, ctx))
        return EXIT_OK
    policy = Policy(
        workers=args.workers,
        runs_per_gpu=args.runs_per_gpu,
        retry_failed=args.retry_failed,
        force=args.force,
        executor=args.executor,
        ray_address=args.ray_address,
        cpus_per_run=args.cpus_per_run,
    )
    where = ""
    if args.executor == "ray":  # connects, checks the cluster fits the cells, checks data on every node
        from experiments.sweeps.ray_pool import RayPreflight

        preflight = RayPreflight(cells, ctx, policy)
        where = f", Ray cluster of {len(preflight.nodes)} nodes ({preflight.describe()})"
    else:  # checks the data sets and finds the GPUs in a forked process while this one reads the store
        preflight = Preflight(cells, ctx.data_dir)
    out.print(f"[bold]litbench grid[/] {grid.name}: {len(cells)} runs, store {ctx.tracking_uri}{where}")
    final = _run_with_progress(out, cells, grid.name, ctx, policy, preflight)
    _print_outcomes(out, cells, final)
    _print_summary(
        out, ctx, grid.name, [o.run_id for o in final.values() if o.status in ("FINISHED", "SKIPPED")]
    )
    unfinished = [o for o in final.values() if o.status not in ("FINISHED", "SKIPPED")]
    if unfinished:
        failed = sum(o.status == "FAILED" for o in unfinished)
        killed = sum(o.status == "KILLED" for o in unfinished)
        hints = ["--retry-failed runs failed cells again"] if failed else []
        if killed:
            hints.append("the same command again runs the killed ones")
        hint = "; " + "; ".join(hints) if hints else ""
        counts = f"{failed} failed" + (f", {killed} killed from outside" if killed else "")
        error(f"{len(unfinished)} of {len(cells)} runs did not finish ({counts}){hint}")
        return EXIT_RUN_FAILED
    return EXIT_OK


def _ray_options(args: argparse.Namespace):
    if args.executor != "ray":
        return None
    from experiments.tuning.tune import RayOptions

    return RayOptions(args.ray_address, args.cpus_per_run, args.runs_per_gpu)


def _run_with_progress(out, cells, experiment: str, ctx, policy, preflight):
    from cli.progress import GridProgress, live
    from experiments.sweeps.scheduler import run_grid

    with live(out) as progress:
        listener = GridProgress(progress, len(cells))
        return run_grid(
            cells, experiment=experiment, ctx=ctx, policy=policy, on_event=listener, preflight=preflight
        )


def _print_plan(out, cells, states) -> None:
    from rich.table import Table

    table = Table("run", "hash", "status", "runs so far", "needs", title=f"{len(cells)} runs")
    names = {c.spec.spec_hash: c.run_name for c in cells}
    for c in cells:
        state = states[c.spec.spec_hash]
        needs = ", ".join(names[h] for h in c.needs)
        table.add_row(c.run_name, c.spec.spec_hash, state.status, str(len(state.runs)), needs)
    out.print(table)


def _print_studies(out, tuned) -> None:
    from rich.table import Table

    table = Table(
        "study", "trials finished", "best", "params", "status", title=f"{len(tuned.statuses)} studies"
    )
    for s in tuned.statuses:
        value = f"{s.best_value:.4f}" if s.best_value is not None else ""
        table.add_row(s.study, f"{s.finished}/{s.trials}", value, params_text(s.best_params), s.status)
    out.print(table)
    if tuned.waiting:
        out.print(
            f"{tuned.waiting_runs} runs wait for their configuration's study: {', '.join(tuned.waiting)}"
        )


def _print_outcomes(out, cells, final) -> None:
    from rich.table import Table

    table = Table("run", "status", "run id", "reason", title="every cell")
    for c in cells:
        outcome = final[c.spec.spec_hash]
        status = "FINISHED (before)" if outcome.status == "SKIPPED" else outcome.status
        table.add_row(c.run_name, status, outcome.run_id or "", outcome.failure or "")
    out.print(table)


def _print_summary(out, ctx, experiment: str, run_ids: list[str]) -> None:
    from rich.table import Table

    from reports.grid_summary import finished_runs_frame, summarize

    frame = summarize(finished_runs_frame(ctx.tracking_uri, experiment, [r for r in run_ids if r]))
    if frame.empty:
        return
    table = Table(*frame.columns, title=f"{experiment}: mean over seeds, best first")
    for row in frame.itertuples(index=False):
        table.add_row(*(cell(v) for v in row))
    out.print(table)
