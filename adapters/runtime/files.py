"""docker cp's container side on Linux: a short-lived child that sees exactly the container's
files, and the tar streamed to or from it over a pipe.

Why a child: a container's files include its volumes, binds and tmpfs, which are mounted
only in its own mount namespace; and for a stopped container nothing is mounted anywhere.
So each copy (and each path stat) forks a child of the calling process that builds or
joins that view, does the tar work there with adapters/storage/copyio.py (every path
resolved with openat2(RESOLVE_IN_ROOT) below a root fd: a symlink or `..` of the container
never leads to a host file, even when swapped mid-copy), and reports back:

- running or paused: the child holds the container's init by a pidfd, checks it is still
  that init (pid and start time), and joins its mount namespace alone (setns CLONE_NEWNS:
  never its user, pid or network namespace, and nothing of the container runs). "/" is then
  the container's root, exactly as its processes see it, volumes and binds and tmpfs
  included: the child opens it as its root fd (inroot.open_root("/")). Then it puts its own
  root back on the host's (fchdir to the host's "/", held from before setns, and chroot):
  its own lookups by name must not read the container's names. Two of them happen:
  copyio reopens an O_PATH fd through /proc/self/fd, and the container's /proc belongs to
  its pid namespace, where this child has no pid (ENOENT, or whatever a privileged
  container mounted there); and a Python import must never find a module in the
  container. Everything found through the root fd is the container's; nothing else is.
  A namespace that can't be joined (the init gone or replaced, its mount namespace ours)
  is an error: fail closed.
- stopped: the child unshares a mount namespace, makes it private (MS_REC|MS_PRIVATE,
  before any mount), mounts the union view (the layer store's own `mount`) and the
  container's mount points (adapters/kernel/rootfs.mount_points, the sources as
  LinuxRuntime._mount_sources gives them: volumes' directories, bind sources, a fresh
  tmpfs), and works below the view. All of it is the child's: the namespace, and with it
  every mount, is gone when the child exits. The host never sees a mount.

The child dies with its parent (PR_SET_PDEATHSIG, checked against a parent gone already),
keeps no descriptor but its pipes, and says what happened on its control pipe, one JSON
line a message: the path stat first (archive_out, path_stat), then `done` or one error
line. The parent reaps it before returning, whatever happened: no process is left.

Compressed uploads (gzip, bzip2, xz: what docker's PUT accepts) are decompressed in the
parent, before anything of the container is in reach, as docker does.

A running container of a --userns-remap root shows its files shifted (its 0 as the host's
100000: its layers and volumes are idmapped mounts). So its child, once its root fd is
held and its own root is back on the host's, joins a fresh user namespace holding the
same maps (adapters/kernel/idmap.py's open_userns: not the container's, which belongs to
the container) and takes its uid and gid 0 there: the files then show with the
container's ids, the tar says them, and what is extracted is the container root's with the
tar's owners, on disk as the container writes them. A stopped one's view is plain: its
layers and volumes hold the container's own ids on disk.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any, BinaryIO

from adapters.kernel import inroot, libc, namespaces
from adapters.runtime import users
from adapters.storage import copyio
from core.errors import BadInput, LaminaError, NotFound
from core.model import Container
from core.mounts import MountPoint

CHUNK = 1 << 20
_LINE_LIMIT = 1 << 16


class CopyFailed(LaminaError):
    """The copy could not be done for a reason of the host's (the container's view could
    not be reached, the child died): one line. Exit code 125, as docker's engine errors."""

    exit_code = 125


@dataclass(frozen=True)
class View:
    """How the child reaches a container's files, decided in the parent from the log."""

    container_id: str
    running: bool  # running or paused: join its init's mount namespace
    pid: int = 0
    start_time: int = 0
    store_root: str = ""  # stopped: the lamina root whose layer store holds the view
    rw_layer: str = ""
    layers: tuple[str, ...] = ()
    mounts: tuple[tuple[MountPoint, str | int], ...] = ()
    read_only_root: bool = False
    user: str = ""  # Config.User, for copyUIDGID
    idmap: Any = None  # a running container of a --userns-remap root: its maps (IdMap)


