"""The SQLite log's own guarantees: append-only, hash chain, upcasting, races, time travel."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3

import pytest

from adapters.eventstore import replay
from adapters.eventstore.audit import verify
from adapters.eventstore.schema import SCHEMA_VERSION
from adapters.eventstore.sqlite_log import ReadModel, SqliteEventLog, utcnow
from core.errors import ConcurrencyError, StoreError
from events import types as ev
from events.hashchain import row_hash
from tests.sessions import engine as _engine
from tests.sessions import session as _session


def _written_by_schema(path, version: int, *statements: str) -> list:
    """The log at `path` made as schema `version` left it (`statements` undo what came
    after); its events, to compare with what the migration leaves."""
    con = sqlite3.connect(path)
    try:
        for statement in statements:
            con.execute(statement)
        con.execute(f"PRAGMA user_version = {version}")
        con.commit()
        return con.execute("SELECT * FROM events ORDER BY seq").fetchall()
    finally:
        con.close()

IID, LID, CID = "a" * 64, "b" * 64, "c" * 64
META = {"uid": 0, "user": "root"}


def test_updates_and_deletes_are_refused_by_triggers(tmp_path) -> None:
    e = _session(str(tmp_path))
    con = e.log.con
    with pytest.raises(sqlite3.IntegrityError, match="append-only: UPDATE"):
        con.execute("UPDATE events SET type = 'x' WHERE seq = 1")
    with pytest.raises(sqlite3.IntegrityError, match="append-only: DELETE"):
        con.execute("DELETE FROM events WHERE seq = 1")
    assert verify(con).ok


def test_every_row_is_chained(tmp_path) -> None:
    e = _session(str(tmp_path))
    rows = e.log.con.execute("SELECT seq, stream, version, type, schema, data, meta, at, "
                             "prev_hash, hash FROM events ORDER BY seq").fetchall()
    prev = "0" * 64
    for seq, stream, version, type_, schema, data, meta, at, prev_hash, h in rows:
        assert prev_hash == prev
        assert h == row_hash(prev, seq, stream, version, type_, schema, data, meta, at)
        assert json.loads(meta)["user"] == "root"
        assert at.endswith("Z") and len(at) == 27  # UTC with microseconds
        prev = h
    assert [r[0] for r in rows] == list(range(1, len(rows) + 1))  # gap-free


@pytest.mark.parametrize("how", ["data", "delete", "swap-hash"])
def test_audit_verify_names_the_first_bad_seq(tmp_path, how: str) -> None:
    e = _session(str(tmp_path))
    con = sqlite3.connect(e.log.path)
    con.executescript("DROP TRIGGER events_no_update; DROP TRIGGER events_no_delete;")
    if how == "data":
        con.execute("UPDATE events SET data = replace(data, '\"pid\":', '\"pid\":1') "
                    "WHERE seq = 5")
    elif how == "delete":
        con.execute("DELETE FROM events WHERE seq = 5")
    else:
        con.execute("UPDATE events SET hash = (SELECT hash FROM events WHERE seq = 4) "
                    "WHERE seq = 5")
    con.commit()
    verdict = verify(e.log.con)
    assert not verdict.ok
    assert verdict.bad_seq == 5
    assert verdict.checked == 4


def test_an_old_schema_event_is_upcast_on_read(tmp_path) -> None:
    """A hand-written ContainerCreated at schema 1 (a shell string) reads back as schema 2."""
    e = _engine(str(tmp_path))
    e.import_image({"bin/sh": "x"}, "busybox")
    image = e.log.image_tagged("busybox:latest")
    con = e.log.con
    seq, prev = con.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
    data = json.dumps({"id": CID, "name": "old", "image": image.id,
                       "command": "echo 'hello world'"}, sort_keys=True, separators=(",", ":"))
    meta, at = "{}", utcnow()
    h = row_hash(prev, seq + 1, f"container:{CID}", 1, "ContainerCreated", 1, data, meta, at)
    con.execute("INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?,?)",
                (seq + 1, f"container:{CID}", 1, "ContainerCreated", 1, data, meta, at, prev, h))
    rec = list(e.log.read(stream=f"container:{CID}"))[0]
    assert rec.schema == 1
    assert rec.data["cmd"] == ["echo", "hello world"]
    assert "command" not in rec.data
    replay.rebuild(con)
    assert e.log.container(CID).cmd == ("echo", "hello world")
    assert verify(con).ok


def test_rebuild_equals_the_incremental_read_model(tmp_path) -> None:
    e = _session(str(tmp_path))
    before = replay.read_model_rows(e.log.con)
    report = replay.rebuild(e.log.con, use_snapshots=False)
    assert replay.read_model_rows(e.log.con) == before
    assert report.containers == 2 and report.images == 2


def test_snapshot_plus_tail_equals_full_replay(tmp_path) -> None:
    e = _session(str(tmp_path))
    con = e.log.con
    at = replay.snapshot(con)
    e.start("db")
    e.rm("web")
    assert replay.newest_snapshot(con).seq == at
    replay.rebuild(con, use_snapshots=True)
    from_snapshot = replay.read_model_rows(con)
    replay.rebuild(con, use_snapshots=False)
    assert replay.read_model_rows(con) == from_snapshot
    assert replay.state_at(con).to_json() == replay.state_at(con, use_snapshots=False).to_json()


def test_time_travel_by_seq_and_by_time(tmp_path) -> None:
    e = _session(str(tmp_path))
    con = e.log.con
    started = next(r for r in e.log.read() if r.type == "ContainerStarted")
    then = replay.state_at(con, started.seq)
    assert [c.state for c in then.containers.values()] == ["running"]
    assert replay.seq_at_time(con, started.at) == started.seq
    now = replay.state_at(con)
    assert sorted(c.state for c in now.containers.values()) == ["stopped", "stopped"]
    assert now.seq == e.log.last_seq()


def _race(root: str, barrier, results) -> None:
    log = SqliteEventLog(root)
    barrier.wait()
    try:
        log.append([ev.ContainerStarted(id=CID, pid=1)], expected={f"container:{CID}": 1},
                   meta=META)
        results.put("won")
    except ConcurrencyError:
        results.put("conflict")


def test_of_two_racing_processes_exactly_one_wins(tmp_path) -> None:
    root = str(tmp_path)
    log = SqliteEventLog(root)
    log.append([ev.LayerRegistered(id=LID, parent=None, diff_id="d", chain_id="d", size=1),
                ev.ImageCreated(id=IID, parent=None, layers=[LID])], expected={}, meta=META)
    log.append([ev.ContainerCreated(id=CID, name="x", image=IID)], expected={}, meta=META)
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(root, barrier, results)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    outcomes = sorted(results.get(timeout=5) for _ in procs)
    assert outcomes == ["conflict", "conflict", "conflict", "won"]
    assert [r.type for r in log.read(stream=f"container:{CID}")] == [
        "ContainerCreated", "ContainerStarted"]


def test_engine_retries_once_after_a_conflict(tmp_path) -> None:
    """A command that lost a race reloads, judges again and then succeeds or is refused."""
    e = _session(str(tmp_path))
    other = _engine(str(tmp_path))
    stale = e.container("db")
    other.start("db")  # moves db behind e's back
    calls = []
    original = e.log.container

    def stale_first(cid):
        calls.append(cid)
        return stale if len(calls) == 1 else original(cid)

    e.log.container = stale_first
    with pytest.raises(Exception, match="already running"):
        e.start(stale.id)


def test_newer_schema_is_refused_and_left_alone(tmp_path) -> None:
    root = str(tmp_path)
    _session(root)
    path = tmp_path / "events.db"
    con = sqlite3.connect(path)
    con.execute("PRAGMA user_version = 99")
    con.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="newer lamina .schema 99"):
        SqliteEventLog(root)
    assert path.read_bytes() == before


def test_a_corrupt_file_is_refused_and_left_alone(tmp_path) -> None:
    path = tmp_path / "events.db"
    path.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StoreError, match="not a lamina event log"):
        SqliteEventLog(str(tmp_path))
    assert path.read_bytes() == b"this is not sqlite at all" * 100


def test_a_locked_log_gives_up_with_a_clear_error(tmp_path, monkeypatch) -> None:
    e = _session(str(tmp_path))
    monkeypatch.setenv("LAMINA_BUSY_TIMEOUT", "0.2")
    blocker = sqlite3.connect(e.log.path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        log = SqliteEventLog(str(tmp_path))
        n = log.last_seq()
        with pytest.raises(StoreError, match="locked by another process"):
            log.append([ev.ContainerStarted(id=CID, pid=1)], expected={}, meta=META)
    finally:
        blocker.execute("ROLLBACK")
    assert log.last_seq() == n


def test_a_log_opened_ahead_is_used_only_while_it_is_the_roots(tmp_path, monkeypatch) -> None:
    """The fork server's spare opens the log before its command (bootstrap.prepare); the
    command takes it only if the root's file is the one it opened, with the same settings."""
    from adapters import bootstrap

    root = str(tmp_path)
    _session(root)
    bootstrap.prepare(root)
    ahead = bootstrap._PREPARED[root]
    assert bootstrap.open_log(root, create=False) is ahead  # taken once
    assert bootstrap.open_log(root, create=False) is not ahead

    bootstrap.prepare(root)
    ahead = bootstrap._PREPARED[root]
    monkeypatch.setenv("LAMINA_BUSY_TIMEOUT", "3")
    assert bootstrap.open_log(root, create=False) is not ahead
    monkeypatch.delenv("LAMINA_BUSY_TIMEOUT")

    bootstrap.prepare(root)
    ahead = bootstrap._PREPARED[root]
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"events.db{suffix}").unlink(missing_ok=True)  # the root made again
    fresh = bootstrap.open_log(root, create=True)
    assert fresh is not ahead and fresh.containers() == []


