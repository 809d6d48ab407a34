"""The fork server's spares take ahead the copy-on-write faults of the command before
(adapters/fastpath/hotpages.py): real forks and /proc/self/pagemap, no root needed."""

from __future__ import annotations

import ctypes
import mmap
import os
from array import array
from collections.abc import Callable
from pathlib import Path

from adapters.fastpath import forkserver, hotpages

PAGES = 32
WRITTEN = (3, 10, 20)


def _private_buffer() -> tuple[mmap.mmap, int]:
    buf = mmap.mmap(-1, PAGES * hotpages.PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    for n in range(PAGES):
        buf[n * hotpages.PAGE] = n + 1  # every page present, and shared once we fork
    return buf, ctypes.addressof(ctypes.c_char.from_buffer(buf))


def _in_child(work: Callable[[], bytes]) -> bytes:
    """What `work` returns, run in a forked child (through a pipe)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            data = work()
            os.write(w, len(data).to_bytes(8, "big") + data)
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        size = int.from_bytes(f.read(8), "big")
        data = f.read(size)
    os.waitpid(pid, 0)
    return data


def test_a_spare_takes_the_pages_the_command_before_it_wrote() -> None:
    buf, base = _private_buffer()
    pages = [base + n * hotpages.PAGE for n in WRITTEN]

    def command() -> bytes:
        for n in WRITTEN:
            buf[n * hotpages.PAGE + 1] = 0x55
        return hotpages.dirty()

    listed = _in_child(command)
    assert set(pages) <= set(array("Q", listed))
    assert buf[WRITTEN[0] * hotpages.PAGE + 1] == 0  # the child's writes were its own

    def spare() -> bytes:
        before = set(array("Q", hotpages.dirty()))
        taken = hotpages.take_ahead(listed)
        after = set(array("Q", hotpages.dirty()))
        same = all(buf[n * hotpages.PAGE] == n + 1 and buf[n * hotpages.PAGE + 1] == 0
                   for n in range(PAGES))
        return bytes([taken >= len(pages), not (set(pages) & before),
                      set(pages) <= after, same])

    assert _in_child(spare) == bytes([1, 1, 1, 1])
    buf.close()


def test_pages_outside_its_anonymous_memory_are_left_alone(tmp_path: Path) -> None:
    """Unmapped, read-only or file-backed pages named in a list are skipped, not written."""
    path = tmp_path / "f"
    path.write_bytes(b"x" * hotpages.PAGE)
    with open(path, "r+b") as f:
        mapped = mmap.mmap(f.fileno(), hotpages.PAGE, flags=mmap.MAP_PRIVATE)
        file_page = ctypes.addressof(ctypes.c_char.from_buffer(mapped))
        listed = array("Q", [hotpages.PAGE, file_page]).tobytes()
        assert hotpages.take_ahead(listed) == 0
        mapped.close()
    assert hotpages.take_ahead(b"") == 0


def test_the_server_keeps_the_last_list_for_its_next_spares(tmp_path: Path) -> None:
    server = forkserver.ForkServer(str(tmp_path), {}, str(tmp_path / "cli.sock"))
    try:
        server._spare_ctl.send(forkserver.HOT + b"\x01" * 16)
        server._taken()
        assert server.hot == b"\x01" * 16
        server._spare_ctl.send(forkserver.HOT + b"\x02" * 8)
        server._taken()
        assert server.hot == b"\x02" * 8
    finally:
        server.ctl.close()
        server._spare_ctl.close()


def test_a_spare_stops_taking_pages_once_a_client_waits() -> None:
    buf, base = _private_buffer()
    listed = array("Q", [base + n * hotpages.PAGE for n in range(PAGES)]).tobytes()

    def spare() -> bytes:
        asked = []

        def waits() -> bool:
            asked.append(1)
            return len(asked) >= 2

        return bytes([hotpages.take_ahead(listed, waits, chunk=4), len(asked)])

    assert _in_child(spare) == bytes([8, 2])
    buf.close()