def view_of(runtime: Any, container: Container) -> View:
    """The view of a LinuxRuntime's container (its spec gives mounts, user, --read-only)."""
    image = runtime.log.image(container.image)
    if image is None:
        raise CopyFailed(f"the image of container {container.id[:12]} is gone")
    spec = runtime.spec(container, image)
    mounts = tuple(runtime._mount_sources(spec))
    running = container.state in ("running", "paused")
    return View(container_id=container.id, running=running, pid=container.pid,
                start_time=container.start_time, store_root=runtime.root,
                rw_layer=container.rw_layer, layers=tuple(image.layers), mounts=mounts,
                read_only_root=spec.security.read_only, user=spec.user,
                idmap=runtime.idmap() if running else None)


# --- the three operations (the parent's side) ------------------------------------------------


def path_stat(view: View, path: str) -> dict[str, Any]:
    def job(root: int, _: int | None, send: Callable[[dict[str, Any]], None]) -> None:
        send({"stat": copyio.stat_in_root(root, path)})

    with _Child(view, job) as child:
        value = child.expect("stat")
        child.finish()
        return value


def archive_out(view: View, path: str, out: BinaryIO, follow_link: bool = False,
                on_stat: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    def job(root: int, data: int | None, send: Callable[[dict[str, Any]], None]) -> None:
        send({"stat": _archived_stat(root, path, follow_link)})
        assert data is not None
        with open(data, "wb", buffering=0, closefd=True) as sink:
            copyio.archive_from_root(root, path, sink, follow_link)

    data_r, data_w = os.pipe2(os.O_CLOEXEC)
    with _Child(view, job, data_w) as child:
        with open(data_r, "rb", buffering=0) as source:
            stat = child.expect("stat")
            if on_stat is not None:
                on_stat(stat)
            while chunk := source.read(CHUNK):
                out.write(chunk)
        child.finish()
    return stat


def archive_in(view: View, path: str, tar: BinaryIO, no_overwrite_dir_non_dir: bool = False,
               copy_uid_gid: bool = False) -> None:
    stream = _decompressed(tar)

    def job(root: int, data: int | None, send: Callable[[dict[str, Any]], None]) -> None:
        _writable(view, root, path)
        owner = _user_ids(root, view.user) if copy_uid_gid and view.user else None
        assert data is not None
        with open(data, "rb", buffering=0, closefd=True) as source:
            copyio.extract_into_root(root, path, source,
                                     no_overwrite_dir_non_dir=no_overwrite_dir_non_dir,
                                     owner=owner)

    data_r, data_w = os.pipe2(os.O_CLOEXEC)
    with open(data_w, "wb", buffering=0) as sink, _Child(view, job, data_r) as child:
        # the child may stop reading (at the end of the archive, or on an error)
        with contextlib.suppress(BrokenPipeError):
            _pour(stream, sink)
        sink.close()
        child.finish()
    while tar.read(CHUNK):  # the rest (padding, trailing blocks) is part of the upload
        pass


def _pour(stream: Any, sink: IO[bytes]) -> None:
    from adapters.storage.archive import decompress_errors

    try:
        while chunk := stream.read(CHUNK):
            view, done = memoryview(chunk), 0
            while done < len(view):
                done += sink.write(view[done:]) or 0
    except decompress_errors() as err:
        raise copyio.CopyError(f"corrupt compressed archive: {err}") from None


def _decompressed(tar: BinaryIO) -> Any:
    """The upload as a plain tar: gzip, bzip2 and xz are undone here, in the parent."""
    from adapters.storage.archive import decompressor, peek

    head, stream = peek(tar, 6)
    opener = decompressor(head)
    return opener(stream) if opener is not None else stream


# --- what the child does once it is in the view ------------------------------------------


def _archived_stat(root: int, path: str, follow_link: bool) -> dict[str, object]:
    """The stat of what archive_from_root will archive: with follow_link, a final symlink's
    target (found inside the root), under the name asked for."""
    abs_path = copyio.container_path(path)
    base = abs_path.rsplit("/", 1)[1]
    if not follow_link or base in ("", "."):
        return copyio.stat_in_root(root, abs_path)
    try:
        target = inroot.scoped_path(root, abs_path)
    except inroot.InRootUnsupported:
        raise
    except OSError as exc:
        raise copyio.CopyError(inroot.describe(exc, abs_path)) from None
    stat = copyio.stat_in_root(root, target)
    stat["name"] = base
    return stat


def _writable(view: View, root: int, path: str) -> None:
    """docker's checkWritablePath: the destination, resolved, on a read-only mount point
    or (outside every mount point) on a --read-only root is refused, in docker's words.
    (The kernel would refuse the writes anyway: this says why, before any.)"""
    try:
        where = inroot.scoped_path(root, copyio.container_path(path))
    except inroot.InRootUnsupported:
        raise
    except OSError:
        return  # extract_into_root says what is wrong with it
    best: MountPoint | None = None
    for m, _ in view.mounts:
        if (where == m.target or where.startswith(m.target.rstrip("/") + "/")) and \
                (best is None or len(m.target) > len(best.target)):
            best = m
    if best is not None:
        if best.read_only:
            raise BadInput("mounted volume is marked read-only")
    elif view.read_only_root:
        raise BadInput("container rootfs is marked read-only")


def _user_ids(root: int, user: str) -> tuple[int, int]:
    """docker's getUIDGID for copyUIDGID: the container's USER (`name`, `uid`,
    `name:group`, `uid:gid`...) looked up in the container's own /etc/passwd and /etc/group;
    a uid with no entry keeps gid 0, an empty part means root's."""
    name, _, group = user.partition(":")
    uid = gid = 0
    if name:
        passwd = users.entries(users.read_in_root(root, "/etc/passwd"))
        if name.isdigit():
            entry = next((e for e in passwd if len(e) > 3 and e[2] == name), None)
            uid, gid = int(name), int(entry[3]) if entry and entry[3].isdigit() else 0
        else:
            entry = next((e for e in passwd if len(e) > 3 and e[0] == name), None)
            if entry is None or not (entry[2].isdigit() and entry[3].isdigit()):
                raise BadInput(f'failed to look up user "{name}" in container: no matching '
                               "entries in passwd file")
            uid, gid = int(entry[2]), int(entry[3])
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            groups = users.entries(users.read_in_root(root, "/etc/group"))
            found = next((e for e in groups if len(e) > 2 and e[0] == group), None)
            if found is None or not found[2].isdigit():
                raise BadInput(f'failed to look up group "{group}" in container: no '
                               "matching entries in group file")
            gid = int(found[2])
    return uid, gid


# --- the child -----------------------------------------------------------------------------

Job = Callable[[int, "int | None", Callable[[dict[str, Any]], None]], None]

# what a copy's own path or contents earn from the kernel: the user's to fix, not the host's
_REFUSALS = {errno.EROFS, errno.EBUSY, errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM,
             errno.ETXTBSY, errno.EFBIG, errno.EOVERFLOW}

_KINDS: Sequence[tuple[type[BaseException], str]] = (
    (NotFound, "notfound"), (BadInput, "badinput"), (inroot.InRootUnsupported, "unsupported"),
    (namespaces.NotJoinable, "notjoinable"))


class _Child:
    """One child: forked on entry; on the way out (finished or not) killed if it still
    runs, reaped, and every descriptor of ours closed."""

    def __init__(self, view: View, job: Job, data: int | None = None) -> None:
        self.view, self.job, self.data = view, job, data
        self.userns: int | None = None
        self.pid = 0
        self.status = 0
        self.reaped = False
        self.ctl: IO[bytes] | None = None

    def __enter__(self) -> _Child:
        ctl_r, ctl_w = os.pipe2(os.O_CLOEXEC)
        parent = os.getpid()
        try:
            if self.view.idmap is not None:
                from adapters.kernel.idmap import open_userns
                from adapters.kernel.userns import become_root  # noqa: F401 - the child's

                self.userns = open_userns(self.view.idmap)
            self.pid = os.fork()
        except BaseException:
            for fd in (ctl_r, ctl_w, self.data, self.userns):
                if fd is not None:
                    os.close(fd)
            raise
        if self.pid == 0:
            _child_main(self.view, self.job, ctl_w, self.data, parent, self.userns)
        os.close(ctl_w)
        if self.userns is not None:
            os.close(self.userns)
        if self.data is not None:
            os.close(self.data)  # the child's end
        self.ctl = open(ctl_r, "rb")  # noqa: SIM115 - closed in __exit__
        return self

    def _message(self) -> dict[str, Any]:
        assert self.ctl is not None
        line = self.ctl.readline(_LINE_LIMIT)
        if not line:
            self._reap()
            raise CopyFailed(f"copying the files of container {self.view.container_id[:12]} "
                             f"failed: the copying process {self._how()}")
        message: dict[str, Any] = json.loads(line)
        if "error" in message:
            self._reap()
            kind, text = message.get("kind", ""), str(message["error"])
            if kind == "notjoinable":
                text = f"cannot join the mount namespace of container " \
                       f"{self.view.container_id[:12]}: {text}"
            raise _error(kind, text)
        return message

    def expect(self, key: str) -> Any:
        message = self._message()
        if key not in message:
            raise CopyFailed(f"the copying process said {sorted(message)}, not {key}")
        return message[key]

    def finish(self) -> None:
        """The child's last word (done, or its error) and its end."""
        self.expect("done")
        self._reap()
        if self.status:
            raise CopyFailed(f"the copying process {self._how()}")

    def _reap(self) -> None:
        if not self.reaped and self.pid:
            _, self.status = os.waitpid(self.pid, 0)
            self.reaped = True

    def _how(self) -> str:
        if not self.reaped:
            return "ended"
        if os.WIFSIGNALED(self.status):
            return f"was killed by signal {os.WTERMSIG(self.status)}"
        return f"exited with {os.waitstatus_to_exitcode(self.status)}"

    def __exit__(self, *exc: object) -> None:
        if self.pid and not self.reaped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)  # our own child, by its pid
            self._reap()
        if self.ctl is not None:
            self.ctl.close()


