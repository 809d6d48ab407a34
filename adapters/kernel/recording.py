"""A recording double of the kernel seam (syscalls.Syscalls), for tests that need no root.

It writes down every call that would change something (`calls`: name, arguments, flags
decoded to their names) and answers the questions the adapters ask (exists, isdir, islink,
glob, stat, realpath) from a small simulated filesystem, which the calls themselves change
as the kernel would: a fresh mount shows what `filesystems` says that filesystem type holds
(so masks applied before /proc is mounted would find nothing to mask), a node or file made
is there afterwards, a mount on a missing target fails with ENOENT, O_NOFOLLOW on a
symlink with ELOOP, O_EXCL on an existing file with EEXIST, an unknown fd with EBADF.
`fail(name, path, errno)` makes one call fail, to test what happens after a refusal.

Nothing here touches the real kernel or filesystem: it is not a subclass of the real
`Linux`, so a member it lacks is an AttributeError, never a real call. Imported by tests
only (not on the container's start path).
"""

from __future__ import annotations

import errno
import fnmatch
import os
import posixpath
import stat
from collections.abc import Mapping
from dataclasses import dataclass

from adapters.kernel import libc

DIR, FILE, CHR, BLK = "dir", "file", "chr", "blk"
_KIND_BITS = {DIR: stat.S_IFDIR, FILE: stat.S_IFREG, CHR: stat.S_IFCHR, BLK: stat.S_IFBLK}
_LINK_BITS = stat.S_IFLNK

_MS = sorted(((v, k) for k, v in vars(libc).items() if k.startswith("MS_")))
_MNT = sorted(((v, k) for k, v in vars(libc).items() if k.startswith("MNT_")))
_CLONE = sorted(((v, k) for k, v in vars(libc).items() if k.startswith("CLONE_")))
_O = sorted((getattr(os, k), k) for k in ("O_WRONLY", "O_RDWR", "O_CREAT", "O_EXCL",
                                           "O_DIRECTORY", "O_NOFOLLOW", "O_CLOEXEC", "O_PATH"))
# Where setns/unshare of each namespace shows under /proc/self/ns for the caller itself.
_NS_FLAGS = {"user": libc.CLONE_NEWUSER, "mnt": libc.CLONE_NEWNS, "uts": libc.CLONE_NEWUTS,
             "ipc": libc.CLONE_NEWIPC, "net": libc.CLONE_NEWNET,
             "pid_for_children": libc.CLONE_NEWPID, "cgroup": libc.CLONE_NEWCGROUP}
_PROPAGATION = libc.MS_PRIVATE | libc.MS_SLAVE | 1 << 20 | 1 << 17  # MS_SHARED, MS_UNBINDABLE


def flag_names(value: int, table: list[tuple[int, str]]) -> tuple[str, ...]:
    """The names of the bits set in value, lowest bit first; a bit with no name as hex."""
    names = []
    for bit, name in table:
        if value & bit:
            names.append(name)
            value &= ~bit
    return (*names, hex(value)) if value else tuple(names)


def mount_flags(value: int) -> tuple[str, ...]:
    return flag_names(value, _MS)


def clone_flags(value: int) -> tuple[str, ...]:
    return flag_names(value, _CLONE)


@dataclass(frozen=True)
class Call:
    """One call as made: `args` in the call's order (paths as given, except that a path
    relative to a dir_fd is shown joined to that fd's path; modes in octal), `flags` the
    names of its flag bits."""

    name: str
    args: tuple[object, ...]
    flags: tuple[str, ...] = ()

    @property
    def target(self) -> object:
        """The path the call acts on: the mount point of a mount, else its first path."""
        return self.args[1] if self.name in ("mount", "attach", "symlink") else self.args[0]

    def __str__(self) -> str:
        words = [self.name, *("-" if a is None else str(a) for a in self.args)]
        return " ".join(words + (["|".join(self.flags)] if self.flags else []))


def _error(code: int, what: str) -> OSError:
    return OSError(code, f"{what}: {os.strerror(code)}")


