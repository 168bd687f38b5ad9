"""One run: ``prepare`` (the task kind builds data, network and module), ``fit`` (the Trainer, fit and
test), ``runner`` (tracking around them), ``restore`` and ``translate`` (a tracked run rebuilt)."""
