"""Shipping: a host's SQLite log forwarded, in order and exactly once, to the central store.

The local log stays the truth: commands never wait for the network or the database, and
shipping only reads it. Each batch is one transaction on the central store that
  1. locks the host's head (its `hosts` row) and reads where its chain ends there;
  2. checks that this log has that very event (same seq, same hash): if not, the log and
     the store have forked, and nothing is sent;
  3. inserts the next events exactly as stored (same seq, hash and JSON texts), which the
     database checks one by one (pg_schema.py: a gap, a fork or an edited event is refused
     naming the host and seq), and folds them into the host's read model for `fleet ps`.
Exactly once falls out of it: where to go on is read from the store inside the transaction
that writes, so a shipper killed at any point (or two racing) resends nothing that
committed and loses nothing that didn't.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from adapters.eventstore.postgres import (
    Row,
    add_host,
    connect,
    ensure_schema,
    insert,
    project,
    redacted,
)
from adapters.eventstore.sqlite_log import EVENT_COLUMNS, recorded
from adapters.eventstore.where import HOST_FILE
from core.errors import LaminaError, StoreError
from core.model import ProjectionError
from events.codec import bulk_decoder

if TYPE_CHECKING:
    import sqlite3

    import psycopg

BATCH = 2000
RECHECK = 30.0  # seconds a follower trusts the head it saw, while its log has nothing new
HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


class ChainRefused(LaminaError):
    """The central store refused this host's events (a gap, a fork, an edited event):
    shipping again will not help until someone looks."""


def host_id(root: str, wanted: str | None = None) -> str:
    """The id this root ships as, kept in <root>/host-id from its first shipping on: the
    given one, or the machine's name and a random suffix (several roots on one machine are
    several hosts). A root that already ships as another id refuses a different one."""
    path = os.path.join(root, HOST_FILE)
    try:
        with open(path) as f:
            have = f.read().strip()
    except FileNotFoundError:
        have = ""
    if have:
        if wanted and wanted != have:
            raise LaminaError(f"root {root} ships as host {have!r}, not {wanted!r} "
                              f"(its {HOST_FILE} file says so)")
        return have
    new = wanted or f"{os.uname().nodename}-{os.urandom(3).hex()}"
    if not HOST_RE.match(new):
        raise LaminaError(f"host id {new!r}: use letters, digits and . _ : - (at most 128)")
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(new + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)
    return new


@dataclass
class Shipped:
    host: str
    events: int
    head: int  # the host's last seq in the central store afterwards
    local: int  # the local log's last seq when the pass ended


def _local_rows(con: sqlite3.Connection, after: int, limit: int) -> list[Row]:
    return con.execute(f"SELECT {EVENT_COLUMNS} FROM events WHERE seq > ? ORDER BY seq "
                       "LIMIT ?", (after, limit)).fetchall()


def _local_hash(con: sqlite3.Connection, seq: int) -> str | None:
    row = con.execute("SELECT hash FROM events WHERE seq = ?", (seq,)).fetchone()
    return row[0] if row else None


class Shipper:
    """Ships one root's log as `host` to the central store at `url`."""

    def __init__(self, root: str, url: str, host: str, *, batch: int = BATCH) -> None:
        from adapters.eventstore.sqlite_log import SqliteEventLog

        self.root, self.url, self.host, self.batch = root, url, host, batch
        self.local = SqliteEventLog(root, create=False)
        self.central: psycopg.Connection | None = None
        self.known: int | None = None  # the store's head after the last pass, if it went well
        self.checked = 0.0  # when that was (time.monotonic)

    def close(self) -> None:
        self.local.close()
        self._drop()

    def _drop(self) -> None:
        if self.central is not None:
            self.central.close()
            self.central = None

    def _connect(self) -> psycopg.Connection:
        if self.central is None or self.central.closed:
            con = connect(self.url, autocommit=True)
            ensure_schema(con)
            with con.transaction():
                add_host(con, self.host)
            self.central = con
        return self.central

    def ship(self) -> Shipped:
        """Everything the local log holds beyond the store's head, batch by batch.

        A pass with nothing new costs one local query and nothing on the store: the head
        the last pass left is remembered (and asked again at least every RECHECK seconds,
        or at once after any failure). Each batch's own transaction reads the real head."""
        import psycopg

        sent = 0
        self._reopen_if_replaced()
        local = self.local.last_seq()
        if self.known is not None and local <= self.known \
                and time.monotonic() - self.checked < RECHECK:
            return Shipped(self.host, 0, self.known, local)
        self.known = None
        try:
            while True:
                n, head = self._one_batch(self._connect())
                sent += n
                if n < self.batch:  # the log had no more: what came since is the next pass's
                    self.known, self.checked = head, time.monotonic()
                    return Shipped(self.host, sent, head, self.local.last_seq())
        except psycopg.OperationalError as err:
            self._drop()
            raise StoreError(f"event store {redacted(self.url)}: {_line(err)}") from None
        except (psycopg.DataError, psycopg.IntegrityError) as err:
            raise ChainRefused(_line(err)) from None
        except psycopg.Error as err:
            self._drop()
            raise StoreError(f"event store {redacted(self.url)}: {_line(err)}") from None

    def _reopen_if_replaced(self) -> None:
        """A follower outlives its root's log file (a root removed and made again): read the
        one at the path now (if it forked from what was shipped, shipping says so)."""
        if not self.local.still_current():
            from adapters.eventstore.sqlite_log import SqliteEventLog

            self.local.close()
            try:
                self.local = SqliteEventLog(self.root, create=False)
            except FileNotFoundError:
                raise StoreError(f"{self.root} has no event log any more") from None

    def _one_batch(self, central: psycopg.Connection) -> tuple[int, int]:
        with central.transaction():
            row = central.execute("SELECT last_seq, last_hash FROM hosts WHERE host = %s "
                                  "FOR UPDATE", (self.host,)).fetchone()
            assert row is not None  # _connect added it
            seq, hash_ = row
            if seq:
                self._check_same(seq, hash_)
            rows = _local_rows(self.local.con, seq, self.batch)
            if not rows:
                return 0, seq
            insert(central, self.host, rows)
            loads = bulk_decoder()
            try:
                project(central, self.host, [recorded(r, loads) for r in rows], leases=False)
            except (ProjectionError, LaminaError) as err:
                raise ChainRefused(f"host {self.host}: seq {seq + 1}-{rows[-1][0]} do not "
                                   f"fold into the host's read model: {err}") from None
        return len(rows), rows[-1][0]

    def _check_same(self, seq: int, central_hash: str) -> None:
        mine = _local_hash(self.local.con, seq)
        if mine is None:
            raise ChainRefused(f"host {self.host}: the central store holds seq {seq} and "
                               f"this log ends before it (a log made again under the same "
                               f"host id?)")
        if mine != central_hash:
            raise ChainRefused(f"host {self.host}: fork at seq {seq}: this log's event is "
                               "not the one the central store holds")


