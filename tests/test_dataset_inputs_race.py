"""Two runs that log the same new dataset at once: MLflow's store looks the dataset up, then inserts
it, so the second insert can hit the dataset's key (a grid's quickstart cell FAILED with PostgreSQL's
UniqueViolation on ``dataset_pk``). ``log_dataset_inputs`` makes the rolled-back call again."""

from __future__ import annotations

import threading

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from core.datasets import DataSplit
from experiments.run.datasets import log_dataset_inputs

SPLITS = {
    "train": DataSplit("digits", "sklearn.datasets.load_digits", "52b8e9779bc79258", 1437, "code"),
    "test": DataSplit("digits", "sklearn.datasets.load_digits", "0123456789abcdef", 360, "code"),
}
POSTGRES_SAYS = (
    "RestException: BAD_REQUEST: (psycopg2.errors.UniqueViolation) duplicate key value violates unique "
    'constraint "dataset_pk" DETAIL: Key (experiment_id, name, digest)=(1, digits/train, 52b8e9779bc79258)'
)


class _StoreThatLostTheRace:
    """Answers ``log_inputs`` as a store does whose first insert met another run's: the key is
    taken, the transaction rolled back; the call made again succeeds."""

    def __init__(self, first_error: str) -> None:
        self.first_error, self.calls = first_error, []

    def log_inputs(self, run_id: str, datasets: list) -> None:
        self.calls.append((run_id, [d.dataset.name for d in datasets]))
        if len(self.calls) == 1:
            raise MlflowException(self.first_error)


def test_a_taken_dataset_key_is_retried_and_other_errors_are_not() -> None:
    store = _StoreThatLostTheRace(POSTGRES_SAYS)
    log_dataset_inputs(store, "run", SPLITS)
    assert store.calls == [("run", ["digits/train", "digits/test"])] * 2

    other = _StoreThatLostTheRace("RESOURCE_DOES_NOT_EXIST: Run 'run' not found")
    with pytest.raises(MlflowException, match="not found"):
        log_dataset_inputs(other, "run", SPLITS)
    assert len(other.calls) == 1


def test_runs_logging_one_new_dataset_at_once_all_record_it(postgres_database: str) -> None:
    """Eight runs on a real PostgreSQL store log the same new datasets at the same instant: each run
    records both inputs, and the store holds each dataset once."""
    client = MlflowClient(postgres_database)
    experiment_id = client.create_experiment("race")
    run_ids = [client.create_run(experiment_id).info.run_id for _ in range(8)]
    start, errors = threading.Barrier(len(run_ids)), []

    def log(run_id: str) -> None:
        own = MlflowClient(postgres_database)  # a connection of its own, as each worker process has
        start.wait()
        try:
            log_dataset_inputs(own, run_id, SPLITS)
        except Exception as err:  # collected, so that the assertion shows every failure
            errors.append(err)

    threads = [threading.Thread(target=log, args=(run_id,)) for run_id in run_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    for run_id in run_ids:
        inputs = client.get_run(run_id).inputs.dataset_inputs
        assert sorted(i.dataset.name for i in inputs) == ["digits/test", "digits/train"]
    found = client.search_runs([experiment_id])
    digests = {i.dataset.digest for r in found for i in r.inputs.dataset_inputs}
    assert digests == {"52b8e9779bc79258", "0123456789abcdef"}
