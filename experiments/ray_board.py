"""The start board of the Ray executor: a Ray actor where each cell's task says that it started, and
on which node; the grid command shows which node runs what.

The command does not poll it: it keeps one ``next_starts`` call open, which the board answers as soon
as a start is posted, and waits on it together with the cells' tasks. Polling twenty times a second
cost the command half a core while it waited, on the cores the cells' imports and fits need.

A module of its own that imports nothing: Ray starts the actor in a fresh worker process, which
imports the module that defines the actor's class. Defined beside the executor, the actor imported
torch, Lightning and MLflow (seconds of CPU) to keep a list.
"""

from __future__ import annotations

import asyncio


class StartBoard:
    """The cells that started since the last ``next_starts``: (spec hash, node, pid). An async actor
    (its methods run on one event loop) that holds no CPU."""

    def __init__(self) -> None:
        self.started: list[tuple[str, str, int]] = []
        self.posted = asyncio.Event()

    async def post(self, spec_hash: str, node: str, pid: int) -> None:
        self.started.append((spec_hash, node, pid))
        self.posted.set()

    async def next_starts(self) -> list[tuple[str, str, int]]:
        """The starts posted since the last call; waits for one when there are none yet."""
        await self.posted.wait()
        self.posted.clear()
        started, self.started = self.started, []
        return started
