"""Plain ``nn.Module`` architectures, registered by name (timm style) and built by ``create_model``.

Every builder has the signature ``(input_shape, num_classes, dropout=0.0, <options with defaults>)``:
the first three are injected by the runner, the options are typed and become the schema of the
``model`` section of a run spec (see ``experiments.specs.options_model``).
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from experiments.registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")

# Imported after MODELS exists: each module registers its builders into it.
from lightning_modules.architectures import cnn, mlp  # noqa: E402, F401

_INJECTED = ("input_shape", "num_classes", "dropout")


def create_model(
    name: str,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    dropout: float = 0.0,
    **options: Any,
) -> nn.Module:
    """Build the registered architecture ``name`` for inputs of ``input_shape`` (without the batch)."""
    builder = MODELS.get(name)
    accepted = [p for p in inspect.signature(builder).parameters if p not in _INJECTED]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(
            f"model {name!r} takes no option(s) {', '.join(map(repr, unknown))}; "
            f"its options are: {', '.join(accepted) or 'none'}"
        )
    return builder(input_shape=tuple(input_shape), num_classes=num_classes, dropout=dropout, **options)


def available_models(pattern: str = "*") -> list[str]:
    """Registered architecture names, optionally filtered by a shell-style pattern (``"cnn*"``)."""
    return [name for name in MODELS.names() if fnmatch.fnmatchcase(name, pattern)]


def count_parameters(module: nn.Module) -> int:
    """Number of trainable scalars (frozen parameters are not counted)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
