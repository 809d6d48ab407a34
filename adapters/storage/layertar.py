"""Layer tars: deterministic archives of layer directories, and their safe extraction.

A layer on disk is an overlayfs upper/lower directory: a deleted file is a 0/0 character
device, a directory that hides everything below it carries `trusted.overlay.opaque=y`. A layer
tar is the OCI form of the same thing: `.wh.<name>` files and `<dir>/.wh..wh..opq` markers.
`write_layer_tar` converts the first into the second, `extract_layer_tar` the reverse.

Determinism (the same files give the same bytes, hence the same diff_id): members sorted by
their path bytes; PAX format; numeric uid/gid with empty uname/gname; mode bits and mtimes
kept, mtimes in whole seconds (as docker does: sub-second mtimes would add a PAX record to
every member, and most tools drop them anyway); xattrs as `SCHILY.xattr.*` records in name
order; no atime/ctime; the second and later names of an inode are tar hardlinks to the first
name in that order; the root directory itself has no entry; the archive ends with exactly two
zero blocks (no padding to a 10 KiB record, like Go's archive/tar). Sockets are skipped: a tar
cannot hold them. A file whose own name starts with `.wh.` is refused: it would read back as a
whiteout. Headers come from TarInfo.tobuf; file data is streamed in 1 MiB reads and hashed on
the way out (tarfile's own addfile copies in 16 KiB pieces, which costs about half the speed).

Extraction policy (hostile input; every refusal is a one-line `LayerError`):
- member and hardlink names with `..` components, absolute names, NUL bytes: refused.
- every parent directory is opened from the destination's fd, one component at a time, with
  O_NOFOLLOW|O_DIRECTORY. A member below a symlink is refused, whether or not the symlink
  leads outside: a real layer directory cannot hold a path below a symlink it also holds, and
  refusing all of them needs no path resolution to get right. Symlinks themselves are stored
  as they are, whatever they point to.
- files are created with O_CREAT|O_EXCL|O_NOFOLLOW, so nothing is ever written through an
  existing name.
- duplicate entries are refused (docker lets the later one win). A deterministic writer never
  makes them, and "later wins" lets one tar show a scanner one file and the container another.
  `x` together with `.wh.x` counts as a duplicate. A directory first created implicitly (as
  the parent of an earlier member) may still get its own entry later.
- hardlinks must name an earlier, non-directory member of the same tar.
- block and character devices are refused, except a 0/0 character device, which *is* an
  overlay whiteout. FIFOs are fine. `write_*` does archive device nodes faithfully (an export
  should not silently lose files); such a tar is then refused on import.
- overlayfs-private xattrs (`trusted.overlay.*`, `user.overlay.*`) are refused: they could
  redirect or hide paths in the union. Only `SCHILY.xattr.*` records are read (libarchive's
  duplicate `LIBARCHIVE.xattr.*` records are ignored).
- a tar that ends without an end-of-archive zero block, or in the middle of a header or of a
  member's data, is refused as truncated.
Nothing is ever written outside `dest_dir`; on failure, what was extracted so far stays in
`dest_dir` for the caller (who stages in a temp dir) to remove. Ownership is restored only when
running as root.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
import tarfile
from collections import OrderedDict
from typing import IO, BinaryIO, Protocol, Self, TypedDict, cast

BLOCK = 512
CHUNK = 1 << 20
WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OVERLAY_OPAQUE = "trusted.overlay.opaque"
PRIVATE_XATTRS = ("trusted.overlay.", "user.overlay.")
XATTR_PAX = "SCHILY.xattr."
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


class _Encoding(TypedDict):
    encoding: str
    errors: str


# Names in tars are bytes; surrogateescape carries any of them through str and back.
ENCODING: _Encoding = {"encoding": "utf-8", "errors": "surrogateescape"}

_DIR_FD_CACHE = 128
_WHITEOUT = b"whiteout"  # kinds of tree entries, and what the extractor records
_OPAQUE = b"opaque"
_FILE = b"file"
# errnos that mean "this tar conflicts with itself" rather than "the host is in trouble".
_INPUT_ERRNOS = {errno.EEXIST, errno.ELOOP, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG}


class LayerError(ValueError):
    """A layer tar or directory that lamina refuses; str() is one line naming the member."""


# --- writing ------------------------------------------------------------------------------


def write_layer_tar(diff_dir: str, out_fileobj: Sink,
                    split: SplitRecorder | None = None) -> tuple[str, int]:
    """Archive a layer directory as an OCI layer tar; return (diff_id, bytes written).

    Overlay whiteouts become `.wh.` files and opaque directories get a `.wh..wh..opq` entry.
    The digest is computed while streaming: there is no second pass over the output. With
    `split`, the tar's own bytes go there and each file's contents as a reference to it
    (its path below diff_dir): the tar-split that rebuilds this very tar from the files.
    """
    return _TarWriter(out_fileobj, layer=True, split=split).archive(diff_dir)


def write_flat_tar(root_dir: str, out: Sink) -> tuple[str, int]:
    """Archive a plain directory tree (an `export` of a mounted union view) deterministically.

    No whiteout conversion: a union view has none. Returns (sha256 digest, bytes written).
    """
    return _TarWriter(out, layer=False).archive(root_dir)


def chain_ids(diff_ids: list[str]) -> list[str]:
    """The OCI ChainID of every layer of a stack given bottom first.

    ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln)).
    """
    chain: list[str] = []
    for diff_id in diff_ids:
        if not _DIGEST.fullmatch(diff_id):
            raise LayerError(f"not a sha256 diff_id: {diff_id!r}")
        if chain:
            text = f"{chain[-1]} {diff_id}".encode()
            diff_id = "sha256:" + hashlib.sha256(text).hexdigest()
        chain.append(diff_id)
    return chain


def chain_id(diff_ids: list[str]) -> str:
    """The ChainID of the top layer of a stack given bottom first."""
    if not diff_ids:
        raise LayerError("a chain needs at least one layer")
    return chain_ids(diff_ids)[-1]


class Sink(Protocol):
    """Where a tar is written: a file, a pipe, a socket's file, or nothing (a digest only).
    A raw file may write less than asked and say how much; a buffered one returns None."""

    def write(self, data: bytes | memoryview, /) -> int | None: ...


class HashingSink:
    """Writes to the output while hashing and counting."""

    def __init__(self, out: Sink) -> None:
        self.out = out
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | memoryview) -> int:
        self.hash.update(data)
        done = self.out.write(data)
        while done is not None and done < len(data):  # a raw file or pipe may write less
            more = self.out.write(memoryview(data)[done:])
            done = len(data) if more is None else done + more
        self.size += len(data)
        return len(data)


class _TarWriter:
    """One archive: headers through TarInfo.tobuf, file data in 1 MiB reads."""

    def __init__(self, out: Sink, layer: bool, split: SplitRecorder | None = None) -> None:
        self.sink = HashingSink(out)
        self.layer = layer
        self.buf = bytearray(CHUNK)
        self.links: dict[tuple[int, int], str] = {}
        self.split = split

    def _raw(self, data: bytes) -> None:
        """Bytes of the tar itself (headers, padding, the end): also the tar-split's."""
        self.sink.write(data)
        if self.split is not None:
            self.split.raw(data)

    def archive(self, root: str) -> tuple[str, int]:
        for _, rel, kind in _sorted_tree(root, self.layer):
            path = os.path.join(root, rel)
            if kind == _OPAQUE:
                self._opaque_marker(rel, os.lstat(path))
            elif kind == _WHITEOUT:
                self._whiteout(rel, os.lstat(path))
            else:
                self._member(rel, path)
        self._raw(bytes(2 * BLOCK))
        return "sha256:" + self.sink.hash.hexdigest(), self.sink.size

    def _member(self, rel: str, path: str) -> None:
        st = os.lstat(path)
        info = _tarinfo(rel, st)
        if not self._set_type(info, st, path):
            return  # a socket
        if self._hardlink(info, st):
            self._header(info)
            return
        info.pax_headers = {XATTR_PAX + k: v.decode(**ENCODING)
                            for k, v in _read_xattrs(path).items()}
        self._header(info)
        if info.type == tarfile.REGTYPE and info.size:
            self._data(rel, path, st)

    def _hardlink(self, info: tarfile.TarInfo, st: os.stat_result) -> bool:
        """Second and later names of one inode become tar hardlinks to the first name."""
        if stat.S_ISDIR(st.st_mode) or st.st_nlink < 2:
            return False
        first = self.links.setdefault((st.st_dev, st.st_ino), info.name)
        if first == info.name:
            return False
        info.type, info.linkname, info.size = tarfile.LNKTYPE, first, 0
        info.devmajor = info.devminor = 0
        return True

    @staticmethod
    def _set_type(info: tarfile.TarInfo, st: os.stat_result, path: str) -> bool:
        mode = st.st_mode
        if stat.S_ISREG(mode):
            info.type, info.size = tarfile.REGTYPE, st.st_size
        elif stat.S_ISDIR(mode):
            info.type = tarfile.DIRTYPE
        elif stat.S_ISLNK(mode):
            info.type, info.linkname = tarfile.SYMTYPE, os.readlink(path)
        elif stat.S_ISFIFO(mode):
            info.type = tarfile.FIFOTYPE
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        else:
            return False
        return True

    def _whiteout(self, rel: str, st: os.stat_result) -> None:
        head, base = os.path.split(rel)
        info = _tarinfo(os.path.join(head, WHITEOUT_PREFIX + base), st)
        info.mode = 0o600
        self._header(info)

    def _opaque_marker(self, rel: str, st: os.stat_result) -> None:
        info = _tarinfo(os.path.join(rel, OPAQUE_MARKER), st)
        info.mode &= 0o777
        self._header(info)

    def _header(self, info: tarfile.TarInfo) -> None:
        self._raw(info.tobuf(tarfile.PAX_FORMAT, **ENCODING))

    def _data(self, rel: str, path: str, st: os.stat_result) -> None:
        """Stream exactly st_size bytes (the size the header promised), then pad the block."""
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            if os.fstat(fd).st_ino != st.st_ino:
                raise LayerError(f"{rel!r} was replaced while archiving")
            if self.split is not None:
                self.split.file(rel, st.st_size)
            view, left = memoryview(self.buf), st.st_size
            while left:
                n = os.readv(fd, [view[:min(left, CHUNK)]])
                if not n:
                    raise LayerError(f"{rel!r} shrank while archiving")
                self.sink.write(view[:n])
                left -= n
        finally:
            os.close(fd)
        if st.st_size % BLOCK:
            self._raw(bytes(BLOCK - st.st_size % BLOCK))


