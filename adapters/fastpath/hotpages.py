"""The copy-on-write faults a command's child takes, taken ahead by the next spare.

Every child of the fork server starts out sharing the server's memory, and the first write
to each shared page costs it a fault and a copy of the page. Running Python writes to
thousands of them (every object it uses has its reference count in one): a served
`run --rm` took ~2,500 such faults in the command's child after it had its client (~4 ms
of kernel time on this machine, on the client's clock), and each command takes nearly the
same pages as the one of its kind before it, since every spare is a copy of one server.

So a command's child, once its client has the answer, lists the pages it owns alone
(`dirty`: present and mapped by this process only, in its private writable anonymous
memory and heap) and hands the list to the server, and each spare the server forks writes
each of those pages once (`take_ahead`) before it waits for a client: the same byte back,
so nothing changes but who owns the page. Only anonymous memory, never a file's mapping
(a private file mapping past its file's end would fault with SIGBUS). A hint only: a page
the list names that this process doesn't have writable is skipped.
"""

from __future__ import annotations

import ctypes
import os
from array import array
from collections.abc import Callable

PAGE = os.sysconf("SC_PAGE_SIZE")
PRESENT = 1 << 63  # /proc/PID/pagemap (Documentation/admin-guide/mm/pagemap.rst)
EXCLUSIVE = 1 << 56
MAX_PAGES = 12_000  # at 8 bytes each, well within one SOCK_SEQPACKET message


def anonymous_writable() -> list[tuple[int, int]]:
    """(start, end) of this process's private, writable, anonymous mappings and its heap,
    in address order (/proc/self/maps)."""
    ranges = []
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split()
            perms = fields[1]
            name = fields[5] if len(fields) > 5 else ""
            if perms[1] != "w" or perms[3] != "p" or name not in ("", "[heap]"):
                continue
            start, end = fields[0].split("-")
            ranges.append((int(start, 16), int(end, 16)))
    return ranges


def dirty() -> bytes:
    """The addresses (native 8-byte words) of the pages in anonymous_writable() that this
    process alone maps: those it has copied or made since it was forked."""
    both = PRESENT | EXCLUSIVE
    pages = array("Q")
    fd = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    try:
        for start, end in anonymous_writable():
            entries = array("Q", os.pread(fd, (end - start) // PAGE * 8, start // PAGE * 8))
            pages.extend(start + i * PAGE for i, e in enumerate(entries) if e & both == both)
            if len(pages) >= MAX_PAGES:
                break
    finally:
        os.close(fd)
    return pages[:MAX_PAGES].tobytes()


def take_ahead(listed: bytes, until: Callable[[], bool] = lambda: False,
               chunk: int = 256) -> int:
    """Write each listed page that lies in this process's anonymous writable memory with
    the byte it holds; returns how many were written. Stops early once `until()` says so,
    asked every `chunk` pages (a spare: once a client waits, its faults are its own again).
    Only for a single-threaded process (a spare before its command): no one else may
    write those bytes meanwhile."""
    pages = sorted(array("Q", listed[:len(listed) - len(listed) % 8]))
    ranges = anonymous_writable()
    done = i = 0
    for n, page in enumerate(pages):
        if n % chunk == 0 and n and until():
            break
        while i < len(ranges) and ranges[i][1] <= page:
            i += 1
        if i == len(ranges):
            break
        if ranges[i][0] <= page:
            byte = ctypes.c_char.from_address(page)
            byte.value = byte.value
            done += 1
    return done
