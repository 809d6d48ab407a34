"""Workers: every request that changes state or blocks runs in a process of its own.

Why processes and not threads: the runtime forks a container's monitor and init, and those
children run Python before exec; fork() from a process with other threads can deadlock the
child (a lock held by another thread, the import lock). The server is single-threaded, so
forking it is safe. A job that pickles and is handed no descriptor (the commands `docker
run` makes: create, start, stop, kill, rm...) runs in the workers' fork server's spare
(spares.py), forked ahead from a copy of this process made before its loop started, so the
loop neither forks nor closes its SQLite connection for it. Any other job (a closure, or one
handed a client's connection) is forked from the loop: the child closes every descriptor it
was not given (so a client connection never stays open in a child that does not own it).
Either way the worker runs one engine call with the caller's identity in the event meta,
writes one JSON report line to a pipe and exits with os._exit. The SQLite connection is
closed before each fork (SqliteEventLog.suspend): it must not cross into a child.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from adapters.dockerapi.reporter import Job, Reporter, run_job
from adapters.dockerapi.spares import JOB, pickled
from adapters.fastpath.client import request_for


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




@dataclass
class Workers:
    """Starts the workers and learns of their ends (no threads, no SIGCHLD handler): a job
    that pickles and keeps no descriptor runs in the workers' fork server's spare
    (spares.py), any other in a child forked from the loop's process, reaped through its
    pidfd."""

    engine: Any
    loop: asyncio.AbstractEventLoop
    children: dict[object, Callable[[], None] | None] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    spares: bytes | None = None  # the workers' fork server's address, once it runs
    handing: set[asyncio.Task[None]] = field(default_factory=set)

    def fork(self, job: Job, meta: dict[str, Any], keep: Iterable[int] = (),
             on_exit: Callable[[], None] | None = None) -> int:
        """Start `job(engine, reporter)` in a worker; returns its report pipe's read end.
        `keep`: descriptors the worker gets (by the same numbers); ours stay ours."""
        keep = set(keep)
        r, w = os.pipe2(os.O_CLOEXEC)
        payload = pickled(job, meta) if self.spares is not None and not keep else None
        if payload is None:
            self._fork_here(job, meta, keep, w, on_exit)
            return r
        token = object()
        self.children[token] = on_exit
        task = self.loop.create_task(self._hand_over(payload, w, token, job, meta))
        self.handing.add(task)
        task.add_done_callback(self.handing.discard)
        return r

    def _fork_here(self, job: Job, meta: dict[str, Any], keep: set[int], w: int,
                   on_exit: Callable[[], None] | None) -> None:
        self.engine.log.suspend()
        pid = os.fork()
        if pid == 0:
            _child(self.engine, job, meta, keep | {0, 1, 2, w}, w)
        os.close(w)
        self._watch(pid, on_exit)

    async def _hand_over(self, payload: str, w: int, token: object, job: Job,
                         meta: dict[str, Any]) -> None:
        """Give the job to the spare; forked here after all when no spare takes it (the
        fork server gone, or it said to run it here). Then wait for the worker's end."""
        assert self.spares is not None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.setblocking(False)
        pid = None
        try:
            await self.loop.sock_connect(sock, self.spares)
            request = request_for([JOB, payload], os.getcwd(), dict(os.environ))
            fds = struct.pack("3i", w, 1, 2)
            sent = sock.sendmsg([request], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
            await self.loop.sock_sendall(sock, request[sent:])
            pid = await _recv_int(self.loop, sock)
        except OSError:
            pass
        if pid is None or pid <= 0:
            sock.close()
            on_exit = self.children.pop(token, None)
            self._fork_here(job, meta, set(), w, on_exit)
            return
        os.close(w)
        try:
            while await self.loop.sock_recv(sock, 64):  # its exit code, then the hang-up
                pass
        except OSError:
            pass
        finally:
            sock.close()
            self._ended(token)

    async def call(self, job: Job, meta: dict[str, Any], keep: Iterable[int] = (),
                   on_exit: Callable[[], None] | None = None) -> Report:
        """Run a job in a worker and wait for its report (not for its end)."""
        return await self.report(self.fork(job, meta, keep, on_exit))

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
            self._ended(pid)

        self.loop.add_reader(fd, reaped)

    def _ended(self, key: object) -> None:
        callback = self.children.pop(key, None)
        if callback is not None:
            callback()
        self.notify()

    def notify(self) -> None:
        """Something may have changed state: wake whoever waits on a container."""
        self.changed.set()
        self.changed = asyncio.Event()

    async def settle(self, timeout: float) -> None:
        """Wait for the next child to end, or `timeout` seconds."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.changed.wait(), timeout)


async def _recv_int(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> int | None:
    """A 4-byte signed integer (the fork server's answers); None at a hang-up."""
    data = b""
    while len(data) < 4:
        chunk = await loop.sock_recv(sock, 4 - len(data))
        if not chunk:
            return None
        data += chunk
    return int.from_bytes(data, "big", signed=True)


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
        run_job(engine, job, meta, reporter)
    finally:
        os._exit(0)
