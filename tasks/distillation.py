"""A teacher's logits on a student's training examples, computed once and cached.

Soft targets belong to examples, not to token ids: the student's datamodule hands over its raw
training examples (texts, or uint8 images) and the teacher's own datamodule turns them into the
teacher's inputs, so a MiniLM teacher with its WordPiece vocabulary can teach a BiLSTM student with
a word vocabulary. The cache key is the teacher's identity (its spec hash and weights) and a digest
of the examples in order, so changed data or another teacher can never reuse stale logits.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from core.errors import SpecError

log = logging.getLogger(__name__)

CACHE_FORMAT = "litbench-teacher-logits"
TEACHER_BATCH = 256


def check_label_sets(teacher_data: Any, student_data: Any) -> None:
    """A SpecError when the teacher was trained on another label set than the student's data."""
    t_names = tuple(getattr(teacher_data, "label_names", ()) or ())
    s_names = tuple(getattr(student_data, "label_names", ()) or ())
    same = teacher_data.num_classes == student_data.num_classes and (
        not t_names or not s_names or t_names == s_names
    )
    if not same:
        shown = lambda d, n: f"{d.num_classes} classes" + (f" ({', '.join(n)})" if n else "")  # noqa: E731
        raise SpecError(
            f"distill.teacher was trained on another label set: {shown(teacher_data, t_names)} on "
            f"{_data_name(teacher_data)}, the student's data has {shown(student_data, s_names)} on "
            f"{_data_name(student_data)}; choose a teacher trained on the student's task"
        )


def examples_digest(examples: Tensor | Sequence[Any]) -> str:
    """sha256 of the examples in order: uint8 image bytes, or the texts (pairs) as JSON."""
    digest = hashlib.sha256()
    if isinstance(examples, Tensor):
        digest.update(json.dumps(list(examples.shape)).encode())
        digest.update(examples.contiguous().cpu().numpy().tobytes())
    else:
        for example in examples:
            digest.update(json.dumps(example, ensure_ascii=False).encode("utf-8", "surrogatepass"))
            digest.update(b"\n")
    return digest.hexdigest()


def compute_logits(network: nn.Module, teacher_data: Any, examples: Any) -> Tensor:
    """The teacher's logits ``[N, classes]`` (float32, CPU) on ``examples``, in their order."""
    was_training = network.training
    network.eval()
    outputs = []
    try:
        with torch.inference_mode():
            for inputs in teacher_data.batches_for(examples, TEACHER_BATCH):
                outputs.append(network(inputs).float().cpu())
    finally:
        network.train(was_training)
    return torch.cat(outputs) if outputs else torch.zeros(0, teacher_data.num_classes)


def cache_path(cache_dir: Path, teacher_identity: str, digest: str) -> Path:
    key = hashlib.sha256(f"{teacher_identity}\n{digest}".encode()).hexdigest()
    return Path(cache_dir) / f"teacher-{key[:32]}.pt"


def default_cache_dir() -> Path:
    """``$LITBENCH_CACHE_DIR/teacher-logits``, else ``~/.cache/litbench/teacher-logits``."""
    root = os.environ.get("LITBENCH_CACHE_DIR") or Path.home() / ".cache" / "litbench"
    return Path(root) / "teacher-logits"


def load_cached(path: Path, expected_rows: int) -> Tensor | None:
    """The cached logits, or None when the file is missing, unreadable or holds other data."""
    if not path.exists():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        logits = payload["logits"]
        if payload.get("format") != CACHE_FORMAT or logits.ndim != 2 or len(logits) != expected_rows:
            raise ValueError("it holds other data than its name promises")
        return logits
    except Exception as err:  # truncated or foreign: recompute, never trust it
        log.warning("teacher-logit cache %s is unusable (%s); recomputing", path, err)
        return None


def store(path: Path, logits: Tensor) -> None:
    """Write through a temporary file and ``os.replace``: a killed run never leaves half a cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({"format": CACHE_FORMAT, "logits": logits}, tmp)
    os.replace(tmp, path)


def _data_name(datamodule: Any) -> str:
    return getattr(datamodule, "name", type(datamodule).__name__)
