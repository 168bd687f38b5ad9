"""Reading a run's ``weights.pt``: a state dict, loaded without ever unpickling code.

``torch.load(weights_only=True)`` refuses anything but tensors and plain containers. Whatever it
refuses, and whatever is not a file of weights, is one SpecError naming the file and why: random
bytes, a truncated download, a pickle that would run code, a tensor or a list instead of a state dict.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import torch

from core.errors import SpecError


def read_state_dict(path: Path, what: str = "weights") -> dict[str, torch.Tensor]:
    """The state dict in ``path``; a SpecError when it is not one (nothing in it is executed)."""
    try:
        with warnings.catch_warnings():  # torch warns about a pickle protocol before refusing the file
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError, TypeError) as err:
        raise SpecError(
            f"{path}: cannot read these {what} ({_detail(err)}): the file is corrupt, truncated or not a "
            "torch file, or it holds Python objects beyond tensors, which litbench never unpickles (they "
            "could run code). Use the weights.pt its run logged (`mlflow artifacts download -r RUN_ID`), "
            "or train the run again"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SpecError(
            f"{path}: holds a {type(state).__name__}, not a state dict of tensors (what a run's "
            "model/weights.pt holds); use the weights.pt its run logged"
        )
    return state


def _detail(err: Exception) -> str:
    """The telling line of torch's message: after "WeightsUnpickler error:", else its first line."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if line.startswith("Please file an issue") and "WeightsUnpickler error:" in line:
            rest = line.split("WeightsUnpickler error:", 1)[1].strip()
            return (rest or (lines[i + 1] if i + 1 < len(lines) else ""))[:160]
    return (lines[0] if lines else type(err).__name__)[:160]
