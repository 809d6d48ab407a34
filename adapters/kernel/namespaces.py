"""Namespaces: making new ones for a container's init, joining them for exec.

A new PID namespace applies to the caller's children, not the caller: the monitor unshares
CLONE_NEWPID, then forks init (PID 1 there). Init unshares the rest itself.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct

from adapters.kernel import libc

# The order setns() must follow for exec: user first (unused here), mnt last so that /proc
# paths of the other namespaces are still the host's while we open them.
JOIN_ORDER = ("ipc", "uts", "net", "pid", "cgroup", "mnt")
_FLAGS = {"ipc": libc.CLONE_NEWIPC, "uts": libc.CLONE_NEWUTS, "net": libc.CLONE_NEWNET,
          "pid": libc.CLONE_NEWPID, "cgroup": libc.CLONE_NEWCGROUP, "mnt": libc.CLONE_NEWNS}

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def container_flags(network: str) -> int:
    """Namespaces init creates for itself: mount, UTS, IPC, and net unless --network host."""
    flags = libc.CLONE_NEWNS | libc.CLONE_NEWUTS | libc.CLONE_NEWIPC
    if network != "host":
        flags |= libc.CLONE_NEWNET
    return flags


def open_namespaces(pid: int) -> list[tuple[int, int]]:
    """Open the namespaces of `pid` that differ from ours, as (fd, nstype), in join order."""
    out = []
    for name in JOIN_ORDER:
        theirs = f"/proc/{pid}/ns/{name}"
        try:
            if os.stat(theirs).st_ino == os.stat(f"/proc/self/ns/{name}").st_ino:
                continue
            out.append((os.open(theirs, os.O_RDONLY | os.O_CLOEXEC), _FLAGS[name]))
        except FileNotFoundError:
            continue
    return out


def join(namespaces: list[tuple[int, int]]) -> None:
    """setns() into each; a joined PID namespace takes effect for our next child."""
    for fd, nstype in namespaces:
        libc.setns(fd, nstype)
        os.close(fd)


def loopback_up() -> None:
    """Bring `lo` up in a fresh network namespace (it starts down)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifr = struct.pack("16sH14s", b"lo", 0, b"")
        flags = struct.unpack("16sH14s", fcntl.ioctl(s, SIOCGIFFLAGS, ifr))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14s", b"lo", flags | IFF_UP, b""))
