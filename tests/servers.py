"""Finding and stopping the fork servers tests start (adapters/fastpath): a test run must
leave no process behind."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator

from adapters.kernel.proc import parent, stat_fields
from adapters.runtime.monitor import NAME as MONITOR_NAME
from adapters.runtime.sparemonitor import SPARE_NAME

SERVED = b"adapters.cli.served"


def command_lines() -> Iterator[tuple[int, list[bytes]]]:
    """(pid, argv) of every process there is (one gone meanwhile is left out)."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                yield int(name), f.read().split(b"\0")
        except OSError:
            continue


def servers_under(top: str) -> list[tuple[int, str]]:
    """(pid, root) of every fork server whose --root is `top` or under it. Only servers
    a client started run as `python -m adapters.cli.served` (lamina serve's is its child
    and dies with it)."""
    found = []
    for pid, argv in command_lines():
        if SERVED not in argv or b"--root" not in argv:
            continue
        root = argv[argv.index(b"--root") + 1].decode(errors="replace")
        if (root + "/").startswith(top.rstrip("/") + "/") and _is_leader(pid) \
                and not _is_monitor(pid):
            found.append((pid, root))
    return found


def _is_monitor(pid: int) -> bool:
    """A container's monitor forked by a server (a spare, or one handed a start: no child
    of the server's, it has the server's command line until it execs)."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip() in (SPARE_NAME, MONITOR_NAME)
    except OSError:
        return False


def _is_leader(pid: int) -> bool:
    """The server itself, not one of its forked children (a spare, a command)."""
    ppid = parent(pid)
    if ppid is None:
        return True
    try:
        with open(f"/proc/{ppid}/cmdline", "rb") as f:
            return SERVED not in f.read().split(b"\0")
    except OSError:
        return True


def stop(pid: int, wait: float = 10) -> None:
    """SIGTERM, then SIGKILL after `wait` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper is not)."""
    fields = stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def stop_servers_of(root: str) -> None:
    """Stop the fork server serving `root` (if any) and wait until it is gone."""
    for pid, _ in servers_under(root):
        stop(pid)
