"""The LayerStore port on disk: read-only layers, read-write layers, the union view.

    <root>/layers/<id>/diff/         a read-only layer's files (overlay's form: whiteouts are
                                     0/0 character devices, opaque dirs carry an xattr)
    <root>/layers/<id>/layer.json    its metadata (the log is the truth; this is for people)
    <root>/layers/<id>/tar-split.gz  how to rebuild the exact layer tar it came from (see
                                     below), so that `save` writes blobs matching the diff_id
    <root>/layers/rw-<cid>/          a container's read-write layer: diff/ (UpperDir), work/,
                                     merged/ (MergedDir, mounted while the container runs)
    <root>/layers/l/                 short links for images too deep for one page of options
    <root>/tmp/                      staging: a layer is written here, then renamed in place

A layer directory appears by rename, complete, or not at all.

Tar-split (docker keeps the same thing, as tar-split.json.gz): a layer's diff_id is the sha256
of the tar it was made from, byte for byte, and a tar written by another tool (GNU tar, Go's
archive/tar, podman) cannot be reproduced from the extracted files. So when a layer is
extracted, the bytes of the stream that are not file contents (headers, PAX records, padding,
the end-of-archive blocks and whatever followed them) are kept in `tar-split.gz`, with a
reference to the extracted file for each member's contents. `layer_blob` puts the two back
together and checks the digest as it streams.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import struct
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, BinaryIO

from adapters.storage import layertar, overlay
from core.errors import BadInput
from core.ports import LayerInfo

RW_PREFIX = "rw-"
SPLIT_FILE = "tar-split.gz"
_SPLIT_MAGIC = b"lamina-tar-split 1\n"
_CHUNK = 1 << 20
_ENCODING = {"encoding": "utf-8", "errors": "surrogateescape"}
# The first bytes of a compressed stream, and how to read it (docker import/load accept these).
_GZIP, _BZIP2, _XZ, _ZSTD = b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd"


class LayerDamaged(BadInput):
    """A stored layer no longer matches its digest (its files were changed on disk)."""


@dataclass
class StagedLayer:
    """A layer extracted and checked under <root>/tmp, not yet in the store."""

    path: str
    diff_id: str
    size: int


@dataclass
class LayerBlob:
    """A stored layer as its tar: `size` bytes with sha256 `digest`, written by `write_to`."""

    digest: str
    size: int
    write_to: Callable[[BinaryIO], None]
    cleanup: Callable[[], None] = lambda: None


class LinuxLayerStore:
    def __init__(self, root: str) -> None:
        self.root = root
        self.layers_dir = os.path.join(root, "layers")
        self.tmp_dir = os.path.join(root, "tmp")

    # --- paths ---------------------------------------------------------------------------

    def layer_dir(self, layer_id: str) -> str:
        return os.path.join(self.layers_dir, layer_id)

    def diff_dir(self, layer_id: str) -> str:
        return os.path.join(self.layers_dir, layer_id, "diff")

    def merged_dir(self, rw_layer: str) -> str:
        return os.path.join(self.layers_dir, rw_layer, "merged")

    def work_dir(self, rw_layer: str) -> str:
        return os.path.join(self.layers_dir, rw_layer, "work")

    @contextmanager
    def staging(self) -> Iterator[str]:
        """A fresh directory under <root>/tmp, removed unless renamed away."""
        os.makedirs(self.tmp_dir, exist_ok=True)
        os.makedirs(self.layers_dir, exist_ok=True)
        path = tempfile.mkdtemp(dir=self.tmp_dir)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    # --- read-only layers --------------------------------------------------------------------

    def import_layer(self, source: Any, parent: str | None) -> LayerInfo:
        """Extract a layer tar (a path or a binary file object) into a new layer."""
        if isinstance(source, str | os.PathLike):
            try:
                with open(source, "rb") as f:
                    return self._import(f, parent)
            except FileNotFoundError:
                raise BadInput(f"no such file: {source}") from None
            except IsADirectoryError:
                raise BadInput(f"not a tar file: {source} is a directory") from None
        return self._import(source, parent)

    def _import(self, f: BinaryIO, parent: str | None) -> LayerInfo:
        with self.staging() as stage:
            staged = self.stage_layer(f, stage)
            return self._install(stage, staged.diff_id, parent)

    def stage_layer(self, source: BinaryIO, stage: str,
                    expect: str | None = None) -> StagedLayer:
        """Extract a layer tar (maybe gzip, bzip2 or xz compressed) into `stage`/diff, with
        its tar-split; with `expect`, its diff_id (of the uncompressed tar) must be that."""
        try:
            head, source = _peek(source, 6)
            if head.startswith(_ZSTD):
                raise BadInput("zstd-compressed layers are not supported")
            opener = _decompressor(head)
            diff = os.path.join(stage, "diff")
            split = os.path.join(stage, SPLIT_FILE)
            if opener is None and _seekable(source):
                start = source.tell()
                diff_id, size = layertar.extract_layer_tar(source, diff)
                source.seek(start)
                write_split(_Window(source, start, size), diff_id, size, split)
            else:
                plain = opener(source) if opener is not None else source
                spool = os.path.join(stage, "layer.tar")
                with open(spool, "w+b") as tee_file:
                    diff_id, size = layertar.extract_layer_tar(_Tee(plain, tee_file), diff)
                    write_split(_Window(tee_file, 0, size), diff_id, size, split)
                os.unlink(spool)
        except layertar.LayerError as err:
            raise BadInput(str(err)) from None
        except BadInput:
            raise
        except OSError as err:
            if err.errno:
                raise  # the host's trouble (no space, I/O error), not the input's
            raise BadInput(f"corrupt compressed layer: {err}") from None
        except _decompress_errors() as err:
            raise BadInput(f"corrupt compressed layer: {err}") from None
        if expect is not None and diff_id != expect:
            raise BadInput(f"layer content does not match its diff_id: expected {expect}, "
                           f"got {diff_id}")
        return StagedLayer(stage, diff_id, size)

    def install_layer(self, staged: StagedLayer, parent: str | None) -> LayerInfo:
        """Move a staged layer into the store (one rename)."""
        return self._install(staged.path, staged.diff_id, parent)

    def _install(self, stage: str, diff_id: str, parent: str | None) -> LayerInfo:
        layer_id = os.urandom(32).hex()
        size = _tree_size(os.path.join(stage, "diff"))
        with open(os.path.join(stage, "layer.json"), "w") as f:
            json.dump({"id": layer_id, "parent": parent, "diff_id": diff_id, "size": size}, f)
        os.rename(stage, self.layer_dir(layer_id))
        return LayerInfo(id=layer_id, diff_id=diff_id, size=size)

    def commit_rw_layer(self, rw_layer: str, parent: str | None) -> LayerInfo:
        """The read-write layer's changes, through a layer tar, into a new read-only layer.

        Going through the tar makes the stored layer exactly what its diff_id describes.
        """
        with self.staging() as stage:
            tar_path = os.path.join(stage, "layer.tar")
            with open(tar_path, "wb") as out:
                diff_id, _ = layertar.write_layer_tar(self.diff_dir(rw_layer), out)
            with open(tar_path, "rb") as f:
                _, size = layertar.extract_layer_tar(f, os.path.join(stage, "diff"))
                f.seek(0)
                write_split(_Window(f, 0, size), diff_id, size,
                            os.path.join(stage, SPLIT_FILE))
            os.unlink(tar_path)
            return self._install(stage, diff_id, parent)

    def layer_tar(self, layer_id: str, out: BinaryIO) -> tuple[str, int]:
        """Write a stored layer as its OCI layer tar: the very bytes its diff_id names."""
        blob = self.layer_blob(layer_id)
        try:
            blob.write_to(out)
        finally:
            blob.cleanup()
        return blob.digest, blob.size

    def layer_blob(self, layer_id: str) -> LayerBlob:
        """A stored layer as its tar, size and digest known before a byte is written.

        From the tar-split when there is one; a layer stored before tar-splits existed is
        archived again (deterministically) into a temp file first."""
        split = os.path.join(self.layer_dir(layer_id), SPLIT_FILE)
        if os.path.exists(split):
            digest, size = read_split_header(split)
            diff = self.diff_dir(layer_id)
            return LayerBlob(digest, size, lambda out: rebuild_from_split(split, diff, out))
        os.makedirs(self.tmp_dir, exist_ok=True)
        tmp = tempfile.NamedTemporaryFile(dir=self.tmp_dir, prefix="blob-")  # noqa: SIM115
        try:
            digest, size = layertar.write_layer_tar(self.diff_dir(layer_id), tmp)
            tmp.flush()
        except BaseException:
            tmp.close()
            raise

        def write_to(out: BinaryIO) -> None:
            tmp.seek(0)
            shutil.copyfileobj(tmp, out, _CHUNK)

        return LayerBlob(digest, size, write_to, tmp.close)

    def remove_layer(self, layer_id: str) -> None:
        path = self.layer_dir(layer_id)
        overlay.remove_link_for(os.path.join(path, "diff"), self.layers_dir)
        _remove_tree(path, self.tmp_dir)

    # --- read-write layers and the union view ---------------------------------------------

    def create_rw_layer(self, container_id: str, layers: Sequence[str]) -> str:
        rw = RW_PREFIX + container_id
        with self.staging() as stage:
            for sub in ("diff", "work", "merged"):
                os.mkdir(os.path.join(stage, sub))
            _init_layer(os.path.join(stage, "init"))
            with open(os.path.join(stage, "lower"), "w") as f:
                f.write("\n".join(layers))
            os.rename(stage, self.layer_dir(rw))
        return rw

    def lowers(self, layers: Sequence[str]) -> list[str]:
        """Lower directories for overlayfs, top-most first; an empty image gets an empty dir."""
        if not layers:
            empty = os.path.join(self.layers_dir, "empty")
            os.makedirs(empty, exist_ok=True)
            return [empty]
        return [self.diff_dir(lid) for lid in reversed(layers)]

    def mount(self, rw_layer: str, layers: Sequence[str]) -> str:
        """Mount the union view at MergedDir (idempotent) and return its path."""
        merged = self.merged_dir(rw_layer)
        if not overlay.is_mounted(merged):
            init = os.path.join(self.layer_dir(rw_layer), "init")
            overlay.mount_overlay([init, *self.lowers(layers)], self.diff_dir(rw_layer),
                                  self.work_dir(rw_layer), merged, self.layers_dir)
        return merged

    def unmount(self, rw_layer: str) -> None:
        overlay.unmount(self.merged_dir(rw_layer))

    @contextmanager
    def union_view(self, rw_layer: str, layers: Sequence[str]) -> Iterator[str]:
        """The union view for the length of a block; left mounted if it already was."""
        merged = self.merged_dir(rw_layer)
        was = overlay.is_mounted(merged)
        self.mount(rw_layer, layers)
        try:
            yield merged
        finally:
            if not was:
                self.unmount(rw_layer)

    def export(self, rw_layer: str, layers: Sequence[str],
               output: str | BinaryIO) -> tuple[str, int]:
        """The union view as one flat tar (whiteouts applied, nothing of the layers' own
        metadata), mounted for the length of the export if it was not already. `output` is a
        path (written to a temp file, then renamed) or a binary stream."""
        from adapters.storage.archive import output_file

        with self.union_view(rw_layer, layers) as merged:
            try:
                if isinstance(output, str):
                    with output_file(output) as f:
                        return layertar.write_flat_tar(merged, f)
                return layertar.write_flat_tar(merged, output)
            except layertar.LayerError as err:
                raise BadInput(str(err)) from None

    # --- image archives (save and load) -----------------------------------------------------

    def save_images(self, images: Sequence[dict[str, Any]],
                    output: str | BinaryIO) -> tuple[str, int]:
        """Write images as one docker-archive + OCI-layout tar (adapters/storage/archive.py).

        Each image: id, config (the bytes), tags, layers (ids, bottom first), diff_ids and
        parent (an image also saved, or None). Returns the archive's (digest, size)."""
        from adapters.storage import archive

        blobs: dict[str, LayerBlob] = {}
        try:
            todo = []
            for img in images:
                layers = []
                for lid, diff_id in zip(img["layers"], img["diff_ids"], strict=True):
                    if lid not in blobs:
                        blobs[lid] = self.layer_blob(lid)
                    if blobs[lid].digest != diff_id:
                        raise LayerDamaged(f"layer {lid[:12]} is {blobs[lid].digest}, but its "
                                           f"image says {diff_id}")
                    layers.append(blobs[lid])
                cfg = json.loads(img["config"])
                platform = {"architecture": cfg.get("architecture", "amd64"),
                            "os": cfg.get("os", "linux")}
                todo.append(archive.SaveImage(img["id"], img["config"], list(img["tags"]),
                                              layers, img.get("parent"), platform))
            if isinstance(output, str):
                with archive.output_file(output) as f:
                    return archive.write_archive(todo, f)
            return archive.write_archive(todo, output)
        finally:
            for blob in blobs.values():
                blob.cleanup()

    @contextmanager
    def open_archive(self, source: Any) -> Iterator[ArchiveSession]:
        """A docker or OCI archive (a path or a stream) opened for `load`; whatever is staged
        from it and not installed by the end of the block is removed."""
        from adapters.storage import archive

        with self.staging() as work, archive.opened(source, work) as reader:
            yield ArchiveSession(self, reader, work)

    def init_dir(self, rw_layer: str) -> str:
        return os.path.join(self.layer_dir(rw_layer), "init")

    def remove_rw_layer(self, rw_layer: str) -> None:
        path = self.layer_dir(rw_layer)
        if not os.path.exists(path):
            return
        self.unmount(rw_layer)
        _remove_tree(path, self.tmp_dir)


