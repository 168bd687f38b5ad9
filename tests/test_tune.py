"""`litbench tune`: study files, conditional spaces, pruning, nesting, resume, workers, kills, export.

Real SQLite and journal storages and a real MLflow SQLite store under tmp_path; tiny runs on digits.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import cli
from core import tags as tag
from core.context import Context
from core.store import client_for, experiment_id_for
from experiments.specs import SpecError, validate_run_spec
from experiments.tuning.search_space import sample
from experiments.tuning.storage import open_storage, prepare_study
from experiments.tuning.study_spec import load_study_spec
from experiments.tuning.tune import run_study

REPO = Path(__file__).resolve().parents[1]
TINY_BASE = """
base:
  data: {name: digits, batch_size: 32}
  model: {name: mlp, hidden: [32]}
  optimizer: {name: adam, lr: 0.01}
  trainer: {max_epochs: 1, limit_train_batches: 2, limit_val_batches: 2, accelerator: cpu}
  tracking: {heatmaps: 0, log_checkpoint: false}
"""
LR_SPACE = """
space:
  optimizer.lr: {type: float, low: 1.0e-3, high: 0.05, log: true}
"""


def study_file(tmp_path: Path, text: str, name: str = "tiny") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"name: {name}\n{text}")
    return path


def storage_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlruns' / 'optuna.db'}"


def numbers_by_state(study: optuna.Study) -> dict[TrialState, list[int]]:
    found: dict[TrialState, list[int]] = {}
    for trial in study.get_trials(deepcopy=False):
        found.setdefault(trial.state, []).append(trial.number)
    return found


def finished(study: optuna.Study) -> int:
    return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.get_trials(deepcopy=False))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (TINY_BASE + LR_SPACE + "sampler: tpe\ntrails: 3\n", "unknown key 'trails'"),
        (
            TINY_BASE + "space:\n  optimizer.lr: {type: float, low: 0.001, hihg: 0.1}\n",
            "unknown key 'space.optimizer.lr.hihg'",
        ),
        (
            TINY_BASE + "space:\n  optimizer.lr: {type: float, low: abc, high: 0.1}\n",
            "space.optimizer.lr.low",
        ),
        (TINY_BASE + "space:\n  optimizer.lr: {type: floot, low: 0.1, high: 1}\n", "type must be one of"),
        (
            TINY_BASE + "space:\n  optimizer.momentum: {type: float, low: 0, high: 0.9, "
            "when: {optimizer.nam: sgd}}\n",
            "'optimizer.nam' is neither a field of the base spec nor a key sampled earlier",
        ),
        (
            TINY_BASE + "space:\n  optimizer.momentum: {type: float, low: 0, high: 0.9}\n",
            "space.optimizer.momentum: the value 0.0 gives an invalid run",
        ),
        (TINY_BASE + LR_SPACE + "objective: test/acc\n", "never looks at the test split"),
        (TINY_BASE + LR_SPACE + "pruner: {name: median, n_startup: 2}\n", "did you mean 'n_startup_trials'"),
    ],
    ids=["unknown-key", "param-key", "bad-type", "param-type", "when-unknown", "no-when", "test", "pruner"],
)
def test_study_file_errors_name_the_key_and_line(tmp_path: Path, text: str, expected: str, capsys) -> None:
    path = study_file(tmp_path, text)
    with pytest.raises(SpecError, match=f"^{path}:\\d+: ") as err:
        load_study_spec(path)
    assert expected in str(err.value)
    assert cli.main(["tune", str(path), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"]) == 2
    assert expected in capsys.readouterr().err


def test_conditional_params_only_when_their_condition_holds(tmp_path: Path) -> None:
    spec = load_study_spec(
        study_file(
            tmp_path,
            TINY_BASE
            + """
space:
  optimizer:
    type: categorical
    choices: [{name: sgd, lr: 0.1}, {name: adam}, {name: rmsprop, lr: 0.001}]
  optimizer.momentum: {type: float, low: 0.0, high: 0.9, when: {optimizer.name: sgd}}
  optimizer.lr: {type: float, low: 1.0e-4, high: 0.01, log: true, when: {optimizer.name: [adam]}}
  model.hidden: [[16], [32, 16]]
