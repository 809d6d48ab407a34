"""Paths inside a container's root, resolved by the kernel: openat2(2) with RESOLVE_IN_ROOT.

Why: `lamina cp`, the archive endpoints and mount targets name paths *inside* a container,
and the container owns every component of them. A symlink it made (`/data -> /`,
`/x -> ../../../etc`), a `..` chain, or a directory it swaps for a symlink between our check
and our use (CVE-2018-15664) must never lead a host-side read or write out of its root.
Resolving in Python (readlink, join, check, open) leaves a window between check and use;
openat2 with RESOLVE_IN_ROOT makes the kernel resolve the whole path as if `root_fd` were
`/`, in one call: absolute symlinks restart at `root_fd`, `..` stops there, and the lookup
is retried or refused (EAGAIN, retried here) when a concurrent rename could have let a `..`
escape. RESOLVE_NO_MAGICLINKS also refuses /proc's magic links (`/proc/self/root`,
`/proc/PID/fd/N`), which jump without regard to any root.

Fail closed: on a kernel without openat2 (before 5.6: ENOSYS) or an architecture whose
syscall number is not known here, every call raises `InRootUnsupported`. There is no
fallback to joining paths: that fallback is exactly the bug this module exists to prevent.

Everything a caller gets back is a file descriptor (O_CLOEXEC); a caller that needs to act
on the last component without following it opens the parent in root and uses the `*at`
calls with O_NOFOLLOW / follow_symlinks=False relative to that fd.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os

from adapters.kernel import libc

# linux/openat2.h
RESOLVE_NO_XDEV = 0x01  # refuse to cross a mount point (bind mounts included)
RESOLVE_NO_MAGICLINKS = 0x02  # refuse /proc/*/fd/*, /proc/*/root and the like
RESOLVE_NO_SYMLINKS = 0x04  # refuse every symlink
RESOLVE_BENEATH = 0x08  # refuse (EXDEV) anything that would leave dirfd
RESOLVE_IN_ROOT = 0x10  # treat dirfd as "/": absolute links and ".." stay below it

IN_ROOT = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS
"""What every lookup here uses."""

MAXSYMLINKS = 40  # the kernel's limit, kept by the name-only walk below too

# The generic syscall table numbers openat2 437 on every architecture that has it from the
# start (x86_64, aarch64, arm, i386, riscv, powerpc, s390x); the rest offset it.
_NR_BY_MACHINE = {"x86_64": 437, "amd64": 437, "aarch64": 437, "arm64": 437, "i386": 437,
                  "i686": 437, "armv7l": 437, "armv6l": 437, "riscv64": 437, "ppc64le": 437,
                  "ppc64": 437, "s390x": 437}
_NR_OPENAT2: int | None = _NR_BY_MACHINE.get(os.uname().machine)
_MAX_STEPS = 1 << 16  # components looked at by one walk (links expand a path)
_RETRIES = 64  # EAGAIN (a rename raced a ".." under IN_ROOT) and EINTR are retried


class InRootUnsupported(OSError):
    """openat2 is missing (ENOSYS) or its number is unknown here: nothing is resolved."""


class OpenHow(ctypes.Structure):
    """struct open_how (linux/openat2.h): every field a u64, 24 bytes (OPEN_HOW_SIZE_VER0)."""

    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


def _unsupported(why: str) -> InRootUnsupported:
    return InRootUnsupported(errno.ENOSYS, f"openat2 is not available ({why}): lamina refuses "
                             "to resolve paths inside a container without RESOLVE_IN_ROOT "
                             "(Linux 5.6 or later)")


def openat2(dirfd: int, path: str, flags: int, mode: int = 0, resolve: int = 0) -> int:
    """openat2(2): an fd, or OSError (its errno's subclass) naming `path`.

    `mode` is passed only with O_CREAT or O_TMPFILE (the kernel refuses it otherwise).
    EINTR and EAGAIN are retried; ENOSYS raises InRootUnsupported.
    """
    if _NR_OPENAT2 is None:
        raise _unsupported(f"no syscall number known for {os.uname().machine!r}")
    if not flags & (os.O_CREAT | getattr(os, "O_TMPFILE", 0)):
        mode = 0
    how = OpenHow(flags, mode, resolve)
    name = ctypes.c_char_p(os.fsencode(path))
    for _ in range(_RETRIES):
        fd = libc.syscall(_NR_OPENAT2, dirfd, name, ctypes.addressof(how), ctypes.sizeof(how))
        if fd >= 0:
            return int(fd)
        err = ctypes.get_errno()
        if err in (errno.EINTR, errno.EAGAIN):
            continue
        if err == errno.ENOSYS:
            raise _unsupported("ENOSYS from the kernel")
        raise OSError(err, os.strerror(err), path)
    raise OSError(errno.EAGAIN, "lookup kept racing with renames; giving up", path)


def open_root(path: str) -> int:
    """An O_PATH fd of a directory to use as a root below (a container's merged dir, a
    volume, a plain directory). `path` itself is the host's, trusted: it is opened as is."""
    return os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


def open_in_root(root_fd: int, path: str, flags: int, mode: int = 0) -> int:
    """Open `path` (absolute or relative: both start at root_fd) with every symlink and `..`
    resolved inside root_fd, never out of it; magic links refused. Always O_CLOEXEC.

    The last component is followed too unless `flags` has O_NOFOLLOW (then a symlink there
    opens only with O_PATH, else ELOOP). An empty path means the root itself.
    """
    return openat2(root_fd, path or ".", flags | os.O_CLOEXEC, mode, IN_ROOT)


def reopen(fd: int, flags: int) -> int:
    """A new fd, opened with `flags`, of the very inode an O_PATH fd refers to.

    Why: an object found by name may be swapped between a stat and an open. Opening it
    O_PATH|O_NOFOLLOW first touches nothing (no device driver's open runs, no FIFO blocks);
    after fstat says what it is, /proc/self/fd/N (a magic link this process follows itself)
    reopens that inode and no other, so there is no name left to race.
    """
    try:
        return os.open(f"/proc/self/fd/{fd}", flags | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        if os.path.isdir("/proc/self/fd"):
            raise
        why = "/proc is not mounted: an O_PATH fd cannot be reopened (nothing is opened by name)"
        raise InRootUnsupported(errno.ENOSYS, why) from None


def _components(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def _join(parts: list[str]) -> str:
    return "/" + "/".join(parts)


def _walk(root_fd: int, path: str, follow_last: bool, mkdir_mode: int | None) -> list[str]:
    """The components of `path` after symlinks are followed inside root (docker's
    FollowSymlinkInScope): what exists is resolved, what doesn't is kept as named (`..`
    lexically). With `mkdir_mode`, missing directories are created instead (each in its
    parent, which is opened in root) and the walk goes on through them.

    Each step opens the parent with open_in_root, so a race can only change which path
    inside root comes out, never lead outside it.
    """
    todo = _components(path)[::-1]
    done: list[str] = []
    links = steps = 0
    while todo:
        part = todo.pop()
        if part == "..":
            if done:
                done.pop()
            continue
        if not todo and not follow_last:
            done.append(part)
            break
        steps += 1
        if steps > _MAX_STEPS:  # a directory swapped back and forth forever
            raise OSError(errno.ELOOP, "path keeps changing while being resolved", path)
        try:
            parent = open_in_root(root_fd, _join(done), os.O_PATH | os.O_DIRECTORY)
        except FileNotFoundError:
            if mkdir_mode is not None:
                raise
            done.append(part)  # below something missing: nothing more to resolve
            continue
        try:
            target = os.readlink(part, dir_fd=parent)
        except OSError as exc:
            if exc.errno == errno.EINVAL:  # there, and not a symlink
                done.append(part)
                continue
            if exc.errno != errno.ENOENT:
                raise OSError(exc.errno, os.strerror(exc.errno or 0),
                              _join([*done, part])) from None
            if mkdir_mode is None:
                done.append(part)
                continue
            with contextlib.suppress(FileExistsError):  # made meanwhile: look again
                os.mkdir(part, mkdir_mode, dir_fd=parent)
            todo.append(part)
            continue
        finally:
            os.close(parent)
        links += 1
        if links > MAXSYMLINKS:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
        if target.startswith("/"):
            done = []
        todo.extend(_components(target)[::-1])
    return done


def scoped_path(root_fd: int, path: str, follow_last: bool = True) -> str:
    """The absolute container path `path` names once its symlinks are followed inside root,
    the last one only with follow_last; missing components are kept as named.

    A name, not a capability: it may be stale a moment later. Use it for messages and for
    docker's `linkTarget`, and open what it names with open_in_root again.
    """
    return _join(_walk(root_fd, path, follow_last, None))


def mkdirs_in_root(root_fd: int, path: str, mode: int = 0o755) -> int:
    """The directory at `path` inside root, its missing components created (mode as mkdir
    takes it: the umask applies), returned as an O_RDONLY|O_DIRECTORY fd.

    Each component is created in its parent opened in root, and symlinks on the way are
    followed inside root (a dangling one gets its target created, as `docker cp` and
    `-v` do), so nothing is ever created outside root. ENOTDIR when a non-directory is in
    the way.
    """
    done = _walk(root_fd, path, True, mode)
    return open_in_root(root_fd, _join(done), os.O_RDONLY | os.O_DIRECTORY)


_REASONS = {
    errno.ELOOP: "too many levels of symbolic links, or a /proc magic link (refused)",
    errno.EXDEV: "resolution would leave the root or cross a mount (refused)",
    errno.ENOSYS: "openat2 is not available (Linux 5.6 or later is needed)",
}


def describe(exc: OSError, path: str) -> str:
    """One line for an OSError met while resolving `path` in a root: `path: reason`."""
    code = exc.errno or 0
    if isinstance(exc, InRootUnsupported):
        reason = exc.strerror or str(exc)
    else:
        reason = _REASONS.get(code) or (os.strerror(code) if code else str(exc))
    return f"{path}: {reason}".replace("\n", " ")
