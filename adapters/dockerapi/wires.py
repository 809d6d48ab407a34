"""How an attach's bytes travel on the client's connection once a worker took it over:
docker's hijacked HTTP stream (`POST /containers/ID/attach`), or websocket messages
(`GET /containers/ID/attach/ws`). The pump (streams.pump_attach) talks to either alike.

Why wsproto for the websocket: RFC 6455's framing (the client's masking, fragmented
messages, pings, the closing handshake) done right, without I/O of its own, as h11 does
HTTP here: the worker owns the raw socket and its file descriptor (it came through fork)."""

from __future__ import annotations

import contextlib
import socket
from typing import Protocol

from adapters.runtime import frames


class Wire(Protocol):
    raw_logs: bool  # the log so far goes as raw bytes (log_frames' tty shape)

    def fileno(self) -> int: ...

    def pending(self) -> bytes:
        """Input that came with the request (before the worker took the socket)."""
        ...

    def recv(self) -> bytes | None:
        """The client's next input bytes, once its connection is readable: b"" at its end
        (a half-close, a close, a hang-up), None when what came was not input (a ping)."""
        ...

    def send(self, stream: int, payload: bytes) -> None:
        """Output of the container's `stream` (frames.STDOUT or STDERR)."""
        ...

    def write(self, data: bytes) -> None:
        """Bytes already in the wire's shape (logs_frames' output for this wire)."""
        ...

    def close(self) -> None: ...


class Hijacked:
    """docker's hijacked stream: raw bytes with a TTY, else its 8-byte stream frames."""

    raw_logs = False

    def __init__(self, sock: socket.socket, tty: bool, leftover: bytes = b"") -> None:
        self.sock = sock
        self.tty = tty
        self.leftover = leftover
        sock.setblocking(True)

    def fileno(self) -> int:
        return self.sock.fileno()

    def pending(self) -> bytes:
        data, self.leftover = self.leftover, b""
        return data

    def recv(self) -> bytes | None:
        return self.sock.recv(65536)

    def send(self, stream: int, payload: bytes) -> None:
        self.sock.sendall(payload if self.tty else frames.pack(stream, payload))

    def write(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class WebSocket:
    """docker's attach/ws: the stream's bytes as they come, stdout and stderr alike (never
    docker's stream frames), one message per write: binary from API 1.42 on, text before
    (as docker's daemon sends them); every message the client sends is stdin, its close
    the end of stdin. Pings are answered."""

    raw_logs = True

    def __init__(self, sock: socket.socket, binary: bool, leftover: bytes = b"") -> None:
        from wsproto.connection import Connection, ConnectionType

        self.sock = sock
        self.binary = binary
        self.ws = Connection(ConnectionType.SERVER, trailing_data=leftover)
        self.ended = False
        sock.setblocking(True)

    def fileno(self) -> int:
        return self.sock.fileno()

    def pending(self) -> bytes:
        return self._take()

    def recv(self) -> bytes | None:
        if self.ended:
            return b""
        try:
            data = self.sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self.ended = True
            return b""
        self.ws.receive_data(data)
        got = self._take()
        return got or (b"" if self.ended else None)

    def _take(self) -> bytes:
        """The data of the messages received so far; answers pings and the close."""
        from wsproto.events import CloseConnection, Message, Ping

        out = []
        for event in self.ws.events():
            if isinstance(event, Message):
                out.append(event.data.encode() if isinstance(event.data, str)
                           else bytes(event.data))
            elif isinstance(event, Ping):
                self._send(event.response())
            elif isinstance(event, CloseConnection):
                self._send(event.response())
                self.ended = True
        return b"".join(out)

    def send(self, stream: int, payload: bytes) -> None:
        self.write(payload)

    def write(self, data: bytes) -> None:
        from wsproto.events import BytesMessage, TextMessage

        if data:
            self._send(BytesMessage(data=data) if self.binary
                       else TextMessage(data=data.decode(errors="replace")))

    def _send(self, event: object) -> None:
        from wsproto.connection import ConnectionState

        if self.ws.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            self.sock.sendall(self.ws.send(event))  # type: ignore[arg-type]

    def close(self) -> None:
        """The closing handshake's first half (normal closure), then the socket."""
        from wsproto.events import CloseConnection

        with contextlib.suppress(OSError):
            self._send(CloseConnection(code=1000))
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def handshake(headers: dict[str, str]) -> bytes:
    """The 101 that accepts a websocket upgrade (RFC 6455's Sec-WebSocket-Accept); raises
    ValueError when the request is not a websocket handshake."""
    from wsproto.utilities import generate_accept_token

    from adapters.dockerapi.http import raw_response

    key = headers.get("sec-websocket-key", "")
    if "websocket" not in headers.get("upgrade", "").lower() or not key:
        raise ValueError("websocket: the client is not using the websocket protocol")
    return raw_response(101, "Switching Protocols", [
        ("Upgrade", "websocket"), ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", generate_accept_token(key.encode()).decode())])


def wire_for(sock: socket.socket, tty: bool, ws: str, leftover: bytes) -> Wire:
    """The wire an attach's connection is (`ws`: "", "binary" or "text")."""
    if ws:
        return WebSocket(sock, ws == "binary", leftover)
    return Hijacked(sock, tty, leftover)
