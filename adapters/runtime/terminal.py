"""The client's side of a terminal: raw mode, window size, and copying bytes both ways."""

from __future__ import annotations

import contextlib
import fcntl
import os
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


def _set_size(fd: int) -> None:
    size = window_size()
    if size:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", *size, 0, 0))


def _on_winch(fn: Callable[[], None]) -> None:
    signal.signal(signal.SIGWINCH, lambda *_: fn())


def proxy_pty(master: int, child: int) -> None:
    """Copy our stdin to the pty and the pty to our stdout until the process hangs up."""
    _set_size(master)
    _on_winch(lambda: _set_size(master))
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    sel = selectors.DefaultSelector()
    sel.register(master, selectors.EVENT_READ)
    sel.register(stdin, selectors.EVENT_READ)
    with raw_terminal():
        while True:
            for key, _ in sel.select():
                if key.fd == master:
                    try:
                        data = os.read(master, 65536)
                    except OSError:
                        data = b""
                    if not data:
                        os.close(master)
                        return
                    os.write(stdout, data)
                else:
                    data = os.read(stdin, 65536)
                    if not data:
                        sel.unregister(stdin)
                        os.write(master, b"\x04")
                        continue
                    os.write(master, data)


def pump_attach(sock: socket.socket, interactive: bool, use_tty: bool) -> int | None:
    """A foreground run: container output to ours, our stdin to it; returns the exit code
    (None if the monitor went away without sending one)."""
    stdin = sys.stdin.fileno()
    out = {frames.STDOUT: sys.stdout.buffer, frames.STDERR: sys.stderr.buffer}
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    if interactive:
        sel.register(stdin, selectors.EVENT_READ)
    if use_tty:
        def resize() -> None:
            size = window_size()
            if size:
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
                    frames.send(sock, frames.STDIN, data)
                    if not data:
                        sel.unregister(stdin)
