"""The attach stream between a container's monitor and a client.

Docker's 8-byte header: one byte naming the stream, three zero bytes, a big-endian 32-bit
length, then the payload. Streams 0/1/2 are stdin/stdout/stderr as in docker; lamina adds 3
(the exit code, sent last), 4 (a terminal resize: "rows cols"), 5 (the client's word that the
start is recorded), 6 (a start report: "started PID STARTTIME" or "failed MESSAGE") and 7
(the client lets go: it won't record the exit, nor remove an --rm container; the monitor
will).
"""

from __future__ import annotations

import os
import struct
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the lean monitor imports this module: `socket` costs it ~10 ms
    import socket

STDIN, STDOUT, STDERR, EXIT, RESIZE, RECORDED, REPORT, DETACH = range(8)
HEADER = struct.Struct(">BxxxI")


def pack(stream: int, payload: bytes) -> bytes:
    return HEADER.pack(stream, len(payload)) + payload


MSG_NOSIGNAL = 0x4000  # socket.MSG_NOSIGNAL, without importing socket


def send(sock: socket.socket, stream: int, payload: bytes) -> None:
    """One frame; a peer gone is EPIPE, never SIGPIPE (the CLI runs with SIGPIPE's default
    action: its client sending stdin just as the container ended was killed by it)."""
    sock.sendall(pack(stream, payload), MSG_NOSIGNAL)


def read_to_end(fd: int) -> bytes:
    """A pipe's whole content, up to its writers' end: the word a monitor, an exec's joiner
    or a spare monitor sends once and closes. Non-blocking and not ended: BlockingIOError."""
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    return b"".join(chunks)


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


MSG_PEEK, MSG_DONTWAIT = 0x2, 0x40  # socket's, without importing it
PEEK = 1 << 16  # bytes looked at for the exit code's frame


def exit_waiting(sock: socket.socket) -> bool:
    """Whether the exit code is among the frames the monitor has sent and nobody has read
    yet (looked at, not taken; within the first PEEK bytes): a container that ended before
    its start was recorded (a monitor sends its output and exit code at once then)."""
    try:
        data = sock.recv(PEEK, MSG_PEEK | MSG_DONTWAIT)
    except OSError:  # nothing sent yet (BlockingIOError), or a monitor gone
        return False
    offset = 0
    while offset + HEADER.size <= len(data):
        stream, size = HEADER.unpack_from(data, offset)
        if stream == EXIT:
            return True
        offset += HEADER.size + size
    return False


# seconds an attached run or exec waits for its process's end before its start's record goes
# on the disk on its own: one that ends sooner (`run --rm true`, `exec true`) has the start's
# fsync done by its end's record (one fsync instead of two before the answer); output shows
# at most this much later at the run's beginning (SqliteEventLog.sync_deferred).
START_SYNC_WITHIN = 0.02


def exit_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the exit code comes within `seconds` (exit_waiting, taking nothing): the
    client's next step is to wait for it anyway. Output without the exit is looked at
    again every millisecond; nothing at all is waited for in select()."""
    import select
    import time

    deadline = time.monotonic() + seconds
    while not exit_waiting(sock):
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        if select.select([sock], [], [], left)[0]:  # something came, or was there
            time.sleep(min(0.001, max(left, 0)))  # output without the exit: look again
    return True


def recv(sock: socket.socket) -> tuple[int, bytes] | None:
    """One frame, or None at end of stream."""
    head = _recv_exact(sock, HEADER.size)
    if head is None:
        return None
    stream, size = HEADER.unpack(head)
    payload = _recv_exact(sock, size) if size else b""
    if payload is None:
        return None
    return stream, payload


# --- clients that attach to a running container -------------------------------------------

ATTACH_SOCKET = "attach.sock"


def attach_address(dir_fd: int) -> str:
    """The monitor's attach socket, named through an fd of the container's directory: a
    root's path can be longer than a socket address (108 bytes) may be."""
    return f"/proc/self/fd/{dir_fd}/{ATTACH_SOCKET}"


