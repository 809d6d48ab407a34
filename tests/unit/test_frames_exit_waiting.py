"""frames.exit_waiting: whether the monitor's exit code is already among the frames sent,
looked at without taking any (a run whose container ended before its start was recorded
leaves the start's fsync to its end's record)."""

from __future__ import annotations

import socket

from adapters.runtime import frames


def test_the_exit_among_what_was_sent_is_seen_and_nothing_is_taken() -> None:
    mine, theirs = socket.socketpair()
    with mine, theirs:
        assert not frames.exit_waiting(mine)  # nothing yet
        frames.send(theirs, frames.STDOUT, b"hello\n")
        assert not frames.exit_waiting(mine)  # output, the container runs on
        frames.send(theirs, frames.STDERR, b"")
        frames.send(theirs, frames.EXIT, b"0")
        assert frames.exit_waiting(mine)
        assert frames.recv(mine) == (frames.STDOUT, b"hello\n")  # all still there, in order
        assert frames.recv(mine) == (frames.STDERR, b"")
        assert frames.recv(mine) == (frames.EXIT, b"0")


def test_an_exit_beyond_what_is_looked_at_is_not_seen() -> None:
    mine, theirs = socket.socketpair()
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    mine.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    with mine, theirs:
        frames.send(theirs, frames.STDOUT, b"x" * frames.PEEK)
        frames.send(theirs, frames.EXIT, b"0")
        assert not frames.exit_waiting(mine)  # the start then goes on the disk at once


def test_a_monitor_gone_has_no_exit_waiting() -> None:
    mine, theirs = socket.socketpair()
    theirs.close()
    with mine:
        assert not frames.exit_waiting(mine)


def test_an_exit_that_comes_within_the_wait_is_seen_one_that_does_not_is_not() -> None:
    import threading
    import time

    mine, theirs = socket.socketpair()
    with mine, theirs:
        frames.send(theirs, frames.STDOUT, b"started\n")  # output first: looked at again
        sent = threading.Event()

        def exit_later() -> None:
            time.sleep(0.05)
            sent.set()  # before the send: a wait that ended early finds it unset
            frames.send(theirs, frames.EXIT, b"3")

        later = threading.Thread(target=exit_later)
        later.start()
        began = time.monotonic()
        assert frames.exit_within(mine, 2.0)
        assert sent.is_set()  # it waited for the exit, however the threads were scheduled
        assert time.monotonic() - began < 1.0
        later.join()
        began = time.monotonic()
        other, silent = socket.socketpair()
        with other, silent:
            assert not frames.exit_within(other, 0.05)
            assert 0.04 < time.monotonic() - began < 1.0
        assert frames.recv(mine) == (frames.STDOUT, b"started\n")
