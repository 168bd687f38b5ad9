"""``litbench report GRID``: comparison tables, plots and a summary from the tracked runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.common import EXIT_OK, add_store, console, context_of, existing_store, experiment_name
from core.errors import SpecError

DESCRIPTION = (
    "Read the grid's runs from MLflow (the tracker is the only source) and write to OUT: summary.md "
    "(what won, by how much, how sure); tables.md, tables.tex (booktabs) and report.html "
    "(self-contained, plots inlined) with one row per configuration, mean ± std and the 95%% "
    "Student-t CI over seeds (clipped to the metric's declared range, e.g. [0, 1] for accuracy; every "
    "table names its CI method), marginal tables per factor (a zip group is one factor; each table says "
    "what it pools), every configuration against the best (Welch's "
    "t-test, Holm-adjusted) and the failed runs; the same tables unrounded as CSV, plus runs.csv; "
    "learning_curves.png, factors.png and heatmap.png. Where the runs carry lineage or variant facts (a "
    "grid stage, a parent run from model.init_from, a distillation teacher, test_int8/ sizes and "
    "latencies) also strategies.md and .csv (each configuration and variant: the metric with its CI, "
    "size, latency, own fit time and whole training cost, parents and teachers included), lineage.md and "
    ".csv, and pareto_size.png and pareto_latency.png with the Pareto fronts. Whether higher or lower "
    "is better is each metric's declared direction (`litbench ls --names`). The same store gives "
    "byte-identical tables. "
    "For a study of `litbench tune`, the trials are read (read-only) from the Optuna storage its parent "
    "run records and OUT gets summary.md, trials.csv, best_trials.md, optimization_history.png, "
    "param_importances.png (fANOVA), intermediate_values.png and report.html. "
    "For a suite file (`litbench suite`), OUT gets the methods compared across the workloads: "
    "performance_profiles.png and cd_diagram.png, time-to-target with censoring (how many runs reached "
    "the target, the median and the Kaplan-Meier median), ranks with Friedman's test and Nemenyi's "
    "critical difference, interquartile means of normalized scores with stratified bootstrap CIs, "
    "tables.md, the CSVs and summary.md."
)


def add_parser(commands) -> None:
    report = commands.add_parser(
        "report",
        help="write comparison tables, plots and a summary of a grid (or of an Optuna study)",
        description=DESCRIPTION,
    )
    report.add_argument(
        "grid",
        help="the grid's or study's experiment name, or its YAML file (its `name` is used), or a suite "
        "YAML file",
    )
    add_store(report, data=False)
    report.add_argument("--out", help="output directory (default: reports/<grid or study>)")
    report.add_argument(
        "--metric",
        help="tracked metric to rank by, e.g. test/acc, val/loss, perf/fit_time_s (default: the task's "
        "test metric, e.g. test/acc); a bare name means its test/ value",
    )
    report.add_argument(
        "--mode",
        choices=["max", "min"],
        help="whether higher or lower --metric is better (default: the metric's declared direction)",
    )
    report.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from experiments.sweeps.suite import is_suite_file
    from reports.study_record import is_study

    if is_suite_file(args.grid):
        return _suite_report(args)
    experiment = experiment_name(args.grid)
    ctx = existing_store(context_of(args))
    out_dir = Path(args.out) if args.out else None
    out = console()
    with out.status("reading runs", spinner="dots") as status:
        if is_study(ctx.tracking_uri, experiment):  # `litbench tune` made it: trials from the Optuna storage
            from reports.collect import ReportInputError
            from reports.study import write_study_report

            if args.metric or args.mode:
                raise ReportInputError(
                    f"{experiment!r} is an Optuna study, ranked by the objective and direction it was "
                    "tuned on; --metric and --mode apply to grids only: drop them"
                )
            report = write_study_report(
                ctx.tracking_uri, experiment, out_dir, progress=lambda step: status.update(step)
            )
        else:
            from reports.build import write_report

            report = write_report(
                ctx.tracking_uri,
                experiment,
                out_dir,
                metric=args.metric,
                mode=args.mode,
                progress=lambda step: status.update(step),
            )
    _print_written(out, report)
    return EXIT_OK


def _suite_report(args: argparse.Namespace) -> int:
    """A suite file: its methods compared across its workloads (reports/suite.py)."""
    from experiments.sweeps.suite import load_suite
    from reports.suite import write_suite_report
    from reports.suite_collect import SuitePlan, WorkloadPlan

    if args.metric or args.mode:
        raise SpecError(
            "a suite is compared on each workload's own task metric and its declared direction; "
            "--metric and --mode apply to grids only: drop them"
        )
    suite = load_suite(args.grid)
    ctx = existing_store(context_of(args))
    plan = SuitePlan(
        suite.name,
        suite.method,
        [WorkloadPlan(w.name, w.experiment, w.target, w.budget_s) for w in suite.workloads],
    )
    out = console()
    with out.status("reading runs", spinner="dots") as status:
        report = write_suite_report(
            ctx.tracking_uri,
            plan,
            Path(args.out) if args.out else None,
            progress=lambda step: status.update(step),
        )
    _print_written(out, report)
    return EXIT_OK


def _print_written(out, report) -> None:
    """The report's summary, then the files it wrote."""
    out.print((report.out_dir / "summary.md").read_text(), markup=False)
    out.print(
        f"[bold]wrote {len(report.files)} files to {report.out_dir}/:[/] "
        + ", ".join(str(p.relative_to(report.out_dir)) for p in report.files)
    )
