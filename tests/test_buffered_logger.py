"""The buffered MLflow logger: every value reaches the store, and a run's batches are written one at a
time (two at once race on a tracking server's latest-value row of a new key)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from mlflow import MlflowClient

from experiments.run.buffered_logger import BufferedMLFlowLogger


def test_every_value_arrives_and_batches_never_overlap(tracking_uri: str, monkeypatch) -> None:
    client = MlflowClient(tracking_uri)
    experiment_id = client.create_experiment("buffered")
    run_id = client.create_run(experiment_id).info.run_id
    logger = BufferedMLFlowLogger(
        experiment_name="buffered", tracking_uri=tracking_uri, run_id=run_id, flush_every=5
    )
    in_flight, most, lock = [0], [0], threading.Lock()
    original = MlflowClient.log_batch

    def slow_log_batch(self, run_id, metrics=(), params=(), tags=(), synchronous=None):
        def write():
            with lock:
                in_flight[0] += 1
                most[0] = max(most[0], in_flight[0])
            time.sleep(0.05)  # a slow server: the next flush comes while this batch is being written
            original(self, run_id, metrics=metrics, params=params, tags=tags)
            with lock:
                in_flight[0] -= 1

        if synchronous:
            return write()
        worker = threading.Thread(target=write)  # as MLflow's async logging does, from a thread pool
        worker.start()
        return type("Operation", (), {"wait": lambda _self: worker.join()})()

    monkeypatch.setattr(MlflowClient, "log_batch", slow_log_batch)
    for step in range(23):
        logger.log_metrics({"train/loss": 1.0 / (step + 1), "train/acc": step / 23}, step=step)
    logger.wait()
    monkeypatch.undo()
    assert most[0] == 1, f"{most[0]} batches of one run were written at once"
    history = client.get_metric_history(run_id, "train/loss")
    assert [m.step for m in history] == list(range(23))
    assert history[-1].value == 1.0 / 23


def test_each_epoch_reaches_the_store_while_the_fit_goes_on(tracking_uri: str, tiny_spec) -> None:
    """Lightning calls the logger's ``save`` after a stage's epoch metrics: the step losses buffered
    in epoch 0 are in the store while epoch 1 trains, long before the 1000 values of a full buffer."""
    import tempfile

    import lightning

    from experiments.run.fit import fit_and_test
    from experiments.run.prepare import prepare

    client = MlflowClient(tracking_uri)
    run_id = client.create_run(client.create_experiment("epochs")).info.run_id
    logger = BufferedMLFlowLogger(experiment_name="epochs", tracking_uri=tracking_uri, run_id=run_id)
    seen: list[int] = []

    class LookAtTheStore(lightning.Callback):
        def on_train_epoch_start(self, trainer, pl_module) -> None:
            if trainer.current_epoch == 1:
                deadline = time.monotonic() + 10  # the writer thread is handed the batch, not waited on
                while time.monotonic() < deadline and len(seen) < 3:
                    seen[:] = [m.step for m in client.get_metric_history(run_id, "train/loss_step")]
                    time.sleep(0.05)

    spec = tiny_spec(trainer={"max_epochs": 2, "limit_train_batches": 3})
    prepared = prepare(spec, Path("."))
    with tempfile.TemporaryDirectory() as workdir:
        fit_and_test(prepared, logger, workdir, extra_callbacks=[LookAtTheStore()])
    assert seen == [0, 1, 2]
    assert len(client.get_metric_history(run_id, "train/loss_step")) == 6
