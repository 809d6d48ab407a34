"""HTTP/1.1 over the connection's raw socket, with h11 (why h11: the server must own the
socket, to hand its file descriptor to a forked child for hijacked streams and tar downloads,
and a framework's transports and threads get in the way of both; h11 parses and frames
HTTP and does no I/O of its own)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import h11

from core import __version__

MIN_API, MAX_API = (1, 40), (1, 51)
API_VERSION = "1.51"
JSON_LIMIT = 1 << 20  # a request's JSON body
FILE_LIMIT = 16 << 30  # an uploaded archive (load, import, build)


class HttpError(Exception):
    """An error answered as docker does: a status and {"message": ...}."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def passes(checks: dict[str, Callable[[str], bool]], filters: dict[str, list[str]]) -> bool:
    """docker's `filters` rule (core.filters.passes); a key with no check is a 400, as
    docker answers."""
    from core import filters as rule
    from core.errors import BadInput

    try:
        return rule.passes(checks, filters)
    except BadInput as err:
        raise HttpError(400, str(err)) from None


def base_headers() -> list[tuple[str, str]]:
    return [("Server", f"lamina/{__version__} (linux)"), ("Api-Version", API_VERSION),
            ("Ostype", "linux"), ("Docker-Experimental", "false")]


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end, from the kernel (SO_PEERCRED)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", raw)


def split_version(path: str) -> tuple[str, str | None]:
    """`/v1.51/containers/json` -> (`/containers/json`, `1.51`); refuses versions out of range."""
    if path.startswith("/v") and "/" in path[1:]:
        head, rest = path[2:].split("/", 1)
        parts = head.split(".")
        if len(parts) == 2 and all(p.isdigit() for p in parts):
            version = (int(parts[0]), int(parts[1]))
            if version < MIN_API:
                raise HttpError(400, f"client version {head} is too old. Minimum supported "
                                     f"API version is {MIN_API[0]}.{MIN_API[1]}, please "
                                     "upgrade your client to a newer version")
            if version > MAX_API:
                raise HttpError(400, f"client version {head} is too new. Maximum supported "
                                     f"API version is {API_VERSION}")
            return "/" + rest, head
    return path, None


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    conn: Conn
    api_version: str | None = None
    body: bytes = b""
    body_path: str | None = None
    params: dict[str, str] = field(default_factory=dict)

    def q(self, name: str, default: str | None = None) -> str | None:
        """The parameter's first value, as docker's daemon reads one (Go's FormValue):
        docker-py sends an out-of-context Dockerfile as dockerfile=NAME&dockerfile=TEXT."""
        values = self.query.get(name)
        return values[0] if values else default

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.q(name)
        if value is None:
            return default
        return value.lower() in ("1", "true", "yes")

    def json(self) -> Any:
        """The body as JSON ({} when empty); malformed JSON is docker's 400."""
        if not self.body.strip():
            return {}
        try:
            return json.loads(self.body)
        except ValueError as err:
            raise HttpError(400, f"invalid JSON: {err}") from None

    def filters(self) -> dict[str, list[str]]:
        """docker's `filters` parameter: {"key": ["v"]} or {"key": {"v": true}}."""
        text = self.q("filters")
        if not text:
            return {}
        try:
            raw = json.loads(text)
        except ValueError:
            raise HttpError(400, f"invalid filter: {text}") from None
        if not isinstance(raw, dict):
            raise HttpError(400, f"invalid filter: {text}")
        return {k: list(v) if isinstance(v, (list, dict)) else [str(v)] for k, v in raw.items()}

    @property
    def upgrade(self) -> bool:
        return "upgrade" in self.headers.get("connection", "").lower()