# What docker's `-init` layer holds: the mount points and files the runtime binds over, so
# that they never show up in the container's own read-write layer (diff, commit).
INIT_DIRS = ("dev", "proc", "sys", "etc", "dev/pts", "dev/shm")
INIT_FILES = ("etc/hostname", "etc/hosts", "etc/resolv.conf", "dev/console")


def _init_layer(path: str) -> None:
    for d in INIT_DIRS:
        os.makedirs(os.path.join(path, d), mode=0o755, exist_ok=True)
    for name in INIT_FILES:
        with open(os.path.join(path, name), "w"):
            pass


def _tree_size(path: str) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            with suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _remove_tree(path: str, tmp_dir: str) -> None:
    """Rename out of sight first, then delete: a half-deleted layer is never visible."""
    if not os.path.exists(path):
        return
    os.makedirs(tmp_dir, exist_ok=True)
    doomed = tempfile.mkdtemp(dir=tmp_dir, prefix="rm-")
    os.rename(path, os.path.join(doomed, "x"))
    shutil.rmtree(doomed, ignore_errors=True)


# --- tar-split -----------------------------------------------------------------------------


def write_split(src: BinaryIO, digest: str, size: int, path: str) -> None:
    """Record how to rebuild the tar `src` (seekable, `size` bytes from 0) from its extracted
    files: raw segments for everything but the members' contents, a file reference for each
    regular member's contents."""
    try:
        with tarfile.open(fileobj=src, mode="r:", **_ENCODING) as archive:
            members = archive.getmembers()
    except tarfile.TarError as err:
        raise layertar.LayerError(f"truncated or corrupt tar: {err}") from None
    with gzip.open(path, "wb", compresslevel=1) as out:
        out.write(_SPLIT_MAGIC + json.dumps({"digest": digest, "size": size}).encode() + b"\n")
        pos = 0
        for m in members:
            name = _payload_name(m)
            if name is None:
                continue
            _raw_record(src, pos, m.offset_data - pos, out)
            encoded = os.fsencode(name)
            out.write(b"F" + struct.pack(">I", len(encoded)) + encoded + struct.pack(">Q", m.size))
            pos = m.offset_data + m.size
        _raw_record(src, pos, size - pos, out)
        out.write(b"E")


