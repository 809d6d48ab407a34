"""The tar side of `docker cp`: stat, archive and extract paths inside a root directory fd.

What it serves: `lamina cp` in both directions and Docker's HEAD/GET/PUT
`/containers/{id}/archive`, on a container's root (the overlay merged dir) or any directory
(a volume, a plain directory on the host side of a copy). The root is an fd (see
adapters/kernel/inroot.py: `open_root`); paths are container paths, `/` being that fd.

Why everything is fd-relative: the container owns every name below its root and may change
any of them while we copy (CVE-2018-15664: swap a directory for a symlink to `/` between the
daemon's check and its open). So no host path is ever built from a container path:
- a start path is opened with openat2(RESOLVE_IN_ROOT), which resolves symlinks and `..`
  inside the root in one kernel call;
- below it, each child is opened O_PATH|O_NOFOLLOW relative to its parent's fd: a symlink
  is archived as a symlink and never entered, and nothing is opened for reading before
  fstat says it is a regular file or a directory (a FIFO or a device swapped in is never
  opened: `inroot.reopen`);
- on extraction, each member's parent is opened (or created) with openat2 in the root, so
  `../../etc/passwd` or a member below a symlink to `/` lands inside the root or is refused;
  files are created O_CREAT|O_EXCL|O_NOFOLLOW after whatever had that name is removed, so
  nothing is written through an existing name.

Docker's rules kept here (moby's archive.go / daemon/archive.go):
- a path is made absolute in the container; a trailing `/` or `/.` is kept. `/a/b` names b
  itself (a final symlink is not followed, unless `follow_link`, docker cp -L), `/a/b/` and
  `/a/b/.` follow it and must be directories.
- the archive's top entry is named after the requested base (`b`, or `.` for `/a/b/.`, so
  `./x` for its contents; `/` gives `/`, `/bin`, ... as docker's root rebase does); members
  sorted by name under each directory, PAX headers only when a field needs one, numeric
  owners with empty user/group names, mtimes in whole seconds, second and later names of an
  inode as hard links to the first, sockets left out, two zero blocks at the end.
- extraction: member names are cleaned; one that would leave the destination (`../x`) is
  refused, an absolute one is taken relative to it; a relative symlink target that leaves the
  destination is refused (docker's breakout check; absolute targets are fine); a hard link
  must name a path inside the destination; an existing directory meets a directory by
  merging, anything else is removed first (or refused, with `no_overwrite_dir_non_dir`, as
  `docker cp` asks); the `.` entry of an existing destination is skipped; directory modes and
  mtimes are applied last. Owners from the tar are restored when running as root and `chown`
  (or set to `owner`).
Not kept: xattrs are neither archived nor extracted; block and character devices are
archived but refused on extraction (layertar refuses them too); a tar that ends without its
end-of-archive block is refused as truncated (Go's reader accepts one that ends between
members); the path stat's mtime is given in UTC (docker uses the daemon's local zone: the
same instant).
"""

from __future__ import annotations

import base64
import errno
import json
import os
import posixpath
import shutil
import stat
import tarfile
import time
from typing import IO, BinaryIO, cast

from adapters.kernel import inroot
from adapters.storage.layertar import (
    BLOCK,
    CHUNK,
    HashingSink,
    LayerError,
    StrictTarInfo,
    TarStream,
    _tarinfo,
    _times,
    _write_all,
    split_member_name,
)
from core.errors import BadInput, NotFound

PATH_STAT_HEADER = "X-Docker-Container-Path-Stat"

# Go's os.FileMode type bits (io/fs): what docker's path stat reports as `mode`.
GO_MODE_DIR = 1 << 31
GO_MODE_SYMLINK = 1 << 27
GO_MODE_DEVICE = 1 << 26
GO_MODE_NAMED_PIPE = 1 << 25
GO_MODE_SOCKET = 1 << 24
GO_MODE_SETUID = 1 << 23
GO_MODE_SETGID = 1 << 22
GO_MODE_CHAR_DEVICE = 1 << 21
GO_MODE_STICKY = 1 << 20

