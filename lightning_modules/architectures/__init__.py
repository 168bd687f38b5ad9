"""Plain ``nn.Module`` architectures, registered by name (timm style) and built by ``create_model``.

Every builder has the signature ``(input_shape, num_classes, dropout=0.0, <options with defaults>)``:
the first three are injected by the runner, the options are typed and become the schema of the
``model`` section of a run spec. Text models also take
``vocab_size``, ``pad_id`` and ``pair`` (injected from the tokenizer and the task): a builder that
takes ``vocab_size`` reads token batches, one that does not reads tensors (images).
"""

from __future__ import annotations

import fnmatch
import inspect
from typing import Any

from torch import nn

# each module registers its builders on import (the registries live in .registry)
from lightning_modules.architectures import (  # noqa: F401
    cbow,
    cnn,
    minilm,
    mlp,
    recurrent,
    seq2seq_rnn,
    seq2seq_transformer,
    textcnn,
    transformer,
)
from lightning_modules.architectures.registry import MODELS, SEQ2SEQ_MODELS, TOKEN_INPUTS

__all__ = ["MODELS", "SEQ2SEQ_MODELS", "TOKEN_INPUTS", "available_models", "count_parameters", "create_model"]


def create_model(
    name: str,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    dropout: float = 0.0,
    token_inputs: dict[str, Any] | None = None,
    **options: Any,
) -> nn.Module:
    """Build the registered architecture ``name`` for inputs of ``input_shape`` (without the batch).

    ``token_inputs`` (``vocab_size``, ``pad_id``, ``pair``) come from a text datamodule; a text
    model without them, or an image model with them, is a clear error.
    """
    builder = MODELS.get(name)
    if reads_token_batches(name) != (token_inputs is not None):
        text = [n for n in MODELS.names() if reads_token_batches(n)]
        tensor = [n for n in MODELS.names() if not reads_token_batches(n)]
        if token_inputs is None:
            problem = f"model {name!r} is a text model but the data gives tensors (images)"
            fix = f"models for tensor data: {', '.join(tensor)}"
        else:
            problem = f"model {name!r} reads tensors (images) but the data gives token batches (text)"
            fix = f"models for text: {', '.join(text) or 'none registered'}"
        raise TypeError(f"{problem}; choose a model that fits the data ({fix})")
    accepted = [p for p in inspect.signature(builder).parameters if p not in MODELS.injected]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(
            f"model {name!r} takes no option(s) {', '.join(map(repr, unknown))}; "
            f"its options are: {', '.join(accepted) or 'none'}"
        )
    injected = dict(token_inputs or {})
    return builder(
        input_shape=tuple(input_shape), num_classes=num_classes, dropout=dropout, **injected, **options
    )


def reads_token_batches(name: str) -> bool:
    """Whether model ``name`` is a text model (it takes the tokenizer's ``vocab_size``)."""
    return "vocab_size" in inspect.signature(MODELS.get(name)).parameters


def available_models(pattern: str = "*") -> list[str]:
    """Registered architecture names, optionally filtered by a shell-style pattern (``"cnn*"``)."""
    return [name for name in MODELS.names() if fnmatch.fnmatchcase(name, pattern)]


def count_parameters(module: nn.Module) -> int:
    """Number of trainable scalars (frozen parameters are not counted)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