def _payload_name(m: tarfile.TarInfo) -> str | None:
    """Where the extracted contents of a member are, if they are a file's contents."""
    if m.type not in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE) or m.size <= 0:
        return None
    if m.issparse():
        return None
    parts = [p for p in m.name.split("/") if p not in ("", ".")]
    if not parts or parts[-1].startswith(layertar.WHITEOUT_PREFIX):
        return None
    return "/".join(parts)


def _raw_record(src: BinaryIO, pos: int, n: int, out: Any) -> None:
    if n <= 0:
        return
    src.seek(pos)
    out.write(b"R" + struct.pack(">Q", n))
    while n:
        data = src.read(min(n, _CHUNK))
        if not data:
            raise layertar.LayerError("truncated tar: the stream ended early")
        out.write(data)
        n -= len(data)


def read_split_header(path: str) -> tuple[str, int]:
    with gzip.open(path, "rb") as f:
        return _split_header(f)


def _split_header(f: Any) -> tuple[str, int]:
    if f.read(len(_SPLIT_MAGIC)) != _SPLIT_MAGIC:
        raise LayerDamaged(f"{path_hint(f)}: not a lamina tar-split")
    head = json.loads(f.readline())
    return head["digest"], int(head["size"])


def path_hint(f: Any) -> str:
    return str(getattr(f, "name", "tar-split"))


