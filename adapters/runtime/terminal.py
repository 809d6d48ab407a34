"""The client's side of a process's stdio: raw mode, window size, and copying bytes both ways
(through a pty with a terminal, through pipes without one)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import selectors
import signal
import socket
import struct
import sys
import termios
import tty
from collections.abc import Callable, Iterator

from adapters.runtime import frames


@contextlib.contextmanager
def raw_terminal() -> Iterator[bool]:
    """Put our stdin in raw mode if it is a terminal; always restored."""
    fd = sys.stdin.fileno()
    if not os.isatty(fd):
        yield False
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield True
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def window_size() -> tuple[int, int] | None:
    try:
        packed = fcntl.ioctl(sys.stdout.fileno(), termios.TIOCGWINSZ, b"\0" * 8)
    except OSError:
        return None
    rows, cols = struct.unpack("HHHH", packed)[:2]
    return rows, cols


def set_size(fd: int, rows: int, cols: int) -> None:
    """A pty's window size (its master's or its slave's: they share it)."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _set_size(fd: int) -> None:
    size = window_size()
    if size:
        set_size(fd, *size)


def received_master(fd: int) -> int | None:
    """The pty master a process sent over the socket `fd` (a container's init, an exec's
    E: they make the terminal in the container); None when it ended without sending one.
    The socket is closed; the master is close-on-exec, as openpty's were (what execs on
    with it says so: the monitor's lean watch)."""
    sock = socket.socket(fileno=fd)
    try:
        _, fds, _, _ = socket.recv_fds(sock, 1, 1, socket.MSG_CMSG_CLOEXEC)
    except OSError:
        return None
    finally:
        sock.close()
    return fds[0] if fds else None


def _resized(fd: int, master: int) -> bool:
    """Apply the last "ROWS COLS" line a server's resize pipe holds (the Docker API's
    /exec/ID/resize); False once the pipe is closed."""
    try:
        data = os.read(fd, 4096)
    except OSError:
        data = b""
    words = data.split()
    if len(words) >= 2 and words[-2].isdigit() and words[-1].isdigit():
        with contextlib.suppress(OSError):
            set_size(master, int(words[-2]), int(words[-1]))
    return bool(data)


def _on_winch(fn: Callable[[], None]) -> None:
    signal.signal(signal.SIGWINCH, lambda *_: fn())


def proxy_pty(master: int, child: int, interactive: bool = True,
              detach_keys: bytes | None = None, stay: bool = False,
              resize_fd: int = -1) -> None:
    """Copy the pty to our stdout, and with -i our stdin to the pty, until the process
    hangs up (docker's `exec -t` without -i reads nothing of ours). With -i, typing
    `detach_keys` lets go of the process, which runs on (docker's exec detach): we raise
    Detached, the pty still open (whoever watches the process drains it: `drain`); with
    `stay` (a server's worker) our stdio's socket is shut first, else the process is
    put out of our terminal's foreground group (its hang-up must spare it). Resizes come
    from our terminal (SIGWINCH), or from `resize_fd` (a server's worker: ROWS COLS lines)."""
    from core.logfilter import EscapeProxy

    _set_size(master)
    _on_winch(lambda: _set_size(master))
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    escape = EscapeProxy(detach_keys) if detach_keys and interactive else None
    sel = selectors.DefaultSelector()
    sel.register(master, selectors.EVENT_READ)
    if interactive:
        sel.register(stdin, selectors.EVENT_READ)
    if resize_fd >= 0:
        sel.register(resize_fd, selectors.EVENT_READ)
    detached = False
    with raw_terminal() if interactive else contextlib.nullcontext():
        while True:
            for key, _ in sel.select():
                if key.fd == resize_fd:
                    if not _resized(resize_fd, master):
                        sel.unregister(resize_fd)
                    continue
                if key.fd == master:
                    try:
                        data = os.read(master, 65536)
                    except OSError:
                        data = b""
                    if not data:
                        os.close(master)
                        return
                    if not detached:
                        try:
                            write_all(stdout, data)
                        except OSError:  # our reader left: drain on, unwatched
                            detached = True
                    continue
                data = os.read(stdin, 65536)
                if data and escape is not None:
                    kept = escape.feed(data)
                    if kept is None:
                        if stay:
                            _hang_up_stdio()
                        else:
                            with contextlib.suppress(OSError):  # out of our group: our
                                os.setpgid(child, child)  # terminal's hang-up spares it
                        raise Detached
                    data = kept
                    if not data:
                        continue
                if not data:
                    sel.unregister(stdin)
                    os.write(master, b"\x04")
                    continue
                os.write(master, data)


