"""``litbench tune STUDY.yaml``: an Optuna study over a search space, every trial a tracked run."""

from __future__ import annotations

import argparse

from cli.common import (
    EXIT_OK,
    EXIT_RUN_FAILED,
    add_executor,
    add_store,
    console,
    context_of,
    error,
    params_text,
    positive_int,
)

DESCRIPTION = (
    "Create (or load) the Optuna study of a study file and run trials until N of them finished "
    "(COMPLETE or PRUNED): each samples the space, trains with the runner and reports the validation "
    "objective (val/<metric>; never the test split) to the pruner. Each trial is an MLflow run nested "
    "under the study's parent run, which holds the best value and params. Re-running the same command "
    "resumes the study: trials left RUNNING by a killed process are marked FAIL (their runs KILLED) and "
    "only the missing trials run. Exit status 0 when N trials finished, 1 when the study stopped short "
    "(too many failed trials), 2 for bad input."
)


def add_parser(commands) -> None:
    tune = commands.add_parser(
        "tune",
        help="tune hyperparameters with Optuna over a search space in a study file",
        description=DESCRIPTION,
    )
    tune.add_argument("study", help="a study YAML file, e.g. experiments/studies/digits_lr.yaml")
    tune.add_argument(
        "--trials", type=positive_int, help="finished trials to reach (default: the file's `trials`)"
    )
    tune.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        help="worker processes on the study, each with cores/K threads (default: 1, in this process)",
    )
    tune.add_argument(
        "--storage",
        help="Optuna storage: an RDB URL (sqlite:///..., postgresql://...) or a journal file ending in "
        ".log/.journal for workers on a shared filesystem (default: optuna.db beside the MLflow store)",
    )
    add_store(tune)
    add_executor(tune, "trials")
    tune.add_argument(
        "--runs-per-gpu",
        type=positive_int,
        default=1,
        help="trials packed on each GPU (a 1/K share of one per trial) with --executor ray (default: 1)",
    )
    tune.add_argument(
        "--export-best",
        metavar="FILE",
        help="write the best trial's complete spec as a grid file over seeds 0, 1, 2 (runs with "
        "`litbench grid FILE`)",
    )
    tune.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    if args.workers > 1 and args.executor == "process":
        from experiments.processes import start_fork_server

        start_fork_server()  # its imports (seconds) overlap with ours
    elif args.executor == "ray":  # the Ray workers import what a trial needs while this command starts
        from experiments import ray_cluster

        cluster = ray_cluster.connect(ray_cluster.resolve_address(args.ray_address))
        ray_cluster.warm_workers(cluster, args.cpus_per_run)
    ctx = context_of(args, writes=True)  # a store or storage that cannot be used: said first, in seconds
    from experiments.tuning.storage import resolve_storage

    resolve_storage(args.storage, ctx.tracking_uri)
    from experiments.tuning.study_spec import load_study_spec

    spec = load_study_spec(args.study)
    from cli.progress import TrialProgress, live
    from experiments.environment import quiet_libraries
    from experiments.tuning.export import export_best
    from experiments.tuning.study_spec import resolve_objective
    from experiments.tuning.tune import run_study

    quiet_libraries()
    out = console()
    trials = args.trials or spec.trials
    workers = f"{args.workers} worker{'s' if args.workers > 1 else ''}"
    ray = None
    if args.executor == "ray":
        from experiments.tuning.tune import RayOptions

        ray = RayOptions(args.ray_address, args.cpus_per_run, args.runs_per_gpu)
        workers = f"Ray tasks of {args.cpus_per_run} CPU{'s' if args.cpus_per_run > 1 else ''}"
    out.print(f"[bold]litbench tune[/] {spec.name}: {trials} trials, {workers}, store {ctx.tracking_uri}")
    with live(out, eta=False) as progress:
        listener = TrialProgress(progress, trials, resolve_objective(spec).direction)
        outcome = run_study(
            spec, ctx, trials=trials, workers=args.workers, storage=args.storage, on_event=listener, ray=ray
        )
    _print_trials(out, outcome)
    if args.export_best and outcome.best is not None:
        path = export_best(outcome, spec, args.export_best)
        out.print(f"wrote the best configuration to {path}; run it with: litbench grid {path}")
    if not outcome.reached:
        failed = sum(t.state.name == "FAIL" for t in outcome.trials)
        error(
            f"{outcome.finished} of {outcome.target} trials finished ({failed} failed in all); the study "
            "stopped short, see the failure reasons above; re-run the same command to continue"
        )
        return EXIT_RUN_FAILED
    if args.export_best and outcome.best is None:
        error("every finished trial was pruned; there is no best configuration to export")
        return EXIT_RUN_FAILED
    return EXIT_OK


def _print_trials(out, outcome) -> None:
    from rich.table import Table

    from core import tags as tag

    best = outcome.best
    table = Table("trial", "state", outcome.objective, "params", "run id", "reason", title="every trial")
    for trial in outcome.trials:
        value = "" if trial.value is None else f"{trial.value:.4f}"
        marker = " *" if best is not None and trial.number == best.number else ""
        table.add_row(
            f"{trial.number}{marker}",
            trial.state.name,
            value,
            params_text(trial.params),
            str(trial.user_attrs.get(tag.ATTR_RUN_ID, "")),
            str(trial.user_attrs.get(tag.ATTR_FAILURE, "")) if trial.state.name == "FAIL" else "",
        )
    out.print(table)
    if best is not None:
        out.print(
            f"best: trial {best.number}, {outcome.objective} = {best.value:.4f} "
            f"({outcome.direction}), {params_text(best.params)}"
        )
