"""One container's row of a root's read model, read-only, for the lean monitors.

The monitor that watches a container (adapters/runtime/supervise.py) and its health checker
(adapters/runtime/health.py) run without the engine, under `python -S`, and ask only
"is this container still recorded as running, with which pid, and how does it end": a
single row. They read it wherever the root's log lives (adapters/eventstore/where.py): the
SQLite file read-only, or the host's row in PostgreSQL, whose driver they load only then.
"""

from __future__ import annotations

import os

from adapters.eventstore.where import HOST_FILE, SQLITE_FILE, store_url


class Unreadable(Exception):
    """The read model can't be read now (busy, unreachable): ask again later."""


def container_row(root: str, cid: str, timeout: float = 5) -> tuple[str, str] | None:
    """(state, doc as JSON text) of the container; None when the read model has none."""
    url = store_url(root)
    if url is None:
        return _sqlite_row(root, cid, timeout)
    return _postgres_row(root, url, cid, timeout)


def _sqlite_row(root: str, cid: str, timeout: float) -> tuple[str, str] | None:
    import sqlite3

    path = os.path.join(root, SQLITE_FILE)
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout)
        try:
            row = con.execute("SELECT state, doc FROM containers WHERE id = ?",
                              (cid,)).fetchone()
        finally:
            con.close()
    except sqlite3.Error as err:
        raise Unreadable(str(err)) from None
    return (row[0], row[1]) if row else None


def _postgres_row(root: str, url: str, cid: str, timeout: float) -> tuple[str, str] | None:
    import sys

    if sys.flags.no_site:  # a lean interpreter: psycopg is in site-packages
        import site

        site.main()
    import psycopg

    with open(os.path.join(root, HOST_FILE)) as f:
        host = f.read().strip()
    try:
        with psycopg.connect(url, connect_timeout=max(1, int(timeout))) as con:
            row = con.execute("SELECT state, doc FROM aggregates WHERE host = %s AND "
                              "kind = 'container' AND id = %s", (host, cid)).fetchone()
    except psycopg.Error as err:
        raise Unreadable(str(err)) from None
    return (row[0], row[1]) if row else None
