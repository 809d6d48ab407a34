"""ID maps and idmapped mounts: how a remapped container shares image layers unchanged.

With user-namespace remapping (`--userns-remap`), root of the container is an unprivileged
host uid S (from /etc/subuid). The image layers stay owned by uid 0 on disk: an *idmapped
mount* of a layer shows them as S (kernel 5.12+, ext4/xfs/btrfs/tmpfs), and overlay (5.19+)
accepts idmapped layers. So every container, whatever its range, mounts the same layers,
and what it writes reaches the upper dir unshifted (as uid 0) through an idmapped mount of
the rw layer: commit, export and diff read it as they read any layer.

The kernel takes the mapping of an idmapped mount from a user namespace (an fd), so this
module also makes a throwaway namespace that holds a given map (`open_userns`).

One thing the kernel does not do for us: overlay does its own work (the work dir, copy-up,
whiteouts) with the credentials of whoever mounted it, and through an idmapped upper an
unmapped creator (host uid 0 is outside 0->S) gets EOVERFLOW: overlay then mounts
read-only. Mounting it from inside the user namespace instead would cost the trusted.overlay
xattrs lamina's layers use (opaque dirs). So the host mounts it, as `mapped_creator` makes
it: fsuid/fsgid = the host ids of the container's root, with root's capabilities kept.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import pwd
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

from adapters.kernel import libc

# x86_64 syscall numbers (no glibc wrappers for the new mount API).
SYS_SETFSUID = 122
SYS_SETFSGID = 123
SYS_OPEN_TREE = 428
SYS_MOVE_MOUNT = 429
SYS_FSOPEN = 430
SYS_FSCONFIG = 431
SYS_FSMOUNT = 432
SYS_MOUNT_SETATTR = 442

AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
OPEN_TREE_CLONE = 0x1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
MOUNT_ATTR_IDMAP = 0x00100000
MOVE_MOUNT_T_EMPTY_PATH = 0x00000040
MOUNT_ATTR_RDONLY = 0x00000001
MOVE_MOUNT_F_EMPTY_PATH = 0x4
FSOPEN_CLOEXEC = 0x1
FSMOUNT_CLOEXEC = 0x1
FSCONFIG_SET_STRING = 1
FSCONFIG_SET_FD = 5
FSCONFIG_CMD_CREATE = 6

_CLONE_VM = 0x100
_SIGCHLD = 17
_MAX_MAP_LINES = 340  # the kernel's limit on lines in uid_map / gid_map (since 4.15)
_HOLDER_STACK = 16384

_libc = ctypes.CDLL("libc.so.6", use_errno=True)


class IdmapError(OSError):
    """An ID map could not be read, made or applied; the message names what and where."""


class IdRange(NamedTuple):
    """One line of a uid_map or gid_map: ids inside..inside+count-1 are outside.. on the host.

    (NamedTuples, not dataclasses, here: every remapped start imports this module, and a
    dataclass costs ~0.5 ms to define.)"""

    inside: int
    outside: int
    count: int  # type: ignore[assignment]  # the field shadows tuple.count, as the file format names it

    def to_host(self, ident: int) -> int | None:
        offset = ident - self.inside
        return self.outside + offset if 0 <= offset < self.count else None


class IdMap(NamedTuple):
    """The uid and gid maps of a user namespace (and of the idmapped mounts made with it)."""

    uids: tuple[IdRange, ...]
    gids: tuple[IdRange, ...]

    @classmethod
    def shifted(cls, uid_start: int, uid_count: int, gid_start: int | None = None,
                gid_count: int | None = None) -> IdMap:
        """Container ids 0..count-1 to host ids start.., docker's shape for one range."""
        gid_start = uid_start if gid_start is None else gid_start
        gid_count = uid_count if gid_count is None else gid_count
        return cls((IdRange(0, uid_start, uid_count),), (IdRange(0, gid_start, gid_count),))

    @classmethod
    def from_rows(cls, uids: Sequence[Sequence[int]], gids: Sequence[Sequence[int]]) -> IdMap:
        """From (inside, outside, count) rows, as RootConfigured records them."""
        return cls(tuple(IdRange(*r) for r in uids), tuple(IdRange(*r) for r in gids))

    def host_uid(self, uid: int) -> int:
        return _to_host(self.uids, uid, "uid")

    def host_gid(self, gid: int) -> int:
        return _to_host(self.gids, gid, "gid")

    def uid_map(self) -> str:
        """The text written to /proc/PID/uid_map (one `inside outside count` line a range)."""
        return _map_text(self.uids)

    def gid_map(self) -> str:
        return _map_text(self.gids)


