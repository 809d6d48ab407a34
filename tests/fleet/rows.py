"""The rows the fleet tests compare: a root's local log, and a host's copy in the central
store, each as the full stored rows in seq order."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg

from adapters.eventstore.sqlite_log import EVENT_COLUMNS


def local_rows(root: Path) -> list[tuple]:
    con = sqlite3.connect(root / "events.db")
    try:
        return con.execute(f"SELECT {EVENT_COLUMNS} FROM events ORDER BY seq").fetchall()
    finally:
        con.close()


def central_rows(url: str, host: str) -> list[tuple]:
    with psycopg.connect(url) as con:
        return con.execute(f"SELECT {EVENT_COLUMNS} FROM events WHERE host = %s ORDER BY seq",
                           (host,)).fetchall()