def _sorted_tree(root: str, layer: bool) -> list[tuple[bytes, str, bytes]]:
    """(tar name, path below root, kind) for everything below root, sorted by tar name.

    In a layer, a whiteout `x` is sorted as `.wh.x`, and an opaque directory gets a virtual
    entry `dir/.wh..wh..opq`, so that the archive is in member-name order.
    """
    entries: list[tuple[bytes, str, bytes]] = []
    stack = [""]
    while stack:
        rel = stack.pop()
        with os.scandir(os.path.join(root, rel)) as it:
            for entry in it:
                entries.append(_tree_entry(rel, entry, layer))
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entries[-1][1])
                    if layer and _xattr(entry.path, OVERLAY_OPAQUE) == b"y":
                        marker = os.path.join(entries[-1][1], OPAQUE_MARKER)
                        entries.append((os.fsencode(marker), entries[-1][1], _OPAQUE))
    entries.sort()
    return entries


def _tree_entry(rel: str, entry: os.DirEntry[str], layer: bool) -> tuple[bytes, str, bytes]:
    path = os.path.join(rel, entry.name)
    if entry.name.startswith(WHITEOUT_PREFIX):
        raise LayerError(f"{path!r}: names starting with {WHITEOUT_PREFIX!r} are reserved for "
                         "whiteouts in a layer tar")
    if layer and _is_whiteout(entry):
        return os.fsencode(os.path.join(rel, WHITEOUT_PREFIX + entry.name)), path, _WHITEOUT
    return os.fsencode(path), path, _FILE


