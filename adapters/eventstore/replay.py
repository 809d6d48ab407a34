"""Replay: fold the log into a World, rebuild the read model, snapshots, time travel.

A rebuild and the incremental read model use the same `evolve`, so they must agree; the
property tests check that they do. A snapshot is the folded World at some seq, stored as JSON;
a rebuild starts from the newest snapshot and folds only the tail.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from adapters.eventstore.sqlite_log import current_schema, utcnow, write_row, write_transaction
from core.model import CREATORS, EVOLVERS, KINDS, World, evolve
from events.codec import bulk_decoder
from events.envelope import Recorded
from events.hashchain import canonical

# Bump when the shape of the aggregates changes: older snapshots are then ignored.
# 2: tagging a removed image makes it top-level again; 3: volumes; 4: networks
PROJECTION_VERSION = 4


# The events after which a stream's aggregate no longer exists (ImageRemoved: unless `kept`).
ENDINGS = ("ContainerRemoved", "ImageRemoved", "LayerRemoved", "VolumeRemoved",
           "NetworkRemoved")


def _mark_gone(con: sqlite3.Connection, after: int, until: int) -> None:
    """temp.gone: the streams whose last event up to `until` ended them, after `after`.
    Read from the index events_type_stream alone (and each stream's versions from
    events_stream_version), but an ImageRemoved's `kept`: no other row of the log is read."""
    con.execute("CREATE TEMP TABLE IF NOT EXISTS gone (stream TEXT PRIMARY KEY) WITHOUT ROWID")
    con.execute("DELETE FROM temp.gone")
    con.execute(
        "INSERT OR IGNORE INTO temp.gone SELECT e.stream FROM events AS e "
        f"WHERE e.type IN {ENDINGS!r} AND e.seq > :after AND e.seq <= :until "
        "AND NOT (e.type = 'ImageRemoved' AND coalesce(json_extract(e.data, '$.kept'), 0)) "
        "AND e.version = (SELECT max(l.version) FROM events AS l "
        "                 WHERE l.stream = e.stream AND l.seq <= :until)",
        {"after": after, "until": until})


def _mark_live(con: sqlite3.Connection, world: World, after: int, until: int) -> None:
    """temp.live: the streams a pruned fold reads, those of `world`'s aggregates and those
    created after `after` up to `until`, minus temp.gone. Every aggregate's stream starts
    with a creator (evolve refuses anything else, and so did the append that wrote it), so
    the creators found through events_type_stream name every stream that can be live."""
    con.execute("CREATE TEMP TABLE IF NOT EXISTS live (stream TEXT PRIMARY KEY) WITHOUT ROWID")
    con.execute("DELETE FROM temp.live")
    con.executemany("INSERT OR IGNORE INTO temp.live VALUES (?)",
                    ((f"{kind}:{ident}",) for kind in KINDS for ident in world.table(kind)))
    con.execute("INSERT OR IGNORE INTO temp.live SELECT stream FROM events "
                f"WHERE type IN {tuple(sorted(CREATORS))!r} AND seq > ? AND seq <= ?",
                (after, until))
    con.execute("DELETE FROM temp.live WHERE stream IN temp.gone")


# A pruned fold: the live streams' events, each stream's through events_stream_version.
LIVE_EVENTS = ("SELECT e.seq, e.stream, e.version, e.type, e.schema, e.data, e.at "
               "FROM temp.live AS l CROSS JOIN events AS e ON e.stream = l.stream "
               "WHERE e.seq > ? AND e.seq <= ? ORDER BY e.seq")
ALL_EVENTS = "SELECT seq, stream, version, type, schema, data, at FROM events WHERE seq > ?"


