"""Who a process is: its pid plus its start time, so that a reused pid is not mistaken for it.

A pid alone names a process only while it lives; after it ends the kernel may hand the same
number to any new process. `/proc/<pid>/stat` field 22 (starttime, clock ticks since boot)
differs between the two, so (pid, starttime) names one process for the life of the boot, and
after a reboot the old starttime is simply never seen again for that pid (or it is, by a
chance this module accepts: the check is a cheap guard, not a proof).
"""

from __future__ import annotations

import os
from collections.abc import Mapping


def stat_fields(pid: int | str) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (field 3, state, is index 0);
    None if there is no such process. The name may hold spaces and parentheses, so the
    split is after the last ')'."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rfind(b")") + 2:].decode().split()


def start_time(pid: int | str) -> int | None:
    """The process's start time in clock ticks since boot, or None if it is gone."""
    fields = stat_fields(pid)
    return int(fields[19]) if fields else None


def parent(pid: int | str) -> int | None:
    fields = stat_fields(pid)
    return int(fields[1]) if fields else None


def is_same(pid: int, started: int) -> bool:
    """Whether process `pid` is still the one that started at `started`, and still running:
    a zombie has ended (its parent just hasn't reaped it, or never will: a double-forked
    monitor's parent is whatever init the host has)."""
    if pid <= 0:
        return False
    fields = stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X") and int(fields[19]) == started


def is_init_of(pid: int, started: int, container_id: str) -> bool:
    """Whether `pid` is still the container's init: the same process by start time, or,
    for a start recorded before start times were, a process sitting in its cgroup."""
    if pid <= 0:
        return False
    if started:
        return is_same(pid, started)
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            return f"/lamina/{container_id}" in f.read()
    except OSError:
        return False


def stamp(pid: int | None = None) -> str:
    """`<pid>.<starttime>` of a process (this one by default), for files it owns."""
    pid = os.getpid() if pid is None else pid
    return f"{pid}.{start_time(pid) or 0}"


def stamp_alive(text: str) -> bool:
    """Whether the process a `stamp` names is still running (False for a malformed one)."""
    pid, _, started = text.strip().partition(".")
    if not pid.isdigit() or not started.isdigit():
        return False
    return is_same(int(pid), int(started))


def wait_gone(text: str, timeout: float) -> bool:
    """Wait up to `timeout` seconds for the process a `stamp` names to end; True if it is
    gone (or never was)."""
    pid, _, started = text.strip().partition(".")
    if not pid.isdigit() or not started.isdigit():
        return True
    try:
        fd = os.pidfd_open(int(pid))
    except OSError:
        return True
    try:
        if start_time(pid) != int(started):  # checked after pidfd_open: the fd is this one
            return True
        import select

        return bool(select.select([fd], [], [], max(timeout, 0))[0])  # readable: it ended
    finally:
        os.close(fd)


def take_environment(env: Mapping[str, str]) -> None:
    """Make this process's environment (os.environ and the C one its children inherit)
    exactly `env`, unsetting and setting only the entries that differ. A served command's
    child takes its client's environment and a spare monitor its start's, mostly the one
    they have: clear() and update() unset and set every entry again (35 entries: 0.17 ms
    of CPU, against 0.04)."""
    current = os.environ
    for key in [key for key in current if key not in env]:
        del current[key]
    for key, value in env.items():
        if current.get(key) != value:
            current[key] = value


def close_all_but(keep: set[int]) -> None:
    """Close every descriptor of this process but `keep`: what a process lamina starts
    (a monitor, the DNS resolver) does first, so that none of its caller's files stays
    open in it."""
    import contextlib

    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)