class Conn:
    """One client connection, read and written through h11 on the event loop."""

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        self.sock = sock
        self.loop = loop
        self.h = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
        self.pid, self.uid, self.gid = peer_credentials(sock)
        self.taken = False  # a child took the socket over
        self._hangup: asyncio.Future[bytes] | None = None

    async def _event(self) -> Any:
        while True:
            event = self.h.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = await self.loop.sock_recv(self.sock, 65536)
            self.h.receive_data(data)

    async def next_request(self) -> Request | None:
        """The next request's head, or None when the client closed the connection."""
        if self.h.our_state is h11.DONE and self.h.their_state is h11.DONE:
            self.h.start_next_cycle()
        event = await self._event()
        if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            return None
        if not isinstance(event, h11.Request):
            raise HttpError(400, "malformed request")
        target = event.target.decode("latin-1")
        parts = urlsplit(target)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in event.headers}
        path, version = unquote(parts.path), None
        req = Request(event.method.decode("latin-1").upper(), path,
                      parse_qs(parts.query, keep_blank_values=True), headers, self)
        req.path, version = split_version(path)
        req.api_version = version
        return req

    async def read_body(self, limit: int) -> bytes:
        chunks, size = [], 0
        while True:
            event = await self._event()
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > limit:
                    raise HttpError(413, f"request body too large (more than {limit} bytes)")
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(chunks)
            else:
                raise HttpError(400, "the request body ended early")

    async def body_to_file(self, path: str, limit: int) -> None:
        size = 0
        with open(path, "wb") as f:
            while True:
                event = await self._event()
                if isinstance(event, h11.Data):
                    size += len(event.data)
                    if size > limit:
                        raise HttpError(413, "request body too large")
                    f.write(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    return
                else:
                    raise HttpError(400, "the request body ended early")

    async def send(self, data: bytes) -> None:
        if data:
            await self.loop.sock_sendall(self.sock, data)

    async def respond(self, status: int, body: bytes = b"",
                      content_type: str = "application/json",
                      extra: list[tuple[str, str]] | None = None, head: bool = False) -> None:
        headers = [*base_headers(), *(extra or [])]
        if status not in (204, 304):
            headers += [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        await self.send(self.h.send(h11.Response(status_code=status, headers=headers)))
        if body and not head and status not in (204, 304):
            await self.send(self.h.send(h11.Data(data=body)))
        await self.send(self.h.send(h11.EndOfMessage()))

    async def start_stream(self, status: int, content_type: str) -> None:
        """A response of unknown length (chunked): events, logs -f, JSON progress."""
        headers = [*base_headers(), ("Content-Type", content_type)]
        await self.send(self.h.send(h11.Response(status_code=status, headers=headers)))

    async def stream(self, data: bytes) -> None:
        if data:
            await self.send(self.h.send(h11.Data(data=data)))

    async def end_stream(self) -> None:
        await self.send(self.h.send(h11.EndOfMessage()))

    def hangup(self) -> asyncio.Future[bytes]:
        """Done when the client hangs up while a long answer (wait, logs -f, events) is
        pending; such a client sends nothing more on the connection meanwhile."""
        if self._hangup is None:
            self._hangup = asyncio.ensure_future(self.loop.sock_recv(self.sock, 1))
        return self._hangup

    def forget_hangup(self) -> bool:
        """Stop watching; True if the watch read anything (then the conn is not reused)."""
        watch, self._hangup = self._hangup, None
        if watch is None:
            return False
        if not watch.done():
            watch.cancel()
            return False
        return True

    def reusable(self) -> bool:
        return (not self.taken and self._hangup is None and self.h.our_state is h11.DONE
                and self.h.their_state is h11.DONE)

    def leftover(self) -> bytes:
        """Bytes the client sent past the request (stdin of a hijacked stream, say)."""
        return bytes(self.h.trailing_data[0])

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def raw_response(status: int, reason: str, headers: list[tuple[str, str]],
                 body: bytes | None = None) -> bytes:
    """Response bytes written by hand, by a child that took the socket (no h11 there)."""
    lines = [f"HTTP/1.1 {status} {reason}", *(f"{k}: {v}" for k, v in
                                               [*base_headers(), *headers])]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def error_body(message: str) -> bytes:
    return json.dumps({"message": message}).encode()


def hijack_head(upgrade: bool, tty: bool) -> bytes:
    """docker's answer to attach / exec start: 101 UPGRADED when the client asked for the
    upgrade (the CLI does), else a 200 with the stream as its body."""
    kind = "raw-stream" if tty else "multiplexed-stream"
    ctype = ("Content-Type", f"application/vnd.docker.{kind}")
    if upgrade:
        return raw_response(101, "UPGRADED", [ctype, ("Connection", "Upgrade"),
                                              ("Upgrade", "tcp")])
    return raw_response(200, "OK", [ctype, ("Connection", "close")])