class Recording:
    """The seam's double. `tree` is what is there before the first call, path -> kind
    ("dir", "file", "chr", "blk", or "-> target" for a symlink; parents are directories);
    `filesystems` maps a filesystem type to what a fresh mount of it holds (relative path ->
    kind); `fds` names the descriptors the caller already holds (a pidfd, a detached tree);
    `peers` gives, for a pidfd, the namespaces (name -> inode) of its process, for setns."""

    def __init__(self, tree: Mapping[str, str] | None = None,
                 filesystems: Mapping[str, Mapping[str, str]] | None = None,
                 fds: Mapping[int, str] | None = None, cwd: str = "/",
                 peers: Mapping[int, Mapping[str, int]] | None = None) -> None:
        self.calls: list[Call] = []
        self.nodes: dict[str, str] = {"/": DIR}
        self.modes: dict[str, int] = {}
        self.filesystems = dict(filesystems or {})
        self.fds: dict[int, str] = dict(fds or {})
        self.peers = {fd: dict(ns) for fd, ns in (peers or {}).items()}
        self.cwd = cwd
        self.ns = {name: 4026531835 + i for i, name in enumerate(_NS_FLAGS)}
        self.ns["pid"] = self.ns["pid_for_children"]
        self._next_fd = 100
        self._next_ns = 4026532000
        self._umask = 0o022
        self._failing: dict[tuple[str, str], int] = {}
        for path, kind in (tree or {}).items():
            self._add(self._abs(path), kind)

    # --- what the tests ask of it ----------------------------------------------------------

    def fail(self, name: str, path: str, code: int) -> None:
        """Make the next `name` call on `path` fail with errno `code` (it is still recorded)."""
        self._failing[(name, self._abs(path))] = code

    def trace(self, *names: str) -> list[str]:
        """The calls as text, only those named when names are given."""
        return [str(c) for c in self.calls if not names or c.name in names]

    def kind(self, path: str) -> str | None:
        """What is at path now ("dir", "file", ..., "-> target"), None when nothing is."""
        return self.nodes.get(self._abs(path))

    def open_fds(self) -> dict[int, str]:
        return dict(self.fds)

    # --- the simulated filesystem ----------------------------------------------------------

    def _abs(self, path: str, dir_fd: int | None = None) -> str:
        magic = path.removeprefix("/proc/self/fd/")
        if magic != path and magic.isdigit():  # a magic link: the fd's own inode
            return self._fd(int(magic))
        base = self.cwd if dir_fd is None else self._fd(dir_fd)
        return posixpath.normpath(posixpath.join(base, path))

    def _fd(self, fd: int) -> str:
        if fd not in self.fds:
            raise _error(errno.EBADF, f"fd {fd}")
        return self.fds[fd]

    def _add(self, path: str, kind: str) -> None:
        parent = posixpath.dirname(path)
        while parent not in self.nodes:
            self.nodes[parent] = DIR
            parent = posixpath.dirname(parent)
        self.nodes[path] = kind

    def _resolve(self, path: str, follow: bool = True) -> str:
        """path with every symlink in it replaced by its target (the last one only when
        `follow`), as the kernel walks a path."""
        for _ in range(40):
            parts = path.strip("/").split("/") if path != "/" else []
            for i in range(len(parts)):
                prefix = "/" + "/".join(parts[:i + 1])
                link = self.nodes.get(prefix, "")
                if link.startswith("-> ") and (follow or i < len(parts) - 1):
                    target = posixpath.join(posixpath.dirname(prefix), link[3:])
                    path = posixpath.normpath(posixpath.join(target, *parts[i + 1:]))
                    break
            else:
                return path
        raise _error(errno.ELOOP, path)

    def _lookup(self, path: str, follow: bool = True) -> str | None:
        try:
            return self.nodes.get(self._resolve(path, follow))
        except OSError:
            return None

    def _need_dir(self, path: str) -> None:
        kind = self._lookup(path)
        if kind is None:
            raise _error(errno.ENOENT, path)
        if kind != DIR:
            raise _error(errno.ENOTDIR, path)

    def _replace(self, top: str, content: Mapping[str, str]) -> None:
        """A fresh filesystem at top hides what was below it."""
        for path in [p for p in self.nodes if p.startswith(top.rstrip("/") + "/")]:
            del self.nodes[path]
        self.nodes[top] = DIR
        for rel, kind in content.items():
            self._add(posixpath.join(top, rel), kind)

    def _record(self, name: str, path: str | None, args: tuple[object, ...],
                flags: tuple[str, ...] = ()) -> None:
        self.calls.append(Call(name, args, flags))
        code = self._failing.pop((name, path), None) if path is not None else None
        if code is not None:
            raise _error(code, f"{name} {path}")

    # --- mounts and the root ---------------------------------------------------------------

    def mount(self, source: str | None, target: str, fstype: str | None, flags: int = 0,
              data: str | None = None) -> None:
        where = self._abs(target)
        self._record("mount", where, (source, target, fstype, data), mount_flags(flags))
        resolved = self._resolve(where)
        kind = self.nodes.get(resolved)
        if kind is None:
            raise _error(errno.ENOENT, f"mount {target}")
        if flags & (libc.MS_REMOUNT | libc.MS_MOVE | _PROPAGATION):
            return
        if flags & libc.MS_BIND:
            source_kind = self._lookup(self._abs(source)) if source else None
            if source_kind is not None and (source_kind == DIR) != (kind == DIR):
                raise _error(errno.ENOTDIR, f"mount {target}")
            return
        if kind != DIR:
            raise _error(errno.ENOTDIR, f"mount {target}")
        self._replace(resolved, self.filesystems.get(fstype or "", {}))

    def umount(self, target: str, flags: int = 0) -> None:
        self._record("umount", self._abs(target), (target,), flag_names(flags, _MNT))

    def pivot_root(self, new_root: str, put_old: str) -> None:
        self._record("pivot_root", self._abs(new_root), (new_root, put_old))
        self._need_dir(self._abs(new_root))

    def clone_tree(self, source: str) -> int:
        where = self._abs(source)
        self._record("clone_tree", where, (source,))
        if self._lookup(where) is None:
            raise _error(errno.ENOENT, source)
        return self._new_fd(self._resolve(where))

    def attach(self, tree_fd: int, target: str | int) -> None:
        source = self._fd(tree_fd)
        where = self._fd(target) if isinstance(target, int) else self._abs(target)
        self._record("attach", where, (source, target))
        if self._lookup(where) is None:
            raise _error(errno.ENOENT, f"attach {target}")

    def mount_target(self, root: str, path: str, is_dir: bool) -> int:
        """As openat2(RESOLVE_IN_ROOT) walks: `..` and absolute symlinks stop at root;
        what is missing is made (directories, and the last as a file unless is_dir)."""
        top = self._abs(root)
        self._record("mount_target", posixpath.join(top, path.lstrip("/")), (root, path),
                     ("dir",) if is_dir else ("file",))
        done: list[str] = []
        todo = [p for p in path.split("/") if p not in ("", ".")][::-1]
        links = 0
        while todo:
            part = todo.pop()
            if part == "..":
                if done:
                    done.pop()
                continue
            full = posixpath.join(top, *done, part)
            kind = self.nodes.get(full)
            if kind is not None and kind.startswith("-> "):
                links += 1
                if links > 40:
                    raise _error(errno.ELOOP, path)
                if kind[3:].startswith("/"):
                    done = []
                todo.extend([p for p in kind[3:].split("/") if p not in ("", ".")][::-1])
                continue
            if kind is None:
                self._add(full, DIR if todo or is_dir else FILE)
            elif todo and kind != DIR:
                raise _error(errno.ENOTDIR, full)
            done.append(part)
        where = posixpath.join(top, *done)
        if is_dir and self.nodes.get(where) != DIR:
            raise _error(errno.ENOTDIR, where)
        return self._new_fd(where)

    def chdir(self, path: str) -> None:
        where = self._abs(path)
        self._record("chdir", where, (path,))
        self._need_dir(where)
        self.cwd = self._resolve(where)

    def fchdir(self, fd: int) -> None:
        path = self._fd(fd)
        self._record("fchdir", path, (path,))
        self.cwd = path

    # --- namespaces ------------------------------------------------------------------------

    def unshare(self, flags: int) -> None:
        self._record("unshare", None, (), clone_flags(flags))
        for name, flag in _NS_FLAGS.items():
            if flags & flag:
                self._next_ns += 1
                self.ns[name] = self._next_ns

    def setns(self, fd: int, nstype: int = 0) -> None:
        self._record("setns", None, (self._fd(fd),), clone_flags(nstype))
        theirs = self.peers.get(fd)
        if theirs is None or not nstype:
            raise _error(errno.EINVAL, "setns")
        for name, flag in _NS_FLAGS.items():
            if nstype & flag:
                self.ns[name] = theirs["pid" if name == "pid_for_children" else name]

    def sethostname(self, name: str) -> None:
        self._record("sethostname", None, (name,))

    def loopback_up(self) -> None:
        self._record("loopback_up", None, ())

    # --- files and device nodes ------------------------------------------------------------

    def makedirs(self, name: str, mode: int = 0o777, exist_ok: bool = False) -> None:
        where = self._abs(name)
        self._record("makedirs", where, (name, oct(mode)))
        kind = self._lookup(where)
        if kind is not None and (not exist_ok or kind != DIR):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), name)
        if kind is None:
            resolved = self._resolve(where)
            self._add(resolved, DIR)
            self.modes[resolved] = mode & ~self._umask

    def _create(self, where: str, kind: str, mode: int) -> None:
        """A new entry at where: its parent must be a directory, nothing may be there."""
        self._need_dir(posixpath.dirname(where))
        if self._lookup(where, follow=False) is not None:
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), where)
        resolved = self._resolve(where, follow=False)
        self._add(resolved, kind)
        self.modes[resolved] = mode & ~self._umask

    def mkdir(self, path: str, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
        where = self._abs(path, dir_fd)
        self._record("mkdir", where, (where, oct(mode)))
        self._create(where, DIR, mode)

    def mknod(self, path: str, mode: int = 0o600, device: int = 0, *,
              dir_fd: int | None = None) -> None:
        where = self._abs(path, dir_fd)
        kind = {stat.S_IFCHR: CHR, stat.S_IFBLK: BLK}.get(stat.S_IFMT(mode), FILE)
        self._record("mknod", where, (where, kind, oct(stat.S_IMODE(mode)),
                                      f"{os.major(device)}:{os.minor(device)}"))
        self._create(where, kind, stat.S_IMODE(mode))

    def symlink(self, src: str, dst: str) -> None:
        where = self._abs(dst)
        self._record("symlink", where, (src, dst))
        self._create(where, "-> " + src, 0o777)

    def chmod(self, path: str, mode: int, *, dir_fd: int | None = None) -> None:
        where = self._abs(path, dir_fd)
        self._record("chmod", where, (where, oct(mode)))
        if self._lookup(where) is None:
            raise _error(errno.ENOENT, where)
        self.modes[self._resolve(where)] = mode

    def chown(self, path: str, uid: int, gid: int, *, dir_fd: int | None = None,
              follow_symlinks: bool = True) -> None:
        where = self._abs(path, dir_fd)
        self._record("chown", where, (where, uid, gid))
        if self._lookup(where, follow_symlinks) is None:
            raise _error(errno.ENOENT, where)

    def open(self, path: str, flags: int, mode: int = 0o777, *,
             dir_fd: int | None = None) -> int:
        where = self._abs(path, dir_fd)
        self._record("open", where, (where,), flag_names(flags, _O))
        if where == "/proc/self/ns":
            return self._new_fd(where)
        if flags & os.O_NOFOLLOW and (self._lookup(where, follow=False) or "").startswith("-> "):
            raise _error(errno.ELOOP, where)
        kind = self._lookup(where)
        if kind is None:
            if not flags & os.O_CREAT:
                raise _error(errno.ENOENT, where)
            self._create(where, FILE, mode)
            kind = FILE
        elif flags & os.O_CREAT and flags & os.O_EXCL:
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), where)
        if flags & os.O_DIRECTORY and kind != DIR:
            raise _error(errno.ENOTDIR, where)
        return self._new_fd(self._resolve(where))

    def _new_fd(self, path: str) -> int:
        self._next_fd += 1
        self.fds[self._next_fd] = path
        return self._next_fd

    def close(self, fd: int) -> None:
        self._record("close", None, (self._fd(fd),))
        del self.fds[fd]

    def dup(self, fd: int) -> int:
        path = self._fd(fd)
        self._record("dup", None, (path,))
        return self._new_fd(path)

    def unlink(self, path: str) -> None:
        where = self._abs(path)
        self._record("unlink", where, (path,))
        kind = self._lookup(where, follow=False)
        if kind is None:
            raise _error(errno.ENOENT, path)
        if kind == DIR:
            raise _error(errno.EISDIR, path)
        del self.nodes[self._resolve(where, follow=False)]

    def touch(self, path: str) -> None:
        where = self._abs(path)
        self._record("touch", where, (path,))
        kind = self._lookup(where)
        if kind == DIR:
            raise _error(errno.EISDIR, path)
        if kind is None:
            self._create(self._resolve(where), FILE, 0o666)

    def umask(self, mask: int) -> int:
        old, self._umask = self._umask, mask
        return old

    def stat(self, path: str, *, dir_fd: int | None = None,
             follow_symlinks: bool = True) -> os.stat_result:
        where = self._abs(path, dir_fd)
        if posixpath.dirname(where) == "/proc/self/ns" and posixpath.basename(where) in self.ns:
            return os.stat_result((stat.S_IFREG | 0o444, self.ns[posixpath.basename(where)],
                                   0, 1, 0, 0, 0, 0, 0, 0))
        kind = self._lookup(where, follow_symlinks)
        if kind is None:
            raise _error(errno.ENOENT, where)
        bits = _LINK_BITS if kind.startswith("-> ") else _KIND_BITS[kind]
        mode = self.modes.get(self._resolve(where, follow_symlinks), 0o644)
        return os.stat_result((bits | mode, 0, 0, 1, 0, 0, 0, 0, 0, 0))

    # --- questions -------------------------------------------------------------------------

    def exists(self, path: str) -> bool:
        return self._lookup(self._abs(path)) is not None

    def isdir(self, path: str) -> bool:
        return self._lookup(self._abs(path)) == DIR

    def islink(self, path: str) -> bool:
        return (self._lookup(self._abs(path), follow=False) or "").startswith("-> ")

    def realpath(self, path: str) -> str:
        try:
            return self._resolve(self._abs(path))
        except OSError:
            return self._abs(path)

    def glob(self, pattern: str) -> list[str]:
        """glob.glob's answer: component by component, `*` never spanning a /, hidden
        names not matched by a wildcard, the pattern's own spelling kept ("./proc/...")."""
        found: list[tuple[str | None, str]] = [("", "/")] if pattern.startswith("/") \
            else [(None, self.cwd)]
        for part in pattern.strip("/").split("/"):
            step: list[tuple[str | None, str]] = []
            for shown, real in found:
                names = [part]
                if any(c in part for c in "*?["):
                    names = self._children(real)
                    names = [n for n in names if fnmatch.fnmatchcase(n, part)
                             and not n.startswith(".")]
                step += [(n if shown is None else f"{shown}/{n}",
                          posixpath.normpath(posixpath.join(real, n))) for n in names]
            found = step
        return [shown for shown, real in found
                if shown is not None and self._lookup(real, follow=False) is not None]

    def _children(self, path: str) -> list[str]:
        try:
            top = self._resolve(path)
        except OSError:
            return []
        return sorted(posixpath.basename(p) for p in self.nodes
                      if p != "/" and posixpath.dirname(p) == top)
