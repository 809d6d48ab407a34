"""Staging a layer reads its stream once: the tar-split written on the way must give back
every byte of the tar (so `save` and `push` reproduce the diff_id), whatever the tar holds
and however the stream is cut into reads; gzip is inflated by zlib, members and all."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess
import tarfile
import zlib
from pathlib import Path

import pytest

from adapters.storage.archive import GzipReader, rebuild_from_split
from adapters.storage.store import SPLIT_FILE, LinuxLayerStore
from core.errors import BadInput
from tests.conftest import require_root

MTIME = 1_600_000_000


class Trickle:
    """A stream that cannot seek and hands out at most `most` bytes a read (a socket)."""

    def __init__(self, data: bytes, most: int) -> None:
        self.f, self.most = io.BytesIO(data), most

    def read(self, n: int = -1) -> bytes:
        return self.f.read(self.most if n is None or n < 0 else min(n, self.most))


def member(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE,
           **attrs: object) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mtime, info.mode = kind, len(data), MTIME, 0o644
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, data


def archive(*members: tuple[tarfile.TarInfo, bytes], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data else None)
    return out.getvalue()


def pax_tar() -> bytes:
    """Contents across 1 MiB reads, sizes on and off block bounds, PAX records."""
    return archive(member("d", kind=tarfile.DIRTYPE, mode=0o755),
                   member("d/big", os.urandom(3 * (1 << 20) + 17)),
                   member("d/block", b"b" * 512), member("d/empty"),
                   member("d/x", b"x" * 5000, pax_headers={"SCHILY.xattr.user.k": "v"}),
                   member("d/frac", b"f", mtime=MTIME + 0.25),
                   member("d/hard", kind=tarfile.LNKTYPE, linkname="d/x"),
                   member("d/sym", kind=tarfile.SYMTYPE, linkname="../nowhere"),
                   member("d/fifo", kind=tarfile.FIFOTYPE))


def gnu_tar() -> bytes:
    """GNU long names and link names, owner names, then trailing bytes after the end."""
    long = "n" * 150
    return archive(member("a/" + long, b"long\n", uname="someone", gname="group"),
                   member("a/h", kind=tarfile.LNKTYPE, linkname="a/" + long),
                   member("a/s", kind=tarfile.SYMTYPE, linkname="l" * 200),
                   fmt=tarfile.GNU_FORMAT) + bytes(4096) + b"after the end"


def whiteout_tar() -> bytes:
    """Whiteouts and an opaque marker that carry data: raw bytes, not files."""
    return archive(member("d", kind=tarfile.DIRTYPE, mode=0o755),
                   member("d/.wh..wh..opq", b"opaque data"), member(".wh.gone", b"gone data"),
                   member("d/kept", b"kept"))


def stage(tmp_path: Path, stream: object) -> tuple[Path, str, int]:
    store = LinuxLayerStore(str(tmp_path / "root"))
    where = tmp_path / f"stage-{len(list(tmp_path.iterdir()))}"
    where.mkdir()
    staged = store.stage_layer(stream, str(where))  # type: ignore[arg-type]
    return where, staged.diff_id, staged.size


def rebuilt(where: Path) -> bytes:
    out = io.BytesIO()
    rebuild_from_split(str(where / SPLIT_FILE), str(where / "diff"), out)
    return out.getvalue()


@pytest.mark.parametrize("make", [pax_tar, gnu_tar, whiteout_tar])
@pytest.mark.parametrize("most", [1 << 20, 1000, 511])
def test_the_tar_split_gives_back_every_byte(tmp_path: Path, make, most: int) -> None:
    if make is whiteout_tar:
        require_root()  # whiteouts are 0/0 character devices, opaque dirs trusted.* xattrs
    data = make()
    where, diff_id, size = stage(tmp_path, Trickle(data, most))
    assert (diff_id, size) == ("sha256:" + hashlib.sha256(data).hexdigest(), len(data))
    assert sorted(os.listdir(where)) == ["diff", SPLIT_FILE]  # nothing spooled, nothing left
    assert rebuilt(where) == data


def test_contents_land_in_the_files(tmp_path: Path) -> None:
    data = pax_tar()
    where, _, _ = stage(tmp_path, Trickle(data, 1 << 20))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        big = tar.extractfile("d/big").read()  # type: ignore[union-attr]
    assert (where / "diff/d/big").read_bytes() == big
    assert (where / "diff/d/x").stat().st_ino == (where / "diff/d/hard").stat().st_ino
    assert os.getxattr(where / "diff/d/x", "user.k") == b"v"
    assert (where / "diff/d/empty").read_bytes() == b""


@pytest.mark.parametrize("fmt", ["gnu", "posix"])
def test_sparse_files_of_gnu_tar(tmp_path: Path, fmt: str) -> None:
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "holes", "wb") as f:
        f.seek(1 << 20)
        f.write(b"middle")
        f.truncate(3 << 20)
    data = subprocess.run(["tar", "-c", "--sparse", f"--format={fmt}", "-C", str(src),
                           "holes"], check=True, capture_output=True).stdout
    where, diff_id, _ = stage(tmp_path, Trickle(data, 4096))
    assert diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert (where / "diff/holes").read_bytes() == (src / "holes").read_bytes()
    assert rebuilt(where) == data


def test_gzip_members_are_inflated_in_any_read_size() -> None:
    plain = os.urandom(300_000) + b"compressible " * 100_000
    blob = gzip.compress(plain[:100_000]) + gzip.compress(plain[100_000:], mtime=0)
    for most, ask in ((1 << 20, 1 << 20), (7, 1 << 20), (1 << 20, 3), (4096, 100_000)):
        reader = GzipReader(Trickle(blob, most))
        got = b"".join(iter(lambda r=reader, n=ask: r.read(n), b""))
        assert got == plain
    assert GzipReader(io.BytesIO(blob)).read() == plain


def test_a_broken_gzip_stream_is_refused() -> None:
    blob = gzip.compress(b"layer" * 1000)
    with pytest.raises(EOFError):
        GzipReader(io.BytesIO(blob[:-10])).read()
    with pytest.raises(zlib.error):
        GzipReader(io.BytesIO(blob + b"garbage after the member")).read()
    with pytest.raises(zlib.error):  # a wrong CRC
        GzipReader(io.BytesIO(blob[:-8] + bytes(4) + blob[-4:])).read()


def test_a_gzip_layer_stages_and_a_corrupt_one_is_bad_input(tmp_path: Path) -> None:
    data = pax_tar()
    where, diff_id, size = stage(tmp_path, Trickle(gzip.compress(data, 1), 65536))
    assert (diff_id, size) == ("sha256:" + hashlib.sha256(data).hexdigest(), len(data))
    assert rebuilt(where) == data
    bad = bytearray(gzip.compress(data, 1))
    bad[len(bad) // 2] ^= 0xFF
    with pytest.raises(BadInput, match="corrupt compressed layer"):
        stage(tmp_path, Trickle(bytes(bad), 65536))
