"""The database's shape, created and migrated through sqlite-utils.

Only a new or older database pays for importing sqlite-utils (~150 ms); the hot paths open
the file with plain sqlite3 and just check `PRAGMA user_version`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite3

# 2: the volumes table; 3: the networks table; 4: leases and bindings; 5: events_type_stream;
# 6: container_briefs
SCHEMA_VERSION = 6

APPEND_ONLY_TRIGGERS = """
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events is append-only: UPDATE is not allowed'); END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events is append-only: DELETE is not allowed'); END;
"""


def migrate(con: sqlite3.Connection) -> None:
    """Bring a database at an older (or no) schema version up to SCHEMA_VERSION."""
    import sqlite_utils

    db = sqlite_utils.Database(con)
    version = con.execute("PRAGMA user_version").fetchone()[0]
    if version < 1:
        _create_v1(db)
    if version < 2:
        _create_v2(db)
    if version < 3:
        _create_v3(db)
    if version < 4:
        _create_v4(db)
    if version < 5:
        _create_v5(db)
    if version < 6:
        _create_v6(con)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _create_v1(db) -> None:
    db["events"].create(
        {"seq": int, "stream": str, "version": int, "type": str, "schema": int, "data": str,
         "meta": str, "at": str, "prev_hash": str, "hash": str},
        pk="seq", not_null={"stream", "version", "type", "schema", "data", "meta", "at",
                            "prev_hash", "hash"}, if_not_exists=True,
    )
    db["events"].create_index(["stream", "version"], unique=True, if_not_exists=True,
                              index_name="events_stream_version")
    db["events"].create_index(["at"], if_not_exists=True, index_name="events_at")
    db["events"].create_index(["type"], if_not_exists=True, index_name="events_type")
    db.executescript(APPEND_ONLY_TRIGGERS)
    for name, extra in (("containers", {"name": str, "image": str, "state": str}),
                        ("images", {"tags": str}), ("layers", {})):
        db[name].create({"id": str, "version": int, **extra, "doc": str}, pk="id",
                        if_not_exists=True)
    db["containers"].create_index(["name"], unique=True, if_not_exists=True,
                                  index_name="containers_name")
    db["snapshots"].create({"seq": int, "at": str, "projection": int, "world": str}, pk="seq",
                           if_not_exists=True)


def _create_v2(db) -> None:
    """Volumes' read model. A log written before volumes has no volume events: the table
    starts empty and is right."""
    db["volumes"].create({"id": str, "version": int, "doc": str}, pk="id", if_not_exists=True)


def _create_v3(db) -> None:
    """Networks' read model: a name unique among live networks (as containers' names), and
    a subnet too, so that two creates racing for the same free subnet of the pools can't
    both record it (the second's append fails and it chooses again). A log written before
    networks has no network events: the table starts empty and is right."""
    db["networks"].create({"id": str, "version": int, "name": str, "subnet": str, "doc": str},
                          pk="id", if_not_exists=True)
    db["networks"].create_index(["name"], unique=True, if_not_exists=True,
                                index_name="networks_name")
    db["networks"].create_index(["subnet"], unique=True, if_not_exists=True,
                                index_name="networks_subnet")


def _create_v4(db) -> None:
    """The running containers' leases: an address unique on its network, and published
    ports (checked for clashes by write_row, since an ANY binding clashes with every
    address). Two starts racing for one free address or port can't both record it: the
    second's append fails and it chooses again. Rows come from the containers' docs, so a
    log from before networks has none and the tables start empty and right."""
    db["leases"].create({"container": str, "network": str, "address": str},
                        pk=("network", "address"), if_not_exists=True)
    db["leases"].create_index(["container"], if_not_exists=True, index_name="leases_container")
    db["bindings"].create({"container": str, "proto": str, "host_ip": str, "host_port": int},
                          pk=("proto", "host_port", "host_ip"), if_not_exists=True)
    db["bindings"].create_index(["container"], if_not_exists=True,
                                index_name="bindings_container")


def _create_v5(db) -> None:
    """An index of the events by (type, stream, version), in place of the one by type: a
    replay finds the streams created and ended from it alone, without reading their rows
    (bench/eventlog.py: replay of 1M events 4.4 s -> ~0.5 s). It answers every query the
    index by type answered (type is its first column). Built once on an existing log (~4 s
    per million events)."""
    db["events"].create_index(["type", "stream", "version"], if_not_exists=True,
                              index_name="events_type_stream")
    db.execute("DROP INDEX IF EXISTS events_type")


BRIEFS_GONE = ("CREATE TRIGGER IF NOT EXISTS containers_brief_gone AFTER DELETE ON containers "
               "BEGIN DELETE FROM container_briefs WHERE made = old.rowid; END")


def _create_v6(con: sqlite3.Connection) -> None:
    """Each container's brief (core/model.py brief_doc: what a row of `ps` shows) beside its
    document, under its row's rowid: `ps` reads ~0.3 KB a container where the documents
    are several, so that a command's fresh connection reads a tenth of the pages
    (bench/eventlog.py). Written with the document (sqlite_log.write_row), gone with its
    row (the trigger). Filled from the documents on an existing log, in the migration's
    transaction."""
    import json

    from core.model import brief_doc
    from events.hashchain import canonical

    con.execute("CREATE TABLE IF NOT EXISTS container_briefs (made INTEGER PRIMARY KEY, "
                "state TEXT NOT NULL, brief TEXT NOT NULL)")
    con.execute(BRIEFS_GONE)
    rows = con.execute("SELECT rowid, state, doc FROM containers").fetchall()
    con.executemany("INSERT OR REPLACE INTO container_briefs (made, state, brief) "
                    "VALUES (?, ?, ?)",
                    [(made, state, canonical(brief_doc(json.loads(doc))))
                     for made, state, doc in rows])