def test_a_log_from_before_volumes_gains_their_table(tmp_path) -> None:
    """Schema 1 had no volumes table: opening it migrates in place, events untouched."""
    root = str(tmp_path)
    _session(root)
    events_before = _written_by_schema(tmp_path / "events.db", 1, "DROP TABLE volumes",
                                       "DROP TABLE networks")
    log = SqliteEventLog(root)
    assert log.con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert log.con.execute("SELECT * FROM events ORDER BY seq").fetchall() == events_before
    log.append([ev.VolumeCreated(id="data")], expected={"volume:data": 0}, meta=META)
    assert [v.id for v in log.volumes()] == ["data"]
    assert verify(log.con).ok


def test_replay_and_time_travel_see_volumes(tmp_path) -> None:
    """Rebuilt from the log, the volumes' rows equal the live ones; at a past seq, the
    volumes that existed then, with the users they had."""
    e = _session(str(tmp_path))
    log = e.log
    cid = log.containers()[0].id
    log.append([ev.VolumeCreated(id="data"),
                ev.VolumeMounted(id="data", container=cid, target="/d")],
               expected={"volume:data": 0}, meta=META)
    mounted = log.last_seq()
    log.append([ev.VolumeUnmounted(id="data", container=cid), ev.VolumeRemoved(id="data")],
               expected={"volume:data": 2}, meta=META)
    log.append([ev.VolumeCreated(id="other")], expected={"volume:other": 0}, meta=META)
    live = replay.read_model_rows(log.con)
    replay.snapshot(log.con)
    replay.rebuild(log.con)
    assert replay.read_model_rows(log.con) == live
    then = replay.state_at(log.con, mounted)
    assert then.volumes["data"].users == {cid: ["/d"]} and "other" not in then.volumes
    now = replay.state_at(log.con)
    assert sorted(now.volumes) == ["other"]
    assert replay.state_at(log.con, mounted, use_snapshots=False) == then


