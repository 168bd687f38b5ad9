"""Optuna studies: ``study_spec`` (the file), ``search_space`` (parameters as data), ``storage``,
``trials`` (one trial, tracked), ``parent`` (the study's MLflow runs), ``tune`` (the study runner),
``trial_process`` (a DDP trial's process), ``tuned_grid`` (a grid's ``tune:`` block), ``export``."""
