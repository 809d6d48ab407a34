"""Whether the fork server's child may run a client's command in the client's place.

Why: a command run in-process inherits its caller's namespaces, root directory, credentials
and resource limits, and what it does depends on them (the containers it starts inherit the
limits; its paths and its network are the caller's mount and network namespaces'). The
fork server's child inherits the server's instead. Those are the same when the same user
started the server in the same place, which is the common case (the first command of a
root starts it); when they differ (a client under `nsenter`, a chroot, dropped
capabilities, `ulimit -n`), the child answers "run it yourself" and the client runs the
command in-process: auto-starting a server must never change what a command does.

What is compared: the seven namespaces, the root directory, the credential lines of
/proc/PID/status (uids, gids, groups, capability sets, no_new_privs, seccomp). The resource
limits are adopted rather than compared: the child sets the client's limits on itself,
and only one it can't set (a hard limit above its own: raising needs CAP_SYS_RESOURCE) sends
the command back. About 0.1 ms per command.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import socket

NAMESPACES = ("mnt", "net", "pid", "ipc", "uts", "user", "cgroup")
CREDENTIALS = frozenset({"Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd",
                         "CapAmb", "NoNewPrivs", "Seccomp"})
LIMITS = tuple(getattr(resource, name) for name in dir(resource) if name.startswith("RLIMIT_"))


@dataclass(frozen=True)
class View:
    """What a process sees of the host, as far as a command run in it can tell."""

    namespaces: tuple[str, ...]
    root: tuple[int, int]
    credentials: tuple[str, ...]


def view_of(pid: int | str) -> View | None:
    """The view of process `pid` ("self" for ours); None when it can't be read (gone, or
    not in our PID namespace: SO_PEERCRED then says 0)."""
    base = f"/proc/{pid}"
    try:
        namespaces = tuple(os.readlink(f"{base}/ns/{name}") for name in NAMESPACES)
        st = os.stat(f"{base}/root")
        with open(f"{base}/status") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    credentials = tuple(line for line in lines if line.partition(":")[0] in CREDENTIALS)
    return View(namespaces, (st.st_dev, st.st_ino), credentials)


def peer_of(conn: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process at the other end of a unix socket, from the kernel."""
    import socket
    import struct

    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", creds)
    return pid, uid


def adopt_limits(pid: int) -> bool:
    """Give this process the resource limits of process `pid`; False when one can't be."""
    for which in LIMITS:
        try:
            theirs = resource.prlimit(pid, which)
            if theirs != resource.getrlimit(which):
                resource.setrlimit(which, theirs)
        except (OSError, ValueError):
            return False
    return True


def runs_like(own: View | None, pid: int) -> bool:
    """True when this process, the server's child, may run the command of client `pid`
    in its place (and has taken the client's resource limits to do so)."""
    if pid <= 0 or own is None or view_of(pid) != own:
        return False
    return adopt_limits(pid)
