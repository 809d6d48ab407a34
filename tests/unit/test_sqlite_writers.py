"""The log's writers' queue (adapters/eventstore/writers.py) and what an append does outside
the write lock: many appending processes all get their turn, a stuck writer still gets a
refusal by name, and the fsync and the WAL's checkpoints wait for no other writer."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import signal
import stat
import threading
import time

import pytest

from adapters.eventstore import sqlite_log, writers
from adapters.eventstore.audit import verify
from adapters.eventstore.sqlite_log import SqliteEventLog
from core.errors import StoreError
from events import types as ev
from tests.conftest import require_root

META = {"uid": 0, "user": "root"}
IID, CID = "a" * 64, "c" * 64
FORK = multiprocessing.get_context("fork")


def _blocked(path: str) -> int:
    """How many flock requests wait on the file at `path` (/proc/locks' "->" lines)."""
    ino = os.stat(path).st_ino
    with open("/proc/locks") as f:
        return sum(1 for line in f if "->" in line and line.split()[6].endswith(f":{ino}"))


def _until(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.005)


def _free(db_path: str) -> bool:
    """Whether no writer holds the queue now."""
    fd = os.open(writers.queue_path(db_path), os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing releases it
    return True


# --- the queue -------------------------------------------------------------------------------


def test_turns_are_counted_in_a_private_file(tmp_path) -> None:
    db = str(tmp_path / "events.db")
    numbers = []
    for _ in range(3):
        with writers.turn(db, 1) as number:
            numbers.append(number)
            assert not _free(db)
        assert _free(db)
    assert numbers == [1, 2, 3]
    assert stat.S_IMODE(os.stat(writers.queue_path(db)).st_mode) == 0o600


def _in_turn(db: str, index: int, order) -> None:
    with writers.turn(db, 30) as number:
        order.put((number, index))


def test_waiters_are_served_in_the_order_they_came(tmp_path) -> None:
    """The fairness the queue is for: the writer that waited longest goes next (SQLite's
    busy handler served whoever polled at the right moment)."""
    db = str(tmp_path / "events.db")
    order, procs = FORK.Queue(), []
    with writers.turn(db, 1):
        for index in range(6):
            procs.append(FORK.Process(target=_in_turn, args=(db, index, order)))
            procs[-1].start()
            _until(lambda n=index + 1: _blocked(writers.queue_path(db)) == n)
    for p in procs:
        p.join(30)
    turns = sorted(order.get(timeout=5) for _ in procs)
    assert [index for _, index in turns] == list(range(6))  # turn 1 was the holder's


def test_a_stuck_writer_gets_a_refusal_and_its_place_is_passed_on(tmp_path) -> None:
    """Nobody's turn for the whole timeout: the waiter gives up by name. Its place in the
    queue, taken later by the thread that waited in flock for it, is passed on at once."""
    db = str(tmp_path / "events.db")
    with writers.turn(db, 1):
        t0 = time.monotonic()
        with pytest.raises(writers.QueueTimeout, match="took a turn for 0.3s"), \
                writers.turn(db, 0.3):
            pytest.fail("took the turn another holds")
        assert time.monotonic() - t0 >= 0.3
        left = [t for t in threading.enumerate() if t.name == "lamina-log-turn"]
        assert len(left) == 1  # still queued for the turn it gave up
    left[0].join(5)
    assert not left[0].is_alive() and _free(db)
    with writers.turn(db, 1) as number:
        assert number == 2  # the stuck one's, then this one (the abandoned took none)


def test_a_writer_that_can_make_no_thread_is_woken_to_look(tmp_path) -> None:
    """The wait without a thread: flock interrupted by SIGALRM. It gives up when no turn
    was taken for the timeout, takes the lock when it is free, and leaves the process's
    own SIGALRM handler and timer as they were."""
    db = str(tmp_path / "events.db")

    def mine(signum: int, frame: object) -> None:
        pass

    before = signal.signal(signal.SIGALRM, mine)
    try:
        signal.setitimer(signal.ITIMER_REAL, 100)
        with writers.turn(db, 1):
            fd = os.open(writers.queue_path(db), os.O_RDWR | os.O_CLOEXEC)
            t0 = time.monotonic()
            assert writers._take_woken(fd, 0.3) is False
            assert time.monotonic() - t0 >= 0.3
        assert writers._take_woken(fd, 0.3) is True and not _free(db)
        os.close(fd)
        assert 99 < signal.getitimer(signal.ITIMER_REAL)[0] <= 100
        assert signal.getsignal(signal.SIGALRM) is mine
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, before)


def _hold_until(db: str, release) -> None:
    with writers.turn(db, 30):
        release.wait(30)


def test_a_writer_woken_to_look_waits_out_a_queue_that_moves(tmp_path) -> None:
    """Four turns of 0.15 s ahead of it: past its 0.5 s timeout, it takes the lock."""
    db = str(tmp_path / "events.db")
    release = FORK.Event()
    first = FORK.Process(target=_hold_until, args=(db, release))
    first.start()
    _until(lambda: os.path.exists(writers.queue_path(db)) and not _free(db))
    holders = [first]
    for index in range(4):
        holders.append(FORK.Process(target=_hold, args=(db, 0.15)))
        holders[-1].start()
        _until(lambda n=index + 1: _blocked(writers.queue_path(db)) == n)
    fd = os.open(writers.queue_path(db), os.O_RDWR | os.O_CLOEXEC)
    try:
        threading.Timer(0.1, release.set).start()  # once this writer waits too
        t0 = time.monotonic()
        assert writers._take_woken(fd, 0.5) is True
        assert time.monotonic() - t0 > 0.5
    finally:
        os.close(fd)
    for p in holders:
        p.join(30)


def _append_in_new_pid_namespace(root: str, results) -> None:
    """What a container's monitor does: it unshared a PID namespace for its children, so
    it can make no thread, and records the exit from its main thread. (`results`: a pipe,
    as a multiprocessing queue would need a thread.)"""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.unshare(0x20000000) == 0  # CLONE_NEWPID
    log = SqliteEventLog(root)
    try:
        log.append([ev.ContainerExited(id=CID, exit_code=0)], expected={}, meta=META)
        results.send("recorded")
    except Exception as err:  # noqa: BLE001 - the test reports it
        results.send(repr(err))


def test_a_monitor_that_can_make_no_thread_waits_its_turn(tmp_path) -> None:
    require_root()
    root = str(tmp_path)
    log = SqliteEventLog(root)
    log.append([ev.ContainerCreated(id=CID, name="c", image=IID),
                ev.ContainerStarted(id=CID, pid=1)], expected={}, meta=META)
    results, sender = FORK.Pipe(duplex=False)
    with writers.turn(log.path, 1):
        child = FORK.Process(target=_append_in_new_pid_namespace, args=(root, sender))
        child.start()
        _until(lambda: _blocked(writers.queue_path(log.path)) == 1)
    assert results.poll(30) and results.recv() == "recorded"
    child.join(10)
    assert [r.type for r in log.read()][-1] == "ContainerExited"


def test_a_queue_that_moves_is_waited_out_past_the_timeout(tmp_path) -> None:
    db = str(tmp_path / "events.db")
    holders, waited = [], []
    with writers.turn(db, 1):
        for index in range(4):
            holders.append(FORK.Process(target=_hold, args=(db, 0.2)))
            holders[-1].start()
            _until(lambda n=index + 1: _blocked(writers.queue_path(db)) == n)
        waiter = threading.Thread(target=lambda: waited.append(_timed_turn(db, 0.6)))
        waiter.start()
        _until(lambda: _blocked(writers.queue_path(db)) == 5)
    waiter.join(30)
    for p in holders:
        p.join(30)
    assert waited and waited[0] > 0.6  # four turns of 0.2 s, none refused


def _hold(db: str, seconds: float) -> None:
    with writers.turn(db, 30):
        time.sleep(seconds)


def _timed_turn(db: str, timeout: float) -> float:
    t0 = time.monotonic()
    with writers.turn(db, timeout):
        return time.monotonic() - t0


def test_a_queue_file_that_cannot_be_opened_is_refused_by_name(tmp_path) -> None:
    log = SqliteEventLog(str(tmp_path))
    os.unlink(writers.queue_path(log.path))
    os.mkdir(writers.queue_path(log.path))
    with pytest.raises(StoreError, match="events.db is not writable: .*-writers: Is a dir"):
        log.append([ev.ImageCreated(id=IID, parent=None, layers=[])], expected={}, meta=META)
    assert log.last_seq() == 0


# --- many appenders --------------------------------------------------------------------------

APPENDERS, SLOW = 12, 0.1  # 12 appenders that hold the lock 0.1 s each, all at once


def _appender(root: str, index: int, barrier, results) -> None:
    """One slow append (the write lock held SLOW s: the queue is 1.2 s long for the last)
    and four ordinary ones, of a container of its own."""
    log = SqliteEventLog(root)
    project = log._project

    def slow(recs):
        time.sleep(SLOW)
        project(recs)

    cid = f"{index:064x}"
    stream = f"container:{cid}"
    steps = [ev.ContainerCreated(id=cid, name=f"c{index}", image=IID, cmd=["true"]),
             ev.ContainerStarted(id=cid, pid=100 + index), ev.ContainerPaused(id=cid),
             ev.ContainerUnpaused(id=cid), ev.ContainerExited(id=cid, exit_code=0)]
    barrier.wait()
    t0 = time.monotonic()
    try:
        for version, event in enumerate(steps):
            log._project = slow if version == 0 else project  # type: ignore[method-assign]
            log.append([event], expected={stream: version}, meta=META)
            if version == 0:
                waited = time.monotonic() - t0 - SLOW
        results.put(("ok", waited))
    except StoreError as err:
        results.put(("refused", str(err)))


def test_many_appending_processes_all_get_their_turn(tmp_path, monkeypatch) -> None:
    """Twelve processes append at once, each holding the write lock 0.1 s: the last in
    line waits ~1.1 s, past the 0.5 s timeout, which refused it (and half the others)
    when SQLite's busy handler was the only queue. Now every append is recorded, each in
    its own transaction with its expected version, and the chain is whole."""
    root = str(tmp_path)
    log = SqliteEventLog(root)
    log.append([ev.ImageCreated(id=IID, parent=None, layers=[])], expected={}, meta=META)
    monkeypatch.setenv("LAMINA_BUSY_TIMEOUT", "0.5")
    barrier, results = FORK.Barrier(APPENDERS), FORK.Queue()
    procs = [FORK.Process(target=_appender, args=(root, i, barrier, results))
             for i in range(APPENDERS)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    assert [o for o in outcomes if o[0] != "ok"] == []
    assert max(waited for _, waited in outcomes) > 0.5
    assert log.last_seq() == 1 + 5 * APPENDERS
    for i in range(APPENDERS):
        recs = list(log.read(stream=f"container:{i:064x}"))
        assert [r.version for r in recs] == [1, 2, 3, 4, 5]
        assert len({r.seq for r in recs}) == 5
    assert verify(log.con).ok
    assert {c.state for c in log.containers()} == {"stopped"}


# --- outside the lock ------------------------------------------------------------------------


def test_the_fsync_and_the_checkpoints_come_after_the_turn(tmp_path, monkeypatch) -> None:
    """No writer waits for another's disk or checkpoint: the WAL is fsynced after the turn,
    before append returns; SQLite's automatic checkpoint (inside COMMIT) is off, and every
    CHECKPOINT_EVERY-th turn checkpoints after it."""
    log = SqliteEventLog(str(tmp_path))
    monkeypatch.setattr(sqlite_log, "CHECKPOINT_EVERY", 3)
    synced, traced = [], []
    fdatasync = os.fdatasync

    def spy(fd: int) -> None:
        synced.append((os.readlink(f"/proc/self/fd/{fd}"), _free(log.path)))
        fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", spy)
    log.con.set_trace_callback(lambda sql: traced.append((sql, _free(log.path))))
    assert log.con.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    log.append([ev.ImageCreated(id=IID, parent=None, layers=[])], expected={}, meta=META)
    for i in range(5):
        log.append([ev.ContainerCreated(id=f"{i:064x}", name=f"c{i}", image=IID)],
                   expected={}, meta=META)
    assert synced == [(log.path + "-wal", True)] * 6
    with log.sync_deferred():
        log.append([ev.ContainerRemoved(id=f"{0:064x}")], expected={}, meta=META)
    assert len(synced) == 6  # deferred: the next append or flush() syncs it
    log.flush()
    assert len(synced) == 7
    with open(writers.queue_path(log.path), "rb") as f:
        turns = int.from_bytes(f.read(), "little")
    checkpoints = [free for sql, free in traced if "wal_checkpoint" in sql]
    assert turns == 8 and checkpoints == [True, True]  # turns 3 and 6 (1: the schema)
    assert not [sql for sql, free in traced if sql.startswith(("BEGIN", "COMMIT")) and free]


def test_every_writer_s_commit_is_on_the_disk_when_it_returns(tmp_path, monkeypatch) -> None:
    """Commits leave the WAL's fsync to their writer (synchronous=NORMAL): a snapshot or a
    rebuild (adapters/eventstore/replay.py), not only append, syncs it after its turn."""
    from adapters.eventstore import replay

    log = SqliteEventLog(str(tmp_path))
    log.append([ev.ImageCreated(id=IID, parent=None, layers=[])], expected={}, meta=META)
    synced = []
    fdatasync = os.fdatasync

    def spy(fd: int) -> None:
        synced.append((os.readlink(f"/proc/self/fd/{fd}"), _free(log.path)))
        fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", spy)
    replay.snapshot(log.con)
    replay.rebuild(log.con)
    assert synced == [(log.path + "-wal", True)] * 2