def rebuild_from_split(split: str, diff_dir: str, out: BinaryIO) -> tuple[str, int]:
    """Write the layer tar again from its tar-split and files; refuse (LayerDamaged) if the
    bytes come out different from the digest recorded when the layer was stored."""
    sink = _HashingWriter(out)
    buf = bytearray(_CHUNK)
    with gzip.open(split, "rb") as f:
        digest, size = _split_header(f)
        while True:
            kind = f.read(1)
            if kind == b"R":
                (n,) = struct.unpack(">Q", f.read(8))
                while n:
                    data = f.read(min(n, _CHUNK))
                    if not data:
                        raise LayerDamaged(f"{split}: truncated")
                    sink.write(data)
                    n -= len(data)
            elif kind == b"F":
                (n,) = struct.unpack(">I", f.read(4))
                name = os.fsdecode(f.read(n))
                (length,) = struct.unpack(">Q", f.read(8))
                _copy_file(os.path.join(diff_dir, name), length, sink, buf)
            elif kind == b"E":
                break
            else:
                raise LayerDamaged(f"{split}: corrupt record")
    got = "sha256:" + sink.hash.hexdigest()
    if got != digest or sink.size != size:
        raise LayerDamaged(f"layer {os.path.basename(os.path.dirname(diff_dir))} changed on "
                           f"disk: its tar is now {got}, not {digest}")
    return got, sink.size