def test_a_log_from_before_the_type_stream_index_gains_it_and_replays_the_same(tmp_path):
    """Schema 4 indexed events by type alone: opening it builds events_type_stream in its
    place, events untouched; a replay, which now reads only the live streams' rows through
    it, gives the world the fold of every event gives, now and in the past."""
    root = str(tmp_path)
    e = _session(root)
    e.rm("web", force=True)
    events_before = _written_by_schema(tmp_path / "events.db", 4,
                                       "DROP INDEX events_type_stream",
                                       "CREATE INDEX events_type ON events (type)")
    log = SqliteEventLog(root)
    indexes = {r[0] for r in log.con.execute("SELECT name FROM sqlite_master "
                                             "WHERE type = 'index' AND tbl_name = 'events'")}
    assert "events_type_stream" in indexes and "events_type" not in indexes
    assert log.con.execute("SELECT * FROM events ORDER BY seq").fetchall() == events_before
    rows = replay.read_model_rows(log.con)
    replay.rebuild(log.con, use_snapshots=False)
    assert replay.read_model_rows(log.con) == rows
    for seq in range(log.last_seq() + 1):
        assert replay.state_at(log.con, seq, use_snapshots=False) == \
            replay.fold(log.con, until=seq)


NET_A, NET_B = "a" * 64, "b" * 64


