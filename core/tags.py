"""The names of the MLflow tags (and Optuna attributes) litbench writes, in one place: the engine
writes them, reports and the CLI read them, and neither needs the other's code to do so."""

from __future__ import annotations

# ---- every run
SPEC_HASH = "litbench.spec_hash"  # the run's identity: hash of its canonical spec
CONFIG = "litbench.config"  # the run's name without its seed: runs that differ only by seed share it
GRID = "litbench.grid"
FAILURE = "litbench.failure"  # why a FAILED (or KILLED) run ended, in one line
KILLED_BY = "litbench.killed_by"  # the signal that killed a KILLED run's worker from outside
TASK_KIND = "litbench.task"  # the task kind: image_classification, text_classification, translation
TASK_METRIC = "litbench.metric"  # the task's primary metric, e.g. "acc"
TASK_MODE = "litbench.mode"  # "max" or "min": that metric's declared direction
TASK_TARGET = "litbench.target"  # the time-to-target threshold; absent when the task has none
TASK_BUDGET = "litbench.budget_epochs"  # the task's default epoch budget
FACTOR_PREFIX = "litbench.factor."  # one tag per grid axis: litbench.factor.optimizer = adam-lr0.002
PARENT = "mlflow.parentRunId"  # MLflow's own nesting tag
GIT_COMMIT = "mlflow.source.git.commit"
# the litbench command and its files, options left out (`litbench grid grids/x.yaml`): the UI's Source
# column shows what follows its last "/", which would be a store's file name if the options stayed in
SOURCE_NAME = "mlflow.source.name"
COMMAND = "litbench.command"  # the whole command line, options and all
SOURCE_TYPE = "mlflow.source.type"  # "LOCAL": a command on a machine, not a notebook or a job
# The CLI puts its command line here for the duration of a command; the runs it starts (in this
# process or in the worker processes and Ray workers it spawns, which inherit it) read it as SOURCE_NAME
COMMAND_ENV = "LITBENCH_COMMAND"

# ---- lineage: a run that starts from another run's weights, or learns from a teacher run
STAGE = "litbench.stage"  # the grid stage of a cell (pretrain, finetune, ...); absent outside stages
PARENT_RUN = "litbench.parent.run_id"  # the run whose weights model.init_from loaded
PARENT_HASH = "litbench.parent.spec_hash"  # its spec hash (part of this run's identity)
PARENT_PART = "litbench.parent.part"  # which weights were loaded: all, or encoder
TEACHER_RUN = "litbench.teacher.run_id"  # the run whose logits distill.teacher used
TEACHER_HASH = "litbench.teacher.spec_hash"
BLOCKED = "litbench.blocked"  # (grid outcome) why a cell was left unrun: a cell it needs FAILED

# ---- the worker that owns a run (exactly-once cells, see experiments.claims)
HOST = "litbench.host"
PID = "litbench.pid"
HEARTBEAT = "litbench.heartbeat"  # unix seconds of the worker's last sign of life
ATTEMPT = "litbench.attempt"
RAY_NODE = "litbench.ray.node_id"  # the Ray node that ran it (the Ray executor only)
NODE = "litbench.node"  # that node's short name: host/node-id head

# ---- Optuna studies (experiments.tuning)
STUDY = "litbench.study"
STUDY_ROLE = "litbench.study.role"  # "parent" on the study's own run
STUDY_OBJECTIVE = "litbench.study.objective"
STUDY_DIRECTION = "litbench.study.direction"
STUDY_SAMPLER = "litbench.study.sampler"
STUDY_PRUNER = "litbench.study.pruner"
STUDY_STORAGE = "litbench.study.storage"
TRIAL_NUMBER = "litbench.trial.number"
TRIAL_STATE = "litbench.trial.state"  # running, complete, pruned, failed
BEST_VALUE = "litbench.best.value"
BEST_TRIAL = "litbench.best.trial"
BEST_PARAMS = "litbench.best.params"
BEST_RUN_ID = "litbench.best.run_id"

# Optuna trial and study user attributes
ATTR_HOST, ATTR_PID = "litbench.host", "litbench.pid"  # the worker that runs a trial
ATTR_RAY_NODE = "litbench.ray.node_id"  # its Ray node, under the Ray executor
ATTR_SPEC = "litbench.spec"  # the trial's complete RunSpec
ATTR_RUN_ID = "litbench.run_id"
ATTR_FAILURE = "litbench.failure"
ATTR_ORPHANED = "litbench.orphaned"  # a trial whose process died: failed, but not by its own fault
STUDY_ATTR_IDENTITY = "litbench.identity"

# ---- a grid's cell whose spec came from a tuning study (a grid with a `tune:` block)
TUNED_STUDY = "litbench.tuned.study"
TUNED_TRIAL = "litbench.tuned.trial"
TUNED_PARAMS = "litbench.tuned.params"
TUNED_VALUE = "litbench.tuned.value"


def factor_tags(factors: dict[str, str]) -> dict[str, str]:
    """The grid axes a run sets, as tags the UI can filter by and a report groups by."""
    return {f"{FACTOR_PREFIX}{axis}": value for axis, value in factors.items()}


# The same axes as short params (``axis/optimizer``: ``sgd-lr0.05``). MLflow's compare view plots the
# first three params that differ between the runs, in sorted order; the spec's own 45 params start at
# ``data.`` and ``optimizer.alpha``, so the grid's axes are named to sort before every one of them.
AXIS_PARAM_PREFIX = "axis/"


def axis_params(tags: dict[str, str]) -> dict[str, str]:
    """The ``axis/<axis>`` params of a run whose tags hold its factor tags."""
    return {
        f"{AXIS_PARAM_PREFIX}{key.removeprefix(FACTOR_PREFIX)}": value
        for key, value in tags.items()
        if key.startswith(FACTOR_PREFIX)
    }
