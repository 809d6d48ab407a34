"""Layer tars: determinism, digests, chain ids, and refusal of hostile archives."""

from __future__ import annotations

import copy
import hashlib
import io
import os
import socket
import stat
import struct
import tarfile
from pathlib import Path

import pytest

from adapters.storage.layertar import (
    LayerError,
    chain_id,
    chain_ids,
    extract_layer_tar,
    write_flat_tar,
    write_layer_tar,
)
from tests.conftest import require_root

MTIME = 1_600_000_000


def _tree(root: Path, order: list[str] | None = None) -> Path:
    """A small layer: files, a hardlink, a symlink, a FIFO, an xattr; fixed mtimes."""
    root.mkdir()
    names = order or ["bin", "etc", "etc/conf", "bin/tool", "bin/alias", "bin/link", "pipe"]
    for name in names:
        path = root / name
        if name in ("bin", "etc"):
            path.mkdir()
        elif name == "etc/conf":
            path.write_bytes(b"x = 1\n" * 1000)
            os.setxattr(path, "user.lamina", b"\xffbinary\x00")
        elif name == "bin/tool":
            path.write_bytes(b"\x7fELF" + bytes(3000))
            path.chmod(0o4755)
        elif name == "bin/alias":  # after bin/tool in every order used here
            os.link(root / "bin/tool", path)
        elif name == "bin/link":
            path.symlink_to("../etc/conf")
        elif name == "pipe":
            os.mkfifo(path, 0o640)
    for path in sorted(root.rglob("*"), reverse=True):
        os.utime(path, (MTIME, MTIME), follow_symlinks=False)
    return root


def _tar_bytes(root: Path, flat: bool = False) -> tuple[bytes, str, int]:
    out = io.BytesIO()
    digest, size = (write_flat_tar if flat else write_layer_tar)(str(root), out)
    return out.getvalue(), digest, size


def test_tar_is_deterministic_and_digest_streamed(tmp_path: Path) -> None:
    first, digest, size = _tar_bytes(_tree(tmp_path / "a"))
    again, digest2, _ = _tar_bytes(tmp_path / "a")
    other = _tree(tmp_path / "b", ["pipe", "etc", "bin", "bin/link", "bin/tool", "bin/alias",
                                   "etc/conf"])
    assert first == again == _tar_bytes(other)[0]
    assert digest == digest2 == "sha256:" + hashlib.sha256(first).hexdigest()
    assert size == len(first) and size % 512 == 0
    assert first.endswith(bytes(1024))


def test_tar_members_sorted_numeric_owner_mtimes_kept(tmp_path: Path) -> None:
    data, _, _ = _tar_bytes(_tree(tmp_path / "a"))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names, key=os.fsencode)
    assert names == ["bin", "bin/alias", "bin/link", "bin/tool", "etc", "etc/conf", "pipe"]
    by_name = {m.name: m for m in members}
    assert all(m.mtime == MTIME and m.uname == "" and m.gname == "" for m in members)
    assert all(m.uid == os.geteuid() for m in members)
    assert by_name["bin/tool"].islnk() and by_name["bin/tool"].linkname == "bin/alias"
    assert by_name["bin/alias"].mode == 0o4755
    assert by_name["bin/link"].linkname == "../etc/conf"
    assert by_name["pipe"].isfifo() and by_name["pipe"].mode == 0o640
    assert by_name["etc/conf"].pax_headers["SCHILY.xattr.user.lamina"].encode(
        "utf-8", "surrogateescape") == b"\xffbinary\x00"
    assert data[257:263] == b"ustar\x00"


def test_round_trip_keeps_metadata_and_digest(tmp_path: Path) -> None:
    data, digest, size = _tar_bytes(_tree(tmp_path / "a"))
    dest = tmp_path / "out"
    assert extract_layer_tar(io.BytesIO(data), str(dest)) == (digest, size)
    assert _tar_bytes(dest)[0] == data
    assert os.getxattr(dest / "etc/conf", "user.lamina") == b"\xffbinary\x00"
    assert os.stat(dest / "bin/tool").st_ino == os.stat(dest / "bin/alias").st_ino
    assert os.stat(dest / "etc").st_mtime == MTIME


def test_flat_tar_matches_layer_tar_without_whiteouts(tmp_path: Path) -> None:
    root = _tree(tmp_path / "a")
    assert _tar_bytes(root, flat=True)[0] == _tar_bytes(root)[0]


def test_big_file_streams_in_chunks(tmp_path: Path) -> None:
    root = tmp_path / "a"
    root.mkdir()
    blob = os.urandom(3 * (1 << 20) + 17)
    (root / "big").write_bytes(blob)
    data, _, _ = _tar_bytes(root)
    extract_layer_tar(io.BytesIO(data), str(tmp_path / "out"))
    assert (tmp_path / "out/big").read_bytes() == blob


def test_reserved_whiteout_names_are_refused_on_write(tmp_path: Path) -> None:
    root = tmp_path / "a"
    root.mkdir()
    (root / ".wh.sneaky").write_text("")
    with pytest.raises(LayerError, match="reserved"):
        _tar_bytes(root)


