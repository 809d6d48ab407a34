"""The websocket wire of an attach (adapters/dockerapi/wires.py) against wsproto's own
client on a socket pair: pings answered and no input, a fragmented message whole, output
as binary (or, before API 1.42, text) messages, the client's close its end of input."""

from __future__ import annotations

import socket

import pytest
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage

from adapters.dockerapi.wires import WebSocket, handshake


def _heard(client: Connection, sock: socket.socket) -> list[object]:
    client.receive_data(sock.recv(65536))
    return list(client.events())


def test_pings_fragments_output_and_close() -> None:
    ours, theirs = socket.socketpair()
    wire = WebSocket(ours, binary=True)
    client = Connection(ConnectionType.CLIENT)
    theirs.sendall(client.send(Ping(payload=b"p")))
    assert wire.recv() is None  # nothing for stdin
    assert [type(e) for e in _heard(client, theirs)] == [Pong]
    theirs.sendall(client.send(BytesMessage(data=b"ab", message_finished=False))
                   + client.send(BytesMessage(data=b"cd")))
    assert wire.recv() == b"abcd"
    wire.send(1, b"out")
    (message,) = _heard(client, theirs)
    assert isinstance(message, BytesMessage) and message.data == b"out"
    theirs.sendall(client.send(CloseConnection(code=1000)))
    assert wire.recv() == b""
    assert [type(e) for e in _heard(client, theirs)] == [CloseConnection]
    wire.close()
    theirs.close()


def test_text_messages_before_api_1_42_and_the_handshake() -> None:
    ours, theirs = socket.socketpair()
    wire = WebSocket(ours, binary=False)
    client = Connection(ConnectionType.CLIENT)
    wire.write(b"hi")
    (message,) = _heard(client, theirs)
    assert isinstance(message, TextMessage) and message.data == "hi"
    wire.close()
    theirs.close()
    head = handshake({"upgrade": "websocket", "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in head  # RFC 6455's
    with pytest.raises(ValueError, match="not using the websocket protocol"):
        handshake({"connection": "upgrade"})
