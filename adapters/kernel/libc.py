"""libc through ctypes: the handful of Linux syscalls Python 3.11's os module lacks.

Why a module of its own: mounts, namespaces and pivot_root all need the same errno-checked
calls, and keeping them in one place means one audited spot talks to libc directly.
"""

from __future__ import annotations

import ctypes
import os


def _load_libc() -> ctypes.CDLL:
    """glibc by its soname; find_library() would run ldconfig (~30 ms) on every start."""
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        from ctypes import util

        return ctypes.CDLL(util.find_library("c"), use_errno=True)


_libc = _load_libc()

# mount(2) flags
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000

# umount2(2) flags
MNT_DETACH = 0x2

# clone/unshare flags
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000


def check(ret: int, what: str) -> int:
    """ret, or OSError(errno) naming `what` when the call failed (returned < 0)."""
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def _b(value: str | bytes | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return os.fsencode(value)


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    """mount(2); raises OSError naming the target on failure."""
    check(_libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data)),
           f"mount {target}")


def umount(target: str, flags: int = 0) -> None:
    """umount2(2)."""
    check(_libc.umount2(_b(target), ctypes.c_int(flags)), f"umount {target}")


def unshare(flags: int) -> None:
    """unshare(2)."""
    check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    """setns(2) on an open /proc/PID/ns/* file descriptor."""
    check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), "setns")


def syscall(number: int, *args: int | ctypes.c_char_p | None) -> int:
    """syscall(2) for calls glibc has no wrapper for; every integer goes as a long."""
    return _libc.syscall(ctypes.c_long(number),
                         *(ctypes.c_long(a) if isinstance(a, int) else a for a in args))


SYS_RT_SIGACTION = 13  # x86_64


def default_signal(sig: int) -> None:
    """rt_sigaction(sig, SIG_DFL) as the kernel takes it: glibc's sigaction (and so
    Python's signal.signal) refuses 32 and 33, which glibc keeps for its threads, yet a
    process can inherit either as ignored."""
    act = (ctypes.c_ulong * 4)()  # handler SIG_DFL, flags, restorer, mask: all zero
    check(syscall(SYS_RT_SIGACTION, sig, ctypes.addressof(act), 0, 8), f"rt_sigaction({sig})")


def pivot_root(new_root: str, put_old: str) -> None:
    """pivot_root(2): there is no libc wrapper, so go through syscall(2)."""
    SYS_pivot_root = 155  # x86_64
    check(_libc.syscall(ctypes.c_long(SYS_pivot_root), _b(new_root), _b(put_old)),
           f"pivot_root {new_root}")


def make_mounts_private(path: str = "/") -> None:
    """Stop mount propagation below path (MS_REC|MS_PRIVATE).

    Must run first in every new mount namespace: without it, an unmount inside the
    namespace can propagate to the host's own filesystems.
    """
    mount(None, path, None, MS_REC | MS_PRIVATE)


# --- prctl(2) and capget/capset(2), used by security.py -------------------------------------

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """prctl(2); every argument is passed as unsigned long, as the kernel reads them."""
    args = (ctypes.c_ulong(a) for a in (arg2, arg3, arg4, arg5))
    return check(_libc.prctl(ctypes.c_int(option), *args), f"prctl({option})")


def capget() -> tuple[int, int, int]:
    """This thread's (effective, permitted, inheritable) capability sets as 64-bit masks."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    check(_libc.capget(ctypes.byref(header), data), "capget")
    low, high = data[0], data[1]
    return (low.effective | high.effective << 32,
            low.permitted | high.permitted << 32,
            low.inheritable | high.inheritable << 32)


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """capset(2) on this thread with 64-bit masks (version 3 splits them in two 32-bit words)."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in range(2):
        shift = 32 * i
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    check(_libc.capset(ctypes.byref(header), data), "capset")
