"""A run's data splits as MLflow dataset inputs: one per split, logged in one call at run creation.

Each input is named ``<data>/<split>`` (``digits/train``, ``glue/sst2/test``) and carries the split in
MLflow's ``mlflow.data.context`` tag, the badge the UI's Dataset column shows beside the name. Its
digest hashes the split's content (``core.datasets``): runs on the same data share a dataset entry,
and any change to the files, the split seed or the subset makes a new one. The source is the folder
(or the library call) the split was read from; the profile holds its number of examples.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from core.datasets import DataSplit

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from experiments.run.prepare import Prepared

CONTEXT_TAG = "mlflow.data.context"  # mlflow.utils.mlflow_tags.MLFLOW_DATASET_CONTEXT
# What PostgreSQL (through `mlflow server` or directly) and SQLite say when a dataset's key is taken.
DATASET_KEY_TAKEN = ("dataset_pk", "UNIQUE constraint failed: datasets.")
LOG_ATTEMPTS = 3


def run_splits(prepared: Prepared) -> dict[str, DataSplit]:
    """Every split the run reads, as its task kind describes them."""
    return prepared.task.dataset_splits(prepared.datamodule, prepared.spec.data.name)


def dataset_name(split: str, data: DataSplit) -> str:
    return f"{data.name}/{split}"


def log_dataset_inputs(client: MlflowClient, run_id: str, splits: dict[str, DataSplit]) -> None:
    """One dataset input per split, all in one ``log_inputs`` call.

    MLflow's store looks a dataset up and inserts it when it is new, in two statements: two runs that
    log the same new dataset at once (two seeds of a grid starting together) both insert it, and the
    second insert violates the dataset's key. Its transaction is rolled back whole, so the call is
    made again: the dataset is found then, and only linked to this run."""
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.exceptions import MlflowException

    inputs = [
        DatasetInput(
            Dataset(
                name=dataset_name(split, data),
                digest=data.digest,
                source_type=data.source_type,
                source=json.dumps({"uri": data.source}),
                profile=json.dumps({"num_rows": data.size}),
            ),
            tags=[InputTag(CONTEXT_TAG, split)],
        )
        for split, data in splits.items()
    ]
    for attempt in range(1, LOG_ATTEMPTS + 1):
        try:
            client.log_inputs(run_id, datasets=inputs)
            return
        except MlflowException as err:
            if attempt == LOG_ATTEMPTS or not any(sign in str(err) for sign in DATASET_KEY_TAKEN):
                raise
            time.sleep(0.1 * attempt)