def _tarinfo(name: str, st: os.stat_result) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.uname = info.gname = ""
    info.mtime = st.st_mtime_ns // 1_000_000_000
    return info


def _is_whiteout(entry: os.DirEntry[str]) -> bool:
    """An overlay whiteout in an upper dir: a 0/0 character device.

    (Kernels >= 6.7 also read "xwhiteouts", empty files marked by xattr, but only userspace
    tools such as composefs make those; an upper dir written by the kernel never holds one.)
    """
    if entry.is_dir(follow_symlinks=False) or entry.is_file(follow_symlinks=False):
        return False
    st = entry.stat(follow_symlinks=False)
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _read_xattrs(path: str) -> dict[str, bytes]:
    """All xattrs but overlayfs' private ones, in name order."""
    names = sorted(n for n in os.listxattr(path, follow_symlinks=False)
                   if not n.startswith(PRIVATE_XATTRS))
    return {n: os.getxattr(path, n, follow_symlinks=False) for n in names}


def _xattr(path: str, name: str) -> bytes | None:
    try:
        return os.getxattr(path, name, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP):
            return None
        raise


# --- reading ------------------------------------------------------------------------------


def extract_layer_tar(tar_fileobj: BinaryIO, dest_dir: str,
                      split: SplitRecorder | None = None) -> tuple[str, int]:
    """Extract an (uncompressed) OCI layer tar into a fresh directory in overlay form.

    Returns (diff_id, size) of the tar stream as read, end-of-archive padding included.
    `dest_dir` is created (with its parents) if missing, and must be empty. See the module
    docstring for what is refused; a refusal raises LayerError. With `split`, every byte of
    the stream is handed to it as it goes by, as raw bytes or as a regular file's contents
    (the tar-split, adapters/storage/archive.py), so the stream is read exactly once.
    """
    _fresh_dir(dest_dir)
    src = TarStream(tar_fileobj, split)
    extractor = _Extractor(dest_dir, src)
    try:
        archive = tarfile.TarFile(fileobj=cast(IO[bytes], src), mode="r",
                                  tarinfo=StrictTarInfo, **ENCODING)
        for member in archive:
            extractor.add(member, archive)
        extractor.finish()
    except tarfile.TarError as exc:
        raise LayerError(f"truncated or corrupt tar: {exc}") from None
    finally:
        extractor.close()
    src.drain()
    return "sha256:" + src.hash.hexdigest(), src.size