_ENCODING = {"encoding": "utf-8", "errors": "surrogateescape"}
# errnos that mean "this path or this tar does not fit here", not "the host is in trouble".
_INPUT_ERRNOS = {errno.EEXIST, errno.ELOOP, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG,
                 errno.ENOENT, errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EINVAL,
                 errno.ENOTEMPTY}


class CopyError(BadInput):
    """A copy lamina refuses or cannot do as asked; str() is one line naming the path."""


class CopyPathNotFound(CopyError, NotFound):
    """The path asked for is not in the root (docker answers 404)."""


class _CopyTarInfo(StrictTarInfo):
    """layertar's strict header reader (a truncated tar is an error), raising CopyError."""

    error = CopyError


# --- paths as docker spells them -----------------------------------------------------------


def _go_base(path: str) -> str:
    """Go's filepath.Base: the last element; "." for "", "/" for only slashes."""
    if not path:
        return "."
    path = path.rstrip("/")
    return path.rsplit("/", 1)[-1] if path else "/"


def container_path(path: str) -> str:
    """`path` made absolute in the container and cleaned, its trailing `/` or `/.` kept
    (docker's Join("/", path) then PreserveTrailingDotOrSeparator)."""
    path = path or "/"
    cleaned = posixpath.normpath("/" + path.lstrip("/"))
    if _go_base(path) == ".":
        cleaned = cleaned.rstrip("/") + "/."
    if path.endswith("/") and not cleaned.endswith("/"):
        cleaned += "/"
    return cleaned


def _open_path(root_fd: int, abs_path: str, follow_link: bool) -> int:
    """An O_PATH fd of what abs_path names in root: its parents resolved inside root, the
    last component followed only for `x/`, `x/.` (which must be directories) or follow_link.
    A symlink not followed is opened itself (O_PATH|O_NOFOLLOW)."""
    base = abs_path.rsplit("/", 1)[1]
    if base in ("", "."):
        flags = os.O_PATH | os.O_DIRECTORY
    elif follow_link:
        flags = os.O_PATH
    else:
        flags = os.O_PATH | os.O_NOFOLLOW
    try:
        return inroot.open_in_root(root_fd, abs_path, flags)
    except inroot.InRootUnsupported:
        raise
    except OSError as exc:
        raise _path_error(exc, abs_path) from None


def _path_error(exc: OSError, path: str) -> CopyError:
    if exc.errno == errno.ENOENT:
        return CopyPathNotFound(f"Could not find the file {path} in the container")
    return CopyError(inroot.describe(exc, path))


# --- stat: HEAD /containers/{id}/archive ---------------------------------------------------


def go_file_mode(st_mode: int) -> int:
    """A stat mode as Go's os.FileMode: permission bits plus Go's own type and special bits
    (a directory 0755 is 1<<31 | 0o755, a symlink 1<<27 | 0o777)."""
    mode = st_mode & 0o777
    kind = stat.S_IFMT(st_mode)
    mode |= {stat.S_IFDIR: GO_MODE_DIR, stat.S_IFLNK: GO_MODE_SYMLINK,
             stat.S_IFIFO: GO_MODE_NAMED_PIPE, stat.S_IFSOCK: GO_MODE_SOCKET,
             stat.S_IFBLK: GO_MODE_DEVICE,
             stat.S_IFCHR: GO_MODE_DEVICE | GO_MODE_CHAR_DEVICE}.get(kind, 0)
    if st_mode & stat.S_ISUID:
        mode |= GO_MODE_SETUID
    if st_mode & stat.S_ISGID:
        mode |= GO_MODE_SETGID
    if st_mode & stat.S_ISVTX:
        mode |= GO_MODE_STICKY
    return mode


