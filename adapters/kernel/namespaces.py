"""Namespaces: making new ones for a container's init, joining them for exec.

A new PID namespace applies to the caller's children, not the caller: the monitor unshares
CLONE_NEWPID, then forks init (PID 1 there); on a --userns-remap root it clones init into a
new user namespace and a PID namespace owned by it (adapters/kernel/userns.py). Init
unshares the rest itself (owned, then, by its user namespace).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from adapters.kernel import libc
from adapters.kernel.syscalls import LINUX, Syscalls
from adapters.kernel.syscalls import loopback_up as loopback_up  # its home before the seam

if TYPE_CHECKING:
    from core.security import Security

# What exec may join, by their names under /proc/PID/ns. With a pidfd, setns() takes them all
# in one call and in the kernel's own order (user first), all or nothing.
EXEC_NAMESPACES = {"user": libc.CLONE_NEWUSER, "mnt": libc.CLONE_NEWNS,
                   "uts": libc.CLONE_NEWUTS, "ipc": libc.CLONE_NEWIPC,
                   "net": libc.CLONE_NEWNET, "pid": libc.CLONE_NEWPID,
                   "cgroup": libc.CLONE_NEWCGROUP}
# Where a joined namespace shows for the joiner itself: a PID namespace only for its children.
_JOINED_AS = {"pid": "pid_for_children"}


def joins_network(network: str) -> bool:
    """A network namespace made and wired before init (a bridge network's veth in it, or
    another container's, `container:ID`): init enters it before anything else, so the
    container's first instruction already has its address and routes. `none` is a
    fresh namespace init unshares itself, `host` the host's."""
    return network not in ("none", "host")


def container_flags(network: str, security: Security) -> int:
    """Namespaces init creates for itself once it sits in its cgroup: mount and cgroup
    always (the cgroup namespace's root is then the container's own cgroup), UTS, IPC and
    net unless shared with the host (--uts/--ipc/--network host), or, for net, entered
    already (joins_network)."""
    flags = libc.CLONE_NEWNS | libc.CLONE_NEWCGROUP
    if security.uts != "host":
        flags |= libc.CLONE_NEWUTS
    if security.ipc != "host":
        flags |= libc.CLONE_NEWIPC
    if network == "none":
        flags |= libc.CLONE_NEWNET
    return flags


def enter(network: str, security: Security, hostname: str, *,
          syscall: Syscalls = LINUX) -> None:
    """Init's own namespaces, in order: unshare `container_flags`, then, in the new UTS
    namespace, its hostname (not with --uts host: that would rename the host), and
    loopback up in a new network namespace (not with --network host: the host's; a joined
    one has it up already)."""
    syscall.unshare(container_flags(network, security))
    if security.uts != "host":
        syscall.sethostname(hostname)
    if network == "none":
        syscall.loopback_up()


class NotJoinable(Exception):
    """The container's init is gone, or is not in the namespaces it must be in."""


def owned_flags(network: str, security: Security, remapped: bool = False) -> int:
    """Every namespace a container's init owns by its options: those init unshares (and a
    network namespace init entered, wired for it), plus
    the PID namespace the monitor makes unless --pid host, plus the user namespace a
    --userns-remap root's monitor makes (an init sharing ours then is not that container's:
    joining it would run the exec as host root)."""
    flags = container_flags(network, security)
    if network != "host":
        flags |= libc.CLONE_NEWNET
    if security.pid != "host":
        flags |= libc.CLONE_NEWPID
    if remapped:
        flags |= libc.CLONE_NEWUSER
    return flags


def inodes(ns_dir: int, *, syscall: Syscalls = LINUX) -> dict[str, int]:
    """The namespaces (name -> inode) of the process whose /proc/PID/ns `ns_dir` is open;
    OSError (ENOENT) once that process has exited."""
    return {name: syscall.stat(name, dir_fd=ns_dir).st_ino for name in EXEC_NAMESPACES}


def open_ns_dir(pid: int | str, *, syscall: Syscalls = LINUX) -> int:
    return syscall.open(f"/proc/{pid}/ns", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


def differing(theirs: dict[str, int], ours: dict[str, int]) -> int:
    """The setns flags of the namespaces in `theirs` that are not ours."""
    flags = 0
    for name, flag in EXEC_NAMESPACES.items():
        if theirs[name] != ours[name]:
            flags |= flag
    return flags


def join(pidfd: int, flags: int, required: int, *, syscall: Syscalls = LINUX) -> None:
    """setns() into the namespaces `flags` of the process `pidfd` holds, in one call (the
    kernel does all or none, and fails with ESRCH once that process has exited), then check
    that we really left ours for each of them. `required` (those the container owns by its
    options) must all be among `flags`: an init sharing one of ours is not the container's.
    A joined PID namespace applies to our next child, so fork after this. Raises
    NotJoinable."""
    if required & ~flags:
        raise NotJoinable(f"its init shares namespaces it must own ({required & ~flags:#x})")
    mine = open_ns_dir("self", syscall=syscall)
    try:
        before = _joined(syscall, mine)
        if flags:
            syscall.setns(pidfd, flags)
        after = _joined(syscall, mine)
    except OSError as err:
        raise NotJoinable(f"setns: {err}") from err
    finally:
        syscall.close(mine)
    still = [name for name, flag in EXEC_NAMESPACES.items()
             if flag & flags and after[name] == before[name]]
    if still:
        raise NotJoinable(f"still in our {', '.join(still)} namespace after setns")


def _joined(syscall: Syscalls, ns_dir: int) -> dict[str, int]:
    return {name: syscall.stat(_JOINED_AS.get(name, name), dir_fd=ns_dir).st_ino
            for name in EXEC_NAMESPACES}
