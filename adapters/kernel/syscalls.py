"""The seam between the kernel adapters and the kernel: one object they make their calls on.

Why: rootfs.build and its kin are a sequence of mounts whose order and flags are the
isolation (propagation made private before anything else, masks after /proc, the root
read-only after the last mount, pivot last). The real-kernel tests prove the effects, as
root; through this seam the same code also runs against `recording.Recording`, a double
that writes each call down and answers the filesystem questions from a description, so
order and flags are unit-tested without root (as youki's Syscall trait and its test
double).

How it is passed: each function that makes these calls takes `syscall: Syscalls = LINUX`,
a keyword with the real object as its default. No module state is swapped for a test: a
long-lived fork server forks many inits, and a double left in a global by a test (or a
thread) would be the one thing that must never reach them. `Linux`'s members are the os
and libc functions themselves (staticmethod aliases), so the real path pays one attribute
lookup per call and imports nothing new.
"""

from __future__ import annotations

import fcntl
import glob
import os
import posixpath
import socket
import struct
from typing import Protocol

from adapters.kernel import inroot, libc  # inroot: a remapped init can't import (0700 /root)


class Syscalls(Protocol):
    """What the kernel adapters ask of the kernel (the os module's signatures, where it has
    the call). A double must implement every member: tests/unit/test_rootfs_seam.py checks
    that `Linux` and `Recording` both do."""

    # mounts and the root
    def mount(self, source: str | None, target: str, fstype: str | None, flags: int = 0,
              data: str | None = None) -> None: ...
    def umount(self, target: str, flags: int = 0) -> None: ...
    def pivot_root(self, new_root: str, put_old: str) -> None: ...
    def clone_tree(self, source: str) -> int: ...
    def attach(self, tree_fd: int, target: str | int) -> None: ...
    def mount_target(self, root: str, path: str, is_dir: bool) -> int: ...
    def chdir(self, path: str) -> None: ...
    def fchdir(self, fd: int) -> None: ...
    # namespaces
    def unshare(self, flags: int) -> None: ...
    def setns(self, fd: int, nstype: int = 0) -> None: ...
    def sethostname(self, name: str) -> None: ...
    def loopback_up(self) -> None: ...
    # files and device nodes
    def makedirs(self, name: str, mode: int = 0o777, exist_ok: bool = False) -> None: ...
    def mkdir(self, path: str, mode: int = 0o777, *, dir_fd: int | None = None) -> None: ...
    def mknod(self, path: str, mode: int = 0o600, device: int = 0, *,
              dir_fd: int | None = None) -> None: ...
    def symlink(self, src: str, dst: str) -> None: ...
    def chmod(self, path: str, mode: int, *, dir_fd: int | None = None) -> None: ...
    def chown(self, path: str, uid: int, gid: int, *, dir_fd: int | None = None,
              follow_symlinks: bool = True) -> None: ...
    def open(self, path: str, flags: int, mode: int = 0o777, *,
             dir_fd: int | None = None) -> int: ...
    def close(self, fd: int) -> None: ...
    def dup(self, fd: int) -> int: ...
    def unlink(self, path: str) -> None: ...
    def touch(self, path: str) -> None: ...
    def umask(self, mask: int) -> int: ...
    def stat(self, path: str, *, dir_fd: int | None = None,
             follow_symlinks: bool = True) -> os.stat_result: ...
    # questions
    def exists(self, path: str) -> bool: ...
    def isdir(self, path: str) -> bool: ...
    def islink(self, path: str) -> bool: ...
    def realpath(self, path: str) -> str: ...
    def glob(self, pattern: str) -> list[str]: ...


def _realpath(path: str) -> str:
    return os.path.realpath(path)


def _touch(path: str) -> None:
    """An empty file at path unless one is there (a bind target): open(path, "a")."""
    open(path, "a").close()


def _clone_tree(source: str) -> int:
    from adapters.kernel.idmap import cloned_tree  # only remapped containers need it

    return cloned_tree(source)


def _attach(tree_fd: int, target: str | int) -> None:
    from adapters.kernel.idmap import attach

    attach(tree_fd, target)


def _mount_target(root: str, path: str, is_dir: bool) -> int:
    """An O_PATH fd of `path` resolved inside `root` (openat2 RESOLVE_IN_ROOT: an image's
    symlink can't send a mount outside the container), its missing directories made there
    and, for a file's bind (not is_dir), an empty file as its target. Mount on
    /proc/self/fd/<fd>: the very inode found, with no path left to race."""
    root_fd = inroot.open_root(root)
    try:
        if is_dir:
            fd = inroot.mkdirs_in_root(root_fd, path)
            os.close(fd)
        else:
            parent = inroot.mkdirs_in_root(root_fd, posixpath.dirname(path))
            try:
                os.close(os.open(posixpath.basename(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL
                                 | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=parent))
            except FileExistsError:
                pass  # there already (a file, or a symlink followed in root below)
            finally:
                os.close(parent)
        return inroot.open_in_root(root_fd, path, os.O_PATH)
    finally:
        os.close(root_fd)


SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def loopback_up() -> None:
    """Bring `lo` up in a fresh network namespace (it starts down)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifr = struct.pack("16sH14s", b"lo", 0, b"")
        flags = struct.unpack("16sH14s", fcntl.ioctl(s, SIOCGIFFLAGS, ifr))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14s", b"lo", flags | IFF_UP, b""))


class Linux:
    """The real kernel: every member is the os/libc call itself."""

    mount = staticmethod(libc.mount)
    umount = staticmethod(libc.umount)
    pivot_root = staticmethod(libc.pivot_root)
    clone_tree = staticmethod(_clone_tree)
    attach = staticmethod(_attach)
    mount_target = staticmethod(_mount_target)
    chdir = staticmethod(os.chdir)
    fchdir = staticmethod(os.fchdir)
    unshare = staticmethod(libc.unshare)
    setns = staticmethod(libc.setns)
    sethostname = staticmethod(socket.sethostname)
    loopback_up = staticmethod(loopback_up)
    makedirs = staticmethod(os.makedirs)
    mkdir = staticmethod(os.mkdir)
    mknod = staticmethod(os.mknod)
    symlink = staticmethod(os.symlink)
    chmod = staticmethod(os.chmod)
    chown = staticmethod(os.chown)
    open = staticmethod(os.open)
    close = staticmethod(os.close)
    dup = staticmethod(os.dup)
    unlink = staticmethod(os.unlink)
    touch = staticmethod(_touch)
    umask = staticmethod(os.umask)
    stat = staticmethod(os.stat)
    exists = staticmethod(os.path.exists)
    isdir = staticmethod(os.path.isdir)
    islink = staticmethod(os.path.islink)
    realpath = staticmethod(_realpath)
    glob = staticmethod(glob.glob)


LINUX: Syscalls = Linux()
