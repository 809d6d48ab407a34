"""Replay: fold the log into a World, rebuild the read model, snapshots, time travel.

A rebuild and the incremental read model use the same `evolve`, so they must agree; the
property tests check that they do. A snapshot is the folded World at some seq, stored as JSON;
a rebuild starts from the newest snapshot and folds only the tail.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

from core.model import KINDS, World
from events.envelope import Recorded
from events.hashchain import canonical
from events.sqlite_log import current_schema, utcnow, write_row, write_transaction

# Bump when the shape of the aggregates changes: older snapshots are then ignored.
PROJECTION_VERSION = 2  # 2: tagging a removed image makes it top-level again


def fold(con: sqlite3.Connection, world: World | None = None, until: int | None = None) -> World:
    """Fold the events after `world.seq` (up to `until`) into `world`."""
    world = world or World()
    sql = "SELECT seq, stream, version, type, schema, data, at FROM events WHERE seq > ?"
    args: list[int] = [world.seq]
    if until is not None:
        sql += " AND seq <= ?"
        args.append(until)
    current = current_schema()
    loads = json.loads
    apply = world.apply
    for seq, stream, version, type_, schema, data, at in con.execute(sql + " ORDER BY seq",
                                                                       args):
        if stream.startswith("command:"):
            world.seq = seq
            continue
        data = loads(data)
        if schema != current.get(type_):
            from events.upcasting import upcast

            data = upcast(type_, schema, data)
        apply(Recorded(seq, stream, version, type_, schema, data, {}, at))
    if until is not None and world.seq < until:
        world.seq = min(until, _last_seq(con))
    return world


def _last_seq(con: sqlite3.Connection) -> int:
    return con.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]


def newest_snapshot(con: sqlite3.Connection, at_or_before: int | None = None) -> World | None:
    sql = "SELECT world FROM snapshots WHERE projection = ?"
    args: list[int] = [PROJECTION_VERSION]
    if at_or_before is not None:
        sql += " AND seq <= ?"
        args.append(at_or_before)
    row = con.execute(sql + " ORDER BY seq DESC LIMIT 1", args).fetchone()
    return World.from_json(json.loads(row[0])) if row else None


def state_at(con: sqlite3.Connection, seq: int | None = None, use_snapshots: bool = True
             ) -> World:
    """The World as it was right after `seq` (now, if None), from the best snapshot."""
    start = newest_snapshot(con, seq) if use_snapshots else None
    return fold(con, start, seq)


@dataclass
class RebuildReport:
    events: int
    from_snapshot: int
    containers: int
    images: int
    layers: int


def _path(con: sqlite3.Connection) -> str:
    return con.execute("PRAGMA database_list").fetchone()[2]


def rebuild(con: sqlite3.Connection, use_snapshots: bool = True) -> RebuildReport:
    """Replace the read-model tables with the fold of the log, in one transaction."""
    with write_transaction(con, _path(con)):
        start = newest_snapshot(con) if use_snapshots else None
        base = start.seq if start else 0
        world = fold(con, start)
        for kind in KINDS:
            con.execute(f"DELETE FROM {kind}s")
            for agg in world.table(kind).values():
                write_row(con, kind, agg)
    return RebuildReport(world.seq - base, base, len(world.containers), len(world.images),
                         len(world.layers))


def snapshot(con: sqlite3.Connection) -> int:
    """Checkpoint the projection at the log's current end; returns the snapshot's seq."""
    with write_transaction(con, _path(con)):
        world = state_at(con)
        con.execute("INSERT OR REPLACE INTO snapshots (seq, at, projection, world) "
                    "VALUES (?,?,?,?)", (world.seq, utcnow(), PROJECTION_VERSION,
                                         canonical(world.to_json())))
    return world.seq


def seq_at_time(con: sqlite3.Connection, when: str) -> int:
    """The last seq recorded at or before the ISO time `when` (UTC)."""
    row = con.execute("SELECT coalesce(max(seq), 0) FROM events WHERE at <= ?",
                      (when,)).fetchone()
    return row[0]


def read_model_rows(con: sqlite3.Connection) -> dict[str, list[tuple]]:
    """Every read-model row, ordered: what the property tests compare."""
    return {kind: con.execute(f"SELECT * FROM {kind}s ORDER BY id").fetchall()
            for kind in KINDS}
