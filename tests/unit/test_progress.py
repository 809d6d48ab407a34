"""The progress helper: a bar on a terminal for work over the delay; nothing otherwise."""

from __future__ import annotations

import io
import os
import select
import time

from adapters.cli.progress import io_counter, progress


def _drain(fd: int) -> bytes:
    out = b""
    while select.select([fd], [], [], 0.05)[0]:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    return out


def _write_for(seconds: float, path) -> None:
    deadline = time.monotonic() + seconds
    with open(path, "wb") as f:
        while time.monotonic() < deadline:
            f.write(b"x" * 65536)
            f.flush()
            time.sleep(0.02)


def test_the_kernel_counts_what_we_write(tmp_path) -> None:
    before = io_counter("wchar")
    _write_for(0.05, tmp_path / "f")
    assert io_counter("wchar") - before >= 65536


def test_a_bar_on_a_terminal_once_the_work_is_long(tmp_path) -> None:
    master, slave = os.openpty()
    stream = os.fdopen(slave, "w")
    drawn = ""
    try:
        # the work goes on until the bar is seen (or 20 s pass): no race with a loaded CPU
        with progress("saving busybox", counter="wchar", stream=stream, delay=0.2):
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not (
                    "saving busybox" in drawn and ("MB" in drawn or "kB" in drawn)):
                _write_for(0.1, tmp_path / "f")
                drawn += _drain(master).decode(errors="replace")
        drawn += _drain(master).decode(errors="replace")
    finally:
        stream.close()
        os.close(master)
    assert "saving busybox" in drawn
    assert "MB" in drawn or "kB" in drawn  # bytes moved, from the kernel's counter


def test_nothing_for_quick_work_quiet_or_no_terminal(tmp_path) -> None:
    master, slave = os.openpty()
    stream = os.fdopen(slave, "w")
    try:
        with progress("quick", counter="wchar", stream=stream, delay=0.5):
            _write_for(0.05, tmp_path / "f")
        with progress("quiet", counter="wchar", stream=stream, delay=0.05, quiet=True):
            _write_for(0.3, tmp_path / "f")
        assert _drain(master) == b""
    finally:
        stream.close()
        os.close(master)
    text = io.StringIO()
    with progress("piped", stream=text, delay=0.05):
        time.sleep(0.2)
    assert text.getvalue() == ""