def _hang_up_stdio() -> None:
    """A worker's client detached: shut the connection our stdio are (it sees EOF) and
    put /dev/null in their place."""
    for fd in (0, 1):  # the socket is stdin, stdout or both
        with contextlib.suppress(OSError):
            sock = socket.socket(fileno=os.dup(fd))
            try:
                sock.shutdown(socket.SHUT_RDWR)
            finally:
                sock.close()
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def drain(master: int) -> None:
    """Read a detached process's pty until it hangs up (closing it would hang the process
    up), then close it."""
    signal.signal(signal.SIGWINCH, signal.SIG_DFL)  # no resizes of it any more
    try:
        while os.read(master, 65536):
            pass
    except OSError:  # EIO: its last slave closed
        pass
    os.close(master)


def outlive(work: Callable[[], None]) -> None:
    """Run `work` in a child of ours that outlives us, in a session of its own with
    /dev/null for stdio (it exits after it); we return once the child is in its session:
    leaving before would hang up our terminal's foreground group with the child still in
    it (one detached exec in seven lost its process)."""
    ready_r, ready_w = os.pipe()
    if os.fork():
        os.close(ready_w)
        os.read(ready_r, 1)  # its setsid is done (or it died: EOF)
        os.close(ready_r)
        return
    try:
        os.close(ready_r)
        os.setsid()
        os.close(ready_w)
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        work()
    except BaseException:  # noqa: BLE001, S110 - nothing may unwind into the caller's code
        pass
    os._exit(0)