def fold(con: sqlite3.Connection, world: World | None = None, until: int | None = None,
         prune: bool = False) -> World:
    """Fold the events after `world.seq` (up to `until`) into `world`.

    prune: read only the streams whose aggregate still exists at `until` (a long log is
    mostly containers that came and went): the work grows with the streams created and
    ended, found in indexes, and with the live streams' events, not with the log's
    length. The World is the same; what is lost is only the re-check of the ended
    streams' histories against the lifecycle (fold without prune does that).
    """
    world = world or World()
    if prune:
        until = _last_seq(con) if until is None else until  # one bound for every query
        _mark_gone(con, world.seq, until)
        _mark_live(con, world, world.seq, until)
        rows = con.execute(LIVE_EVENTS, (world.seq, until))
    elif until is None:
        rows = con.execute(ALL_EVENTS + " ORDER BY seq", (world.seq,))
    else:
        rows = con.execute(ALL_EVENTS + " AND seq <= ? ORDER BY seq", (world.seq, until))
    tables: dict[str, dict[str, Any]] = {kind: world.table(kind) for kind in KINDS}
    started_with = any(tables.values())
    seq = _fold_rows(rows, tables)
    world.seq = max(world.seq, seq)
    if prune and started_with:  # what a snapshot still had and is gone by now
        for (stream,) in con.execute("SELECT stream FROM temp.gone"):
            kind, _, target = stream.partition(":")
            tables[kind].pop(target, None)
    if until is not None and world.seq < until:
        world.seq = min(until, _last_seq(con))
    return world


def _fold_rows(rows: Any, tables: dict[str, dict[str, Any]]) -> int:
    """Evolve the aggregates of `tables` by each row (seq, stream, version, type, schema,
    data, at), in order; returns the last seq seen (0 if none)."""
    current = current_schema()
    loads = bulk_decoder()
    evolvers, creators = EVOLVERS, CREATORS
    seq = 0
    for seq, stream, version, type_, schema, data, at in rows:
        kind, _, target = stream.partition(":")
        table = tables.get(kind)
        if table is None:
            continue  # command:<id>: a refused command changes no aggregate
        fn = evolvers.get(type_)
        if fn is None:
            continue
        data = loads(data)
        if schema != current.get(type_):
            from events.upcasting import upcast

            data = upcast(type_, schema, data)
        agg = table.get(target)
        rec = Recorded(seq, stream, version, type_, schema, data, {}, at)
        if (agg is None) != (type_ in creators):
            evolve(agg, rec)  # raises the ProjectionError
        new = fn(agg, rec)
        if new is None:
            table.pop(target, None)
        else:
            table[target] = new
    return seq


def _last_seq(con: sqlite3.Connection) -> int:
    return con.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]


def newest_snapshot(con: sqlite3.Connection, at_or_before: int | None = None) -> World | None:
    sql = "SELECT world FROM snapshots WHERE projection = ?"
    args: list[int] = [PROJECTION_VERSION]
    if at_or_before is not None:
        sql += " AND seq <= ?"
        args.append(at_or_before)
    row = con.execute(sql + " ORDER BY seq DESC LIMIT 1", args).fetchone()
    return World.from_json(bulk_decoder()(row[0])) if row else None


def state_at(con: sqlite3.Connection, seq: int | None = None, use_snapshots: bool = True
             ) -> World:
    """The World as it was right after `seq` (now, if None), from the best snapshot."""
    start = newest_snapshot(con, seq) if use_snapshots else None
    return fold(con, start, seq, prune=True)


@dataclass
class RebuildReport:
    events: int
    from_snapshot: int
    containers: int
    images: int
    layers: int
    volumes: int = 0
    networks: int = 0


def _path(con: sqlite3.Connection) -> str:
    return con.execute("PRAGMA database_list").fetchone()[2]


def rebuild(con: sqlite3.Connection, use_snapshots: bool = True) -> RebuildReport:
    """Replace the read-model tables with the fold of the log, in one transaction."""
    with write_transaction(con, _path(con)):
        start = newest_snapshot(con) if use_snapshots else None
        base = start.seq if start else 0
        world = fold(con, start, prune=True)
        con.execute("DELETE FROM leases")
        con.execute("DELETE FROM bindings")
        for kind in KINDS:
            con.execute(f"DELETE FROM {kind}s")
            for agg in world.table(kind).values():
                write_row(con, kind, agg)
    return RebuildReport(world.seq - base, base, len(world.containers), len(world.images),
                         len(world.layers), len(world.volumes), len(world.networks))


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