def _error(kind: str, message: str) -> LaminaError:
    if kind == "notfound":
        return copyio.CopyPathNotFound(message)
    if kind == "badinput":
        return copyio.CopyError(message)
    return CopyFailed(message)


def _child_main(view: View, job: Job, ctl: int, data: int | None, parent: int,
                userns: int | None) -> None:
    """In the child: never returns."""
    code = 0

    def send(message: dict[str, Any]) -> None:
        raw = (json.dumps(message) + "\n").encode()
        while raw:
            raw = raw[os.write(ctl, raw):]

    try:
        libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the line above
            os._exit(1)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        _keep_only({ctl, *(fd for fd in (data, userns) if fd is not None)})
        root = _enter(view)
        if userns is not None:  # a fresh namespace with the container's maps: its ids
            from adapters.kernel.userns import become_root

            libc.setns(userns, libc.CLONE_NEWUSER)
            os.close(userns)
            become_root()
        job(root, data, send)
        send({"done": True})
    except BaseException as err:  # noqa: BLE001 - everything must reach the pipe, one line
        code = 1
        kind = next((k for cls, k in _KINDS if isinstance(err, cls)), "")
        if not kind and isinstance(err, OSError):  # the path's fault, or the host's
            kind = "badinput" if err.errno in _REFUSALS else ""
            text = inroot.describe(err, str(err.filename or "/"))
        elif isinstance(err, LaminaError | namespaces.NotJoinable):
            text = str(err)
        else:
            text = f"{type(err).__name__}: {err}"
        with contextlib.suppress(BaseException):
            send({"error": " ".join(text.split()), "kind": kind})
    os._exit(code)


