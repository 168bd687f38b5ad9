"""The bottom floor of litbench: registries, errors, metric declarations, tag names and where the store
is. It imports nothing of the project, so every other package may import it.

- ``core.registry``: name -> builder registries (timm style) and the unknown-name error.
- ``core.errors``: ``InputError``, the base of every error a user fixes by changing a file, a flag or
  the data; the CLI reports these as one paragraph and exits 2.
- ``core.metrics``: every metric's direction (max or min), declared once, and a task's scoring
  (``TaskProtocol``: primary metric, target, budget).
- ``core.tags``: the names of the MLflow tags litbench writes and reads.
- ``core.store``: where the tracking store and the Optuna storage are, and how to open them.
- ``core.context``: what one command works on (tracking URI, data directory), resolved once.
- ``core.plugins``: modules outside litbench that registered entries, so worker processes load them too.
"""
