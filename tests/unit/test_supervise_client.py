"""The monitor's view of its client (adapters/runtime/supervise.py _Client), on real
sockets: the word that the start is recorded is never lost with a client that went."""

from __future__ import annotations

import socket

from adapters.runtime import frames, supervise


def test_a_client_that_let_go_at_once_still_said_recorded() -> None:
    """`run -d` of a container that ended before its start was recorded: the client sent
    RECORDED and DETACH and closed before the monitor wrote to it (its output and exit
    code then went to a closed socket), unread by the monitor. Without the word, the
    monitor would not record the end."""
    ours, theirs = socket.socketpair()
    frames.send(theirs, frames.RECORDED, b"")
    frames.send(theirs, frames.DETACH, b"")
    theirs.close()
    client = supervise._Client(ours, recorded=False)
    client.send(frames.EXIT, b"0")
    assert client.sock is None and client.recorded


def test_the_word_survives_the_reset_of_a_client_that_left_output_unread() -> None:
    ours, theirs = socket.socketpair()
    client = supervise._Client(ours, recorded=False)
    client.send(frames.STDOUT, b"hello\n")  # unread by the client: its close resets us
    frames.send(theirs, frames.RECORDED, b"")
    theirs.close()
    client.send(frames.EXIT, b"0")
    assert client.sock is None and client.recorded


def test_a_client_that_hung_up_without_the_word_gave_the_start_up() -> None:
    ours, theirs = socket.socketpair()
    frames.send(theirs, frames.STDIN, b"x")
    theirs.close()
    client = supervise._Client(ours, recorded=False)
    client.send(frames.EXIT, b"0")
    assert client.sock is None and not client.recorded


def test_a_client_that_let_go_before_the_exit_code_is_not_taken_for_one_still_there() -> None:
    """`run -d --rm` of a container that ended at once, the start's word read by the
    monitor's loop: at the loop's end the client was still connected, then it sent DETACH
    and closed before the exit code went out. The DETACH, unread, must still count: a
    client there at the end records the end and removes the container itself, so the
    monitor, thinking it attached, removed nothing (test_forkserver's CI failure)."""
    ours, theirs = socket.socketpair()
    client = supervise._Client(ours, recorded=True)
    client.send(frames.STDOUT, b"")  # the output went while it was there
    client.was_attached = client.sock is not None  # as _supervise judges at its loop's end
    assert client.was_attached
    frames.send(theirs, frames.DETACH, b"")
    theirs.close()
    client.send(frames.EXIT, b"0")  # to a socket gone: dropped
    assert client.sock is None and not client.was_attached
