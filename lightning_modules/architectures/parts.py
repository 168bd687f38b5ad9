"""Named parts of a network's weights, and loading one part from another network's state dict.

The ``encoder`` of every litbench network is every tensor but its task heads: a classifier's
``head`` (a CNN's ``classifier``), a masked-LM's ``mlm_head`` and the learned mask vector it
substitutes for masked tokens.
A masked-LM and a classifier built from the same ``model`` section therefore share the encoder's
names and shapes tensor for tensor, which is what pretraining-then-fine-tuning loads.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

PARTS = ("all", "encoder")
# prefixes of the tensors no encoder holds (a CNN's fully connected classifier counts as its head)
TASK_HEADS = ("head.", "classifier.", "mlm_head.", "mask_embedding")


def part_of(state: Mapping[str, Tensor], part: str) -> dict[str, Tensor]:
    """The tensors of ``state`` that belong to ``part`` ("all" or "encoder")."""
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}; known: {', '.join(PARTS)}")
    if part == "all":
        return dict(state)
    return {key: value for key, value in state.items() if not key.startswith(TASK_HEADS)}


def load_part(network: nn.Module, state: Mapping[str, Tensor], part: str) -> list[str]:
    """Copy ``part`` of ``state`` into ``network``; the names of the tensors loaded.

    The part must match exactly: every tensor of the network's part present in ``state`` and no other,
    each of the same shape. Anything else raises ValueError naming the first tensors that differ, and
    leaves the network untouched.
    """
    source, target = part_of(state, part), part_of(network.state_dict(), part)
    missing, unexpected = sorted(target.keys() - source.keys()), sorted(source.keys() - target.keys())
    if missing or unexpected:
        hint = (
            " (a classifier's head cannot come from a masked-LM: load part 'encoder')"
            if part == "all"
            else ""
        )
        raise ValueError(
            f"the {part} weights do not match this network{hint}: missing {_few(missing)}; "
            f"not in this network {_few(unexpected)}"
        )
    shapes = [k for k in target if tuple(target[k].shape) != tuple(source[k].shape)]
    if shapes:
        key = shapes[0]
        raise ValueError(
            f"{len(shapes)} tensor(s) differ in shape, first {key}: {list(source[key].shape)} in the "
            f"parent, {list(target[key].shape)} here; build the model with the parent's options "
            "(and the same tokenizer and vocabulary)"
        )
    result = network.load_state_dict(source, strict=False)
    assert not result.unexpected_keys  # checked above
    return sorted(source)


def _few(keys: list[str]) -> str:
    if not keys:
        return "none"
    return ", ".join(keys[:4]) + (f" and {len(keys) - 4} more" if len(keys) > 4 else "")
