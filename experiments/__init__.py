"""The engine: everything that turns a YAML file into tracked runs.

- ``specs``: the typed, validated schema of run specs, and the rules that fill one.
- ``run``: one RunSpec -> its task kind's data, network and module -> fit, test -> one tracked run;
  restoring a run from its spec and weights (``litbench predict``, ``litbench translate``).
- ``sweeps``: grid files, their expansion into cells, and the scheduler that runs the cells.
- ``tuning``: Optuna studies over a search space, and grids that tune each configuration first.
- ``processes`` (the one process layer for cells and trials), ``events`` (what the engine reports as
  it happens), ``claims`` (exactly-once cells), ``tracking`` (how a run is recorded), ``ui``.

Nothing here prints; the CLI (``cli``) listens to the events and prints.
"""
