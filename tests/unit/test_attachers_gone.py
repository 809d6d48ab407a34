"""A monitor's attach clients (adapters/runtime/frames.Attachers): one that a send finds
gone stays open until its own hang-up's event, so that no event of the poll being handled
finds its descriptor closed (the monitor then read a closed descriptor and died, leaving
its container's end unrecorded and its attach socket behind)."""

from __future__ import annotations

import os
import select
import socket
from pathlib import Path

from adapters.runtime import frames


def attached(cdir: Path) -> tuple[frames.Attachers, select.epoll, socket.socket, int]:
    poller = select.epoll()
    attachers = frames.Attachers(str(cdir), poller)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(str(cdir / frames.ATTACH_SOCKET))
    before = set(attachers.clients)
    attachers.ready(attachers.listener.fileno(), None)  # the monitor accepts it
    [fd] = set(attachers.clients) - before
    return attachers, poller, client, fd


def test_a_client_a_send_finds_gone_is_dropped_at_its_own_hang_up(tmp_path: Path) -> None:
    attachers, poller, client, fd = attached(tmp_path)
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.connect(str(tmp_path / frames.ATTACH_SOCKET))
    attachers.ready(attachers.listener.fileno(), None)
    client.close()
    attachers.send(frames.STDOUT, b"out\n")  # EPIPE for the one gone
    assert fd in attachers and os.fstat(fd)  # still open: its event may be in this poll
    attachers.send(frames.STDOUT, b"more\n")  # nothing more to it, the other gets both
    assert frames.recv(other) == (frames.STDOUT, b"out\n")
    assert frames.recv(other) == (frames.STDOUT, b"more\n")
    assert fd in dict(poller.poll(1))  # its hang-up
    attachers.ready(fd, None)
    assert fd not in attachers
    attachers.close(0)
    assert frames.recv(other) == (frames.EXIT, b"0")
    other.close()
    poller.close()
