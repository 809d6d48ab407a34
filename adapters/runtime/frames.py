"""The attach stream between a container's monitor and a client.

Docker's 8-byte header: one byte naming the stream, three zero bytes, a big-endian 32-bit
length, then the payload. Streams 0/1/2 are stdin/stdout/stderr as in docker; lamina adds 3
(the exit code, sent last), 4 (a terminal resize: "rows cols"), 5 (the client's word that the
start is recorded), 6 (a start report: "started PID" or "failed MESSAGE") and 7 (the client
lets go: it won't record the exit, nor remove an --rm container; the monitor will).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the lean monitor imports this module: `socket` costs it ~10 ms
    import socket

STDIN, STDOUT, STDERR, EXIT, RESIZE, RECORDED, REPORT, DETACH = range(8)
HEADER = struct.Struct(">BxxxI")


def pack(stream: int, payload: bytes) -> bytes:
    return HEADER.pack(stream, len(payload)) + payload


def send(sock: socket.socket, stream: int, payload: bytes) -> None:
    sock.sendall(pack(stream, payload))


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


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
