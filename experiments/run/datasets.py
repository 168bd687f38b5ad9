"""A run's data splits as MLflow dataset inputs: one per split, logged in one call at run creation.

Each input is named ``<data>/<split>`` (``digits/train``, ``glue/sst2/test``) and carries the split in
MLflow's ``mlflow.data.context`` tag, the badge the UI's Dataset column shows beside the name. Its
digest hashes the split's content (``core.datasets``): runs on the same data share a dataset entry,
and any change to the files, the split seed or the subset makes a new one. The source is the folder
(or the library call) the split was read from; the profile holds its number of examples.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from core.datasets import DataSplit

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from experiments.run.prepare import Prepared

CONTEXT_TAG = "mlflow.data.context"  # mlflow.utils.mlflow_tags.MLFLOW_DATASET_CONTEXT


def run_splits(prepared: Prepared) -> dict[str, DataSplit]:
    """Every split the run reads, as its task kind describes them."""
    return prepared.task.dataset_splits(prepared.datamodule, prepared.spec.data.name)


def dataset_name(split: str, data: DataSplit) -> str:
    return f"{data.name}/{split}"


def log_dataset_inputs(client: MlflowClient, run_id: str, splits: dict[str, DataSplit]) -> None:
    """One dataset input per split, all in one ``log_inputs`` call."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

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
    client.log_inputs(run_id, datasets=inputs)