def _keep_only(keep: set[int]) -> None:
    """/dev/null on 0-2, and no descriptor of the caller's (its client's socket, the log)
    but the pipes: the child holds nothing it was not given."""
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        if fd not in keep:
            os.dup2(null, fd)
    fds = [int(name) for name in os.listdir("/proc/self/fd")]
    for fd in fds:
        if fd > 2 and fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)


def _enter(view: View) -> int:
    """The container's root as an fd, its mounts in place (see the module docstring)."""
    return _joined(view) if view.running else _built(view)


def _joined(view: View) -> int:
    from adapters.kernel.proc import is_init_of

    host_root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        pidfd = os.pidfd_open(view.pid)
    except OSError as err:
        raise namespaces.NotJoinable(f"its init ({view.pid}) is gone: {err.strerror}") \
            from None
    try:  # checked once the pidfd holds it: the process checked is the one joined
        if not is_init_of(view.pid, view.start_time, view.container_id):
            raise namespaces.NotJoinable(f"its init ({view.pid}) is gone")
        theirs, ours = _namespaces(view.pid), _namespaces("self")
        flags = namespaces.differing(theirs, ours) & libc.CLONE_NEWNS
        namespaces.join(pidfd, flags, libc.CLONE_NEWNS)  # fail closed: ours is refused
    finally:
        os.close(pidfd)
    root = inroot.open_root("/")  # the container's root, as its processes see it
    os.fchdir(host_root)  # and our own lookups by name back on the host's
    os.chroot(".")
    os.close(host_root)
    return root