def _to_host(ranges: Sequence[IdRange], ident: int, kind: str) -> int:
    for r in ranges:
        host = r.to_host(ident)
        if host is not None:
            return host
    raise IdmapError(errno.EINVAL, f"container {kind} {ident} is outside the id map")


def _map_text(ranges: Sequence[IdRange]) -> str:
    if not 0 < len(ranges) <= _MAX_MAP_LINES:
        raise IdmapError(errno.EINVAL, f"an id map needs 1 to {_MAX_MAP_LINES} ranges, "
                                       f"got {len(ranges)}")
    return "".join(f"{r.inside} {r.outside} {r.count}\n" for r in ranges)


def parse_map(text: str) -> tuple[IdRange, ...]:
    """The ranges of a /proc/PID/uid_map (or gid_map) as the kernel shows them."""
    return tuple(IdRange(*map(int, line.split())) for line in text.splitlines() if line.strip())


def read_maps(pid: int | str = "self") -> IdMap:
    """The maps of the user namespace `pid` lives in."""
    with open(f"/proc/{pid}/uid_map") as u, open(f"/proc/{pid}/gid_map") as g:
        return IdMap(parse_map(u.read()), parse_map(g.read()))


# --- /etc/subuid and /etc/subgid ------------------------------------------------------------


class SubordinateRange(NamedTuple):
    """One `name:start:count` line of /etc/subuid or /etc/subgid."""

    start: int
    count: int  # type: ignore[assignment]  # shadows tuple.count, as above


def subordinate_ranges(path: str, user: str, uid: int | None = None) -> list[SubordinateRange]:
    """The ranges of `user` in a subuid/subgid file, lowest first (docker's order).

    A line may name the user or its numeric id, as shadow's own tools accept; blank lines
    and `#` comments are skipped. A malformed line is an error, not skipped: a range read
    wrong would hand a container someone else's host ids."""
    names = {user} | ({str(uid)} if uid is not None else set())
    found = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            found += _owned_range(text, names, f"{path}:{number}")
    return sorted(found, key=lambda r: r.start)


def _owned_range(text: str, names: set[str], where: str) -> list[SubordinateRange]:
    parts = text.split(":")
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        raise IdmapError(errno.EINVAL, f"{where}: not name:start:count: {text!r}")
    if parts[0] not in names:
        return []
    if int(parts[2]) == 0:
        raise IdmapError(errno.EINVAL, f"{where}: empty range for {parts[0]}")
    return [SubordinateRange(int(parts[1]), int(parts[2]))]


def idmap_for(user: str, subuid: str = "/etc/subuid", subgid: str = "/etc/subgid") -> IdMap:
    """The map docker builds for `--userns-remap user`: the user's subordinate ranges, lowest
    first, laid end to end from container id 0."""
    try:
        uid: int | None = pwd.getpwnam(user).pw_uid
    except KeyError:
        uid = None
    uids = _owned(subordinate_ranges(subuid, user, uid), subuid, user)
    gids = _owned(subordinate_ranges(subgid, user, uid), subgid, user)
    return IdMap(uids, gids)


def _owned(ranges: list[SubordinateRange], path: str, user: str) -> tuple[IdRange, ...]:
    if not ranges:
        raise IdmapError(errno.ENOENT, f"no subordinate ids for {user} in {path}")
    return laid_out(ranges)


def laid_out(ranges: Sequence[SubordinateRange]) -> tuple[IdRange, ...]:
    """Subordinate ranges as map lines: one after the other from container id 0."""
    out, inside = [], 0
    for r in ranges:
        out.append(IdRange(inside, r.start, r.count))
        inside += r.count
    return tuple(out)


# --- a user namespace holding a map ---------------------------------------------------------


def write_maps(pid: int, idmap: IdMap) -> None:
    """Write the uid and gid maps of the (new, still map-less) user namespace of `pid`.

    setgroups stays allowed: the writer is privileged in the parent namespace, and the
    container's root needs setgroups(2) to take its user's supplementary groups."""
    for name, text in (("uid_map", idmap.uid_map()), ("gid_map", idmap.gid_map())):
        try:
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(text)
        except OSError as err:
            raise IdmapError(err.errno, f"cannot write {name} of pid {pid}: "
                                        f"{os.strerror(err.errno or 0)}") from None