""",
        )
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        raw, chosen = sample(trial, spec.space, spec.base)
        run = validate_run_spec(raw)
        seen.add(run.optimizer.name)
        assert ("optimizer.momentum" in trial.params) == (run.optimizer.name == "sgd")
        assert ("optimizer.lr" in trial.params) == (run.optimizer.name == "adam")
        assert set(chosen) == set(trial.params)
        if run.optimizer.name == "sgd":
            assert (
                run.optimizer.lr == 0.1 and run.optimizer.options["momentum"] == chosen["optimizer.momentum"]
            )
        if run.optimizer.name == "rmsprop":
            assert run.optimizer.lr == 0.001
        assert run.model.options["hidden"] in ([16], [32, 16])
        study.tell(trial, 0.0)
    assert seen == {"sgd", "adam", "rmsprop"}


def test_tpe_study_prunes_a_hopeless_trial_and_nests_every_run(tmp_path: Path, tracking_uri: str) -> None:
    base = TINY_BASE.replace("max_epochs: 1, limit_train_batches: 2", "max_epochs: 3, limit_train_batches: 6")
    spec = load_study_spec(
        study_file(
            tmp_path,
            base
            + """
space:
  optimizer.lr: {type: float, low: 1.0e-8, high: 0.05, log: true}
sampler: {name: tpe, seed: 0}
pruner: {name: median, n_startup_trials: 2, n_warmup_steps: 0}
""",
        )
    )
    storage = storage_url(tmp_path)
    study = prepare_study(spec, storage)
    for lr in (0.02, 0.03, 1e-8):  # two good trials, then one that cannot learn: pruned at its first epoch
        study.enqueue_trial({"optimizer.lr": lr})
    outcome = run_study(spec, Context(tracking_uri, tmp_path), trials=3, storage=storage)

    states = numbers_by_state(outcome.study)
    assert states == {TrialState.COMPLETE: [0, 1], TrialState.PRUNED: [2]}
    assert outcome.reached and outcome.best.number in (0, 1)
    client = client_for(tracking_uri)
    experiment = client.get_experiment_by_name("tiny")
    runs = client.search_runs([experiment.experiment_id])
    parent = [r for r in runs if r.data.tags.get("litbench.study.role") == "parent"]
    assert len(parent) == 1 and parent[0].info.status == "FINISHED"
    assert parent[0].data.tags["litbench.best.trial"] == str(outcome.best.number)
    assert parent[0].data.metrics["study/best_value"] == pytest.approx(outcome.best.value)
    trials = {r.data.tags["litbench.trial.number"]: r for r in runs if r not in parent}
    assert sorted(trials) == ["0", "1", "2"]
    for number, run in trials.items():
        assert run.data.tags["mlflow.parentRunId"] == parent[0].info.run_id
        assert run.data.tags["litbench.study"] == "tiny"
        assert (
            float(run.data.params["optimizer.lr"]) == outcome.study.trials[int(number)].params["optimizer.lr"]
        )
    assert [trials[n].data.tags["litbench.trial.state"] for n in "012"] == ["complete", "complete", "pruned"]
    assert [trials[n].info.status for n in "012"] == ["FINISHED", "FINISHED", "KILLED"]
    assert "pruned" in trials["2"].data.tags["litbench.failure"]
    assert "test/acc" in trials["0"].data.metrics and "test/acc" not in trials["2"].data.metrics

    # --export-best: a grid file whose base is the best trial's complete spec, over seeds 0, 1, 2
    from experiments.sweeps.grid import expand, load_grid
    from experiments.tuning.export import export_best

    path = export_best(outcome, spec, tmp_path / "best.yaml")
    cells = expand(load_grid(path))
    assert [c.spec.seed for c in cells] == [0, 1, 2]
    best_spec = validate_run_spec(outcome.best.user_attrs["litbench.spec"])
    assert cells[0].spec.spec_hash == best_spec.spec_hash
    assert cli.main(["grid", str(path), "--dry-run", "--tracking-uri", tracking_uri]) == 0


def test_resume_adds_only_the_missing_trials(tmp_path: Path, tracking_uri: str) -> None:
    spec = load_study_spec(study_file(tmp_path, TINY_BASE + LR_SPACE + "pruner: none\n"))
    storage = storage_url(tmp_path)
    first = run_study(spec, Context(tracking_uri, tmp_path), trials=3, storage=storage)
    assert first.finished == 3
    second = run_study(spec, Context(tracking_uri, tmp_path), trials=5, storage=storage)
    numbers = [t.number for t in second.trials]
    assert second.finished == 5 and numbers == [0, 1, 2, 3, 4]
    client = client_for(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    parents = [r for r in runs if r.data.tags.get("litbench.study.role") == "parent"]
    assert len(parents) == 1, "the resumed study found its parent run again"
    assert sorted(r.data.tags.get("litbench.trial.number") for r in runs if r not in parents) == list("01234")


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_two_workers_on_a_storage_that_does_not_exist_yet(
    tmp_path: Path, tracking_uri: str, kind: str
) -> None:
    """The study is created once, before the workers start, so a fresh SQLite file is no race."""
    spec = load_study_spec(study_file(tmp_path, TINY_BASE + LR_SPACE + "pruner: none\n"))
    storage = storage_url(tmp_path) if kind == "sqlite" else str(tmp_path / "shared" / "study.journal")
    outcome = run_study(spec, Context(tracking_uri, tmp_path), trials=4, workers=2, storage=storage)
    numbers = [t.number for t in outcome.trials]
    assert outcome.finished == 4 and len(numbers) == len(set(numbers)) == 4
    assert not numbers_by_state(outcome.study).get(TrialState.FAIL)
    pids = {t.user_attrs["litbench.pid"] for t in outcome.trials}
    assert os.getpid() not in pids and len(pids) == 2, "each worker process ran trials"


def _trial_in_flight(tracking_uri: str, storage: str) -> int | None:
    """The number of a RUNNING trial whose MLflow run is RUNNING, once a trial has finished; read with
    sqlite3 (read-only), which answers in milliseconds where a client's first look takes seconds."""
    stores = [Path(uri.removeprefix("sqlite:///")) for uri in (storage, tracking_uri)]
    if not all(store.exists() for store in stores):
        return None
    try:
        with closing(sqlite3.connect(f"file:{stores[0]}?mode=ro", uri=True, timeout=1)) as db:
            states = dict(db.execute("SELECT number, state FROM trials"))
        with closing(sqlite3.connect(f"file:{stores[1]}?mode=ro", uri=True, timeout=1)) as db:
            query = (
                "SELECT tags.value FROM runs JOIN tags ON runs.run_uuid = tags.run_uuid "
                "WHERE runs.status = 'RUNNING' AND tags.key = ?"
            )
            tracked = {int(row[0]) for row in db.execute(query, (tag.TRIAL_NUMBER,))}
    except sqlite3.OperationalError:  # the tables are not made yet, or a write holds the lock
        return None
    if not any(state in ("COMPLETE", "PRUNED") for state in states.values()):
        return None
    running = [n for n, state in states.items() if state == "RUNNING" and n in tracked]
    return running[0] if running else None