def _namespaces(pid: int | str) -> dict[str, int]:
    ns_dir = namespaces.open_ns_dir(pid)
    try:
        return namespaces.inodes(ns_dir)
    finally:
        os.close(ns_dir)


def _built(view: View) -> int:
    from adapters.kernel import rootfs
    from adapters.storage import overlay
    from adapters.storage.store import LinuxLayerStore

    libc.unshare(libc.CLONE_NEWNS)
    rootfs.make_mounts_private()  # before any mount: nothing below reaches the host
    store = LinuxLayerStore(view.store_root)  # not the runtime's: no fault points here
    merged = store.merged_dir(view.rw_layer)
    if not overlay.is_mounted(merged):  # (mounted already: an export's, seen in our copy)
        store.mount(view.rw_layer, view.layers)
    rootfs.mount_points(merged, view.mounts)
    return inroot.open_root(merged)


# --- tar streams re-written on the way (the CLI's rebase) -----------------------------------


def name_rebaser(old: str, new: str) -> Callable[[str], str]:
    """docker's newNameRebaser: `old` (a first path element) replaced by `new` at the start
    of entry names; from the archive's root ("" old) every name gets `new/` in front."""
    old, new = old.rstrip("/"), new.rstrip("/")
    if not old:
        return lambda name: name.lstrip("/") if not new else f"{new}/{name.lstrip('/')}"

    def rebase(name: str) -> str:
        if name == old or name.startswith(old + "/"):
            return new + name[len(old):]
        return name

    return rebase


def rebased(source: Any, old: str, new: str) -> Iterator[bytes]:
    """docker's RebaseArchiveEntries as a stream of tar bytes: every entry name (and hard
    link target) starting with `old` starts with `new` instead; headers, owners, modes and
    times as they were (PAX where a field needs it)."""
    import tarfile

    rebase = name_rebaser(old, new)
    with tarfile.open(fileobj=source, mode="r|", encoding="utf-8",
                      errors="surrogateescape") as tar:
        for m in tar:
            m.pax_headers = {k: v for k, v in m.pax_headers.items()
                             if k not in ("path", "linkpath")}
            m.name = rebase(m.name)
            if m.islnk():
                m.linkname = rebase(m.linkname)
            yield m.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
            if m.isreg() and m.size:
                data = tar.extractfile(m)
                assert data is not None
                while chunk := data.read(CHUNK):
                    yield chunk
                if m.size % tarfile.BLOCKSIZE:
                    yield bytes(tarfile.BLOCKSIZE - m.size % tarfile.BLOCKSIZE)
    yield bytes(2 * tarfile.BLOCKSIZE)


class ChunkReader:
    """A file-like reader over an iterator of byte chunks (a re-written tar)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.buf = b""

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            out = self.buf + b"".join(self.chunks)
            self.buf = b""
            return out
        while len(self.buf) < n:
            chunk = next(self.chunks, None)
            if chunk is None:
                break
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