def _copy_file(path: str, length: int, sink: _HashingWriter, buf: bytearray) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as err:
        raise LayerDamaged(f"{path}: {err.strerror} (the layer changed on disk)") from None
    try:
        if os.fstat(fd).st_size != length:
            raise LayerDamaged(f"{path}: size changed on disk")
        view = memoryview(buf)
        while length:
            n = os.readv(fd, [view[:min(length, _CHUNK)]])
            if not n:
                raise LayerDamaged(f"{path}: shrank on disk")
            sink.write(view[:n])
            length -= n
    finally:
        os.close(fd)


class _HashingWriter:
    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | memoryview) -> None:
        self.hash.update(data)
        self.out.write(data)
        self.size += len(data)


# --- streams -------------------------------------------------------------------------------


class _Window(io.RawIOBase):
    """Bytes [start, start+length) of a seekable file, as a file of its own."""

    def __init__(self, f: BinaryIO, start: int, length: int) -> None:
        self.f, self.start, self.length, self.pos = f, start, length, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.length}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, b: Any) -> int:
        n = min(len(b), self.length - self.pos)
        if n <= 0:
            return 0
        self.f.seek(self.start + self.pos)
        data = self.f.read(n)
        b[: len(data)] = data
        self.pos += len(data)
        return len(data)

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self.length - self.pos
        n = min(size, self.length - self.pos)
        if n <= 0:
            return b""
        self.f.seek(self.start + self.pos)
        data = self.f.read(n)
        self.pos += len(data)
        return data


