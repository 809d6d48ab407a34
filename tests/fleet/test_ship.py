"""Shipping a host's SQLite log to the central PostgreSQL store: in order, exactly once,
the chain intact; a gap, a fork or an edited event refused naming the host and seq; the
fleet read back. Real SQLite logs (tests/sessions.py: the engine on in-memory layers and
runtime) and a real PostgreSQL (the run's temporary cluster)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest

from adapters.eventstore.fleet import Fleet
from adapters.eventstore.ship import ChainRefused, Shipper, host_id
from adapters.eventstore.sqlite_log import EVENT_COLUMNS
from core.errors import LaminaError, StoreError
from tests.fleet.rows import central_rows, local_rows
from tests.sessions import engine, session


def edit_local(root: Path, sql: str, *args: object) -> None:
    """What an intruder with the file does: the append-only triggers dropped first."""
    con = sqlite3.connect(root / "events.db", isolation_level=None)
    con.execute("DROP TRIGGER events_no_update")
    con.execute("DROP TRIGGER events_no_delete")
    con.execute(sql, args)
    con.close()


def ship(root: Path, url: str, host: str, batch: int = 2000) -> int:
    shipper = Shipper(str(root), url, host, batch=batch)
    try:
        return shipper.ship().events
    finally:
        shipper.close()


def test_a_log_is_shipped_in_order_exactly_once_with_its_chain(tmp_path: Path,
                                                               pg_url: str) -> None:
    root = tmp_path / "a"
    e = session(str(root))
    local = local_rows(root)
    assert ship(root, pg_url, "host-a", batch=3) == len(local)
    assert ship(root, pg_url, "host-a") == 0  # nothing twice
    assert central_rows(pg_url, "host-a") == local  # same seq, hash, texts
    e.start("web")
    e.create("busybox", ["sh"], name="more")
    assert ship(root, pg_url, "host-a") == 2
    assert central_rows(pg_url, "host-a") == local_rows(root)
    fleet = Fleet(pg_url)
    try:
        assert fleet.verify("host-a").ok
        assert [(h, c.name) for h, c in fleet.containers()] == [("host-a", "web")]
        assert sorted(c.name for _, c in fleet.containers(every=True)) == ["db", "more", "web"]
    finally:
        fleet.close()


def test_hosts_keep_their_own_chains_and_the_fleet_reads_them_together(
        tmp_path: Path, pg_url: str) -> None:
    roots = [tmp_path / n for n in ("a", "b")]
    for r in roots:
        session(str(r))
    engine(str(roots[1]), ids_from=500).start("web")
    for n, r in enumerate(roots):
        ship(r, pg_url, f"h{n}")
    fleet = Fleet(pg_url)
    try:
        assert [h.host for h in fleet.hosts()] == ["h0", "h1"]
        assert all(fleet.verify(h).ok for h in ("h0", "h1"))
        assert [(h, c.name) for h, c in fleet.containers()] == [("h1", "web")]
        events = list(fleet.events())
        assert len(events) == len(local_rows(roots[0])) + len(local_rows(roots[1]))
        assert [r.at for _, r in events] == sorted(r.at for _, r in events)
        assert [r.seq for h, r in events if h == "h1"] == [
            r[0] for r in local_rows(roots[1])]
        first = events[0][1].at  # h0's first event: h1 had none yet
        assert fleet.state_at("h1", first).seq == 0
        then = fleet.state_at("h1", next(r.at for h, r in events if h == "h1"))
        assert then.seq == 1 and not then.containers
        assert fleet.state_at("h1", None).containers.keys() == {
            c.id for _, c in fleet.containers("h1", every=True)}
    finally:
        fleet.close()


def test_an_edited_event_is_refused_naming_host_and_seq(tmp_path: Path, pg_url: str) -> None:
    root = tmp_path / "a"
    e = session(str(root))
    shipped = ship(root, pg_url, "edited")
    e.start("web")
    e.create("busybox", ["sh"], name="more")
    edit_local(root, "UPDATE events SET data = replace(data, 'more', 'less') WHERE seq = ?",
               shipped + 2)
    with pytest.raises(ChainRefused, match=f"host edited: seq {shipped + 2} was edited"):
        ship(root, pg_url, "edited", batch=1)
    assert len(central_rows(pg_url, "edited")) == shipped + 1  # up to the edit, no further


def test_a_gap_is_refused_naming_host_and_seq(tmp_path: Path, pg_url: str) -> None:
    root = tmp_path / "a"
    e = session(str(root))
    shipped = ship(root, pg_url, "gappy")
    e.start("web")
    e.create("busybox", ["sh"], name="more")
    edit_local(root, "DELETE FROM events WHERE seq = ?", shipped + 1)
    with pytest.raises(ChainRefused, match=f"host gappy: gap: seq {shipped + 2} arrived "
                                           f"after seq {shipped}"):
        ship(root, pg_url, "gappy")
    assert len(central_rows(pg_url, "gappy")) == shipped


def test_a_fork_is_refused_naming_host_and_seq(tmp_path: Path, pg_url: str) -> None:
    """A log rewritten after shipping, its hashes recomputed so that it verifies alone:
    the store holds the original, and the next shipping says where they part."""
    a, b = tmp_path / "a", tmp_path / "b"
    session(str(a))
    ship(a, pg_url, "forked")
    e = engine(str(b), ids_from=900)  # another history under the same host id
    e.import_image({"bin/sh": "y"}, "busybox")
    for n in range(12):
        e.create("busybox", ["sh"], name=f"c{n}")
    seq = len(local_rows(a))
    with pytest.raises(ChainRefused, match=f"host forked: fork at seq {seq}"):
        ship(b, pg_url, "forked")


def test_a_follower_reads_a_log_made_again_and_refuses_its_fork(tmp_path: Path,
                                                                pg_url: str) -> None:
    """A root removed and made again while its shipper runs: the shipper reads the new
    file (not the deleted one it had open), and refuses it as a fork of what it shipped."""
    import shutil

    root = tmp_path / "a"
    session(str(root))
    shipper = Shipper(str(root), pg_url, "again")
    try:
        assert shipper.ship().events == len(local_rows(root))
        shutil.rmtree(root)
        with pytest.raises(StoreError, match="has no event log any more"):
            shipper.ship()
        e = engine(str(root), ids_from=300)
        e.import_image({"bin/sh": "z"}, "busybox")
        for n in range(20):
            e.create("busybox", ["sh"], name=f"n{n}")
        with pytest.raises(ChainRefused, match="host again: fork at seq"):
            shipper.ship()
    finally:
        shipper.close()


def test_the_store_itself_refuses_a_bad_row_whoever_writes_it(tmp_path: Path,
                                                             pg_url: str) -> None:
    """The checks are the database's (a trigger), not the shipper's: a hand-made INSERT
    with a wrong hash, an UPDATE or a DELETE is refused too."""
    root = tmp_path / "a"
    session(str(root))
    ship(root, pg_url, "h")
    rows = local_rows(root)
    with psycopg.connect(pg_url, autocommit=True) as con:
        _, _, _, *rest = rows[0]  # its type, schema, data, meta and time, a new stream
        bad = (len(rows) + 1, "command:" + "e" * 64, 1, *rest[:-2], rows[-1][-1], "f" * 64)
        with pytest.raises(psycopg.Error, match=f"host h: seq {len(rows) + 1} was edited"):
            con.execute(f"INSERT INTO events (host, {EVENT_COLUMNS}) VALUES "
                        "(%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)", ("h", *bad))
        with pytest.raises(psycopg.Error, match="append-only"):
            con.execute("UPDATE events SET data = '{}' WHERE host = 'h' AND seq = 1")
        with pytest.raises(psycopg.Error, match="append-only"):
            con.execute("DELETE FROM events WHERE host = 'h'")
    assert central_rows(pg_url, "h") == rows


def test_an_unreachable_store_is_one_line_and_the_log_is_untouched(tmp_path: Path) -> None:
    root = tmp_path / "a"
    session(str(root))
    before = local_rows(root)
    url = f"postgresql://postgres@/x?host={tmp_path}"  # no server there
    with pytest.raises(StoreError, match="^event store postgresql://") as err:
        ship(root, url, "h")
    assert "\n" not in str(err.value)
    assert local_rows(root) == before


def test_a_root_keeps_its_host_id(tmp_path: Path) -> None:
    first = host_id(str(tmp_path))
    assert host_id(str(tmp_path)) == first == (tmp_path / "host-id").read_text().strip()
    assert host_id(str(tmp_path), first) == first
    with pytest.raises(LaminaError, match="ships as host"):
        host_id(str(tmp_path), "other")
    with pytest.raises(LaminaError, match="host id"):
        host_id(str(tmp_path / "new"), "bad id/with slash")


def test_a_shipper_killed_mid_batch_leaves_whole_batches_and_the_next_one_finishes(
        tmp_path: Path, pg_url: str, root_required: None) -> None:
    """SIGKILL of `lamina ship` once its first batch committed, while the next ones are on
    their way: the store holds whole batches only (a batch is one transaction), and the
    next shipping sends exactly the rest."""
    import signal
    import subprocess
    import sys
    import time

    from adapters.eventstore.sqlite_log import SqliteEventLog
    from events import types as ev

    root = tmp_path / "big"
    log = SqliteEventLog(str(root))
    for n in range(40):
        log.append([ev.VolumeCreated(id=f"v{n}-{i}") for i in range(250)], expected={},
                   meta={"uid": 0, "user": "root"})
    log.close()
    total, batch = 10_000, 250
    proc = subprocess.Popen([sys.executable, "-m", "adapters.cli", "--root", str(root), "ship",
                             "--host", "big", "--batch", str(batch), "--event-store", pg_url],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)

    def head() -> int:
        with psycopg.connect(pg_url) as con:
            if con.execute("SELECT to_regclass('hosts')").fetchone() == (None,):
                return 0
            row = con.execute("SELECT last_seq FROM hosts WHERE host = 'big'").fetchone()
        return row[0] if row else 0

    deadline = time.monotonic() + 60
    while head() == 0:
        assert proc.poll() is None and time.monotonic() < deadline, "no batch committed"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stored = head()
    assert 0 < stored < total and stored % batch == 0, stored
    assert len(central_rows(pg_url, "big")) == stored
    assert ship(root, pg_url, "big") == total - stored
    assert central_rows(pg_url, "big") == local_rows(root)