def open_userns(idmap: IdMap) -> int:
    """An fd (close-on-exec) of a new user namespace with `idmap`, owning nothing else.

    How, cheaply: glibc clone() with CLONE_NEWUSER|CLONE_VM runs `_exit` on a small stack of
    its own, so no page table is copied and no Python runs in the child. The child is a
    zombie at once, but a zombie keeps its credentials (so its user namespace) until it is
    reaped: its maps are written and its ns file opened, then it is reaped. Nothing can be
    left behind: a zombie whose parent dies is reaped by init."""
    stack = ctypes.create_string_buffer(_HOLDER_STACK)
    top = ctypes.c_void_p((ctypes.addressof(stack) + _HOLDER_STACK - 64) & ~0xF)
    entry = ctypes.cast(_libc._exit, ctypes.c_void_p)
    pid = _libc.clone(entry, top, ctypes.c_int(libc.CLONE_NEWUSER | _CLONE_VM | _SIGCHLD),
                      ctypes.c_void_p(0))
    if pid < 0:
        err = ctypes.get_errno()
        raise IdmapError(err, f"cannot make a user namespace: {os.strerror(err)}")
    try:
        write_maps(pid, idmap)
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.waitpid(pid, 0)


@contextlib.contextmanager
def userns_holding(idmap: IdMap) -> Iterator[int]:
    """`open_userns` for the length of a `with` block."""
    fd = open_userns(idmap)
    try:
        yield fd
    finally:
        os.close(fd)


# --- idmapped mounts -------------------------------------------------------------------------


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _path(value: str) -> ctypes.c_char_p:
    return ctypes.c_char_p(os.fsencode(value))


def _open_tree(source: str | int, flags: int) -> int:
    """open_tree(2) of a path, or of an fd (AT_EMPTY_PATH): a detached clone's fd."""
    if isinstance(source, int):
        fd = libc.syscall(SYS_OPEN_TREE, source, _path(""), flags | AT_EMPTY_PATH)
    else:
        fd = libc.syscall(SYS_OPEN_TREE, AT_FDCWD, _path(source), flags)
    if fd < 0:
        err = ctypes.get_errno()
        raise IdmapError(err, f"cannot clone {source}: {os.strerror(err)}")
    return fd


def _set_attr(fd: int, attr_set: int, userns_fd: int, recursive: bool,
              failure: Callable[[int], str]) -> None:
    """mount_setattr(2) on a detached tree; on failure the tree is closed, and the error
    says `failure(errno)`."""
    attr = _MountAttr(attr_set, 0, 0, userns_fd)
    ret = libc.syscall(SYS_MOUNT_SETATTR, fd, _path(""),
                       AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0),
                       ctypes.addressof(attr), ctypes.sizeof(attr))
    if ret < 0:
        err = ctypes.get_errno()
        os.close(fd)
        raise IdmapError(err, failure(err))


def idmapped_tree(source: str, userns_fd: int, recursive: bool = False) -> int:
    """A detached, idmapped clone of the directory `source`, as an fd.

    Until attached (`attach`) or given to overlay (`mount_overlay`) it is visible nowhere;
    closing the fd is all it takes to drop it. Not `recursive` by default: a layer is one
    directory of one filesystem, and a recursive clone would take whatever is mounted below
    it along (the rw layer's own merged overlay, an idmapped mount already there), which
    cannot be idmapped (EPERM/EINVAL) and has no business in a layer."""
    fd = _open_tree(source, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC
                    | (AT_RECURSIVE if recursive else 0))
    _set_attr(fd, MOUNT_ATTR_IDMAP, userns_fd, recursive,
              lambda err: f"cannot idmap {source}: {_idmap_reason(err)}")
    return fd


def cloned_tree(source: str) -> int:
    """A detached clone of the file or directory `source` (open_tree OPEN_TREE_CLONE), as
    a close-on-exec fd: `attach` puts it anywhere, in any mount namespace whose owner we
    are privileged over, without a path walk to `source` there. How a remapped container's
    init, an unprivileged host uid, gets host files its root may not reach by path."""
    return _open_tree(source, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC)