def _net(nid: str, name: str, subnet: str) -> ev.NetworkCreated:
    return ev.NetworkCreated(id=nid, name=name, subnet=subnet,
                             gateway=subnet.replace(".0/16", ".1"), labels={"k": "v"})


def test_a_log_from_before_networks_gains_their_table(tmp_path) -> None:
    """Schema 2 had no networks table: opening it migrates in place, events untouched."""
    root = str(tmp_path)
    _session(root)
    _written_by_schema(tmp_path / "events.db", 2, "DROP TABLE networks")
    log = SqliteEventLog(root)
    assert log.con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    log.append([_net(NET_A, "front", "172.18.0.0/16")], expected={f"network:{NET_A}": 0},
               meta=META)
    found = log.network_named("front")
    assert found is not None and found.id == NET_A and found.labels == {"k": "v"}
    assert log.network(NET_A) == found and log.networks() == [found]
    assert verify(log.con).ok


def test_a_network_name_is_unique_among_live_networks(tmp_path) -> None:
    log = _session(str(tmp_path)).log
    log.append([_net(NET_A, "front", "172.18.0.0/16")], expected={f"network:{NET_A}": 0},
               meta=META)
    with pytest.raises((StoreError, ConcurrencyError, sqlite3.IntegrityError)):
        log.append([_net(NET_B, "front", "172.19.0.0/16")],
                   expected={f"network:{NET_B}": 0}, meta=META)
    log.append([ev.NetworkRemoved(id=NET_A)], expected={f"network:{NET_A}": 1}, meta=META)
    assert log.network_named("front") is None and log.networks() == []
    log.append([_net(NET_B, "front", "172.19.0.0/16")], expected={f"network:{NET_B}": 0},
               meta=META)
    assert log.network_named("front").id == NET_B  # type: ignore[union-attr]


def test_replay_and_time_travel_see_networks(tmp_path) -> None:
    log = _session(str(tmp_path)).log
    log.append([_net(NET_A, "front", "172.18.0.0/16")], expected={f"network:{NET_A}": 0},
               meta=META)
    made = log.last_seq()
    log.append([ev.NetworkRemoved(id=NET_A)], expected={f"network:{NET_A}": 1}, meta=META)
    log.append([_net(NET_B, "back", "172.19.0.0/16")], expected={f"network:{NET_B}": 0},
               meta=META)
    live = replay.read_model_rows(log.con)
    replay.snapshot(log.con)
    report = replay.rebuild(log.con)
    assert report.networks == 1 and replay.read_model_rows(log.con) == live
    then = replay.state_at(log.con, made)
    assert [n.name for n in then.networks.values()] == ["front"]
    assert [n.name for n in replay.state_at(log.con).networks.values()] == ["back"]
    assert replay.state_at(log.con, made, use_snapshots=False) == then


def test_two_creates_racing_for_one_free_subnet_record_two(tmp_path) -> None:
    """The loser's append meets the subnet the winner recorded meanwhile: it chooses again
    (the next free subnet), its bridge made again for that one."""
    root = str(tmp_path)
    first, second = _engine(root), _engine(root, ids_from=500)
    make = first.networks.create

    def racing(network) -> None:
        if network.subnet == "172.18.0.0/16" and first.log.network_named("b") is None:
            second.network_create("b")  # takes 172.18.0.0/16 first
        make(network)

    first.networks.create = racing
    first.network_create("a")
    subnets = {n.name: n.subnet for n in first.log.networks()}
    assert subnets == {"b": "172.18.0.0/16", "a": "172.19.0.0/16"}
    made = first.log.network_named("a")
    assert made is not None and first.networks.names() == [f"lm-{made.id[:12]}"]


