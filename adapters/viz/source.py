"""Where a picture's data comes from: the read model now, or the World as it was at a seq.

`core.memory.WorldReader` gives a folded World the read methods of the event log's read
model, so the engine's own name resolution (id, name or tag, unique prefix) works on the past
too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.memory import WorldReader
from core.model import Container, Image, World


@dataclass
class Source:
    """What a picture is drawn from.

    live: the read model now, so the host (layer directories, cgroups) can be asked too;
    otherwise the log folded to `seq`, and only what the log recorded is drawn.
    """

    reader: Any  # the read model (SqliteEventLog) or a WorldReader
    seq: int
    live: bool
    when: str = ""  # the time of the event at seq
    con: Any = None  # the log's sqlite3 connection (None: no log yet)

    def engine(self) -> Any:
        """An engine for name resolution only: no layer store, no runtime."""
        from adapters.bootstrap import query_engine

        return query_engine(self.reader)

    def container(self, ref: str) -> Container:
        return self.engine().container(ref)

    def image(self, ref: str) -> Image:
        return self.engine().image(ref)


def _time_of(con: Any, seq: int) -> str:
    row = con.execute("SELECT at FROM events WHERE seq <= ? ORDER BY seq DESC LIMIT 1",
                      (seq,)).fetchone()
    return row[0] if row else ""


def resolve_at(con: Any, at: str) -> int:
    """SEQ or TIME (ISO 8601, unix timestamp, `10m` ago) -> a seq of the log, as `replay --at`."""
    from adapters.eventstore import replay
    from adapters.eventstore.query import parse_time

    return int(at) if at.isdigit() else replay.seq_at_time(con, parse_time(at))


def open_source(root: str, at: str | None = None) -> Source:
    """The live read model, or (with `at`) the World folded up to that point of the log."""
    from adapters.bootstrap import open_log

    log = open_log(root, create=False)
    if log is None:
        return Source(WorldReader(World()), 0, live=at is None)
    if getattr(log, "host", None) is not None:
        from core.errors import LaminaError

        raise LaminaError(f"viz reads SQLite's log; root {root} keeps its log in PostgreSQL "
                          "(not yet)")
    if at is None:
        seq = log.last_seq()
        return Source(log, seq, live=True, when=_time_of(log.con, seq), con=log.con)
    from adapters.eventstore import replay

    seq = resolve_at(log.con, at)
    world = replay.state_at(log.con, seq)
    return Source(WorldReader(world), world.seq, live=False, when=_time_of(log.con, world.seq),
                  con=log.con)
