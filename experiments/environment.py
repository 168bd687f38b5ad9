"""Process-level settings every command needs, kept free of heavy imports."""

from __future__ import annotations

import logging
import os
import warnings


def launched_rank() -> int:
    """Non-zero in the processes a DDP launcher started for ranks other than 0."""
    return max(int(os.environ.get(name, "0") or 0) for name in ("LOCAL_RANK", "NODE_RANK", "RANK"))


def quiet_libraries() -> None:
    """Lightning and MLflow announce a lot per run; a grid of dozens of runs needs only our lines."""
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when mlflow is first imported
    # MLflow 3 reports usage over the network from threads of every process that tracks (and waits
    # for its telemetry config first); litbench runs offline and sends nothing unless the user opts in
    # with MLFLOW_DISABLE_TELEMETRY=false. Set before the fork server starts, so every worker has it.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    for name in ("lightning.pytorch", "lightning.fabric", "lightning", "mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    # train/* epoch values are reduced over ranks by the module itself before they are logged
    warnings.filterwarnings("ignore", message=r".*self.log\('train/.*sync_dist=True.*")
    warnings.filterwarnings("ignore", message=r".*is an invalid version and will not be supported.*")
    warnings.filterwarnings("ignore", message=r".*`isinstance\(treespec, LeafSpec\)` is deprecated.*")