def _line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def follow(shipper: Shipper, *, interval: float = 0.5, stop: Callable[[], bool] = lambda: False,
           say: Callable[[str, dict[str, Any]], None] = lambda *_: None) -> None:
    """Ship, then ship what comes next, until stop(): while the store is unreachable, try
    again with a back-off doubling up to 64 intervals (at most 30 s; the host goes on
    working: its log is local); a refused chain is said and tried again only at the
    longest back-off, since it needs someone to look."""
    max_backoff = min(30.0, 64 * interval)
    backoff = interval
    while not stop():
        try:
            done = shipper.ship()
            if done.events:
                say("shipped", {"events": done.events, "head": done.head})
            backoff = interval
        except ChainRefused as err:
            say("refused", {"error": str(err)})
            backoff = max_backoff
        except StoreError as err:
            say("unreachable", {"error": str(err)})
            backoff = min(max_backoff, backoff * 2)
        _sleep(backoff, stop)


def _sleep(seconds: float, stop: Callable[[], bool]) -> None:
    deadline = time.monotonic() + seconds
    while not stop() and time.monotonic() < deadline:
        time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))


def store_url(given: str | None, env: dict[str, str] | None = None) -> str:
    """--event-store URL, else $LAMINA_EVENT_STORE; a one-line error without either."""
    url = given or (env if env is not None else os.environ).get("LAMINA_EVENT_STORE", "")
    if not url:
        raise LaminaError("no central event store: give --event-store postgresql://... or set "
                          "LAMINA_EVENT_STORE")
    if not url.startswith(("postgresql://", "postgres://")):
        raise LaminaError(f"event store {url!r}: only postgresql:// URLs name a central "
                          "store (a host's own log is its --root)")
    return url
