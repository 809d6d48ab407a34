"""Forked workers: every request that changes state or blocks runs in a child process.

Why fork and not threads: the runtime forks a container's monitor and init, and those
children run Python before exec; fork() from a process with other threads can deadlock the
child (a lock held by another thread, the import lock). The server is single-threaded, so
forking it is safe, and cheap (~1-2 ms: everything is imported already). The child closes
every descriptor it was not given (so a client connection never stays open in a child that
does not own it), runs one engine call with the caller's identity in the event meta, writes
one JSON report line to a pipe and exits with os._exit. The SQLite connection is closed
before each fork (SqliteEventLog.suspend): it must not cross into a child.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from core.errors import LaminaError


@dataclass
class Report:
    """What a child said: its value, or the error that refused the command."""

    value: Any = None
    error: str = ""
    kind: str = ""
    exit_code: int = 0

    @property
    def ok(self) -> bool:
        return not self.kind


class Reporter:
    """The child's side of the report pipe: one JSON line, then the pipe is closed."""

    def __init__(self, fd: int) -> None:
        self.fd: int | None = fd

    def send(self, report: dict[str, Any]) -> None:
        if self.fd is None:
            return
        data = (json.dumps(report) + "\n").encode()
        with contextlib.suppress(OSError):
            os.write(self.fd, data)
        self.done()

    def ok(self, value: Any = None) -> None:
        self.send({"value": value})

    def error(self, err: BaseException) -> None:
        if isinstance(err, LaminaError):
            self.send({"error": str(err), "kind": type(err).__name__,
                       "exit_code": err.exit_code})
        else:
            self.send({"error": f"{type(err).__name__}: {err}", "kind": "internal",
                       "exit_code": 125})

    def done(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None


Job = Callable[[Any, Reporter], Any]


@dataclass
class Workers:
    """Forks children from the loop's process and reaps them through pidfds (no threads,
    no SIGCHLD handler)."""

    engine: Any
    loop: asyncio.AbstractEventLoop
    children: dict[int, Callable[[], None] | None] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def fork(self, job: Job, meta: dict[str, Any], keep: Iterable[int] = (),
             on_exit: Callable[[], None] | None = None) -> tuple[int, int]:
        """Start `job(engine, reporter)` in a child; returns (pid, report pipe's read end)."""
        keep = set(keep)
        self.engine.log.suspend()
        r, w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            _child(self.engine, job, meta, keep | {0, 1, 2, w}, w)
        os.close(w)
        self._watch(pid, on_exit)
        return pid, r

    async def call(self, job: Job, meta: dict[str, Any], keep: Iterable[int] = (),
                   on_exit: Callable[[], None] | None = None) -> Report:
        """Run a job in a child and wait for its report (not for its end)."""
        _, r = self.fork(job, meta, keep, on_exit)
        return await self.report(r)

    async def report(self, r: int) -> Report:
        data = await read_all(self.loop, r)
        if not data.strip():
            return Report(error="the worker process died before it reported", kind="internal",
                          exit_code=125)
        raw = json.loads(data.splitlines()[0])
        return Report(value=raw.get("value"), error=raw.get("error", ""),
                      kind=raw.get("kind", ""), exit_code=raw.get("exit_code", 0))

    def _watch(self, pid: int, on_exit: Callable[[], None] | None) -> None:
        fd = os.pidfd_open(pid)
        self.children[pid] = on_exit

        def reaped() -> None:
            self.loop.remove_reader(fd)
            os.close(fd)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            callback = self.children.pop(pid, None)
            if callback is not None:
                callback()
            self.notify()

        self.loop.add_reader(fd, reaped)

    def notify(self) -> None:
        """Something may have changed state: wake whoever waits on a container."""
        self.changed.set()
        self.changed = asyncio.Event()

    async def settle(self, timeout: float) -> None:
        """Wait for the next child to end, or `timeout` seconds."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.changed.wait(), timeout)


async def read_all(loop: asyncio.AbstractEventLoop, fd: int) -> bytes:
    """Everything from a pipe until its writer closes it, without blocking the loop."""
    os.set_blocking(fd, False)
    chunks: list[bytes] = []
    done = loop.create_future()

    def readable() -> None:
        try:
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
        except BlockingIOError:
            return
        loop.remove_reader(fd)
        if not done.done():
            done.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await done
    finally:
        loop.remove_reader(fd)
        os.close(fd)
    return b"".join(chunks)


def close_fds(keep: set[int]) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)


def _child(engine: Any, job: Job, meta: dict[str, Any], keep: set[int], w: int) -> None:
    """In the forked child: shed the server's descriptors and signal plumbing, run the job,
    report, exit. Never returns."""
    reporter = Reporter(w)
    try:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        close_fds(keep)
        engine.meta = lambda: dict(meta)
        value = job(engine, reporter)
        reporter.ok(value)
    except BaseException as err:  # noqa: BLE001 - a child must never unwind into the server
        if not isinstance(err, LaminaError):
            with contextlib.suppress(Exception):
                traceback.print_exc(file=sys.stderr)
        reporter.error(err)
    finally:
        reporter.done()
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(0)
