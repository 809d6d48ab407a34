"""The envelope of a recorded event: one row of the log as read back.

Kept apart from the event types so that queries (ps, images) never pay for defining them;
this module needs the types only when asked for one (`event()`), and they never import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Recorded:
    """One row of the log as read back: the envelope around an event's data.

    `data` is already upcast to the current schema of its type.
    """

    seq: int
    stream: str
    version: int
    type: str
    schema: int
    data: dict[str, Any]
    meta: dict[str, Any]
    at: str
    prev_hash: str = ""
    hash: str = ""

    @property
    def kind(self) -> str:
        return self.stream.split(":", 1)[0]

    @property
    def target(self) -> str:
        return self.stream.split(":", 1)[1]

    def event(self) -> Any:
        """The typed event (for code that wants the dataclass rather than the dict)."""
        from events.types import EVENT_TYPES

        return EVENT_TYPES[self.type](**self.data)
