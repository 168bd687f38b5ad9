"""Errors the training code raises so the runner can record a run's failure with its reason."""

from __future__ import annotations


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite: the run diverged and training stops at once."""