def test_chain_ids_follow_the_oci_formula() -> None:
    a, b, c = ("sha256:" + hashlib.sha256(x).hexdigest() for x in (b"a", b"b", b"c"))
    ab = "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
    abc = "sha256:" + hashlib.sha256(f"{ab} {c}".encode()).hexdigest()
    assert chain_ids([a, b, c]) == [a, ab, abc]
    assert chain_id([a]) == a and chain_id([a, b, c]) == abc
    with pytest.raises(LayerError):
        chain_ids(["md5:abc"])


# --- hostile archives ---------------------------------------------------------------------


def _member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", **attrs: object
            ) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mtime = kind, len(data), MTIME
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, data


def _archive(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data else None)
    return out.getvalue()


def _snapshot(root: Path, skip: Path) -> set[str]:
    return {str(p) for p in root.rglob("*") if skip not in p.parents and p != skip}


HOSTILE = {
    "dotdot": [_member("../evil", data=b"x")],
    "dotdot-inside": [_member("a/../../evil", data=b"x")],
    "absolute": [_member("/tmp/evil", data=b"x")],
    "through-symlink-out": [_member("link", tarfile.SYMTYPE, linkname="../outside"),
                            _member("link/evil", data=b"x")],
    "through-absolute-symlink": [_member("link", tarfile.SYMTYPE, linkname="{outside}"),
                                 _member("link/evil", data=b"x")],
    "through-symlink-inside": [_member("d", tarfile.DIRTYPE),
                               _member("link", tarfile.SYMTYPE, linkname="d"),
                               _member("link/evil", data=b"x")],
    "dir-through-symlink": [_member("link", tarfile.SYMTYPE, linkname="{outside}"),
                            _member("link/sub", tarfile.DIRTYPE)],
    "hardlink-outside": [_member("h", tarfile.LNKTYPE, linkname="../outside/secret")],
    "hardlink-absolute": [_member("h", tarfile.LNKTYPE, linkname="{outside}/secret")],
    "hardlink-not-yet": [_member("h", tarfile.LNKTYPE, linkname="later"),
                         _member("later", data=b"x")],
    "hardlink-self": [_member("h", tarfile.LNKTYPE, linkname="h")],
    "hardlink-dir": [_member("d", tarfile.DIRTYPE), _member("h", tarfile.LNKTYPE,
                                                             linkname="d")],
    "hardlink-through-symlink": [_member("link", tarfile.SYMTYPE, linkname="{outside}"),
                                 _member("h", tarfile.LNKTYPE, linkname="link/secret")],
    "block-device": [_member("sda", tarfile.BLKTYPE, devmajor=8, devminor=0)],
    "char-device": [_member("null", tarfile.CHRTYPE, devmajor=1, devminor=3)],
    "duplicate-file": [_member("f", data=b"1"), _member("f", data=b"2")],
    "duplicate-dir": [_member("d", tarfile.DIRTYPE), _member("d", tarfile.DIRTYPE)],
    "file-then-dir": [_member("f", data=b"1"), _member("f", tarfile.DIRTYPE)],
    "implicit-dir-then-file": [_member("d/f", data=b"1"), _member("d", data=b"2")],
    "file-and-whiteout": [_member("f", data=b"1"), _member(".wh.f")],
    "symlink-replaced-by-file": [_member("s", tarfile.SYMTYPE, linkname="{outside}/secret"),
                                 _member("s", data=b"x")],
    "below-a-file": [_member("f", data=b"1"), _member("f/g", data=b"2")],
    "overlay-xattr": [_member("f", data=b"1",
                              pax_headers={"SCHILY.xattr.trusted.overlay.redirect": "/x"})],
    "bad-whiteout": [_member(".wh..wh.other")],
    "root-opaque": [_member(".wh..wh..opq")],
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archive_refused_and_nothing_written_outside(tmp_path: Path, case: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("keep")
    members = []
    for info, data in HOSTILE[case]:
        info = copy.copy(info)
        info.linkname = info.linkname.replace("{outside}", str(outside))
        members.append((info, data))
    data = _archive(*members)
    before = _snapshot(tmp_path, tmp_path / "dest")
    with pytest.raises(LayerError) as err:
        extract_layer_tar(io.BytesIO(data), str(tmp_path / "dest"))
    assert "\n" not in str(err.value)
    assert _snapshot(tmp_path, tmp_path / "dest") == before
    assert (outside / "secret").read_text() == "keep"
    assert os.stat(outside / "secret").st_nlink == 1


def _good_tar() -> bytes:
    return _archive(_member("d", tarfile.DIRTYPE), _member("d/file", data=b"z" * 5000),
                    _member("e", data=b"tail"))


def test_good_tar_extracts(tmp_path: Path) -> None:
    whole = _good_tar()
    extract_layer_tar(io.BytesIO(whole), str(tmp_path / "dest"))
    assert (tmp_path / "dest/e").read_bytes() == b"tail"


# _good_tar(): d at 0; d/file header 512, data 1024-6144; e header 6144, data 6656-7168; then
# the end-of-archive zero blocks. Cut: empty, in a header, at a member boundary, in data, in
# padding, exactly where the zero blocks start, and in the first zero block.
@pytest.mark.parametrize("cut", [0, 100, 512, 700, 1636, 6000, 6700, 7168, 7268])
def test_truncated_tar_refused(tmp_path: Path, cut: int) -> None:
    whole = _good_tar()
    assert whole[7168:8192] == bytes(1024) and whole[6656:6660] == b"tail"
    with pytest.raises(LayerError, match="truncated"):
        extract_layer_tar(io.BytesIO(whole[:cut]), str(tmp_path / "dest"))


def test_garbage_header_refused(tmp_path: Path) -> None:
    whole = _good_tar()
    bad = whole[:512] + b"\x01" * 512 + whole[1024:]
    with pytest.raises(LayerError, match="corrupt"):
        extract_layer_tar(io.BytesIO(bad), str(tmp_path / "dest"))


def test_symlinks_are_stored_whatever_they_point_to(tmp_path: Path) -> None:
    data = _archive(_member("abs", tarfile.SYMTYPE, linkname="/etc/shadow"),
                    _member("up", tarfile.SYMTYPE, linkname="../../.."),
                    _member("pipe", tarfile.FIFOTYPE, mode=0o600),
                    _member("h", tarfile.LNKTYPE, linkname="abs"))
    dest = tmp_path / "dest"
    extract_layer_tar(io.BytesIO(data), str(dest))
    assert os.readlink(dest / "abs") == "/etc/shadow"
    assert os.readlink(dest / "h") == "/etc/shadow"
    assert os.readlink(dest / "up") == "../../.."
    assert stat.S_ISFIFO(os.lstat(dest / "pipe").st_mode)


def test_dest_must_be_fresh(tmp_path: Path) -> None:
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / "old").write_text("")
    with pytest.raises(OSError):
        extract_layer_tar(io.BytesIO(_good_tar()), str(tmp_path / "dest"))


def test_whiteouts_become_overlay_form_and_back(tmp_path: Path) -> None:
    require_root()  # trusted.* xattrs
    data = _archive(_member(".wh.gone", mode=0o600), _member("d", tarfile.DIRTYPE),
                    _member("d/.wh..wh..opq", mode=0o755), _member("d/new", data=b"n"),
                    _member("e/.wh.x", mode=0o600), _member("zero", tarfile.CHRTYPE))
    dest = tmp_path / "dest"
    extract_layer_tar(io.BytesIO(data), str(dest))
    for path in (dest / "gone", dest / "e/x", dest / "zero"):
        st = os.lstat(path)
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(dest / "d", "trusted.overlay.opaque") == b"y"
    with tarfile.open(fileobj=io.BytesIO(_tar_bytes(dest)[0])) as tar:
        names = tar.getnames()
    assert names == [".wh.gone", ".wh.zero", "d", "d/.wh..wh..opq", "d/new", "e", "e/.wh.x"]


def test_odd_names_long_names_and_sockets(tmp_path: Path) -> None:
    root = tmp_path / "a"
    root.mkdir()
    odd = os.fsdecode(b"caf\xe9-\xff")  # not UTF-8
    long = "d" * 150
    (root / odd).write_text("odd")
    (root / long).mkdir()
    (root / long / ("f" * 200)).write_text("long")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(root / "sock"))
        data, digest, _ = _tar_bytes(root)
    dest = tmp_path / "out"
    assert extract_layer_tar(io.BytesIO(data), str(dest))[0] == digest
    assert sorted(os.listdir(os.fsencode(dest))) == sorted([b"caf\xe9-\xff", long.encode()])
    assert (dest / long / ("f" * 200)).read_text() == "long"


def test_file_capabilities_survive_the_chown(tmp_path: Path) -> None:
    require_root()  # security.* and trusted.* xattrs, chown
    root = tmp_path / "a"
    root.mkdir()
    caps = struct.pack("<5I", 0x02000001, 1 << 10, 0, 0, 0)  # v2, effective, net_bind_service
    (root / "ping").write_bytes(b"\x7fELF")
    os.chown(root / "ping", 1000, 1000)
    os.setxattr(root / "ping", "security.capability", caps)
    (root / "link").symlink_to("ping")
    os.setxattr(root / "link", "trusted.lamina", b"on a symlink", follow_symlinks=False)
    data, _, _ = _tar_bytes(root)
    dest = tmp_path / "out"
    extract_layer_tar(io.BytesIO(data), str(dest))
    assert os.stat(dest / "ping").st_uid == 1000
    assert os.getxattr(dest / "ping", "security.capability") == caps
    assert os.getxattr(dest / "link", "trusted.lamina", follow_symlinks=False) == b"on a symlink"
    assert _tar_bytes(dest)[0] == data