def test_sigkilled_tune_resumes_to_exactly_n_finished_trials(tmp_path: Path, tracking_uri: str) -> None:
    # trials of a second or two, so that a kill can land inside one
    slower = "max_epochs: 6, limit_train_batches: 40"
    base = TINY_BASE.replace("max_epochs: 1, limit_train_batches: 2", slower)
    path = study_file(tmp_path, base + LR_SPACE + "pruner: none\ntrials: 3\n")
    storage = storage_url(tmp_path)
    command = [sys.executable, "-m", "cli", "tune", str(path), "--tracking-uri", tracking_uri]
    command += ["--storage", storage, "--data-dir", str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    killed: set[int] = set()
    for _ in range(5):  # a trial can end between the look and the kill: then start again and retry
        first = subprocess.Popen(
            command,
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the SIGKILL reaches all it started
        )
        deadline = time.monotonic() + 120
        victim = None
        while victim is None and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.05)
            victim = _trial_in_flight(tracking_uri, storage)
        if first.poll() is not None:
            raise AssertionError(f"never saw a finished and a running trial: {first.stdout.read().decode()}")
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        if victim is not None and _trial_in_flight(tracking_uri, storage) == victim:
            killed.add(victim)
            break
    assert killed, "five kills, none caught a trial in flight"

    again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    study = optuna.load_study(study_name="tiny", storage=open_storage(storage))
    states = numbers_by_state(study)
    numbers = [t.number for t in study.get_trials(deepcopy=False)]
    assert finished(study) == 3 and len(numbers) == len(set(numbers))
    (victim,) = killed
    assert states[TrialState.FAIL] == [victim]
    assert "orphaned" in study.trials[victim].user_attrs["litbench.failure"]
    client = client_for(tracking_uri)
    run = client.search_runs(
        [client.get_experiment_by_name("tiny").experiment_id], f"tags.`litbench.trial.number` = '{victim}'"
    )[0]
    assert run.info.status == "KILLED" and run.data.tags["litbench.trial.state"] == "failed"


