"""The architecture registries: classifiers (``MODELS``) and encoder-decoders (``SEQ2SEQ_MODELS``).

Two registries because their builders get different arguments injected: a classifier gets the input
shape, the class count and dropout (and, for text, the tokenizer's ``vocab_size``, ``pad_id`` and
whether inputs are sentence ``pair``s); an encoder-decoder gets both vocabularies' sizes, the special
token ids and dropout. Every other parameter is an option of the spec's ``model`` section.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from core.registry import Registry

TOKEN_INPUTS = ("vocab_size", "pad_id", "pair")  # what a text datamodule tells a text model
MODELS: Registry[Callable[..., nn.Module]] = Registry(
    "model", injected=("input_shape", "num_classes", "dropout", *TOKEN_INPUTS)
)

SEQ2SEQ_INJECTED = ("src_vocab_size", "tgt_vocab_size", "pad_id", "bos_id", "eos_id", "dropout")
SEQ2SEQ_MODELS: Registry[Callable[..., nn.Module]] = Registry("seq2seq model", injected=SEQ2SEQ_INJECTED)