def cloned_mount(source: str | int, read_only: bool, userns_fd: int | None = None) -> int:
    """A container's bind or volume made here, where we are privileged: a detached
    recursive clone of `source` (a bind is recursive, as docker's), read-only (recursively)
    when asked. With `userns_fd` (a remapped container's volume) it is idmapped too, as the
    layers are: the volume's root-owned files are its root's, and what it writes lands on
    disk unshifted, so one volume serves plain and remapped containers alike. `source` may
    be an fd (a volume's subpath, found in it with openat2): the very directory found is
    cloned, with no path to walk again."""
    fd = _open_tree(source, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE)
    attrs = (MOUNT_ATTR_RDONLY if read_only else 0) | \
        (MOUNT_ATTR_IDMAP if userns_fd is not None else 0)
    if attrs:
        _set_attr(fd, attrs, userns_fd or 0, True,
                  lambda err: f"cannot set up the mount of {source}: {os.strerror(err)}")
    return fd


def _idmap_reason(err: int) -> str:
    if err == errno.EINVAL:
        return "its filesystem does not support idmapped mounts"
    return os.strerror(err)


def attach(tree_fd: int, target: str | int) -> None:
    """Attach a detached tree (`idmapped_tree`) at the directory `target`: a path, or an
    fd of it (move_mount's MOVE_MOUNT_T_EMPTY_PATH; a /proc/self/fd path is refused)."""
    if isinstance(target, int):
        ret = libc.syscall(SYS_MOVE_MOUNT, tree_fd, _path(""), target, _path(""),
                           MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH)
    else:
        ret = libc.syscall(SYS_MOVE_MOUNT, tree_fd, _path(""), AT_FDCWD, _path(target),
                           MOVE_MOUNT_F_EMPTY_PATH)
    if ret < 0:
        err = ctypes.get_errno()
        raise IdmapError(err, f"cannot attach a mount at {target}: {os.strerror(err)}")


def idmapped_mount(source: str, target: str, userns_fd: int, recursive: bool = False) -> None:
    """Mount an idmapped clone of `source` at `target`: open_tree, mount_setattr, move_mount.

    The clone's fd is closed once attached: an fd left open keeps the mount busy."""
    fd = idmapped_tree(source, userns_fd, recursive)
    try:
        attach(fd, target)
    finally:
        os.close(fd)


def unmount(target: str) -> None:
    """Unmount an idmapped mount (lazily if busy); not mounted is not an error."""
    try:
        libc.umount(target)
    except OSError as err:
        if err.errno == errno.EBUSY:
            libc.umount(target, libc.MNT_DETACH)
        elif err.errno != errno.EINVAL:
            raise


# --- overlay over idmapped layers ------------------------------------------------------------


def _setfsid(number: int, ident: int) -> None:
    """setfsuid/setfsgid report only the previous value: ask again (-1 changes nothing) to
    learn whether the change took."""
    libc.syscall(number, ident)
    if libc.syscall(number, -1) != ident:
        kind = "uid" if number == SYS_SETFSUID else "gid"
        raise IdmapError(errno.EPERM, f"cannot set the filesystem {kind} to {ident}")


@contextlib.contextmanager
def mapped_creator(idmap: IdMap) -> Iterator[None]:
    """This thread's filesystem ids become those of the container's root on the host, its
    capabilities stay (setfsuid drops the file ones from the effective set: they are put
    back), for mounting an overlay whose upper layer is idmapped; restored afterwards.

    Credentials are per thread, so other threads of a daemon are not affected."""
    uid, gid = idmap.host_uid(0), idmap.host_gid(0)
    effective, permitted, inheritable = libc.capget()
    old_uid, old_gid = libc.syscall(SYS_SETFSUID, -1), libc.syscall(SYS_SETFSGID, -1)
    try:
        _setfsid(SYS_SETFSGID, gid)
        _setfsid(SYS_SETFSUID, uid)
        libc.capset(permitted, permitted, inheritable)
        yield
    finally:
        _setfsid(SYS_SETFSUID, old_uid)
        _setfsid(SYS_SETFSGID, old_gid)
        libc.capset(effective, permitted, inheritable)