def test_ddp_study_on_two_cpu_processes_prunes_through_the_rdb_storage(
    tmp_path: Path, tracking_uri: str
) -> None:
    """Acceptance 4: every trial trains on 2 gloo processes; rank 0 reports, the ranks stop together,
    and check_pruned after fit raises the pruning on both (optuna-integration's DDP contract)."""
    base = TINY_BASE.replace(
        "max_epochs: 1, limit_train_batches: 2, limit_val_batches: 2, accelerator: cpu",
        "max_epochs: 3, limit_train_batches: 6, limit_val_batches: 2, accelerator: cpu, devices: 2, "
        "strategy: ddp",
    )
    text = base + "space:\n  optimizer.lr: {type: float, low: 1.0e-8, high: 0.05, log: true}\n"
    text += "sampler: {name: tpe, seed: 0}\npruner: {name: median, n_startup_trials: 2, n_warmup_steps: 0}\n"
    spec = load_study_spec(study_file(tmp_path, text, name="ddp"))
    storage = storage_url(tmp_path)
    study = prepare_study(spec, storage)
    for lr in (0.02, 0.03, 1e-8):
        study.enqueue_trial({"optimizer.lr": lr})
    outcome = run_study(spec, Context(tracking_uri, tmp_path), trials=3, storage=storage)

    assert numbers_by_state(outcome.study) == {TrialState.COMPLETE: [0, 1], TrialState.PRUNED: [2]}
    pruned = outcome.study.trials[2]
    assert pruned.system_attrs.get("ddp_pl:pruned") is True, "rank 0 stored the pruning for the ranks"
    assert outcome.best.value > 0.3
    client = client_for(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("ddp").experiment_id])
    trials = {r.data.tags["litbench.trial.number"]: r for r in runs if "litbench.trial.number" in r.data.tags}
    assert sorted(trials) == ["0", "1", "2"], "one tracked run per trial, not one per rank"
    assert [trials[n].info.status for n in "012"] == ["FINISHED", "FINISHED", "KILLED"]
    assert [trials[n].data.tags["litbench.trial.state"] for n in "012"] == ["complete", "complete", "pruned"]
    assert trials["0"].data.params["trainer.devices"] == "2"
    assert "test/acc" in trials["0"].data.metrics and "test/acc" not in trials["2"].data.metrics
    assert trials["0"].data.metrics["study/objective"] == pytest.approx(outcome.study.trials[0].value)


def test_ddp_study_refuses_a_journal_storage(tmp_path: Path, tracking_uri: str) -> None:
    base = TINY_BASE.replace("accelerator: cpu", "accelerator: cpu, devices: 2, strategy: ddp")
    spec = load_study_spec(study_file(tmp_path, base + LR_SPACE, name="ddpj"))
    with pytest.raises(SpecError, match="needs an RDB storage"):
        run_study(spec, Context(tracking_uri, tmp_path), storage=str(tmp_path / "s.journal"))


def test_a_second_command_waits_for_the_parent_run_the_first_is_creating(
    tmp_path: Path, tracking_uri: str
) -> None:
    """Two commands on a fresh study must share one parent run: the claim's loser waits for it."""
    import threading

    from experiments import claims
    from experiments.tuning.parent import parent_run

    spec = load_study_spec(study_file(tmp_path, TINY_BASE + LR_SPACE))
    client = client_for(tracking_uri)
    experiment_id = experiment_id_for(client, "tiny", tracking_uri)
    assert claims.claim(client, experiment_id, "study-parent-tiny", runs=[]) == 0  # the first command
    found: list[str] = []
    second = threading.Thread(target=lambda: found.append(parent_run(client, experiment_id, spec, "db")))
    second.start()
    time.sleep(3)
    assert not found and not client.search_runs([experiment_id]), "the second command created nothing"
    first = client.create_run(
        experiment_id, tags={"litbench.study.role": "parent", "litbench.study": "tiny"}
    )  # what the first command's parent_run creates once it has claimed
    second.join(timeout=30)
    assert found == [first.info.run_id]
