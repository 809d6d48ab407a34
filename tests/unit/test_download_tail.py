"""A download's end reaches the client only once the engine has recorded it
(adapters/dockerapi/streams.py HttpWriter): a tar's last 10 KiB are held back until
finish(), so a client that stops reading at the tar's end (docker's CLI) and then asks
for the events finds the download's."""

from __future__ import annotations

import socket

from adapters.dockerapi.streams import HttpWriter


def _received(sock: socket.socket) -> bytes:
    sock.setblocking(False)
    out = b""
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except BlockingIOError:
            return out
        if not chunk:
            return out
        out += chunk


def test_the_tail_waits_for_finish_and_the_head_for_the_first_bytes() -> None:
    ours, client = socket.socketpair()
    with ours, client:
        out = HttpWriter(ours)
        out.write(b"a" * 4000)  # under the tail: nothing yet, not even the head
        assert _received(client) == b"" and not out.started
        out.headers.append(("X-Stat", "s"))  # a header may still join the head
        body = b"b" * 50000
        out.write(body)
        got = _received(client)
        head, _, sent = got.partition(b"\r\n\r\n")
        assert b"200 OK" in head and b"X-Stat: s" in head
        assert sent == (b"a" * 4000 + body)[:-HttpWriter.TAIL]
        out.write(b"c" * 10)  # small writes keep the tail's size
        assert _received(client) == body[-HttpWriter.TAIL:][:10]
        out.finish()
        assert _received(client) == (body + b"c" * 10)[-HttpWriter.TAIL:]


def test_an_empty_answer_is_a_head_at_finish() -> None:
    ours, client = socket.socketpair()
    with ours, client:
        out = HttpWriter(ours)
        out.finish()
        assert _received(client).startswith(b"HTTP/1.1 200 OK") and out.started
