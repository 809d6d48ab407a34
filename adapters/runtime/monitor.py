"""The monitor: one small detached process per running container, parent of its init.

It exists because only a parent learns a process's exit status. It makes the PID namespace
(unshare CLONE_NEWPID, then fork init as PID 1 there), reports the start to the client that
launched it, copies the container's output to the json-file log and to an attached client,
and when init ends writes the exit status, records `exit` in the log (if no stop/kill did),
releases the cgroup and the union view mount, sends the exit code to the client, and exits.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import selectors
import signal
import socket
import struct
import termios
from dataclasses import dataclass
from typing import Any

from adapters.kernel import libc
from adapters.runtime import frames
from adapters.runtime.init import InitPlan
from adapters.runtime.init import run as run_init
from adapters.runtime.logfile import JsonLog


@dataclass
class MonitorJob:
    root: str
    container_id: str
    container_dir: str
    plan: InitPlan


def exit_file(container_dir: str) -> str:
    return os.path.join(container_dir, "exit.json")


def read_exit(container_dir: str, pid: int) -> dict[str, Any] | None:
    """The monitor's record of how process `pid` ended, once it is written."""
    try:
        with open(exit_file(container_dir)) as f:
            data = json.load(f)
    except (FileNotFoundError, ValueError):
        return None
    return data if data.get("pid") == pid else None


def spawn(job: MonitorJob, keep_fds: tuple[int, ...], ctl: socket.socket) -> None:
    """Fork the monitor, detached (double fork + setsid), from the client's process."""
    pid = os.fork()
    if pid:
        os.waitpid(pid, 0)
        return
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
        code = _main(job, ctl, keep_fds)
    except BaseException:  # noqa: BLE001 - a monitor must never unwind into the client
        code = 1
    os._exit(code)


def _close_fds(keep: set[int]) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)


def _stdio_pipes(job: MonitorJob) -> tuple[dict[int, str], int | None]:
    """Make the container's stdio; returns (our read fds -> stream name, our stdin fd)."""
    plan = job.plan
    if plan.spec.tty:
        master, slave = os.openpty()
        plan.stdin = plan.stdout = plan.stderr = slave
        plan.console = os.ttyname(slave)
        return {master: "stdout"}, master
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    if plan.spec.interactive:
        in_r, in_w = os.pipe()
    else:
        in_r, in_w = os.open("/dev/null", os.O_RDONLY), None
    plan.stdin, plan.stdout, plan.stderr = in_r, out_w, err_w
    return {out_r: "stdout", err_r: "stderr"}, in_w


def _main(job: MonitorJob, ctl: socket.socket, keep_fds: tuple[int, ...]) -> int:
    _close_fds({0, 1, 2, ctl.fileno(), *keep_fds})
    devnull = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    libc.unshare(libc.CLONE_NEWPID)
    outputs, stdin_fd = _stdio_pipes(job)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        ctl.close()
        run_init(job.plan, err_w)
        os._exit(127)
    os.close(err_w)
    for fd in {job.plan.stdin, job.plan.stdout, job.plan.stderr}:
        if fd not in outputs and fd != stdin_fd:
            os.close(fd)
    failure = _read_all(err_r)
    if failure:
        os.waitpid(pid, 0)
        _report(ctl, f"failed {failure}")
        return 1
    _report(ctl, f"started {pid}")
    if not _await_recorded(ctl):
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return 1
    return _supervise(job, pid, ctl, outputs, stdin_fd)


def _read_all(fd: int) -> str:
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks).decode(errors="replace")


def _report(ctl: socket.socket, text: str) -> None:
    with contextlib.suppress(OSError):
        frames.send(ctl, frames.REPORT, text.encode())


def _await_recorded(ctl: socket.socket) -> bool:
    """The client says ContainerStarted is in the log; silence or a hang-up means abort."""
    frame = frames.recv(ctl)
    return frame is not None and frame[0] == frames.RECORDED


class _Client:
    """The attached client, if any; once it goes away we stop writing to it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock: socket.socket | None = sock

    def send(self, stream: int, data: bytes) -> None:
        if self.sock is None:
            return
        try:
            frames.send(self.sock, stream, data)
        except OSError:
            self.drop()

    def drop(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def _supervise(job: MonitorJob, pid: int, ctl: socket.socket, outputs: dict[int, str],
               stdin_fd: int | None) -> int:
    log = JsonLog(os.path.join(job.container_dir, f"{job.container_id}-json.log"))
    client = _Client(ctl)
    sel = selectors.DefaultSelector()
    for fd in outputs:
        sel.register(fd, selectors.EVENT_READ)
    sel.register(ctl, selectors.EVENT_READ)
    open_outputs = set(outputs)
    while open_outputs:
        for key, _ in sel.select():
            if key.fileobj is ctl:
                stdin_fd = _from_client(client, sel, stdin_fd, outputs)
                continue
            fd = key.fd
            data = _read(fd)
            if not data:
                sel.unregister(fd)
                open_outputs.discard(fd)
                continue
            log.write(outputs[fd], data)
            client.send(frames.STDOUT if outputs[fd] == "stdout" else frames.STDERR, data)
    log.close()
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    code = 128 - code if code < 0 else code
    _finish(job, pid, code)
    client.send(frames.EXIT, str(code).encode())
    client.drop()
    return 0


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError as err:
        if err.errno == errno.EIO:  # a pty whose last slave closed
            return b""
        raise


def _from_client(client: _Client, sel: selectors.BaseSelector, stdin_fd: int | None,
                 outputs: dict[int, str]) -> int | None:
    """A frame from the client: stdin bytes, a resize, or its hang-up."""
    frame = frames.recv(client.sock) if client.sock is not None else None
    if frame is None:
        if client.sock is not None:
            sel.unregister(client.sock)
        client.drop()
        if stdin_fd is not None and stdin_fd not in outputs:
            os.close(stdin_fd)  # stdin reaches EOF, as `docker run -i` gives it
            return None
        return stdin_fd
    stream, payload = frame
    if stream == frames.STDIN and stdin_fd is not None:
        if not payload and stdin_fd not in outputs:
            os.close(stdin_fd)
            return None
        os.write(stdin_fd, payload)
    elif stream == frames.RESIZE and stdin_fd is not None:
        rows, cols = (int(x) for x in payload.split())
        fcntl.ioctl(stdin_fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    return stdin_fd


def _finish(job: MonitorJob, pid: int, code: int) -> None:
    """Write the exit status, record the exit if nobody else did, release the container."""
    from adapters.kernel.cgroups import Cgroup

    oom = False
    with contextlib.suppress(Exception):  # the cgroup may already be gone
        oom = Cgroup.open(job.container_id).oom_killed()
    path = exit_file(job.container_dir)
    with open(path + ".tmp", "w") as f:
        json.dump({"pid": pid, "code": code, "oom": oom}, f)
    os.replace(path + ".tmp", path)
    from adapters.compose import build_engine

    engine = build_engine(job.root, monitor=True)
    with contextlib.suppress(Exception):  # e.g. removed meanwhile: reconciliation's job
        engine.exited(job.container_id, code, oom=oom, pid=pid,
                      reason="out of memory" if oom else "")
