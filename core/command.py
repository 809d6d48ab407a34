"""A command's unit of work: who asked, what for, and everything it appends.

Every state-changing command (the engine's, a build's, a pull's) runs inside one Command:

    with engine.command("pause", ref) as cmd:
        ...judge, change the host...
        cmd.append([ev.ContainerPaused(id=c.id)], {f"container:{c.id}": c.version})

Why one object: the rules it holds are the log's, and each was once copied by hand into every
module that appends. Every event of a command carries the same meta (the caller, the command's
name and its id), so an audit can group them; every append names the version of each stream
it read, so a racing writer fails instead of being overwritten (optimistic concurrency, as
the `eventsourcing` library's expected versions); and a command refused for a reason a user
should see (a LaminaError) leaves one CommandRejected in its own `command:<id>` stream
naming its target, which changes no aggregate and so can't conflict with anything. A
StoreError is not recorded: the log itself is what failed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

from core.errors import ConcurrencyError, LaminaError, StoreError
from core.model import Container, evolve
from core.ports import EventLog
from events import types as ev
from events.envelope import Recorded

T = TypeVar("T")


@dataclass
class Command:
    """One command: its meta (the caller's, plus `command` and `command_id`), its target
    (what a rejection names: a reference, a file, `host`), and the log it appends to.

    Used as a context manager: a LaminaError other than StoreError that leaves the block is
    recorded as CommandRejected (once), then raised on; anything else passes untouched."""

    log: EventLog
    name: str
    target: str
    meta: dict[str, Any]

    @classmethod
    def begin(cls, log: EventLog, name: str, target: str, caller: Mapping[str, Any],
              command_id: str) -> Command:
        """A command with the caller's meta (uid, user, pid, argv...) and its own id."""
        return cls(log, name, target, {**caller, "command": name, "command_id": command_id})

    @property
    def id(self) -> str:
        """The command's id, shared by all its events' meta (and its rejection's stream)."""
        return str(self.meta["command_id"])

    def __enter__(self) -> Command:
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None,
                 tb: TracebackType | None) -> None:
        """Record a refusal; never swallow it (None): the caller sees it as raised."""
        if isinstance(err, LaminaError) and not isinstance(err, StoreError):
            self.reject(str(err))

    def reject(self, reason: str) -> None:
        """Record the refusal: one CommandRejected in the command's own stream."""
        event = ev.CommandRejected(id=self.id, command=self.name, target=self.target,
                                   reason=reason)
        self.log.append([event], expected={}, meta=self.meta)

    def append(self, events: Sequence[ev.Event], expected: Mapping[str, int]
               ) -> list[Recorded]:
        """Append all of `events` or none; their records. `expected[stream]` is the version
        this command read (0: a new stream); a stream moved by someone else raises
        ConcurrencyError. Streams not named aren't checked (audit-only records, a new
        command stream)."""
        return self.log.append(events, expected=expected, meta=self.meta)

    def append_locked(self, c: Container, event: ev.Event) -> Container:
        """Append a container's event while holding its lock (Runtime.ending). Only the
        commands that take no lock (exec, and the records of export and commit) can move
        the stream's version meanwhile, and they never change its state: on a conflict,
        take the new version and append once more.

        Returns the container as the event left it: the version appended to, evolved by
        the record, as the log's read model folded it in the same append (an event that
        removes the container is none of its callers'). A caller that answers with the
        container needs no read of it back (a served pause's 0.15 ms)."""
        try:
            [rec] = self.append([event], {f"container:{c.id}": c.version})
        except ConcurrencyError:
            now = self.log.container(c.id)
            if now is None or now.state != c.state:
                raise
            c = now
            [rec] = self.append([event], {f"container:{c.id}": c.version})
        return evolve(c, rec)

    def stream_version(self, stream: str) -> int:
        """The version a stream is at, also after its aggregate was removed (0 if new): the
        expected version for a stream the read model no longer (or not yet) holds."""
        return max((rec.version for rec in self.log.read(stream=stream)), default=0)

    def retrying(self, attempt: Callable[[], T]) -> T:
        """Optimistic concurrency: `attempt` reads what it needs, judges and appends; on a
        conflict it runs once more (reloading, judging again), and a second conflict is
        raised (and, inside the block, recorded as the refusal)."""
        try:
            return attempt()
        except ConcurrencyError:
            return attempt()
