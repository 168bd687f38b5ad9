"""``litbench ls``: the store's experiments, one experiment's runs, or what is registered."""

from __future__ import annotations

import argparse

from cli.common import EXIT_OK, add_store, console, context_of, existing_store


def add_parser(commands) -> None:
    ls = commands.add_parser(
        "ls",
        help="list experiments, the runs of one experiment, or the registered names",
        description="Without arguments: the experiments in the store. With EXPERIMENT: its runs (status, "
        "hash, run id, failure). With --names: every registered datamodule, model, optimizer, schedule, "
        "task kind and metric direction.",
    )
    ls.add_argument("experiment", nargs="?", help="an experiment (grid) name")
    ls.add_argument(
        "--names",
        action="store_true",
        help="list registered datamodules, models, optimizers, schedules, task kinds and metrics",
    )
    add_store(ls, data=False)
    ls.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from rich.table import Table

    out = console()
    if args.names:
        _print_names(out)
        return EXIT_OK
    from core import tags as tag
    from core.errors import InputError

    ctx = existing_store(context_of(args))  # listing a store that is not there must not create it
    client = ctx.client
    if not args.experiment:
        table = Table("experiment", "runs", title=ctx.tracking_uri)
        for exp in client.search_experiments():
            table.add_row(exp.name, str(len(client.search_runs([exp.experiment_id], max_results=50000))))
        out.print(table)
        return EXIT_OK
    experiment = client.get_experiment_by_name(args.experiment)
    if experiment is None:
        names = ", ".join(e.name for e in client.search_experiments()) or "none"
        raise InputError(
            f"no experiment {args.experiment!r} in {ctx.tracking_uri}; experiments there: {names}"
        )
    table = Table("run", "status", "hash", "run id", "failure", title=args.experiment)
    for run in client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"]):
        tags = run.data.tags
        table.add_row(
            run.info.run_name,
            run.info.status,
            tags.get(tag.SPEC_HASH, ""),
            run.info.run_id,
            tags.get(tag.FAILURE, ""),
        )
    out.print(table)
    return EXIT_OK


def _print_names(out) -> None:
    from core.metrics import METRICS, TaskProtocol
    from datamodules import DATAMODULES
    from lightning_modules.architectures import MODELS, SEQ2SEQ_MODELS
    from lightning_modules.optim import OPTIMIZERS, SCHEDULES
    from tasks import TASKS

    for registry in (DATAMODULES, MODELS, SEQ2SEQ_MODELS, OPTIMIZERS, SCHEDULES):
        out.print(f"[bold]{registry.kind}s:[/] {', '.join(registry.names())}")
    for name in TASKS.names():
        kind = TASKS.get(name)
        data = [d for d in DATAMODULES.names() if getattr(DATAMODULES.get(d), "task_kind", None) == name]
        out.print(f"[bold]task kind {name}:[/] data {', '.join(data)}; models {', '.join(kind.models())}")
    for name in DATAMODULES.names():
        protocol = getattr(DATAMODULES.get(name), "protocol", None)
        if isinstance(protocol, TaskProtocol):  # else it depends on the options (GLUE: on the task)
            target = "no target" if protocol.target is None else f"target {protocol.target:g}"
            out.print(
                f"[bold]scoring {name}:[/] val/{protocol.metric} ({protocol.mode}), {target}, "
                f"budget {protocol.max_epochs} epochs"
            )
    directions = [f"{m} ({METRICS.get(m).direction})" for m in METRICS.names()]
    out.print(f"[bold]metrics (better when):[/] {', '.join(directions)}")