def _fresh_dir(path: str) -> None:
    try:
        os.makedirs(path, 0o755)
    except FileExistsError:
        if os.listdir(path):
            raise OSError(errno.ENOTEMPTY, f"extract into a fresh directory: {path}") from None


class SplitRecorder(Protocol):
    """Where the bytes of a layer tar go as they are read (archive.SplitWriter)."""

    def raw(self, data: bytes) -> None:
        """Bytes kept as they are: headers, PAX records, padding, what follows the end."""

    def file(self, name: str, size: int) -> None:
        """The next `size` bytes are the contents of the extracted file `name`."""


class TarStream:
    """A tar stream read once, front to back, in 1 MiB pieces, hashed and counted.

    Why not tarfile's own `r|` stream: it reads its source 10 KiB at a time and copies the
    rest of its buffer on every read, so a big buffer makes small reads quadratic; and a
    member's contents went through two more buffered layers on the way to the file. Here
    tarfile (opened in mode "r" on this object: it only reads, tells and seeks forward)
    parses the headers, and a member's contents go from the buffer to its file in one write
    per piece (`copy_to`). Every byte read is either raw (tarfile's reads, and what a
    forward seek skips) or a file's contents: that is the tar-split, handed to `split`.
    """

    def __init__(self, raw: BinaryIO, split: SplitRecorder | None = None) -> None:
        self.raw, self.split = raw, split
        self.hash = hashlib.sha256()
        self.size = 0  # bytes taken from `raw`
        self.pos = 0  # bytes handed on (read, skipped or copied)
        self.buf, self.at = b"", 0  # the unread bytes are buf[at:]

    def _fill(self) -> bool:
        data = self.raw.read(CHUNK)
        if not data:
            return False
        self.hash.update(data)
        self.size += len(data)
        self.buf, self.at = data, 0
        return True

    def read(self, n: int = -1) -> bytes:
        """Up to n bytes (fewer only at the end of the stream), all raw for the split."""
        if n is None or n < 0:
            return b"".join(iter(lambda: self.read(CHUNK), b""))
        end = self.at + n
        if end <= len(self.buf):
            out = self.buf[self.at:end]
            self.at = end
        else:
            parts, got = [self.buf[self.at:]], len(self.buf) - self.at
            self.at = len(self.buf)
            while got < n and self._fill():
                take = min(n - got, len(self.buf))
                parts.append(self.buf[:take])
                self.at, got = take, got + take
            out = b"".join(parts)
        self.pos += len(out)
        if self.split is not None and out:
            self.split.raw(out)
        return out

    def tell(self) -> int:
        return self.pos

    def seek(self, pos: int, whence: int = 0) -> int:
        """Forward only: what is skipped (padding, data nobody extracted) is read as raw."""
        if whence != 0 or pos < self.pos:
            raise tarfile.StreamError("seeking backwards in a layer tar stream")
        while self.pos < pos and self.read(min(pos - self.pos, CHUNK)):
            pass
        return self.pos

    def copy_to(self, fd: int, name: str, n: int) -> None:
        """The next n bytes, a regular file's contents, written to fd (and to the split as a
        reference to the file `name`)."""
        if self.split is not None:
            self.split.file(name, n)
        while n:
            if self.at == len(self.buf) and not self._fill():
                raise LayerError(f"{name!r}: truncated tar: member data ends early")
            k = min(n, len(self.buf) - self.at)
            with memoryview(self.buf) as view:
                _write_all(fd, view[self.at:self.at + k])
            self.at += k
            self.pos += k
            n -= k

    def drain(self) -> None:
        """Read what follows the end-of-archive blocks: the diff_id covers the whole stream."""
        while self.read(CHUNK):
            pass


