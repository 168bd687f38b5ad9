"""A study's trials as Ray tasks: each task asks Optuna's storage for one trial, trains and tells it.

The study's storage (an RDB every node reaches, PostgreSQL for a team) stays the one truth: trial
numbers come from it, so they are unique however many tasks and commands work the study, and every
trial's run is nested under the study's parent run in the tracking store. A task whose node dies
leaves its trial RUNNING; the tune command's next round finds its worker gone and fails it (an
orphan, not counted against ``max_failures``), and runs a replacement.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from core import tags as tag
from core.plugins import plugin_modules
from experiments import ray_cluster
from experiments.events import Listener, TrialEnded, WorkerProblem

if TYPE_CHECKING:
    import optuna

POLL_S = 1.0
TASK_RETRIES = 3


def check_cluster(ray: Any, study: str, resources: dict[str, float], tracking_uri: str, address: str) -> list:
    """The cluster's alive nodes, once it is known to fit a trial and reach the store."""
    nodes = ray_cluster.alive_nodes(ray)
    ray_cluster.check_store_reachable(tracking_uri, nodes, ray)
    ray_cluster.check_fits(
        [(f"a trial of {study}", resources["num_cpus"], resources["num_gpus"])], nodes, address
    )
    return nodes


def run_ray_trials(
    ray: Any,
    task: dict[str, Any],
    trials: int,
    study: optuna.Study,
    on_event: Listener,
    resources: dict[str, float],
    threads: int,
    optimize: Callable[[dict[str, Any], int], None],
) -> None:
    """``trials`` tasks, each running one trial of the study with ``optimize(task, 1)`` (the tune
    command's own trial loop); reports each trial as it ends."""
    remote = ray.remote(one_trial).options(max_retries=TASK_RETRIES, retry_exceptions=False, **resources)
    seen = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
    refs = []
    for i in range(trials):
        seed = None if task["seed"] is None else task["seed"] + 1000 * i
        refs.append(remote.remote({**task, "seed": seed}, plugin_modules(), threads, optimize))
    pending = list(refs)
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=len(pending), timeout=POLL_S)
            for ref in ready:
                try:
                    ray.get(ref)
                except ray.exceptions.RayError as err:
                    on_event(
                        WorkerProblem(
                            f"a trial's Ray task was lost: {ray_cluster.one_line(err)}", study.study_name
                        )
                    )
            _report(study, seen, on_event)
    except BaseException:
        for ref in pending:  # Ctrl-C: the running trials end their runs KILLED and FAIL
            ray.cancel(ref)
        ray.wait(pending, num_returns=len(pending), timeout=60)
        raise
    _report(study, seen, on_event)


def _report(study: optuna.Study, seen: set[int], on_event: Listener) -> None:
    for trial in study.get_trials(deepcopy=False):
        if trial.state.is_finished() and trial.number not in seen:
            seen.add(trial.number)
            on_event(TrialEnded.of(study.study_name, trial))


def one_trial(task: dict[str, Any], plugins: list[str], threads: int, optimize: Callable) -> int:
    """In a Ray worker: one trial of the study, its runs tagged with the node."""
    import ray

    from experiments.processes import THREADS_ENV, prepare_process

    node_id, node = ray_cluster.this_node(ray)
    os.environ[THREADS_ENV] = str(threads)  # a DDP trial's command line takes its threads from here
    prepare_process(threads, plugins)
    started = time.monotonic()
    optimize({**task, "run_tags": {tag.RAY_NODE: node_id, tag.NODE: node}}, 1)
    return int(time.monotonic() - started)