def mount_overlay(lower_fds: Sequence[int], upper_fd: int, work_fd: int, target: str,
                  idmap: IdMap, options: Sequence[str] = ()) -> None:
    """An overlay at `target` built from fds (FSCONFIG_SET_FD for layers: kernel 6.13+;
    O_PATH fds for them: 6.15+, O_RDONLY|O_DIRECTORY works from 6.13): `lower_fds` top-most
    first (detached idmapped trees), `upper_fd`/`work_fd` directories inside one idmapped
    tree of the rw layer; `options` are `key=value` strings (index=off...). No path of a
    layer is attached anywhere, there is no one-page limit on the number of layers, and
    unmounting the overlay releases everything."""
    fs = _check(libc.syscall(SYS_FSOPEN, _path("overlay"), FSOPEN_CLOEXEC), "fsopen overlay")
    try:
        for key, fd in [*(("lowerdir+", fd) for fd in lower_fds),
                        ("upperdir", upper_fd), ("workdir", work_fd)]:
            _check(libc.syscall(SYS_FSCONFIG, fs, FSCONFIG_SET_FD, _path(key), None, fd),
                   f"overlay {key}")
        for option in options:
            key, _, value = option.partition("=")
            _check(libc.syscall(SYS_FSCONFIG, fs, FSCONFIG_SET_STRING, _path(key),
                                _path(value), 0), f"overlay option {option}")
        with mapped_creator(idmap):
            _check(libc.syscall(SYS_FSCONFIG, fs, FSCONFIG_CMD_CREATE, None, None, 0),
                   "overlay create")
        mnt = _check(libc.syscall(SYS_FSMOUNT, fs, FSMOUNT_CLOEXEC, 0), "fsmount overlay")
        try:
            attach(mnt, target)
        finally:
            os.close(mnt)
    finally:
        os.close(fs)
    _require_writable(target)


def _require_writable(target: str) -> None:
    """Overlay does not fail when its creator cannot write the upper layer (an id outside
    the map gives EOVERFLOW on the work dir): it mounts read-only and logs it. Fail instead:
    a container would otherwise start with a root it cannot write."""
    if os.statvfs(target).f_flag & os.ST_RDONLY:
        unmount(target)
        raise IdmapError(errno.EROFS, f"the overlay at {target} came up read-only: its upper "
                                      "layer is not writable through the id map")


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise IdmapError(err, f"{what}: {os.strerror(err)}")
    return ret


def mount_overlay_paths(lowers: Sequence[str], upper: str, work: str, target: str,
                        idmap: IdMap, options: Sequence[str] = ()) -> None:
    """The classic mount(2) of an overlay over attached idmapped mounts (`idmapped_mount`),
    created as the container's root (`mapped_creator`). `lowers` top-most first."""
    data = ",".join([f"lowerdir={':'.join(lowers)}", f"upperdir={upper}", f"workdir={work}",
                     *options])
    with mapped_creator(idmap):
        libc.mount("overlay", target, "overlay", 0, data)
    _require_writable(target)


# --- the fallback: shifted copies -------------------------------------------------------------


def shift_tree(root: str, idmap: IdMap, reverse: bool = False) -> int:
    """Chown every entry under `root` (itself included) from container ids to host ids, or
    back with `reverse`; returns the number of entries. For filesystems without idmapped
    mounts, on a private copy of the layers: the copy costs disk and time, the layers
    themselves are never changed.

    chown(2) clears setuid/setgid bits, so a mode that had them is set again afterwards.
    (A security.capability xattr is cleared as well, and would need rewriting with the
    namespace's root id: not done here.)"""
    count = 0
    for top, dirs, files in os.walk(root):
        if count == 0:
            _shift(top, idmap, reverse)
            count = 1
        for name in dirs + files:
            _shift(os.path.join(top, name), idmap, reverse)
            count += 1
    return count


def _shift(path: str, idmap: IdMap, reverse: bool) -> None:
    st = os.lstat(path)
    if reverse:
        uid, gid = _to_container(idmap.uids, st.st_uid), _to_container(idmap.gids, st.st_gid)
    else:
        uid, gid = idmap.host_uid(st.st_uid), idmap.host_gid(st.st_gid)
    os.lchown(path, uid, gid)
    if st.st_mode & 0o6000 and not os.path.islink(path):
        os.chmod(path, st.st_mode & 0o7777)


def _to_container(ranges: Sequence[IdRange], host: int) -> int:
    for r in ranges:
        if r.outside <= host < r.outside + r.count:
            return r.inside + host - r.outside
    raise IdmapError(errno.EINVAL, f"host id {host} is outside the id map")