def test_two_creates_racing_for_one_generated_name_record_two(tmp_path) -> None:
    """The loser's append meets the name the winner recorded meanwhile (the read model's
    UNIQUE name): it draws the next free name and records its container, rather than
    refusing a create that asked for no name (100 concurrent API clients met this)."""
    root = str(tmp_path)
    first, second = _engine(root), _engine(root, ids_from=500)
    first.import_image({"bin/sh": "x"}, "busybox")
    append = first.log.append
    taken = []

    def racing(events, *, expected, meta):  # type: ignore[no-untyped-def]
        created = [e for e in events if isinstance(e, ev.ContainerCreated)]
        if created and not taken:
            taken.append(second.create("busybox", ["sh"], name=created[0].name))
        return append(events, expected=expected, meta=meta)

    first.log.append = racing  # type: ignore[method-assign]
    cid = first.create("busybox", ["sh"])
    mine, theirs = first.log.container(cid), first.log.container(taken[0])
    assert mine is not None and theirs is not None
    assert mine.name == f"{theirs.name}2"
    assert not [r for r in first.log.read() if r.type == "CommandRejected"]


# --- leases: the read model refuses a second holder ------------------------------------------


def _on(log: SqliteEventLog, cid: str, network: str, address: str,
        ports: list[dict] | None = None, address6: str = "") -> None:
    """A container created and started with a lease on `network` (an id)."""
    log.append([ev.ContainerCreated(id=cid, name=cid[:4], image="i" * 64)],
               expected={f"container:{cid}": 0}, meta=META)
    endpoint = {"id": network, "address": address, "slot": 0,
                **({"address6": address6} if address6 else {})}
    log.append([ev.ContainerStarted(id=cid, pid=1, networks={"n": endpoint},
                                    ports=ports or [])],
               expected={f"container:{cid}": 1}, meta=META)


def _port(host_ip: str, host_port: int, proto: str = "tcp") -> dict:
    return {"proto": proto, "container_port": 80, "host_ip": host_ip, "host_port": host_port}


def test_an_address_or_a_clashing_port_has_one_holder(tmp_path) -> None:
    log = SqliteEventLog(str(tmp_path))
    log.append([_net(NET_A, "front", "172.18.0.0/16")], expected={f"network:{NET_A}": 0},
               meta=META)
    _on(log, "1" * 64, NET_A, "172.18.0.2", [_port("0.0.0.0", 8080)])
    with pytest.raises(ConcurrencyError):
        _on(log, "2" * 64, NET_A, "172.18.0.2")  # its address
    with pytest.raises(ConcurrencyError):
        _on(log, "3" * 64, NET_A, "172.18.0.3", [_port("127.0.0.1", 8080)])  # ANY holds it
    _on(log, "4" * 64, NET_A, "172.18.0.4", [_port("127.0.0.1", 8080, "udp")])
    assert log.container("2" * 64).state == "stopped", "the refused start is not recorded"
    leases = log.con.execute("SELECT container, address FROM leases ORDER BY address").fetchall()
    assert leases == [("1" * 64, "172.18.0.2"), ("4" * 64, "172.18.0.4")]
    log.append([ev.ContainerStopped(id="1" * 64, signal=15, exit_code=0)],
               expected={f"container:{'1' * 64}": 2}, meta=META)
    _on(log, "5" * 64, NET_A, "172.18.0.2", [_port("127.0.0.1", 8080)])  # released: free
    _on(log, "6" * 64, NET_A, "172.18.0.6", address6="fd00::6")  # dual-stack: both leased
    with pytest.raises(ConcurrencyError):
        _on(log, "7" * 64, NET_A, "172.18.0.7", address6="fd00::6")


def test_a_network_with_leases_is_not_removed_and_a_removed_one_leases_nothing(tmp_path):
    """network rm judges its members, then appends: a start that leased meanwhile makes
    the removal fail (and be judged again), and a start on a network removed meanwhile
    fails to record its lease."""
    log = SqliteEventLog(str(tmp_path))
    log.append([_net(NET_A, "front", "172.18.0.0/16"), _net(NET_B, "back", "172.19.0.0/16")],
               expected={f"network:{NET_A}": 0, f"network:{NET_B}": 0}, meta=META)
    _on(log, "1" * 64, NET_A, "172.18.0.2")
    with pytest.raises(ConcurrencyError):
        log.append([ev.NetworkRemoved(id=NET_A)], expected={f"network:{NET_A}": 1}, meta=META)
    assert log.network(NET_A) is not None
    log.append([ev.NetworkRemoved(id=NET_B)], expected={f"network:{NET_B}": 1}, meta=META)
    with pytest.raises(ConcurrencyError):
        _on(log, "2" * 64, NET_B, "172.19.0.2")
    from core.networks import DEFAULT_NETWORK_ID

    _on(log, "3" * 64, DEFAULT_NETWORK_ID, "172.17.0.2")  # the predefined bridge: no row


