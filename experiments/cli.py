"""The ``litbench`` command line; heavy libraries are imported inside the commands, so --help is instant."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence

EXIT_OK, EXIT_RUN_FAILED, EXIT_BAD_INPUT = 0, 1, 2

TRACKING_HELP = "MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///./mlruns/mlflow.db)"
DATA_HELP = "directory holding the data sets (default: $LITBENCH_DATA_DIR, else ./data)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="litbench",
        description="Benchmark PyTorch Lightning models: YAML specs and grids in, MLflow-tracked runs out.",
        epilog="Run `litbench COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser(
        "run",
        help="train, test and track one run from a spec file",
        description="Train, test and track one run. The spec is validated before anything trains.",
    )
    run.add_argument("spec", help="a RunSpec YAML file (see README, 'YAML reference')")
    _add_run_inputs(run, "override a spec field, e.g. --set optimizer.lr=0.01 --set model.name=cnn")
    run.add_argument("--experiment", help="MLflow experiment (default: the spec file's name)")
    run.add_argument("--name", help="run name (default: model-optimizer-lr-seed)")
    run.set_defaults(handler=_cmd_run)

    grid = commands.add_parser(
        "grid",
        help="run every cell of a grid file that has no FINISHED run yet",
        description=(
            "Expand a grid (base spec x axes x seeds) and run, in worker processes, each cell that has no "
            "FINISHED run in the grid's MLflow experiment: missing cells and cells whose worker died "
            "(orphaned runs); failed cells with --retry-failed; everything with --force. Several grid "
            "commands, on one machine or several sharing a tracking server, can work one grid at once: "
            "each cell runs exactly once. A failed cell is recorded and the grid goes on; exit status 0 "
            "when every cell finished, 1 otherwise. Ends with a table of every cell and a summary. A grid "
            "with a `tune:` block first tunes each configuration (a cell less its seed) in an Optuna study "
            "of its own (<grid>-<config>, resumed when it exists), then runs each configuration's best "
            "trial with every seed; exit status 1, before any grid run, when a study stopped short."
        ),
    )
    grid.add_argument("grid", help="a grid YAML file, e.g. experiments/grids/quickstart.yaml")
    _add_run_inputs(grid, "override a field of the grid's base spec for every cell")
    grid.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan (runs, hashes, done/missing/failed/running; a tuned grid's studies) only",
    )
    grid.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="runs (and a tuned grid's trials) at once on CPU; each gets cores/N threads (default: 1)",
    )
    grid.add_argument(
        "--runs-per-gpu",
        type=_positive_int,
        default=1,
        help="runs packed on each GPU where GPUs exist (default: 1)",
    )
    grid.add_argument("--retry-failed", action="store_true", help="run cells whose last run FAILED again")
    grid.add_argument("--force", action="store_true", help="run every cell again, FINISHED ones included")
    grid.set_defaults(handler=_cmd_grid)

    tune = commands.add_parser(
        "tune",
        help="tune hyperparameters with Optuna over a search space in a study file",
        description=(
            "Create (or load) the Optuna study of a study file and run trials until N of them finished "
            "(COMPLETE or PRUNED): each samples the space, trains with the runner and reports the "
            "validation objective (val/<metric>; never the test split) to the pruner. Each trial is an "
            "MLflow run nested under the study's parent run, which holds the best value and params. "
            "Re-running the same command resumes the study: trials left RUNNING by a killed process are "
            "marked FAIL (their runs KILLED) and only the missing trials run. Exit status 0 when N trials "
            "finished, 1 when the study stopped short (too many failed trials), 2 for bad input."
        ),
    )
    tune.add_argument("study", help="a study YAML file, e.g. experiments/studies/digits_lr.yaml")
    tune.add_argument(
        "--trials", type=_positive_int, help="finished trials to reach (default: the file's `trials`)"
    )
    tune.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="worker processes on the study, each with cores/K threads (default: 1, in this process)",
    )
    tune.add_argument(
        "--storage",
        help="Optuna storage: an RDB URL (sqlite:///..., postgresql://...) or a journal file ending in "
        ".log/.journal for workers on a shared filesystem (default: optuna.db beside the MLflow store)",
    )
    tune.add_argument("--data-dir", help=DATA_HELP)
    tune.add_argument("--tracking-uri", help=TRACKING_HELP)
    tune.add_argument(
        "--export-best",
        metavar="FILE",
        help="write the best trial's complete spec as a grid file over seeds 0, 1, 2 (runs with "
        "`litbench grid FILE`)",
    )
    tune.set_defaults(handler=_cmd_tune)

    ls = commands.add_parser(
        "ls",
        help="list experiments, the runs of one experiment, or the registered names",
        description="Without arguments: the experiments in the store. With EXPERIMENT: its runs.",
    )
    ls.add_argument("experiment", nargs="?", help="an experiment (grid) name")
    ls.add_argument(
        "--names", action="store_true", help="list registered datamodules, models, optimizers, schedules"
    )
    ls.add_argument("--tracking-uri", help=TRACKING_HELP)
    ls.set_defaults(handler=_cmd_ls)

    report = commands.add_parser(
        "report",
        help="write comparison tables, plots and a summary of a grid (or of an Optuna study)",
        description=(
            "Read the grid's runs from MLflow (the tracker is the only source) and write to OUT: "
            "summary.md (what won, by how much, how sure); tables.md, tables.tex (booktabs) and "
            "report.html (self-contained, plots inlined) with one row per configuration, mean ± std and "
            "the 95%% Student-t CI over seeds, marginal tables per factor, every configuration against "
            "the best (Welch's t-test, Holm-adjusted) and the failed runs; the same tables unrounded as "
            "CSV, plus runs.csv; learning_curves.png, factors.png and heatmap.png. The same store gives "
            "byte-identical tables. For a study of `litbench tune`, the trials are read (read-only) from "
            "the Optuna storage its parent run records and OUT gets summary.md, trials.csv, "
            "best_trials.md, optimization_history.png, param_importances.png (fANOVA), "
            "intermediate_values.png and report.html."
        ),
    )
    report.add_argument(
        "grid", help="the grid's or study's experiment name, or its YAML file (its `name` is used)"
    )
    report.add_argument("--tracking-uri", help=TRACKING_HELP)
    report.add_argument("--out", help="output directory (default: reports/<grid or study>)")
    report.add_argument(
        "--metric",
        help="tracked metric to rank by, e.g. test/acc, val/loss, perf/fit_time_s (default: the task's "
        "test metric, e.g. test/acc); a bare name means its test/ value",
    )
    report.add_argument(
        "--mode",
        choices=["max", "min"],
        help="whether higher or lower --metric is better (default: inferred)",
    )
    report.set_defaults(handler=_cmd_report)

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
    predict.add_argument("run_id", help="the MLflow run id (see `litbench ls EXPERIMENT`)")
    predict.add_argument("--out", default="submissions", help="output directory (default: ./submissions)")
    predict.add_argument("--data-dir", help=DATA_HELP)
    predict.add_argument("--tracking-uri", help=TRACKING_HELP)
    predict.set_defaults(handler=_cmd_predict)

    translate = commands.add_parser(
        "translate",
        help="translate sentences with a tracked translation run (one per line, stdin or a file)",
        description=(
            "Rebuild translation run RUN_ID from MLflow (its spec.yaml and model/weights.pt, logged with "
            "tracking.log_checkpoint: true), or from those files on disk (CHECKPOINT), reading the corpus "
            "again for its BPE vocabulary, and translate "
            "each line of FILE (default: standard input) by batched beam search, printing one line per "
            "input line (an empty line stays empty)."
        ),
    )
    translate.add_argument(
        "run_id",
        metavar="RUN_ID|CHECKPOINT",
        help="the MLflow run id (see `litbench ls EXPERIMENT`), or a checkpoint: the run's artifact folder "
        "(`mlflow artifacts download -r RUN_ID -d DIR`) or its model/weights.pt beside spec.yaml",
    )
    translate.add_argument("file", nargs="?", help="a text file, one source sentence a line (default: stdin)")
    translate.add_argument("--beam-size", type=_positive_int, help="beam width (default: the run's decoding)")
    translate.add_argument("--length-penalty", type=float, help="GNMT alpha (default: the run's decoding)")
    translate.add_argument("--data-dir", help=DATA_HELP)
    translate.add_argument("--tracking-uri", help=TRACKING_HELP)
    translate.set_defaults(handler=_cmd_translate)

    ui = commands.add_parser(
        "ui",
        help="start the MLflow UI on 127.0.0.1 over the current store",
        description=(
            "Serve MLflow's UI and REST API over the store on 127.0.0.1 until Ctrl-C. Each grid is one "
            "experiment; its axes are run params and tags (litbench.factor.<axis>, litbench.config), so "
            "runs compare side by side and filter with e.g. tags.`litbench.config` = 'cnn-adam-lr0.002'."
        ),
    )
    ui.add_argument("--port", type=_port, default=5000, help="port to listen on (default: 5000)")
    ui.add_argument("--tracking-uri", help=TRACKING_HELP)
    ui.set_defaults(handler=_cmd_ui)
    return parser


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is at most 65535, got {value}")
    return value


def _add_run_inputs(command: argparse.ArgumentParser, set_help: str) -> None:
    """The options every command that trains takes: overrides, data directory, store."""
    command.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"{set_help} (repeatable)",
    )
    command.add_argument("--data-dir", help=DATA_HELP)
    command.add_argument("--tracking-uri", help=TRACKING_HELP)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        _error("interrupted; finished runs are kept, re-run the same command to continue")
        return 130
    except Exception as err:
        if not _is_input_error(err):
            raise
        _error(str(err))
        return EXIT_BAD_INPUT


def _is_input_error(err: Exception) -> bool:
    """Errors the user can fix by changing a file, a flag or the data: reported as one paragraph."""
    from experiments.registry import UnknownNameError
    from experiments.scheduler import PreflightError
    from experiments.specs import SpecError

    known: tuple[type[Exception], ...] = (SpecError, UnknownNameError, FileNotFoundError, PreflightError)
    if "reports.collect" in sys.modules:
        from reports.collect import ReportInputError

        known += (ReportInputError,)
    if "experiments.ui" in sys.modules:
        from experiments.ui import StoreIsServerError

        known += (StoreIsServerError,)
    if "datamodules" in sys.modules:
        from datamodules import DataError

        known += (DataError,)
    return isinstance(err, known)


def _error(message: str) -> None:
    print(f"litbench: error: {message}", file=sys.stderr)


def _console():
    from rich.console import Console

    # wide when piped (CI logs, files), so tables keep whole run ids and reasons
    return Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)


def _cmd_run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from experiments.specs import load_run_spec

    spec = load_run_spec(args.spec, args.overrides)  # validate before the heavy imports
    from experiments import tracking
    from experiments.environment import launched_rank, resolve_data_dir
    from experiments.runner import RunFailedError, execute

    if launched_rank() > 0:  # a DDP rank that Lightning started by running this command again
        execute(spec, experiment="", tracking_uri="", data_dir=resolve_data_dir(args.data_dir))
        return EXIT_OK
    console = _console()
    uri = tracking.resolve_tracking_uri(args.tracking_uri)
    experiment = args.experiment or Path(args.spec).stem
    console.print(f"[bold]litbench run[/] {args.spec}  spec {spec.spec_hash}  experiment {experiment!r}")
    try:
        result = execute(
            spec,
            experiment=experiment,
            tracking_uri=uri,
            data_dir=resolve_data_dir(args.data_dir),
            run_name=args.name,
        )
    except RunFailedError as err:
        _error(f"{err}. The run is tracked as FAILED in experiment {experiment!r} with this reason.")
        return EXIT_RUN_FAILED
    _print_metrics(console, result.metrics)
    console.print(f"[green]FINISHED[/] run {result.run_name} ({result.run_id}) in {uri}")
    return EXIT_OK


def _print_metrics(console, metrics: dict[str, float]) -> None:
    from rich.table import Table

    table = Table("metric", "value")
    for key in sorted(metrics):
        table.add_row(key, f"{metrics[key]:.4f}")
    console.print(table)


def _cmd_grid(args: argparse.Namespace) -> int:
    if not args.dry_run:
        from experiments.scheduler import start_fork_server

        start_fork_server()  # its imports (seconds) overlap with ours
    from experiments.grid import expand, load_grid

    grid = load_grid(args.grid, args.overrides)
    cells = expand(grid, where=args.grid)
    from experiments import tracking
    from experiments.environment import quiet_libraries, resolve_data_dir
    from experiments.scheduler import Policy, Preflight, plan

    quiet_libraries()
    console = _console()
    uri = tracking.resolve_tracking_uri(args.tracking_uri)
    if grid.tune is not None:  # each configuration's study first; its cells then run its best spec
        from experiments.tuned_grid import tune_grid

        tuned = tune_grid(
            grid,
            cells,
            tracking_uri=uri,
            data_dir=resolve_data_dir(args.data_dir),
            console=console,
            workers=args.workers,
            dry_run=args.dry_run,
            where=args.grid,
        )
        if tuned.problem:
            _error(tuned.problem)
            return EXIT_RUN_FAILED
        cells = tuned.cells
    if args.dry_run:
        if cells or grid.tune is None:  # a tuned grid's cells may all wait for their studies
            _print_plan(console, cells, plan(cells, grid.name, uri))
        return EXIT_OK
    data_dir = resolve_data_dir(args.data_dir)
    # checks the data sets and finds the GPUs in a forked process while this one reads the store
    preflight = Preflight(cells, data_dir)
    policy = Policy(
        workers=args.workers, runs_per_gpu=args.runs_per_gpu, retry_failed=args.retry_failed, force=args.force
    )
    console.print(f"[bold]litbench grid[/] {grid.name}: {len(cells)} runs, store {uri}")
    final = _run_with_progress(console, cells, grid.name, uri, data_dir, policy, preflight)
    _print_outcomes(console, cells, final)
    _print_summary(
        console, uri, grid.name, [o.run_id for o in final.values() if o.status in ("FINISHED", "SKIPPED")]
    )
    unfinished = [o for o in final.values() if o.status not in ("FINISHED", "SKIPPED")]
    if unfinished:
        failed = sum(o.status == "FAILED" for o in unfinished)
        hint = "; --retry-failed runs failed cells again" if failed else ""
        _error(f"{len(unfinished)} of {len(cells)} runs did not finish ({failed} failed){hint}")
        return EXIT_RUN_FAILED
    return EXIT_OK


def _run_with_progress(console, cells, experiment: str, uri: str, data_dir, policy, preflight):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from experiments.scheduler import run_grid

    counts = {"running": 0, "FINISHED": 0, "FAILED": 0}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    # the live line only on a terminal: piped into a CI log it would hold the per-run lines back
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("", total=len(cells))

        def describe() -> str:
            return f"done {counts['FINISHED']}  running {counts['running']}  failed {counts['FAILED']}"

        def started(cell) -> None:
            counts["running"] += 1
            progress.update(task, description=describe())

        def ended(outcome) -> None:
            counts["running"] -= 1
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
            style = "green" if outcome.status == "FINISHED" else "red"
            reason = f"  {outcome.failure}" if outcome.failure else ""
            progress.console.print(
                f"[{style}]{outcome.status:8}[/] {outcome.cell.run_name}  {outcome.wall_s:.0f} s{reason}"
            )
            progress.update(task, advance=1, description=describe())

        return run_grid(
            cells,
            experiment=experiment,
            tracking_uri=uri,
            data_dir=data_dir,
            policy=policy,
            on_start=started,
            on_outcome=ended,
            preflight=preflight,
        )


def _print_plan(console, cells, states) -> None:
    from rich.table import Table

    table = Table("run", "hash", "status", "runs so far", title=f"{len(cells)} runs")
    for cell in cells:
        state = states[cell.spec.spec_hash]
        table.add_row(cell.run_name, cell.spec.spec_hash, state.status, str(len(state.runs)))
    console.print(table)


def _print_outcomes(console, cells, final) -> None:
    from rich.table import Table

    table = Table("run", "status", "run id", "reason", title="every cell")
    for cell in cells:
        outcome = final[cell.spec.spec_hash]
        status = "FINISHED (before)" if outcome.status == "SKIPPED" else outcome.status
        table.add_row(cell.run_name, status, outcome.run_id or "", outcome.failure or "")
    console.print(table)


def _print_summary(console, uri: str, experiment: str, run_ids: list[str]) -> None:
    from rich.table import Table

    from experiments.summary import finished_runs_frame, summarize

    table_df = summarize(finished_runs_frame(uri, experiment, [r for r in run_ids if r]))
    if table_df.empty:
        return
    table = Table(*table_df.columns, title=f"{experiment}: mean over seeds, best first")
    for row in table_df.itertuples(index=False):
        table.add_row(*(_cell(v) for v in row))
    console.print(table)


def _cell(value) -> str:
    """A table cell: floats to 4 places; a std over a single seed is undefined, shown as a dash."""
    if isinstance(value, float):
        return "-" if value != value else f"{value:.4f}"
    return str(value)


def _cmd_tune(args: argparse.Namespace) -> int:
    if args.workers > 1:
        from experiments.scheduler import start_fork_server

        start_fork_server()  # its imports (seconds) overlap with ours
    from experiments.study import load_study_spec

    spec = load_study_spec(args.study)
    from experiments import tracking
    from experiments.environment import quiet_libraries, resolve_data_dir
    from experiments.tune import export_best

    quiet_libraries()
    console = _console()
    uri = tracking.resolve_tracking_uri(args.tracking_uri)
    trials = args.trials or spec.trials
    workers = f"{args.workers} worker{'s' if args.workers > 1 else ''}"
    console.print(f"[bold]litbench tune[/] {spec.name}: {trials} trials, {workers}, store {uri}")
    outcome = _tune_with_progress(console, spec, args, uri, resolve_data_dir(args.data_dir), trials)
    _print_trials(console, outcome)
    if args.export_best and outcome.best is not None:
        path = export_best(outcome, spec, args.export_best)
        console.print(f"wrote the best configuration to {path}; run it with: litbench grid {path}")
    if not outcome.reached:
        failed = sum(t.state.name == "FAIL" for t in outcome.trials)
        _error(
            f"{outcome.finished} of {outcome.target} trials finished ({failed} failed in all); the study "
            "stopped short, see the failure reasons above; re-run the same command to continue"
        )
        return EXIT_RUN_FAILED
    if args.export_best and outcome.best is None:
        _error("every finished trial was pruned; there is no best configuration to export")
        return EXIT_RUN_FAILED
    return EXIT_OK


def _tune_with_progress(console, spec, args, uri: str, data_dir, trials: int):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from experiments.study import resolve_objective
    from experiments.tune import run_study

    counts = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0}
    best: dict[str, float | int] = {}
    sign = 1.0 if resolve_objective(spec).direction == "maximize" else -1.0
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("", total=trials)

        def describe() -> str:
            so_far = f"  best {best['value']:.4f} (trial {best['number']})" if best else ""
            return f"done {counts['COMPLETE']}  pruned {counts['PRUNED']}  failed {counts['FAIL']}{so_far}"

        def ended(trial) -> None:
            state = trial.state.name
            counts[state] = counts.get(state, 0) + 1
            if state == "COMPLETE" and (not best or sign * trial.value > sign * best["value"]):
                best.update(value=trial.value, number=trial.number)
            style = {"COMPLETE": "green", "PRUNED": "yellow"}.get(state, "red")
            value = f"  {trial.value:.4f}" if trial.value is not None else ""
            reason = trial.user_attrs.get("litbench.failure", "") if state == "FAIL" else ""
            seconds = trial.duration.total_seconds() if trial.duration else 0.0
            params = " ".join(f"{k}={_short(v)}" for k, v in trial.params.items())
            line = f"[{style}]{state:8}[/] trial {trial.number}{value}  {params}  {seconds:.0f} s  {reason}"
            progress.console.print(line.rstrip())
            progress.update(task, completed=counts["COMPLETE"] + counts["PRUNED"], description=describe())

        def problem(text: str) -> None:
            progress.console.print(f"[red]worker problem[/] {text}")

        progress.update(task, description=describe())
        outcome = run_study(
            spec,
            tracking_uri=uri,
            data_dir=data_dir,
            trials=trials,
            workers=args.workers,
            storage=args.storage,
            on_trial=ended,
            on_problem=problem,
        )
        return outcome


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _print_trials(console, outcome) -> None:
    from rich.table import Table

    best = outcome.best
    table = Table("trial", "state", outcome.objective, "params", "run id", "reason", title="every trial")
    for trial in outcome.trials:
        value = "" if trial.value is None else f"{trial.value:.4f}"
        marker = " *" if best is not None and trial.number == best.number else ""
        table.add_row(
            f"{trial.number}{marker}",
            trial.state.name,
            value,
            " ".join(f"{k}={_short(v)}" for k, v in trial.params.items()),
            str(trial.user_attrs.get("litbench.run_id", "")),
            str(trial.user_attrs.get("litbench.failure", "")) if trial.state.name == "FAIL" else "",
        )
    console.print(table)
    if best is not None:
        params = " ".join(f"{k}={_short(v)}" for k, v in best.params.items())
        console.print(
            f"best: trial {best.number}, {outcome.objective} = {best.value:.4f} "
            f"({outcome.direction}), {params}"
        )


def _cmd_ls(args: argparse.Namespace) -> int:
    from rich.table import Table

    console = _console()
    if args.names:
        from datamodules import DATAMODULES
        from lightning_modules.architectures import MODELS
        from lightning_modules.architectures.seq2seq import SEQ2SEQ_MODELS
        from lightning_modules.optim import OPTIMIZERS, SCHEDULES

        for registry in (DATAMODULES, MODELS, SEQ2SEQ_MODELS, OPTIMIZERS, SCHEDULES):
            console.print(f"[bold]{registry.kind}s:[/] {', '.join(registry.names())}")
        return EXIT_OK
    from experiments import tracking

    uri = tracking.resolve_tracking_uri(args.tracking_uri)
    client = tracking.client_for(uri)
    if not args.experiment:
        table = Table("experiment", "runs", title=uri)
        for exp in client.search_experiments():
            table.add_row(exp.name, str(len(client.search_runs([exp.experiment_id], max_results=50000))))
        console.print(table)
        return EXIT_OK
    experiment = client.get_experiment_by_name(args.experiment)
    if experiment is None:
        names = ", ".join(e.name for e in client.search_experiments()) or "none"
        raise FileNotFoundError(f"no experiment {args.experiment!r} in {uri}; experiments there: {names}")
    table = Table("run", "status", "hash", "run id", "failure", title=args.experiment)
    for run in client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"]):
        tags = run.data.tags
        table.add_row(
            run.info.run_name,
            run.info.status,
            tags.get(tracking.TAG_SPEC_HASH, ""),
            run.info.run_id,
            tags.get(tracking.TAG_FAILURE, ""),
        )
    console.print(table)
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from experiments import tracking
    from reports.study import is_study

    experiment = _grid_name(args.grid)
    uri = tracking.resolve_tracking_uri(args.tracking_uri)
    out = Path(args.out) if args.out else None
    console = _console()
    with console.status("reading runs", spinner="dots") as status:
        if is_study(uri, experiment):  # `litbench tune` made it: its trials come from the Optuna storage
            from reports.collect import ReportInputError
            from reports.study import write_study_report

            if args.metric or args.mode:
                raise ReportInputError(
                    f"{experiment!r} is an Optuna study, ranked by the objective and direction it was "
                    "tuned on; --metric and --mode apply to grids only: drop them"
                )
            report = write_study_report(uri, experiment, out, progress=lambda step: status.update(step))
        else:
            from reports.build import write_report

            report = write_report(
                uri,
                experiment,
                out,
                metric=args.metric,
                mode=args.mode,
                progress=lambda step: status.update(step),
            )
    console.print((report.out_dir / "summary.md").read_text(), markup=False)
    console.print(
        f"[bold]wrote {len(report.files)} files to {report.out_dir}/:[/] "
        + ", ".join(str(p.relative_to(report.out_dir)) for p in report.files)
    )
    return EXIT_OK


def _grid_name(grid: str) -> str:
    """A grid YAML file names its experiment with its `name` (default: the file's stem)."""
    from pathlib import Path

    path = Path(grid)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        from experiments.specs import read_yaml

        return str(read_yaml(path).get("name") or path.stem)
    return grid


def _cmd_predict(args: argparse.Namespace) -> int:
    from pathlib import Path

    from experiments import tracking
    from experiments.environment import resolve_data_dir
    from experiments.predict import predict_run

    uri = tracking.resolve_tracking_uri(args.tracking_uri)
    console = _console()
    with console.status(f"predicting with run {args.run_id}", spinner="dots"):
        written = predict_run(args.run_id, uri, resolve_data_dir(args.data_dir), Path(args.out))
    for submission in written:
        console.print(
            f"wrote {submission.rows} predictions of split {submission.split!r} to {submission.path}"
        )
    return EXIT_OK


def _cmd_translate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from experiments import tracking
    from experiments.environment import quiet_libraries, resolve_data_dir
    from experiments.translate import translate_run

    quiet_libraries()
    uri = tracking.resolve_tracking_uri(args.tracking_uri)
    if args.file and not Path(args.file).is_file():
        _error(f"no file {args.file!r} to translate; give a text file, one sentence a line, or use stdin")
        return EXIT_BAD_INPUT
    with open(args.file, encoding="utf-8") if args.file else contextlib.nullcontext(sys.stdin) as lines:
        for line in translate_run(
            args.run_id,
            lines,
            tracking_uri=uri,
            data_dir=resolve_data_dir(args.data_dir),
            beam_size=args.beam_size,
            length_penalty=args.length_penalty,
        ):
            print(line, flush=True)
    return EXIT_OK


def _cmd_ui(args: argparse.Namespace) -> int:
    from experiments import tracking
    from experiments.ui import serve

    uri = tracking.resolve_tracking_uri(args.tracking_uri)
    console = _console()

    def ready(url: str) -> None:
        console.print(f"MLflow UI for {uri} at [bold]{url}[/] (Ctrl-C stops it and every process it started)")

    return serve(uri, args.port, ready=ready)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("litbench")
    except PackageNotFoundError:
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
