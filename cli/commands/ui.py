"""``litbench ui``: MLflow's UI over the store, on 127.0.0.1, until Ctrl-C."""

from __future__ import annotations

import argparse

from cli.common import add_store, console, context_of, port


def add_parser(commands) -> None:
    ui = commands.add_parser(
        "ui",
        help="start the MLflow UI on 127.0.0.1 over the current store",
        description=(
            "Serve MLflow's UI and REST API over the store on 127.0.0.1 until Ctrl-C. Each grid is one "
            "experiment; its axes are run params and tags (litbench.factor.<axis>, litbench.config), so "
            "runs compare side by side and filter with e.g. tags.`litbench.config` = 'cnn-adam-lr0.002'."
        ),
    )
    ui.add_argument("--port", type=port, default=5000, help="port to listen on (default: 5000)")
    add_store(ui, data=False)
    ui.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from core.context import Context
    from experiments.ui import serve

    ctx = Context.resolve(args.tracking_uri)
    if not ctx.tracking_uri.startswith(("http://", "https://")):  # a server: refused below, in its words
        ctx = context_of(args)
    out = console()

    def ready(url: str) -> None:
        out.print(
            f"MLflow UI for {ctx.tracking_uri} at [bold]{url}[/] "
            "(Ctrl-C stops it and every process it started)"
        )

    return serve(ctx.tracking_uri, args.port, ready=ready)