def _write_all(fd: int, data: memoryview) -> None:
    done = 0
    while done < len(data):
        done += os.write(fd, data[done:])


class StrictTarInfo(tarfile.TarInfo):
    """tarfile ends an archive quietly at a truncated or garbage header; we refuse it.

    Only a zero block (EOFHeaderError) is a proper end.
    """

    error: type[Exception] = LayerError

    @classmethod
    def fromtarfile(cls, tarfile_: tarfile.TarFile) -> Self:
        try:
            return super().fromtarfile(tarfile_)
        except tarfile.EOFHeaderError:  # type: ignore[attr-defined]  # private, not in typeshed
            raise
        except tarfile.EmptyHeaderError:  # type: ignore[attr-defined]  # private, as above
            raise cls.error("truncated tar: no end-of-archive block") from None
        except tarfile.HeaderError as exc:
            raise cls.error(f"truncated or corrupt tar header: {exc}") from None


def split_member_name(name: str, what: str = "member",
                      error: type[Exception] = LayerError) -> list[str]:
    """A member name as path components; refuses what could leave the destination."""
    if "\x00" in name:
        raise error(f"{what} name has a NUL byte: {name!r}")
    if name.startswith("/"):
        raise error(f"{what} has an absolute path: {name!r}")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise error(f"{what} path has '..': {name!r}")
    return parts



