"""``litbench ui``: MLflow's UI over the store, on 127.0.0.1, until Ctrl-C."""

from __future__ import annotations

import argparse

from cli.common import add_store, console, context_of, existing_store, experiment_name, port


def add_parser(commands) -> None:
    ui = commands.add_parser(
        "ui",
        help="start the MLflow UI on 127.0.0.1 over the current store",
        description=(
            "Serve MLflow's UI and REST API over the store on 127.0.0.1 until Ctrl-C, and print the URL "
            "of the experiment list, or with GRID of that grid's runs table, in MLflow's model-training "
            "view (MLflow 3 opens an experiment on its GenAI view otherwise). Each grid is one "
            "experiment; its axes are run params and tags (litbench.factor.<axis>, litbench.config), so "
            "runs compare side by side and filter with e.g. tags.`litbench.config` = 'cnn-adam-lr0.002'."
        ),
    )
    ui.add_argument(
        "grid",
        nargs="?",
        help="a grid, suite or study file, or an experiment name: print (and with --open, open) its runs",
    )
    ui.add_argument("--port", type=port, default=5000, help="port to listen on (default: 5000)")
    ui.add_argument("--open", action="store_true", help="open the printed URL in a web browser")
    add_store(ui, data=False)
    ui.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from core.context import Context
    from experiments.ui import experiments_url, runs_url, serve

    ctx = Context.resolve(args.tracking_uri)
    if not ctx.tracking_uri.startswith(("http://", "https://")):  # a server: refused below, in its words
        ctx = context_of(args)
    targets = _experiments(ctx, args.grid) if args.grid else {}
    out = console()

    def ready(base: str) -> None:
        out.print(
            f"MLflow UI for {ctx.tracking_uri} at [bold]{base}[/] "
            "(Ctrl-C stops it and every process it started)"
        )
        links = {name: runs_url(base, experiment_id) for name, experiment_id in targets.items()}
        for name, url in links.items():
            out.print(f"runs of {name}: [bold]{url}[/]", soft_wrap=True)
        out.print(f"all experiments: {experiments_url(base)}", soft_wrap=True)
        if args.open:
            import webbrowser

            webbrowser.open(next(iter(links.values()), experiments_url(base)))

    return serve(ctx.tracking_uri, args.port, ready=ready)


def _experiments(ctx, grid: str) -> dict[str, str]:
    """The experiments GRID names (a suite names one per workload), by name, with their ids."""
    from core.errors import InputError
    from experiments.sweeps.suite import is_suite_file

    if is_suite_file(grid):
        from experiments.sweeps.suite import load_suite

        names = [w.experiment for w in load_suite(grid).workloads]
    else:
        names = [experiment_name(grid)]
    client = existing_store(ctx).client
    found = {name: client.get_experiment_by_name(name) for name in names}
    missing = [name for name, experiment in found.items() if experiment is None]
    if missing:
        there = ", ".join(e.name for e in client.search_experiments()) or "none"
        raise InputError(
            f"no experiment {', '.join(map(repr, missing))} in {ctx.tracking_uri} (experiments there: "
            f"{there}); run the grid first, or name one of these"
        )
    return {name: experiment.experiment_id for name, experiment in found.items()}
