"""Imported by the fork server only, last: when its last client is gone it ends at once.

The server ends with SystemExit once the command that started it exits. Finalizing the libraries it
imported (torch, Lightning, MLflow, scikit-learn, ...) would take it 2-5 s more, and all that time it
still holds the command's stdout, so a `litbench grid` whose output is piped looked 2-5 s slower
than it was. The server keeps nothing that needs cleaning up: each cell is a child process of its own
and ends with ``os._exit`` (as multiprocessing's children do), so these handlers never run there.
"""

from __future__ import annotations

import atexit
import os
import sys


def _leave() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


atexit.register(_leave)
