"""Lightning's MLFlowLogger with step metrics buffered and written in batches.

Writing every step synchronously costs one store transaction per step (about 10 ms on SQLite, a
round trip on a server); buffering keeps every value and its step while paying that cost once per
``flush_every`` values. The runner, not the logger, decides the run's final status, because a run
is finished only after testing and artifact logging succeed.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor

from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only
from mlflow.entities import Metric

MAX_METRICS_PER_BATCH = 1000  # MLflow's limit for one log_batch call
_INVALID_KEY_CHARS = re.compile(r"[^a-zA-Z0-9_/. -]+")


class BufferedMLFlowLogger(MLFlowLogger):
    def __init__(self, *args, flush_every: int = MAX_METRICS_PER_BATCH, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.flush_every = min(flush_every, MAX_METRICS_PER_BATCH)
        self._buffer: list[Metric] = []
        # One writer thread of our own, not MLflow's async logging: its batches go one at a time (two
        # batches that both carry a run's first value of a key race on a tracking server, where
        # PostgreSQL refuses the second insert of its latest value: UniqueViolation latest_metric_pk),
        # and ending the run does not wait for MLflow's queue thread, which polls once a second.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="litbench-metrics")
        self._pending: list[Future] = []  # batches handed to the writer, not yet known to be written
        self._keys: dict[str, str] = {}  # each metric name as MLflow accepts it (a step logs the same few)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        timestamp_ms = int(time.time() * 1000)
        for key, value in metrics.items():
            if isinstance(value, str):
                continue
            key = self._keys.get(key) or self._keys.setdefault(key, _INVALID_KEY_CHARS.sub("", key))
            self._buffer.append(Metric(key=key, value=float(value), timestamp=timestamp_ms, step=step or 0))
        if len(self._buffer) >= self.flush_every:
            self.flush()

    @rank_zero_only
    def flush(self) -> None:
        """Hand the buffered values to the writer thread; training does not wait for the store."""
        while self._buffer:
            chunk, self._buffer = self._buffer[:MAX_METRICS_PER_BATCH], self._buffer[MAX_METRICS_PER_BATCH:]
            self._pending.append(
                self._writer.submit(
                    self.experiment.log_batch, run_id=self.run_id, metrics=chunk, synchronous=True
                )
            )

    @rank_zero_only
    def save(self) -> None:
        """Lightning calls this right after it logs a stage's epoch metrics (train, val, test): the
        values buffered so far go out then, so a live UI sees whole epochs. No callback is needed for
        it, and a callback costs a few hook calls at every step."""
        self.flush()

    @rank_zero_only
    def wait(self) -> None:
        """Flush and block until every value is in the store (raises if a write failed)."""
        self.flush()
        pending, self._pending = self._pending, []
        for batch in pending:
            batch.result()

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        # Only write out: the runner sets FINISHED or FAILED once the whole run (test included) is done.
        if self._initialized:
            self.wait()
