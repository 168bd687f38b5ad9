"""What the fork server imports and warms once, beyond torch, Lightning and MLflow, so that no forked
cell pays for it again: measured on a quickstart cell, the run path imported 828 more modules after
the fork (scikit-learn and SciPy for the digits, Matplotlib for the figures, Captum, SQLAlchemy and
Alembic behind MLflow's SQLite store, ...), about a second and a half of every cell on the 2-core CPU.

Only imports and one off-screen figure: no threads, no open files or connections, nothing that a
fork would share unsafely.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless, as every figure of a run is drawn

import alembic  # noqa: F401  (MLflow's SQL store checks its schema with it)
import captum.attr  # noqa: F401
import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
import sklearn.datasets  # noqa: F401  (the digits)
import sqlalchemy  # noqa: F401
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import experiments.sweeps.worker  # noqa: F401
import lightning_modules.interpret  # noqa: F401


def _draw_once() -> None:
    """Load the font and the colour maps a run's figures use (Matplotlib loads them on first use)."""
    import io

    import numpy as np

    figure = Figure(figsize=(0.5, 0.5), dpi=50)
    FigureCanvasAgg(figure)
    figure.figimage(np.zeros((2, 2)), cmap="hot")
    figure.text(0.5, 0.5, "y=0 ŷ=0", fontsize=9)
    figure.savefig(io.BytesIO(), format="png")


_draw_once()
