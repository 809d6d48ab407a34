"""The log's writers take turns: a queue in front of SQLite's write lock.

Every write transaction of a lamina log first takes `<root>/events.db-writers` with
flock(LOCK_EX), then BEGIN IMMEDIATE. SQLite's own lock stays the authority (a writer that
doesn't queue, such as the sqlite3 shell, is still kept out by it); the queue only decides
who asks it next. Why: SQLite's busy handler polls, in sleeps that grow to 100 ms, and the
writer that polls at the right moment wins; at 100 concurrent API clients a writer that
had waited long polled least often and lost to the newcomers until its busy timeout (10 s)
refused its command. Linux hands a released flock to the writer blocked on it longest and
wakes it at once (blocked requests queue behind one another; tests/unit/
test_sqlite_writers.py checks the order on this kernel).

The file also counts the turns taken (8 bytes at its start). A writer waiting in the queue
gives up only when no turn was taken for the whole timeout: a writer that holds the lock
that long is stuck or stopped, and the refusal then names the lock as the busy timeout's
did. A long queue that moves is waited out, however long it is.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

SUFFIX = "-writers"
COUNT = 8  # bytes of the turn counter, little-endian, at the file's start
POLL = 0.25  # seconds between looks at the counter while waiting


class QueueError(Exception):
    """The queue's file can't be opened (a read-only root, say)."""


class QueueTimeout(QueueError):
    """No writer took a turn for the whole timeout: the one holding it is stuck."""


def queue_path(db_path: str) -> str:
    return db_path + SUFFIX


@contextmanager
def turn(db_path: str, timeout: float) -> Iterator[int]:
    """Hold the log's writers' lock for the block; yields this turn's number (1, 2, ...:
    how many turns have been taken, this one included). The file is opened for this turn
    only, so no fork can share its lock (flock belongs to the open file)."""
    with _named(db_path):
        fd = os.open(queue_path(db_path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        with _named(db_path):
            taken = _take(fd, timeout)
        if not taken:
            raise QueueTimeout(f"no writer of {db_path} took a turn for {timeout:g}s")
        try:
            with _named(db_path):
                number = _count(fd) + 1
                os.pwrite(fd, number.to_bytes(COUNT, "little"), 0)
            yield number
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextmanager
def _named(db_path: str) -> Iterator[None]:
    """An OSError of the queue's file (its open, lock or count) as a QueueError naming it,
    which the log refuses by name (sqlite_log.write_transaction), not a bare OSError."""
    try:
        yield
    except OSError as err:
        raise QueueError(f"{queue_path(db_path)}: {err.strerror}") from None


def _count(fd: int) -> int:
    return int.from_bytes(os.pread(fd, COUNT, 0).ljust(COUNT, b"\0"), "little")


def _take(fd: int, timeout: float) -> bool:
    """Take the lock on `fd`: at once if it is free, else in turn. False if the queue
    stood still for `timeout` seconds. flock has no timeout: a thread waits in it while
    the writer looks at the queue every POLL s (_take_beside). A process that can make no
    thread (its PID namespace for children isn't its own: a container's monitor, until its
    recorder goes back to its own, record_exit.own_pid_namespace) waits in
    it itself, woken by SIGALRM to look (_take_woken)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        if timeout <= 0:
            return False
    try:
        return _take_beside(fd, timeout)
    except RuntimeError:  # "can't start new thread"
        return _take_woken(fd, timeout)


class _Stalled(Exception):
    pass


def _take_woken(fd: int, timeout: float) -> bool:
    """flock(LOCK_EX) in the main thread, interrupted by SIGALRM every `timeout` s
    (Python's handlers interrupt system calls) to see whether a turn was taken meanwhile;
    the handler ends the wait when none was since the last look, so a stuck holder is
    given up on after one to two timeouts. Each interruption puts the writer at the end of
    the queue again (Python retries the flock): hence a look as seldom as that. The
    process's own SIGALRM handler and timer, if any, are put back after."""
    import signal

    seen, waiting = _count(fd), True

    def tick(signum: int, frame: object) -> None:
        nonlocal seen
        if not waiting:
            return
        count = _count(fd)
        if count == seen:
            raise _Stalled
        seen = count

    handler = signal.signal(signal.SIGALRM, tick)
    timer = signal.setitimer(signal.ITIMER_REAL, timeout, timeout)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return True
    except _Stalled:  # maybe just after flock took it: then this takes it again, as ours
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
    finally:
        waiting = False
        signal.setitimer(signal.ITIMER_REAL, *timer)
        signal.signal(signal.SIGALRM, handler)


def _take_beside(fd: int, timeout: float) -> bool:
    """flock(LOCK_EX) in a thread of its own, which this thread waits for, looking at the
    queue every POLL s. RuntimeError if no thread can be made."""
    waiter = _Waiter(fd)
    seen, since = _count(fd), time.monotonic()
    while True:
        waiter.thread.join(min(POLL, timeout))
        if not waiter.thread.is_alive():
            return waiter.took()
        now, count = time.monotonic(), _count(fd)
        if count != seen:
            seen, since = count, now
        elif now - since >= timeout and waiter.abandon():
            return False


class _Waiter:
    """A thread blocked in flock(LOCK_EX) for a writer, which waits for it with a timeout
    (a signal could interrupt only the main thread's flock, and puts it last again). It
    locks a dup of the writer's fd (the same open file, so the lock is the writer's) and
    closes it when done: a writer that gave up closes its own, and when its turn comes
    the thread passes it on."""

    def __init__(self, fd: int) -> None:
        import threading

        self.fd = os.dup(fd)
        self.guard = threading.Lock()
        self.taken = self.abandoned = False
        self.error: OSError | None = None
        self.thread = threading.Thread(target=self._run, name="lamina-log-turn", daemon=True)
        try:
            self.thread.start()
        except RuntimeError:
            os.close(self.fd)
            raise

    def _run(self) -> None:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except OSError as err:
            self.error = err
        with self.guard:
            self.taken = self.error is None
            if self.abandoned:
                with suppress(OSError):
                    fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)

    def took(self) -> bool:
        if self.error is not None:
            raise self.error
        return True

    def abandon(self) -> bool:
        """Give up waiting, unless the lock was taken meanwhile (then False: it is ours)."""
        with self.guard:
            if self.taken or self.error is not None:
                return False
            self.abandoned = True
            return True