class _Tee:
    """Reads from a stream and keeps a copy of every byte in a file."""

    def __init__(self, src: Any, copy: BinaryIO) -> None:
        self.src, self.copy = src, copy

    def read(self, size: int = -1) -> bytes:
        data = self.src.read(size)
        self.copy.write(data)
        return data


class _Prefixed:
    """A stream whose first bytes were already read (to sniff its compression)."""

    def __init__(self, head: bytes, rest: Any) -> None:
        self.head, self.rest = head, rest

    def read(self, size: int = -1) -> bytes:
        if not self.head:
            return self.rest.read(size)
        if size is None or size < 0:
            data, self.head = self.head + self.rest.read(), b""
            return data
        data, self.head = self.head[:size], self.head[size:]
        if len(data) < size:
            data += self.rest.read(size - len(data))
        return data


def _seekable(f: Any) -> bool:
    try:
        return bool(f.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _peek(f: Any, n: int) -> tuple[bytes, Any]:
    """The first n bytes of a stream, and a stream that still starts with them."""
    if _seekable(f):
        pos = f.tell()
        head = f.read(n)
        f.seek(pos)
        return head, f
    head = b""
    while len(head) < n:
        more = f.read(n - len(head))
        if not more:
            break
        head += more
    return head, _Prefixed(head, f)


def _decompress_errors() -> tuple[type[BaseException], ...]:
    """What a corrupt compressed stream raises, besides OSError."""
    import sys
    import zlib

    errors: list[type[BaseException]] = [EOFError, zlib.error]
    if "lzma" in sys.modules:
        errors.append(sys.modules["lzma"].LZMAError)
    return tuple(errors)


def _decompressor(head: bytes) -> Callable[[Any], Any] | None:
    if head.startswith(_GZIP):
        return lambda f: gzip.GzipFile(fileobj=f, mode="rb")
    if head.startswith(_BZIP2):
        import bz2

        return lambda f: bz2.BZ2File(f, "rb")
    if head.startswith(_XZ):
        import lzma

        return lambda f: lzma.LZMAFile(f, "rb")
    return None


class ArchiveSession:
    """`load`'s view of an archive: its images, and each layer staged (extracted, checked)."""

    def __init__(self, store: LinuxLayerStore, reader: Any, work: str) -> None:
        self.store, self.reader, self.work = store, reader, work
        self._images: list[Any] | None = None

    def images(self) -> list[Any]:
        """LoadImage objects (adapters/storage/archive.py): id, config, diff_ids, tags..."""
        if self._images is None:
            self._images = self.reader.images()
        return self._images

    def stage(self, image: Any, index: int) -> StagedLayer:
        """Extract layer `index` of `image` under <root>/tmp; its blob must match its
        descriptor's digest and its tar the config's diff_id."""
        layer, diff_id = image.layers[index], image.diff_ids[index]
        if layer.digest and layer.digest != diff_id and \
                self.reader.blob_digest(layer) != layer.digest:
            raise BadInput(f"layer blob {layer.member!r} does not match its digest "
                           f"{layer.digest}")
        stage = tempfile.mkdtemp(dir=self.work, prefix="layer-")
        with self.reader.open_layer(layer) as f:
            return self.store.stage_layer(f, stage, expect=diff_id)
