"""The ``litbench`` command line, the top floor: it parses, prints and exits, and is the only code
that writes to the console. Each command is one module in ``cli.commands``; heavy libraries are
imported inside the commands, so ``--help`` is instant."""

from __future__ import annotations


def main(argv=None) -> int:
    from cli.app import main as run

    return run(argv)