def rfc3339_nano(ns: int) -> str:
    """A time in ns as Go's time.RFC3339Nano in UTC (fraction without trailing zeros)."""
    seconds, frac = divmod(ns, 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return text + (f".{frac:09d}".rstrip("0") if frac else "") + "Z"


def stat_in_root(root_fd: int, path: str) -> dict[str, object]:
    """docker's ContainerPathStat of `path` in root: name (the requested base), size, mode
    (Go FileMode bits), mtime (RFC 3339), linkTarget (for a symlink: the absolute path it
    resolves to inside the root, followed as far as it exists; else "").

    The last component is not followed (a symlink reports itself) unless the path ends in
    `/` or `/.`. Raises CopyPathNotFound when missing, CopyError otherwise.
    """
    abs_path = container_path(path)
    fd = _open_path(root_fd, abs_path, follow_link=False)
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    link = ""
    if stat.S_ISLNK(st.st_mode):
        try:
            link = inroot.scoped_path(root_fd, abs_path)
        except inroot.InRootUnsupported:
            raise
        except OSError as exc:
            raise _path_error(exc, abs_path) from None
    return {"name": _go_base(abs_path), "size": st.st_size, "mode": go_file_mode(st.st_mode),
            "mtime": rfc3339_nano(st.st_mtime_ns), "linkTarget": link}


def path_stat_header(path_stat: dict[str, object]) -> str:
    """The X-Docker-Container-Path-Stat value: the stat as JSON, base64 (standard alphabet)."""
    raw = json.dumps(path_stat, separators=(",", ":")).encode()
    return base64.b64encode(raw).decode("ascii")


# --- archive: GET /containers/{id}/archive, docker cp CTR:PATH -------------------------------


def archive_from_root(root_fd: int, path: str, out: BinaryIO,
                      follow_link: bool = False) -> int:
    """Write a tar of `path` in root to `out` as docker does; return the bytes written.

    The top entry is named after the requested base (see the module docstring); a symlink
    there is archived as a symlink unless follow_link, whose target (resolved inside the
    root) is then archived under the requested name. Nothing below the start is followed.
    Entries that vanish during the walk are left out; a file that shrinks while it is
    copied is an error (the header already promised its size).
    """
    abs_path = container_path(path)
    fd = _open_path(root_fd, abs_path, follow_link)
    rebase = _go_base(abs_path)
    writer = _ArchiveWriter(out)
    writer.archive(fd, "" if rebase == "/" else rebase)
    return writer.sink.size


class _ArchiveWriter:
    """One archive: a depth-first walk over O_PATH fds, headers through TarInfo.tobuf."""

    def __init__(self, out: BinaryIO) -> None:
        self.sink = HashingSink(out)
        self.buf = bytearray(CHUNK)
        self.links: dict[tuple[int, int], str] = {}

    def archive(self, fd: int, name: str) -> None:
        frames: list[tuple[int, str, list[str]]] = []  # (dir fd, its name, children left)
        try:
            self._entry(fd, name, frames)
            while frames:
                dir_fd, prefix, children = frames[-1]
                if not children:
                    os.close(dir_fd)
                    frames.pop()
                    continue
                child = children.pop()
                try:
                    child_fd = os.open(child, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC,
                                       dir_fd=dir_fd)
                except FileNotFoundError:
                    continue  # removed since the directory was listed
                self._entry(child_fd, f"{prefix}/{child}", frames)
        finally:
            for dir_fd, _, _ in frames:
                os.close(dir_fd)
        self.sink.write(bytes(2 * BLOCK))

    def _entry(self, fd: int, name: str, frames: list[tuple[int, str, list[str]]]) -> None:
        """Archive what the O_PATH|O_NOFOLLOW fd refers to (the fd is closed); a directory
        is pushed on `frames` for the walk to continue into."""
        try:
            st = os.fstat(fd)
            info = _tarinfo(name, st)
            mode = st.st_mode
            if stat.S_ISDIR(mode):
                dir_fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
                frames.append((dir_fd, name, sorted(os.listdir(dir_fd), key=os.fsencode,
                                                    reverse=True)))
                info.type = tarfile.DIRTYPE
                self._header(info)
            elif stat.S_ISSOCK(mode):
                return  # a tar cannot hold one
            elif self._hardlink(info, st):
                self._header(info)
            elif stat.S_ISREG(mode):
                self._regular(fd, info, st)
            elif stat.S_ISLNK(mode):
                info.type, info.linkname = tarfile.SYMTYPE, os.readlink("", dir_fd=fd)
                self._header(info)
            elif stat.S_ISFIFO(mode):
                info.type = tarfile.FIFOTYPE
                self._header(info)
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
                info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
                self._header(info)
        except OSError as exc:
            if exc.errno not in _INPUT_ERRNOS:
                raise
            raise CopyError(inroot.describe(exc, name or "/")) from None
        finally:
            os.close(fd)

    def _hardlink(self, info: tarfile.TarInfo, st: os.stat_result) -> bool:
        """Second and later names of one inode become hard links to the first name."""
        if st.st_nlink < 2:
            return False
        first = self.links.setdefault((st.st_dev, st.st_ino), info.name)
        if first == info.name:
            return False
        info.type, info.linkname, info.size = tarfile.LNKTYPE, first, 0
        return True

    def _regular(self, fd: int, info: tarfile.TarInfo, st: os.stat_result) -> None:
        """Header, then exactly st_size bytes read from the inode the O_PATH fd holds."""
        data = inroot.reopen(fd, os.O_RDONLY)
        try:
            info.type, info.size = tarfile.REGTYPE, st.st_size
            self._header(info)
            view, left = memoryview(self.buf), st.st_size
            while left:
                n = os.readv(data, [view[:min(left, CHUNK)]])
                if not n:
                    raise CopyError(f"{info.name}: the file shrank while it was copied")
                self.sink.write(view[:n])
                left -= n
        finally:
            os.close(data)
        if st.st_size % BLOCK:
            self.sink.write(bytes(BLOCK - st.st_size % BLOCK))

    def _header(self, info: tarfile.TarInfo) -> None:
        self.sink.write(info.tobuf(tarfile.PAX_FORMAT, **_ENCODING))


# --- extract: PUT /containers/{id}/archive, docker cp SRC CTR:PATH ----------------------------


def extract_into_root(root_fd: int, dest_dir: str, tar_stream: BinaryIO, *,
                      no_overwrite_dir_non_dir: bool = False, chown: bool = True,
                      owner: tuple[int, int] | None = None) -> None:
    """Extract an uncompressed tar into the directory `dest_dir` names in root.

    `dest_dir` is resolved inside the root, a final symlink included (docker: "you can
    extract an archive to a symlink that points to a directory"); it must exist and be a
    directory. Every member's parent is opened (missing ones created, 0755) inside the root;
    see the module docstring for what is refused. Owners: the tar's numeric uid/gid when
    running as root and `chown`, or `owner` for every member (docker's copyUIDGID with the
    container's user). On failure, what was extracted so far stays.
    """
    dest = container_path(dest_dir)
    try:
        resolved = inroot.scoped_path(root_fd, dest)
        os.close(inroot.open_in_root(root_fd, resolved, os.O_PATH | os.O_DIRECTORY))
    except inroot.InRootUnsupported:
        raise
    except NotADirectoryError:
        raise CopyError(f"{dest}: extraction point is not a directory") from None
    except OSError as exc:
        raise _path_error(exc, dest) from None
    src = TarStream(tar_stream)
    extractor = _Extractor(root_fd, resolved, src, no_overwrite_dir_non_dir, chown, owner)
    try:
        archive = tarfile.TarFile(fileobj=cast(IO[bytes], src), mode="r", tarinfo=_CopyTarInfo,
                                  encoding="utf-8", errors="surrogateescape")
        for member in archive:
            extractor.add(member, archive)
        extractor.finish()
    except tarfile.TarError as exc:
        raise CopyError(f"truncated or corrupt tar: {exc}") from None
    except LayerError as exc:  # TarStream's: data ending early
        raise CopyError(str(exc)) from None


def _member_parts(name: str, what: str = "member") -> list[str]:
    """A member (or hard link target) name as components below the destination, cleaned as
    docker does (filepath.Clean; absolute names are relative to the destination); refused
    when it would leave the destination."""
    if "\x00" in name:
        raise CopyError(f"{what} name has a NUL byte: {name!r}")
    clean = posixpath.normpath(name) if name else "."
    if clean == ".." or clean.startswith("../"):
        raise CopyError(f"{what} {name!r} is outside of the destination: refused")
    return split_member_name(clean.lstrip("/"), what, CopyError)


class _Extractor:
    """Creates members below `dest` (a container path, symlinks resolved) in root_fd."""

    def __init__(self, root_fd: int, dest: str, stream: TarStream, no_overwrite: bool,
                 chown: bool, owner: tuple[int, int] | None) -> None:
        self.root = root_fd
        self.dest = dest
        self.stream = stream
        self.no_overwrite = no_overwrite
        self.owner = owner
        self.restore_owner = chown and os.geteuid() == 0
        self.dirs: list[tuple[list[str], tarfile.TarInfo]] = []

    def add(self, m: tarfile.TarInfo, archive: tarfile.TarFile) -> None:
        parts = _member_parts(m.name)
        if not parts:  # "." : the destination itself, which exists
            if m.isdir():
                return
            raise CopyError(f"{m.name!r}: cannot replace the destination with a non-directory")
        self._check_type(parts, m)
        try:
            parent = self._parent(parts[:-1], create=True)
            try:
                self._place(parent, parts, m, archive)
            finally:
                os.close(parent)
        except inroot.InRootUnsupported:
            raise
        except OSError as exc:
            if exc.errno not in _INPUT_ERRNOS:
                raise
            raise CopyError(inroot.describe(exc, m.name)) from None

    def _check_type(self, parts: list[str], m: tarfile.TarInfo) -> None:
        """Refusals that need nothing from the disk: devices, unknown types, breakouts."""
        if m.ischr() or m.isblk():
            raise CopyError(f"{m.name!r}: device nodes are refused ({m.devmajor}:{m.devminor})")
        if not (m.isreg() or m.isdir() or m.issym() or m.islnk() or m.isfifo()):
            raise CopyError(f"{m.name!r}: unsupported tar entry type {m.type!r}")
        if m.issym() and not m.linkname.startswith("/"):
            target = posixpath.normpath("/".join([*parts[:-1], m.linkname]))
            if target == ".." or target.startswith("../"):
                raise CopyError(f"invalid symlink {m.name!r} -> {m.linkname!r}: it leaves "
                                "the destination")
        if m.islnk():
            target_parts = _member_parts(m.linkname, "hard link target")
            if not target_parts or target_parts == parts:
                raise CopyError(f"invalid hard link {m.name!r} -> {m.linkname!r}")

    def _parent(self, parts: list[str], create: bool) -> int:
        """The directory dest/parts, opened inside the root (created when missing)."""
        path = posixpath.join(self.dest, *parts)
        try:
            return inroot.open_in_root(self.root, path, os.O_PATH | os.O_DIRECTORY)
        except FileNotFoundError:
            if not create:
                raise
            return inroot.mkdirs_in_root(self.root, path, 0o755)

    def _place(self, parent: int, parts: list[str], m: tarfile.TarInfo,
               archive: tarfile.TarFile) -> None:
        base = parts[-1]
        merge = self._clear(parent, base, parts, m)
        if m.isdir():
            if not merge:
                os.mkdir(base, 0o700, dir_fd=parent)
            self.dirs.append((parts, m))  # owner, mode and mtime once children are in
        elif m.isreg():
            self._regular(parent, base, m, archive)
        elif m.issym():
            os.symlink(m.linkname, base, dir_fd=parent)
            ids = self._ids(m)
            if ids:
                os.chown(base, *ids, dir_fd=parent, follow_symlinks=False)
            os.utime(base, ns=_times(m), dir_fd=parent, follow_symlinks=False)
        elif m.islnk():
            target = _member_parts(m.linkname, "hard link target")
            source = self._parent(target[:-1], create=False)
            try:
                os.link(target[-1], base, src_dir_fd=source, dst_dir_fd=parent,
                        follow_symlinks=False)
            finally:
                os.close(source)
        else:
            self._fifo(parent, base, m)

    def _clear(self, parent: int, base: str, parts: list[str], m: tarfile.TarInfo) -> bool:
        """Make room for a member (docker's rules); True when an existing directory is to
        be merged with a directory member. What is there is never followed."""
        try:
            old = os.stat(base, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return False
        old_dir = stat.S_ISDIR(old.st_mode)
        path = posixpath.join(self.dest, *parts)
        if self.no_overwrite and old_dir and not m.isdir():
            raise CopyError(f"cannot overwrite directory {path!r} with non-directory "
                            f"{m.name!r}")
        if self.no_overwrite and not old_dir and m.isdir():
            raise CopyError(f"cannot overwrite non-directory {path!r} with directory "
                            f"{m.name!r}")
        if old_dir and m.isdir():
            return True
        if old_dir:
            shutil.rmtree(base, dir_fd=parent)
        else:
            os.unlink(base, dir_fd=parent)
        return False

    def _ids(self, m: tarfile.TarInfo) -> tuple[int, int] | None:
        if self.owner is not None:
            return self.owner
        return (m.uid, m.gid) if self.restore_owner else None

    def _regular(self, parent: int, base: str, m: tarfile.TarInfo,
                 archive: tarfile.TarFile) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(base, flags, 0o600, dir_fd=parent)
        try:
            if m.issparse():  # holes and all, through tarfile
                data = archive.extractfile(m)
                assert data is not None
                while chunk := data.read(CHUNK):
                    _write_all(fd, memoryview(chunk))
            elif m.size:
                self.stream.copy_to(fd, m.name, m.size)
            ids = self._ids(m)
            if ids:
                os.fchown(fd, *ids)
            os.fchmod(fd, m.mode & 0o7777)
            os.utime(fd, ns=_times(m))
        finally:
            os.close(fd)

    def _fifo(self, parent: int, base: str, m: tarfile.TarInfo) -> None:
        """mkfifo, then its metadata through an O_PATH fd: opening a FIFO for reading could
        block, and a name could be swapped for something else meanwhile."""
        os.mkfifo(base, 0o600, dir_fd=parent)
        fd = os.open(base, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        try:
            if not stat.S_ISFIFO(os.fstat(fd).st_mode):
                raise CopyError(f"{m.name!r} was replaced while it was extracted")
            inode = f"/proc/self/fd/{fd}"  # this very inode, whatever the name holds now
            ids = self._ids(m)
            if ids:
                os.chown(inode, *ids)
            os.chmod(inode, m.mode & 0o7777)
            os.utime(inode, ns=_times(m))
        finally:
            os.close(fd)

    def finish(self) -> None:
        """Directory owners, modes and mtimes, deepest first, once no child changes them.
        A directory a later member replaced is left alone."""
        for parts, m in sorted(self.dirs, key=lambda pm: -len(pm[0])):
            try:
                parent = self._parent(parts[:-1], create=False)
            except (FileNotFoundError, NotADirectoryError):
                continue
            try:
                fd = os.open(parts[-1], os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                             | os.O_CLOEXEC, dir_fd=parent)
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
                    continue
                raise
            finally:
                os.close(parent)
            try:
                ids = self._ids(m)
                if ids:
                    os.fchown(fd, *ids)
                os.fchmod(fd, m.mode & 0o7777)
                os.utime(fd, ns=_times(m))
            finally:
                os.close(fd)
