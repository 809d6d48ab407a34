"""The fleet's questions to the central store: `lamina fleet ps / events / audit verify /
replay --at`, every host at once (or one with --host), each a query or a fold per host.

Reads only: nothing here adds a host or an event. The hosts' read models (kept by shipping,
postgres.project) answer `ps` for now in one query; the past is folded from each host's
newest snapshot at or before it, as SQLite's replay does for one host.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from adapters.eventstore.audit import Verdict
from adapters.eventstore.postgres import (
    Head,
    PostgresEventLog,
    connect,
    ensure_schema,
)
from adapters.eventstore.sqlite_log import EVENT_COLUMNS, recorded
from core.model import World, from_doc
from events.codec import bulk_decoder

if TYPE_CHECKING:
    from core.model import Container, Image
    from events.envelope import Recorded

LIVE = ("running", "paused")


@dataclass(frozen=True)
class HostHead:
    host: str
    head: Head
    last_at: str
    updated: str


class Fleet:
    """The central store at `url`, read as a whole."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.con = connect(url, autocommit=True)
        ensure_schema(self.con)

    def close(self) -> None:
        self.con.close()

    def hosts(self, only: str | None = None) -> list[HostHead]:
        sql = "SELECT host, last_seq, last_hash, last_at, updated::text FROM hosts"
        args: list[Any] = []
        if only is not None:
            sql += " WHERE host = %s"
            args.append(only)
        return [HostHead(h, Head(s, x), at, up)
                for h, s, x, at, up in self.con.execute(sql + " ORDER BY host", args)]

    def known(self, host: str | None) -> list[str]:
        """The hosts a command is about: all, or the one named (a LookupError if unknown)."""
        names = [h.host for h in self.hosts(host)]
        if host is not None and not names:
            raise LookupError(f"no host {host!r} in the central store")
        return names

    def containers(self, host: str | None = None, every: bool = False
                   ) -> list[tuple[str, Container]]:
        """(host, container) for every host's live containers (all with `every`): one
        query over the hosts' read models."""
        sql = "SELECT host, doc FROM aggregates WHERE kind = 'container'"
        args: list[Any] = []
        if not every:
            sql += " AND state = ANY(%s)"
            args.append(list(LIVE))
        if host is not None:
            sql += " AND host = %s"
            args.append(host)
        rows = self.con.execute(sql + " ORDER BY host, ord", args)
        loads = bulk_decoder()
        found: list[Any] = [(h, from_doc("container", loads(doc))) for h, doc in rows]
        return found

    def images(self, host: str | None = None) -> list[tuple[str, Image]]:
        """(host, image) for every host's images: one query over the read models."""
        sql = "SELECT host, doc FROM aggregates WHERE kind = 'image'"
        args: list[Any] = []
        if host is not None:
            sql += " AND host = %s"
            args.append(host)
        loads = bulk_decoder()
        found: list[Any] = [(h, from_doc("image", loads(doc)))
                            for h, doc in self.con.execute(sql + " ORDER BY host, ord", args)]
        return found

    def events(self, host: str | None = None, since: str | None = None,
               until: str | None = None) -> Iterator[tuple[str, Recorded]]:
        """(host, event) in time order, then by host and seq; streamed."""
        sql = f"SELECT host, {EVENT_COLUMNS} FROM events WHERE true"
        args: list[Any] = []
        for cond, value in (("host = %s", host), ("at >= %s", since), ("at <= %s", until)):
            if value is not None:
                sql += f" AND {cond}"
                args.append(value)
        with self.con.transaction(), self.con.cursor(name="lamina_fleet_events") as cur:
            cur.itersize = 2000
            cur.execute(sql + " ORDER BY at, host, seq", args)
            loads = bulk_decoder()
            for host_, *row in cur:
                yield host_, recorded(row, loads)

    def _log(self, host: str) -> PostgresEventLog:
        return PostgresEventLog(self.url, host, con=self.con)

    def verify(self, host: str) -> Verdict:
        """The host's whole chain recomputed, and its end where the store's head says."""
        return self._log(host).verify()

    def state_at(self, host: str, when: str | None) -> World:
        """The host's World as it was at the ISO time `when` (now if None)."""
        log = self._log(host)
        return log.state_at(None if when is None else log.seq_at_time(when))

    def snapshot(self, host: str) -> int:
        return self._log(host).snapshot()