class Attachers:
    """The monitor's side of `lamina attach` and the API's attach to a running container:
    a socket in the container's (0700) directory; each client that connects gets the
    output from then on, and the exit code when the process ends; its STDIN frames go to
    the container's stdin (if it has one open), RESIZE to its terminal. A client's hang-up
    or DETACH drops that client only. The end of a client's input (an empty STDIN frame,
    or a hang-up of a client that sent stdin) leaves the container's stdin open, as
    docker's attach does, unless the container asked StdinOnce (`once`): then it closes
    it, for this attach and every later one."""

    def __init__(self, cdir: str, poller: Any, once: bool = False,
                 listener: Any = None) -> None:
        self.cdir = cdir
        self.poller = poller
        self.once = once
        self.clients: dict[int, Any] = {}
        self.typing: set[int] = set()  # clients that sent stdin
        self.gone: set[int] = set()  # clients a send found gone, dropped at their hang-up
        self.listener: Any = listener if listener is not None else listen(cdir)
        if self.listener is not None:
            poller.register(self.listener.fileno(), 1)  # EPOLLIN

    def __contains__(self, fd: int) -> bool:
        return fd in self.clients or (self.listener is not None
                                      and fd == self.listener.fileno())

    def ready(self, fd: int, stdin_fd: int | None) -> int | None:
        """A new client, or a frame from one; returns the container's stdin (None once
        closed)."""
        if self.listener is not None and fd == self.listener.fileno():
            import _socket

            try:  # _socket has no accept(): socket.py builds that on _accept()
                fd, _ = self.listener._accept()
            except OSError:
                return stdin_fd
            sock = _socket.socket(fileno=_high(fd))
            self.clients[sock.fileno()] = sock
            self.poller.register(sock.fileno(), 1)
            return stdin_fd
        sock = self.clients[fd]
        try:
            frame = recv(sock)
        except OSError:
            frame = None
        if frame is None or frame[0] == DETACH:
            ended = frame is None and fd in self.typing
            self.drop(fd)
            return closed_stdin(stdin_fd) if ended and self.once else stdin_fd
        stream, payload = frame
        if stream == STDIN:
            self.typing.add(fd)
            if not payload:
                return closed_stdin(stdin_fd) if self.once else stdin_fd
        try:
            if stream == STDIN and stdin_fd is not None:
                os.write(stdin_fd, payload)
            elif stream == RESIZE and stdin_fd is not None:
                import fcntl
                import termios

                rows, cols = (int(x) for x in payload.split())
                fcntl.ioctl(stdin_fd, termios.TIOCSWINSZ,
                            struct.pack("HHHH", rows, cols, 0, 0))
        except (OSError, ValueError):
            pass
        return stdin_fd

    def send(self, stream: int, data: bytes) -> None:
        """A frame to every client still there. One found gone is sent nothing more, but
        stays open until its own hang-up's event (ready): closed now, its descriptor could
        still have an event in the poll being handled, which would then read a closed
        descriptor (EBADF, the monitor's end) or a new client's that took its number."""
        for fd, sock in list(self.clients.items()):
            if fd in self.gone:
                continue
            try:
                send(sock, stream, data)
            except OSError:
                self.gone.add(fd)

    def drop(self, fd: int) -> None:
        sock = self.clients.pop(fd)
        self.typing.discard(fd)
        self.gone.discard(fd)
        try:  # noqa: SIM105
            self.poller.unregister(fd)
        except (OSError, ValueError):
            pass
        sock.close()

    def close(self, code: int | None) -> None:
        """The process ended: each client gets its exit code; nobody attaches any more."""
        unlisten(self.cdir, self.listener)
        self.listener = None
        if code is not None:
            self.send(EXIT, str(code).encode())
        for fd in list(self.clients):
            self.drop(fd)


def closed_stdin(fd: int | None) -> int | None:
    """Close the container's stdin pipe (StdinOnce: its reader gets EOF); what is left of
    it: None."""
    if fd is not None:
        try:  # noqa: SIM105 - contextlib would be one more import
            os.close(fd)
        except OSError:
            pass
    return None


def listen(cdir: str) -> Any:
    """The container's attach socket, listening (None if it can't be made): the monitor
    makes it before it reports the start, so that an attach right after the start finds it
    (clients wait in its backlog until the monitor watches the output)."""
    import _socket

    dir_fd = os.open(cdir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        address = attach_address(dir_fd)
        try:  # noqa: SIM105 - contextlib would be one more import
            os.unlink(address)
        except FileNotFoundError:
            pass
        listener = _socket.socket(fileno=_high(_socket.socket(
            _socket.AF_UNIX, _socket.SOCK_STREAM).detach()))
        try:
            listener.bind(address)
            listener.listen(16)
        except OSError:
            listener.close()
            return None
        return listener
    except OSError:
        return None
    finally:
        os.close(dir_fd)


def unlisten(cdir: str, listener: Any) -> None:
    """The attach socket closed and its name gone: nobody attaches any more."""
    if listener is None:
        return
    try:
        dir_fd = os.open(cdir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        dir_fd = -1
    if dir_fd >= 0:
        try:
            os.unlink(attach_address(dir_fd))
        except OSError:
            pass
        finally:
            os.close(dir_fd)
    listener.close()


FD_FLOOR = 256  # attach sockets' numbers: never one the monitor's start client had


def _high(fd: int) -> int:
    """`fd` moved to a number from FD_FLOOR up: the monitor's poll loop knows its start
    client by number, and keeps that number even once the client is gone (a closed fd's
    stale events may still come), so a new client must never get it."""
    import fcntl

    try:
        high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, FD_FLOOR)
    except OSError:
        return fd
    os.close(fd)
    return high


def connect_attach(cdir: str) -> socket.socket | None:
    """A client's connection to a running container's monitor (None: nothing to attach
    to: the container is not running, or its monitor predates attach sockets)."""
    import socket

    try:
        dir_fd = os.open(cdir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(attach_address(dir_fd))
    except OSError:
        sock.close()
        return None
    finally:
        os.close(dir_fd)
    return sock
