"""Live progress from the engine's events: a progress line on a terminal, one line per run or trial.

The engine reports each cell's start and end (and each trial's end) the moment it happens
(``experiments.events``); these listeners count them, so "running" is the number of workers alive now
and "done" the cells that ended, and print one line per ended run. Piped into a file or a CI log, the
live line is off and only the per-run lines appear.
"""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager

from cli.common import params_text
from experiments.events import (
    CellBlocked,
    CellEnded,
    CellStarted,
    Event,
    StudiesStarted,
    StudyEnded,
    TrialEnded,
    WaitingForOthers,
    WorkerProblem,
)

STYLES = {"FINISHED": "green", "COMPLETE": "green", "PRUNED": "yellow", "SKIPPED": "dim"}


def trial_line(event: TrialEnded, with_study: bool = False) -> str:
    style = STYLES.get(event.state, "red")
    value = f"  {event.value:.4f}" if event.value is not None else ""
    study = f" {event.study}" if with_study else ""
    line = f"[{style}]{event.state:8}[/]{study} trial {event.number}{value}  {params_text(event.params)}  "
    return f"{line}{event.seconds:.0f} s  {event.failure}".rstrip()


class GridProgress:
    """Counts of a grid's cells (done, running, failed) and the ETA, updated by the engine's events."""

    def __init__(self, progress, total: int) -> None:
        self.progress = progress
        self.task = progress.add_task("", total=total)
        self.counts = {"running": 0, "FINISHED": 0, "FAILED": 0}
        self.elsewhere = 0
        self.nodes: dict[str, str] = {}  # running cells' Ray nodes, by spec hash

    def describe(self) -> str:
        c = self.counts
        text = f"done {c['FINISHED']}  running {c['running']}  failed {c['FAILED']}"
        if c.get("KILLED"):
            text += f"  killed {c['KILLED']}"
        if self.nodes:
            per_node = Counter(self.nodes.values())
            text += " (" + ", ".join(f"{node}: {n}" for node, n in sorted(per_node.items())) + ")"
        if c.get("BLOCKED"):
            text += f"  blocked {c['BLOCKED']}"
        return f"{text}  (waiting for {self.elsewhere} running elsewhere)" if self.elsewhere else text

    def __call__(self, event: Event) -> None:
        console = self.progress.console
        if isinstance(event, CellStarted):
            if event.node is not None:  # the Ray executor says where; a retry is the same cell again
                verb = "[yellow]retried [/]" if event.retry else "[dim]started [/]"
                console.print(f"{verb} {event.cell.run_name}  on {event.node}")
                self.nodes[event.cell.spec.spec_hash] = event.node
            if not event.retry:
                self.counts["running"] += 1
        elif isinstance(event, CellEnded):
            outcome = event.outcome
            self.nodes.pop(outcome.cell.spec.spec_hash, None)
            self.counts["running"] -= 1
            if outcome.status == "SKIPPED":  # another command claimed it first; looked at again later
                console.print(f"[dim]claimed elsewhere[/] {outcome.cell.run_name}")
            else:
                self.counts[outcome.status] = self.counts.get(outcome.status, 0) + 1
                style = STYLES.get(outcome.status, "red")
                reason = f"  {outcome.failure}" if outcome.failure else ""
                node = f"  on {outcome.node}" if outcome.node else ""
                name, wall = outcome.cell.run_name, f"{outcome.wall_s:.1f} s"
                console.print(f"[{style}]{outcome.status:8}[/] {name}  {wall}{node}{reason}")
                self.progress.update(self.task, advance=1)
        elif isinstance(event, CellBlocked):
            self.counts["BLOCKED"] = self.counts.get("BLOCKED", 0) + 1
            console.print(f"[red]BLOCKED [/] {event.outcome.cell.run_name}  {event.outcome.failure}")
            self.progress.update(self.task, advance=1)
        elif isinstance(event, WaitingForOthers):
            self.elsewhere = len(event.cells)
        else:
            print_study_event(console, event)
        self.progress.update(self.task, description=self.describe())


def print_study_event(console, event: Event) -> None:
    """The lines of a tuned grid's studies (and of worker problems)."""
    if isinstance(event, TrialEnded):
        console.print(f"  {trial_line(event, with_study=True)}")
    elif isinstance(event, WorkerProblem):
        console.print(f"  [red]worker problem[/] {event.study}: {event.text}")
    elif isinstance(event, StudiesStarted):
        console.print(
            f"[bold]litbench grid[/] {event.grid}: first {event.studies} studies of {event.trials} trials "
            f"each, one per configuration, storage {event.storage}"
        )
    elif isinstance(event, StudyEnded):
        so_far = f"{event.finished}/{event.target} finished"
        if event.best_value is None:
            console.print(f"[red]study[/] {event.study}: no complete trial ({so_far})")
        else:
            style = "green" if event.reached else "red"
            console.print(
                f"[{style}]study[/] {event.study}: best {event.objective} {event.best_value:.4f} (trial "
                f"{event.best_number}), {params_text(event.best_params)}; {so_far}"
            )


class TrialProgress:
    """Counts of a study's trials (done, pruned, failed) and the best so far."""

    def __init__(self, progress, total: int, direction: str) -> None:
        self.progress = progress
        self.task = progress.add_task("", total=total)
        self.counts = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0}
        self.sign = 1.0 if direction == "maximize" else -1.0
        self.best: tuple[float, int] | None = None
        progress.update(self.task, description=self.describe())

    def describe(self) -> str:
        so_far = f"  best {self.best[0]:.4f} (trial {self.best[1]})" if self.best else ""
        c = self.counts
        return f"done {c['COMPLETE']}  pruned {c['PRUNED']}  failed {c['FAIL']}{so_far}"

    def __call__(self, event: Event) -> None:
        if isinstance(event, TrialEnded):
            self.counts[event.state] = self.counts.get(event.state, 0) + 1
            if event.value is not None and (
                self.best is None or self.sign * event.value > self.sign * self.best[0]
            ):
                self.best = (event.value, event.number)
            self.progress.console.print(trial_line(event))
            done = self.counts["COMPLETE"] + self.counts["PRUNED"]
            self.progress.update(self.task, completed=done, description=self.describe())
        elif isinstance(event, WorkerProblem):
            self.progress.console.print(f"[red]worker problem[/] {event.text}")


@contextmanager
def live(console, eta: bool = True):
    """A rich Progress on a terminal (disabled when piped: it would hold the per-run lines back)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    clock = TimeRemainingColumn() if eta else TimeElapsedColumn()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), clock)
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
        yield progress
