"""The errors a user can fix: each message is one paragraph naming the problem and the fix."""

from __future__ import annotations


class InputError(ValueError):
    """A bad input (a file, a flag, a data set, a store): the CLI prints the message and exits 2.

    Nothing was trained or tracked because of it; every class of error that means "change what you
    gave" derives from this one, so the CLI needs no list of them.
    """


class SpecError(InputError):
    """A spec that cannot be run; the message is one paragraph naming the problem and the fix."""
