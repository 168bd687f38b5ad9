"""What the engine reports while it works, as it happens: cells and trials starting and ending.

The engine calls a ``Listener`` with one of these events the moment the thing happens (a worker
started, a worker's process ended and its outcome was read); the CLI turns them into its progress
line and per-run lines. Nothing in the engine prints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

    from experiments.sweeps.grid import GridCell


@dataclass
class CellOutcome:
    cell: GridCell
    # FINISHED, FAILED, SKIPPED (done before, or claimed by another command first), BLOCKED (a cell it
    # needs FAILED), RUNNING (elsewhere, when we gave up waiting) or MISSING
    status: str
    run_id: str | None
    failure: str | None = None
    wall_s: float = 0.0
    node: str | None = None  # the Ray node it ran on (the Ray executor only)


@dataclass(frozen=True)
class CellStarted:
    cell: GridCell
    pid: int | None  # the worker's process
    node: str | None = None  # the Ray node it runs on (the Ray executor only)
    retry: bool = False  # Ray started the cell's task again after its worker or node died


@dataclass(frozen=True)
class CellEnded:
    """A worker's process ended; ``outcome.status`` SKIPPED means another command had claimed the
    cell first (this command will look at it again), so the cell did not run here."""

    outcome: CellOutcome


@dataclass(frozen=True)
class CellBlocked:
    """A cell left unrun because a cell it needs (an earlier stage's) FAILED; ``outcome.failure``
    says which. No worker started for it."""

    outcome: CellOutcome


@dataclass(frozen=True)
class WaitingForOthers:
    """Cells another command is running; this one waits to report them."""

    cells: tuple[GridCell, ...]


@dataclass(frozen=True)
class TrialEnded:
    study: str
    number: int
    state: str  # COMPLETE, PRUNED, FAIL
    value: float | None
    params: dict[str, Any]
    seconds: float
    failure: str  # the reason of a failed trial, else ""

    @classmethod
    def of(cls, study: str, trial: FrozenTrial) -> TrialEnded:
        from core import tags as tag

        state = trial.state.name
        return cls(
            study=study,
            number=trial.number,
            state=state,
            value=trial.value if state == "COMPLETE" else None,
            params=dict(trial.params),
            seconds=trial.duration.total_seconds() if trial.duration else 0.0,
            failure=str(trial.user_attrs.get(tag.ATTR_FAILURE, "")) if state == "FAIL" else "",
        )


@dataclass(frozen=True)
class WorkerProblem:
    """A tuning worker process that died; its trials are failed and the study goes on."""

    text: str
    study: str = ""


@dataclass(frozen=True)
class StudiesStarted:
    """A grid with a ``tune:`` block starts its studies, one per configuration."""

    grid: str
    studies: int
    trials: int
    storage: str


@dataclass(frozen=True)
class StudyEnded:
    study: str
    objective: str
    finished: int
    target: int
    best_value: float | None = None
    best_number: int | None = None
    best_params: dict[str, Any] = field(default_factory=dict)

    @property
    def reached(self) -> bool:
        return self.finished >= self.target


Event = (
    CellStarted
    | CellEnded
    | CellBlocked
    | WaitingForOthers
    | TrialEnded
    | WorkerProblem
    | StudiesStarted
    | StudyEnded
)
Listener = Callable[[Event], None]


def ignore(event: Event) -> None:
    """The listener of callers that want no events."""