def write_all(fd: int, data: bytes) -> None:
    """Write all of `data`, waiting while `fd` is full (it may be non-blocking: a caller's
    terminal or socket is theirs to set)."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            select.select([], [fd], [])


# Output left in a process's pipes after it ended is read up to this much per pipe: what it
# wrote before it exited is all there (a pipe holds at most 1 MiB), while a background
# process that kept the pipe and writes on must not hold the exec open for ever.
DRAIN_LIMIT = 16 << 20


class PipeRelay:
    """Without a terminal, a process's stdio are pipes we made, never our own descriptors:
    its output pipes are copied to our fds (1, 2), in order within each, and with -i our
    stdin is copied into its stdin pipe, whose write end we close at our EOF.

    A poll loop in this one process: no thread, nothing imported (exec's cost is
    benchmarked). A pipe's reader that went away (EPIPE on our stdout) closes that pipe, so
    the process gets EPIPE/SIGPIPE as in a shell pipeline."""

    def __init__(self, outputs: dict[int, int], stdin_pipe: int | None) -> None:
        self.outputs = dict(outputs)  # our read end -> our fd it is copied to
        self.stdin_pipe = stdin_pipe
        self.pending = b""
        self.poll = select.poll()
        for fd in self.outputs:
            self.poll.register(fd, select.POLLIN)
        if stdin_pipe is not None:
            os.set_blocking(stdin_pipe, False)
            self.poll.register(0, select.POLLIN)

    def run(self, done: int) -> None:
        """Copy until `done` (a pidfd) is readable, i.e. the process ended; then copy what
        it left in the pipes and close our ends."""
        self.poll.register(done, select.POLLIN)
        ended = False
        while not ended:
            for fd, _ in self.poll.poll():
                if fd == done:
                    ended = True
                elif fd in self.outputs:
                    self._copy_out(fd, os.read(fd, 65536))
                elif fd == 0:
                    self._read_stdin()
                else:
                    self._flush_stdin()
        for fd in list(self.outputs):
            self._drain(fd)
        self._close_stdin()

    def _copy_out(self, fd: int, data: bytes) -> None:
        if not data:
            self._close_out(fd)
            return
        try:
            write_all(self.outputs[fd], data)
        except OSError:  # our reader went away: so does the process's
            self._close_out(fd)

    def _close_out(self, fd: int) -> None:
        self.poll.unregister(fd)
        os.close(fd)
        del self.outputs[fd]

    def _drain(self, fd: int) -> None:
        os.set_blocking(fd, False)
        left = DRAIN_LIMIT
        while fd in self.outputs and left > 0:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                break
            left -= len(data)
            self._copy_out(fd, data)
        if fd in self.outputs:
            self._close_out(fd)

    def _read_stdin(self) -> None:
        try:
            data = os.read(0, 65536)
        except OSError:
            data = b""
        if not data:
            self._close_stdin()
            return
        self.pending = data
        self._flush_stdin()

    def _flush_stdin(self) -> None:
        """Write what we hold to the process's stdin without blocking: while it doesn't
        read, we read no more of ours (and keep copying its output meanwhile)."""
        assert self.stdin_pipe is not None
        try:
            written = os.write(self.stdin_pipe, self.pending)
        except BlockingIOError:
            written = 0
        except OSError:  # it closed its stdin
            self._close_stdin()
            return
        self.pending = self.pending[written:]
        if self.pending:
            self._watch(self.stdin_pipe, 0, select.POLLOUT)
        else:
            self._watch(0, self.stdin_pipe, select.POLLIN)

    def _watch(self, fd: int, instead_of: int, events: int) -> None:
        with contextlib.suppress(KeyError):
            self.poll.unregister(instead_of)
        self.poll.register(fd, events)

    def _close_stdin(self) -> None:
        if self.stdin_pipe is None:
            return
        for fd in (0, self.stdin_pipe):
            with contextlib.suppress(KeyError):
                self.poll.unregister(fd)
        os.close(self.stdin_pipe)
        self.stdin_pipe = None
        self.pending = b""


class Detached(Exception):
    """The client typed the detach keys: it lets go, the container runs on."""

    def __str__(self) -> str:
        return "read escape sequence"  # docker's words for it


def let_go(sock: socket.socket) -> None:
    """Tell the monitor we let go (DETACH: it won't wait for us to record the exit), then
    hang up without a reset."""
    with contextlib.suppress(OSError):
        frames.send(sock, frames.DETACH, b"")
        sock.shutdown(socket.SHUT_WR)
    sock.close()


def pump_attach(sock: socket.socket, interactive: bool, use_tty: bool,
                detach_keys: bytes | None = None) -> int | None:
    """A foreground run or an attach: container output to ours, our stdin to it; returns
    the exit code (None if the monitor went away without sending one). With a terminal
    and stdin, typing `detach_keys` raises Detached (docker's escape proxy)."""
    from core.logfilter import EscapeProxy

    stdin = sys.stdin.fileno()
    out = {frames.STDOUT: sys.stdout.buffer, frames.STDERR: sys.stderr.buffer}
    escape = EscapeProxy(detach_keys) if detach_keys and use_tty and interactive else None
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    if interactive:
        sel.register(stdin, selectors.EVENT_READ)
    if use_tty:
        def resize() -> None:
            size = window_size()
            if size:
                with contextlib.suppress(OSError):
                    frames.send(sock, frames.RESIZE, f"{size[0]} {size[1]}".encode())

        resize()
        _on_winch(resize)
    with raw_terminal() if use_tty else contextlib.nullcontext():
        while True:
            for key, _ in sel.select():
                if key.fileobj is sock:
                    frame = frames.recv(sock)
                    if frame is None:
                        return None
                    stream, payload = frame
                    if stream == frames.EXIT:
                        return int(payload)
                    if stream in out:
                        out[stream].write(payload)
                        out[stream].flush()
                else:
                    data = os.read(stdin, 65536)
                    if data and escape is not None:
                        kept = escape.feed(data)
                        if kept is None:
                            raise Detached
                        if not kept:
                            continue
                        data = kept
                    try:
                        frames.send(sock, frames.STDIN, data)
                    except OSError:  # it ended meanwhile: its exit code is still to read
                        data = b""
                    if not data:
                        sel.unregister(stdin)