def test_a_kept_listing_is_read_again_after_any_commit(tmp_path, monkeypatch) -> None:
    """containers() keeps its last listing while the file is unchanged (the fork server's
    spare lists ahead of its command): a commit through this connection, or through any
    other, makes the next call read the table again."""
    root = str(tmp_path)
    e = _engine(root)
    e.import_image({"bin/sh": "x"}, "busybox")
    e.create("busybox", ["sh"], name="web")
    e.start("web")
    log = SqliteEventLog(root)  # a second process's connection, say the spare's
    reads: list[object] = []
    real = ReadModel.containers  # the query itself
    monkeypatch.setattr(ReadModel, "containers",
                        lambda self, states=None: reads.append(states) or real(self, states))
    live = ("running", "paused")

    def names() -> list[tuple[str, str]]:
        return [(c.name, c.state) for c in log.containers(live)]

    assert names() == [("web", "running")] and names() == [("web", "running")]
    assert len(reads) == 1  # the second came from the listing kept
    all_of_them = log.containers()
    assert len(reads) == 2 and len(all_of_them) == 1  # other states: read
    e.pause("web")  # another connection commits
    assert names() == [("web", "paused")] and len(reads) == 3
    web = log.container_named("web")
    assert web is not None
    log.append([ev.ContainerUnpaused(id=web.id)], expected={f"container:{web.id}": web.version},
               meta=META)  # this connection commits: data_version does not change for it
    assert names() == [("web", "running")] and len(reads) == 4
    kept = log.containers(live)
    kept.clear()  # a caller's list is its own
    assert names() == [("web", "running")] and len(reads) == 4
    log.suspend()  # a new connection starts its own count
    assert names() == [("web", "running")] and len(reads) == 5


def _briefs(log: SqliteEventLog) -> list:
    log._listed = None  # not the kept listing: the table's own rows
    return list(log.container_briefs())


def test_a_log_from_before_the_briefs_table_gains_it_filled(tmp_path) -> None:
    """Schema 5 kept no briefs: opening it makes container_briefs from the documents, in
    their order, the same briefs the whole containers give; rows go with their
    containers (an rm, a rebuild) and come with new ones."""
    from core.model import container_brief_of

    root = str(tmp_path)
    e = _session(root)
    _written_by_schema(tmp_path / "events.db", 5, "DROP TRIGGER containers_brief_gone",
                       "DROP TABLE container_briefs")
    log = SqliteEventLog(root)
    assert log.con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    whole = [container_brief_of(c) for c in log.containers()]
    assert len(whole) > 1 and _briefs(log) == whole
    e.log = log
    e.rm("web", force=True)
    left = [container_brief_of(c) for c in log.containers()]
    assert _briefs(log) == left and len(left) == len(whole) - 1
    assert log.con.execute("SELECT count(*) FROM container_briefs").fetchone()[0] == len(left)
    replay.rebuild(log.con, use_snapshots=False)
    assert _briefs(log) == left
    running = [b for b in left if b.state in ("running", "paused")]
    log._listed = None
    assert list(log.container_briefs(["running", "paused"])) == running


def test_a_brief_the_fast_decoder_refuses_reads_the_same_the_slow_way(tmp_path) -> None:
    """container_briefs' decoder falls back to core/model.py brief_from_doc for a text
    msgspec refuses: the same brief as the whole container gives."""
    from adapters.eventstore.sqlite_log import _container_brief
    from core.model import brief_doc, brief_from_doc, container_brief_of, to_doc

    log = _session(str(tmp_path)).log
    for c in log.containers():
        doc = brief_doc(to_doc(c))
        assert brief_from_doc(doc) == container_brief_of(c)
        assert _container_brief()(json.dumps({**doc, "ran": "not a bool"})).ran == "not a bool"
