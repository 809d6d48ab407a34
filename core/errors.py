"""Domain errors. Each one becomes a one-line message and, for commands, a CommandRejected."""

from __future__ import annotations


class LaminaError(Exception):
    """Base of every error lamina reports to a user as one line."""

    exit_code = 1


class NotFound(LaminaError):
    """No container or image by that id, name or prefix."""


class Ambiguous(LaminaError):
    """A prefix that matches more than one id."""


class IllegalMove(LaminaError):
    """The lifecycle machine refused the move."""


class Conflict(LaminaError):
    """The move is legal but something depends on the target (docker's 409)."""


class BadInput(LaminaError):
    """An argument that can't be used as given."""


class ConcurrencyError(LaminaError):
    """Another process appended to the same stream first (optimistic concurrency)."""


class StoreError(LaminaError):
    """The event log can't be opened or written (corrupt, locked, newer, unwritable)."""