class _Extractor:
    """Creates members under one directory fd, never following a symlink on the way."""

    def __init__(self, dest: str, stream: TarStream) -> None:
        self.stream = stream
        self.root = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.fds: OrderedDict[str, int] = OrderedDict()
        self.seen: dict[str, bytes] = {}  # explicit entries: path -> tar type or _WHITEOUT
        self.implicit: set[str] = set()
        self.dir_meta: list[tuple[list[str], tarfile.TarInfo]] = []
        self.as_root = os.geteuid() == 0
        self.current = ""  # the member being extracted, for error messages

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()
        os.close(self.root)

    def add(self, member: tarfile.TarInfo, archive: tarfile.TarFile) -> None:
        self.current = member.name
        parts = split_member_name(member.name)
        try:
            self._dispatch(parts, member, archive)
        except OSError as exc:
            if exc.errno not in _INPUT_ERRNOS:
                raise
            raise LayerError(f"{member.name!r}: {os.strerror(exc.errno)}") from None

    def _dispatch(self, parts: list[str], m: tarfile.TarInfo, archive: tarfile.TarFile) -> None:
        if not parts:
            if not m.isdir():
                raise LayerError(f"{m.name!r}: the layer root can only be a directory")
            return  # the root's own entry: dest_dir is ours, keep its metadata
        base = parts[-1]
        if base == OPAQUE_MARKER:
            self._opaque(parts, m)
        elif base.startswith(WHITEOUT_PREFIX):
            self._whiteout_entry(parts, m)
        elif m.ischr() and m.devmajor == 0 and m.devminor == 0:
            self._claim(parts, _WHITEOUT)
            self._mknod_whiteout(parts, m)
        else:
            self._claim(parts, m.type)
            self._create(parts, m, archive)

    def _claim(self, parts: list[str], kind: bytes) -> None:
        """Record an explicit entry; a second entry for the same path is refused."""
        rel = "/".join(parts)
        if rel in self.seen:
            raise LayerError(f"duplicate entry {rel!r}")
        if rel in self.implicit and kind != tarfile.DIRTYPE:
            raise LayerError(f"{rel!r} is a directory (parent of an earlier member), "
                             "and then not")
        self.seen[rel] = kind

    def _create(self, parts: list[str], m: tarfile.TarInfo, archive: tarfile.TarFile) -> None:
        if m.isreg():
            self._regular(parts, m, archive)
        elif m.isdir():
            self._directory(parts, m)
        elif m.islnk():
            self._hardlink(parts, m)
        elif m.issym():
            self._symlink(self._dir_fd(parts[:-1]), parts[-1], m)
        elif m.isfifo():
            self._fifo(self._dir_fd(parts[:-1]), parts[-1], m)
        elif m.ischr() or m.isblk():
            raise LayerError(f"{m.name!r}: device nodes are refused "
                             f"({m.devmajor}:{m.devminor})")
        else:
            raise LayerError(f"{m.name!r}: unsupported tar entry type {m.type!r}")

    def _regular(self, parts: list[str], m: tarfile.TarInfo, archive: tarfile.TarFile) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(parts[-1], flags, 0o600, dir_fd=self._dir_fd(parts[:-1]))
        try:
            if m.issparse():  # holes and all, through tarfile (raw bytes to the tar-split)
                self._copy_sparse(archive, m, fd)
            elif m.size:
                self.stream.copy_to(fd, "/".join(parts), m.size)
            if self.as_root:
                os.fchown(fd, m.uid, m.gid)
            os.fchmod(fd, m.mode & 0o7777)
            _set_xattrs(fd, m)
            os.utime(fd, ns=_times(m))
        finally:
            os.close(fd)

    @staticmethod
    def _copy_sparse(archive: tarfile.TarFile, m: tarfile.TarInfo, fd: int) -> None:
        data = archive.extractfile(m)
        assert data is not None
        while chunk := data.read(CHUNK):
            _write_all(fd, memoryview(chunk))

    def _directory(self, parts: list[str], m: tarfile.TarInfo) -> None:
        rel = "/".join(parts)
        if rel not in self.implicit:
            os.mkdir(parts[-1], 0o700, dir_fd=self._dir_fd(parts[:-1]))
        fd = self._dir_fd(parts)
        if self.as_root:
            os.fchown(fd, m.uid, m.gid)
        _set_xattrs(fd, m)
        self.dir_meta.append((parts, m))  # mode and mtime last: children change the mtime

    def _symlink(self, parent: int, base: str, m: tarfile.TarInfo) -> None:
        os.symlink(m.linkname, base, dir_fd=parent)
        self._metadata(parent, base, m, chmod=False)

    def _fifo(self, parent: int, base: str, m: tarfile.TarInfo) -> None:
        os.mkfifo(base, 0o600, dir_fd=parent)
        self._metadata(parent, base, m, chmod=True)

    def _metadata(self, parent: int, base: str, m: tarfile.TarInfo, chmod: bool) -> None:
        """Owner, mode, xattrs, mtime of a node we cannot open, never following it."""
        if self.as_root:
            os.chown(base, m.uid, m.gid, dir_fd=parent, follow_symlinks=False)
        if chmod:
            os.chmod(base, m.mode & 0o7777, dir_fd=parent)  # a FIFO we just created
        _set_xattrs(f"/proc/self/fd/{parent}/{base}", m)
        os.utime(base, ns=_times(m), dir_fd=parent, follow_symlinks=False)

    def _hardlink(self, parts: list[str], m: tarfile.TarInfo) -> None:
        target = split_member_name(m.linkname, "hardlink target")
        rel = "/".join(target)
        own = rel == "/".join(parts)
        if own or self.seen.get(rel, _WHITEOUT) in (_WHITEOUT, tarfile.DIRTYPE):
            raise LayerError(f"{m.name!r}: hardlink target {m.linkname!r} is not an earlier "
                             "file of this layer")
        src = os.dup(self._dir_fd(target[:-1]))
        try:
            os.link(target[-1], parts[-1], src_dir_fd=src, dst_dir_fd=self._dir_fd(parts[:-1]),
                    follow_symlinks=False)
        finally:
            os.close(src)

    def _whiteout_entry(self, parts: list[str], m: tarfile.TarInfo) -> None:
        name = parts[-1][len(WHITEOUT_PREFIX):]
        if not m.isreg() or name.startswith(WHITEOUT_PREFIX) or name in ("", ".", ".."):
            raise LayerError(f"{m.name!r}: not a valid whiteout")
        target = [*parts[:-1], name]
        self._claim(target, _WHITEOUT)
        self._mknod_whiteout(target, m)

    def _mknod_whiteout(self, parts: list[str], m: tarfile.TarInfo) -> None:
        parent = self._dir_fd(parts[:-1])
        os.mknod(parts[-1], stat.S_IFCHR, os.makedev(0, 0), dir_fd=parent)
        if self.as_root:
            os.chown(parts[-1], m.uid, m.gid, dir_fd=parent, follow_symlinks=False)
        os.utime(parts[-1], ns=_times(m), dir_fd=parent, follow_symlinks=False)

    def _opaque(self, parts: list[str], m: tarfile.TarInfo) -> None:
        if len(parts) < 2:
            raise LayerError(f"{m.name!r}: an opaque marker at the layer root is not supported")
        self._claim(parts, _WHITEOUT)
        os.setxattr(self._dir_fd(parts[:-1]), OVERLAY_OPAQUE, b"y")

    def _dir_fd(self, parts: list[str]) -> int:
        """An fd of the directory `parts` below dest, creating missing parents (0755).

        Each component is opened with O_NOFOLLOW|O_DIRECTORY relative to its parent's fd, so
        a symlink or non-directory anywhere on the way is refused, never followed.
        """
        depth = len(parts)
        while depth and "/".join(parts[:depth]) not in self.fds:
            depth -= 1
        fd = self.root
        if depth:
            key = "/".join(parts[:depth])
            self.fds.move_to_end(key)
            fd = self.fds[key]
        for i in range(depth, len(parts)):
            fd = self._open_child(fd, parts, i)
        return fd

    def _open_child(self, parent: int, parts: list[str], i: int) -> int:
        rel, name = "/".join(parts[: i + 1]), parts[i]
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(name, flags, dir_fd=parent)
        except FileNotFoundError:
            os.mkdir(name, 0o755, dir_fd=parent)
            self.implicit.add(rel)
            fd = os.open(name, flags, dir_fd=parent)
            os.fchmod(fd, 0o755)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            kind = "symlink" if self.seen.get(rel) == tarfile.SYMTYPE else "non-directory"
            raise LayerError(f"{self.current!r}: refused, it would be written through the "
                             f"{kind} {rel!r}") from None
        self.fds[rel] = fd
        while len(self.fds) > _DIR_FD_CACHE:
            os.close(self.fds.popitem(last=False)[1])
        return fd

    def finish(self) -> None:
        """Directory modes and mtimes, deepest first, once no child will change them."""
        for parts, m in sorted(self.dir_meta, key=lambda pm: -len(pm[0])):
            fd = self._dir_fd(parts)
            os.fchmod(fd, m.mode & 0o7777)
            os.utime(fd, ns=_times(m))


def _times(m: tarfile.TarInfo) -> tuple[int, int]:
    """(atime, mtime) in ns; a PAX mtime may be fractional."""
    ns = round(m.mtime * 1_000_000_000)
    return ns, ns


def _set_xattrs(target: int | str, m: tarfile.TarInfo) -> None:
    """Set a member's xattrs on an fd, or on a path whose last component is not followed."""
    for key, value in _member_xattrs(m):
        try:
            os.setxattr(target, key, value, follow_symlinks=isinstance(target, int))
        except OSError as exc:
            raise LayerError(f"{m.name!r}: cannot set xattr {key!r}: "
                             f"{os.strerror(exc.errno or 0)}") from None


def _member_xattrs(m: tarfile.TarInfo) -> list[tuple[str, bytes]]:
    """SCHILY.xattr.* records as (name, raw value); overlay-private names are refused."""
    out = []
    for key, value in sorted(m.pax_headers.items()):
        if not key.startswith(XATTR_PAX):
            continue
        name = key[len(XATTR_PAX):]
        if name.startswith(PRIVATE_XATTRS):
            raise LayerError(f"{m.name!r}: sets overlayfs-private xattr {name!r}")
        out.append((name, value.encode(**ENCODING)))
    return out
