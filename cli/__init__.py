"""The ``litbench`` command line, the top floor: it parses, prints and exits, and is the only code
that writes to the console. Each command is one module in ``cli.commands``; heavy libraries are
imported inside the commands, so ``--help`` is instant."""

from __future__ import annotations

import logging
import os
import sys


def main(argv=None) -> int:
    from cli.app import main as run

    return run(argv)


def entry() -> None:
    """The ``litbench`` console script (and ``python -m cli``): run the command, then leave at once.

    Finalizing an interpreter that has imported torch, Lightning, MLflow and pandas takes 2-5 s here
    (the grid command printed its last line 5.4 s before it exited). By the time a command returns,
    everything it writes is written: runs are ended, metrics flushed, temporary folders removed. So
    the process skips finalization (``os._exit``) once the console and the log handlers are flushed
    and a Ray instance this command started is shut down."""
    code = main()
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()  # a local cluster started by --executor ray without an address goes with us
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
