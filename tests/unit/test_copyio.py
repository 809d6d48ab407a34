"""docker cp's tar side inside a root fd: stat, archive, extract; no way out of the root.

Every root is a plain temporary directory; beside it a "host" directory holds a sentinel
file that a path leaking out of the root would read, or a file written through a leak would
land in. Nothing here needs root except the owners round trip (skipped, or failed under
CI=true, when not root).
"""

from __future__ import annotations

import base64
import ctypes
import hashlib
import io
import json
import os
import re
import stat
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.kernel import inroot
from adapters.storage.copyio import (
    GO_MODE_DIR,
    GO_MODE_NAMED_PIPE,
    GO_MODE_SETUID,
    GO_MODE_STICKY,
    GO_MODE_SYMLINK,
    CopyError,
    CopyPathNotFound,
    archive_from_root,
    container_path,
    extract_into_root,
    go_file_mode,
    path_stat_header,
    stat_in_root,
)
from tests.conftest import require_root
from tests.unit.test_inroot import assert_confined

SECRET = b"HOST-SENTINEL-7f3a: a host file that no container path may reach\n"
MTIME = 1_600_000_000
CTR = "/lamina-test-ctr"  # where the writing tests extract: a directory only the root has


@pytest.fixture(autouse=True)
def _confined(tmp_path: Path) -> None:
    """Nothing runs unless lookups stay in their root (see test_inroot.assert_confined).
    Also, the tests write below CTR, which the host lacks, and their hostile links lead, if
    followed on the host, into the test's `host` directory: a regression fails, or is
    caught by the host directory's check, instead of writing to the real host."""
    assert_confined(tmp_path)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Path, Path, int]]:
    """(root, host, root_fd). host/secret is the sentinel; root/etc/passwd the
    container's own file; root/lamina-test-ctr an empty directory."""
    root, host = tmp_path / "root", tmp_path / "host"
    (root / CTR.lstrip("/")).mkdir(parents=True)
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_bytes(b"container passwd\n")
    host.mkdir()
    (host / "secret").write_bytes(SECRET)
    fd = inroot.open_root(str(root))
    yield root, host, fd
    os.close(fd)


def _host_state(host: Path) -> dict[str, tuple[bytes, int, int]]:
    """Everything below host: contents, link count, mtime; and the directory's own mtime."""
    state = {"": (b"", 0, host.stat().st_mtime_ns)}
    for path in sorted(host.rglob("*")):
        st = path.lstat()
        data = path.read_bytes() if stat.S_ISREG(st.st_mode) else b""
        state[str(path.relative_to(host))] = (data, st.st_nlink, st.st_mtime_ns)
    return state


def _tar(*members: tuple[str, bytes | str | None, dict[str, object]]) -> io.BytesIO:
    """A tar of (name, data | link target | None for a directory, extra TarInfo fields)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, extra in members:
            info = tarfile.TarInfo(name)
            info.mtime = MTIME
            info.mode = 0o644
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif isinstance(data, str):
                info.type, info.linkname = tarfile.SYMTYPE, data
            else:
                info.size = len(data)
            for key, value in extra.items():
                setattr(info, key, value)
            tar.addfile(info, io.BytesIO(data) if isinstance(data, bytes) else None)
    out.seek(0)
    return out


def _archive(root_fd: int, path: str, follow_link: bool = False) -> bytes:
    out = io.BytesIO()
    written = archive_from_root(root_fd, path, out, follow_link=follow_link)
    assert written == len(out.getvalue())
    return out.getvalue()


def _names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return [m.name + ("/" if m.isdir() else "") for m in tar.getmembers()]


# --- stat ---------------------------------------------------------------------------------


def test_container_path_keeps_docker_trailing_forms() -> None:
    assert container_path("a/b") == "/a/b"
    assert container_path("/a/b/") == "/a/b/"
    assert container_path("/a/b/.") == "/a/b/."
    assert container_path("a/../../b//c/") == "/b/c/"
    assert container_path("") == "/"
    assert container_path("//") == "/"
    assert container_path("/.") == "/."


def test_go_file_mode_bits() -> None:
    assert go_file_mode(stat.S_IFDIR | 0o755) == (1 << 31) | 0o755 == 2147484141
    assert go_file_mode(stat.S_IFLNK | 0o777) == (1 << 27) | 0o777 == 134218239
    assert go_file_mode(stat.S_IFREG | 0o644) == 0o644
    assert go_file_mode(stat.S_IFREG | 0o4755) == GO_MODE_SETUID | 0o755
    assert go_file_mode(stat.S_IFDIR | 0o1777) == GO_MODE_DIR | GO_MODE_STICKY | 0o777
    assert go_file_mode(stat.S_IFCHR | 0o666) == (1 << 26) | (1 << 21) | 0o666
    assert go_file_mode(stat.S_IFIFO | 0o600) == GO_MODE_NAMED_PIPE | 0o600


def test_stat_in_root_in_docker_shape(world: tuple[Path, Path, int]) -> None:
    root, host, fd = world
    (root / "a/b").mkdir(parents=True)
    (root / "a/b/file").write_bytes(b"12345")
    os.utime(root / "a/b/file", ns=(0, MTIME * 10**9 + 120_000_000))
    (root / "a/link").symlink_to("../../../../etc/passwd")
    (root / "to_host").symlink_to(host / "secret")
    os.mkfifo(root / "pipe", 0o600)

    st = stat_in_root(fd, "/a/b/file")
    assert st == {"name": "file", "size": 5, "mode": 0o644,
                  "mtime": "2020-09-13T12:26:40.12Z", "linkTarget": ""}
    assert stat_in_root(fd, "/a/b")["mode"] == GO_MODE_DIR | 0o755
    assert stat_in_root(fd, "/a/b/")["name"] == "b"
    assert stat_in_root(fd, "/a/b/.")["name"] == "."
    assert stat_in_root(fd, "/")["name"] == "/"
    link = stat_in_root(fd, "a/link")
    assert link["mode"] == GO_MODE_SYMLINK | 0o777
    assert link["linkTarget"] == "/etc/passwd"  # resolved inside the root
    assert link["size"] == len("../../../../etc/passwd")
    # A link naming the host's sentinel names that path inside the root, which is missing.
    assert stat_in_root(fd, "/to_host")["linkTarget"] == str(host / "secret")
    assert stat_in_root(fd, "/pipe")["mode"] == GO_MODE_NAMED_PIPE | 0o600


def test_stat_errors(world: tuple[Path, Path, int]) -> None:
    root, host, fd = world
    (root / "to_host").symlink_to(host)
    with pytest.raises(CopyPathNotFound, match="/nothing"):
        stat_in_root(fd, "/nothing")
    with pytest.raises(CopyPathNotFound):  # trailing slash follows: into the root, missing
        stat_in_root(fd, "/to_host/")
    with pytest.raises(CopyError, match="Not a directory"):
        stat_in_root(fd, "/etc/passwd/")


def test_path_stat_header_is_base64_json(world: tuple[Path, Path, int]) -> None:
    _, _, fd = world
    st = stat_in_root(fd, "/etc/passwd")
    header = path_stat_header(st)
    assert json.loads(base64.b64decode(header, validate=True)) == st
    assert list(json.loads(base64.b64decode(header))) == ["name", "size", "mode", "mtime",
                                                          "linkTarget"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z", str(st["mtime"]))


# --- archive ------------------------------------------------------------------------------


def test_archive_names_follow_the_requested_path(world: tuple[Path, Path, int]) -> None:
    root, _, fd = world
    (root / "a/b/sub").mkdir(parents=True)
    (root / "a/b/x").write_bytes(b"x")
    (root / "a/b/sub/y").write_bytes(b"y")
    assert _names(_archive(fd, "/a/b")) == ["b/", "b/sub/", "b/sub/y", "b/x"]
    assert _names(_archive(fd, "a/b/")) == ["b/", "b/sub/", "b/sub/y", "b/x"]
    assert _names(_archive(fd, "/a/b/.")) == ["./", "./sub/", "./sub/y", "./x"]
    assert _names(_archive(fd, "/a/b/x")) == ["x"]
    raw = _archive(fd, "/")
    assert raw[:100].rstrip(b"\0") == b"/"  # docker's root rebase: "/", "/a/", ...
    assert _names(raw)[1:4] == ["/a/", "/a/b/", "/a/b/sub/"]
    assert raw.endswith(bytes(1024)) and len(raw) % 512 == 0


def test_archive_header_fields(world: tuple[Path, Path, int]) -> None:
    root, _, fd = world
    d = root / "d"
    d.mkdir()
    (d / "f").write_bytes(b"data" * 300)
    os.chmod(d / "f", 0o4751)
    os.link(d / "f", d / "g")
    (d / "l").symlink_to("f")
    os.mkfifo(d / "p", 0o640)
    for path in (d / "f", d / "p", d):
        os.utime(path, ns=(0, MTIME * 10**9 + 999_999_999))
    with tarfile.open(fileobj=io.BytesIO(_archive(fd, "/d"))) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert members["d/f"].mode == 0o4751 and members["d/f"].size == 1200
        assert members["d/f"].mtime == MTIME  # whole seconds, as docker
        assert members["d/f"].uname == members["d/f"].gname == ""
        assert members["d/g"].islnk() and members["d/g"].linkname == "d/f"
        assert members["d/l"].issym() and members["d/l"].linkname == "f"
        assert members["d/p"].isfifo() and members["d/p"].mode == 0o640
        assert tar.extractfile("d/f").read() == b"data" * 300  # type: ignore[union-attr]


def test_archive_never_enters_a_symlink(world: tuple[Path, Path, int]) -> None:
    root, host, fd = world
    (root / "d").mkdir()
    (root / "d/to_host").symlink_to(host)
    (root / "d/slash").symlink_to("/")
    (root / "d/up").symlink_to("../../host")
    raw = _archive(fd, "/")
    assert SECRET not in raw
    assert not any("secret" in name for name in _names(raw))
    assert _names(_archive(fd, "/d/to_host")) == ["to_host"]  # the link itself


def test_archive_follow_link_resolves_inside_the_root(world: tuple[Path, Path, int]) -> None:
    root, host, fd = world
    (root / "real").mkdir()
    (root / "real/x").write_bytes(b"inside")
    (root / "alias").symlink_to("/real")
    (root / "to_host").symlink_to(host)
    (root / "up").symlink_to("../host")
    assert _names(_archive(fd, "/alias", follow_link=True)) == ["alias/", "alias/x"]
    assert _names(_archive(fd, "/alias")) == ["alias"]
    for path in ("/to_host", "/up"):
        with pytest.raises(CopyPathNotFound):  # the host dir's path, inside the root
            _archive(fd, path, follow_link=True)
    with pytest.raises(CopyPathNotFound):
        _archive(fd, "/to_host/secret")
    with pytest.raises(CopyPathNotFound):
        _archive(fd, "/../host/secret")
    with pytest.raises(CopyError):
        _archive(fd, "/etc/passwd/.")


# --- extract: escapes ---------------------------------------------------------------------


def test_members_that_climb_out_are_refused(world: tuple[Path, Path, int]) -> None:
    root, host, fd = world
    before = _host_state(host)
    for name in ("../../host/secret", "a/../../host/secret", "..", "../x"):
        with pytest.raises(CopyError, match="outside of the destination"):
            extract_into_root(fd, CTR, _tar((name, b"pwned", {})))
    assert _host_state(host) == before
    assert not (root.parent / "x").exists()


def test_absolute_member_names_land_below_the_destination(
        world: tuple[Path, Path, int]) -> None:
    root, host, fd = world
    extract_into_root(fd, CTR, _tar((str(host / "secret"), b"pwned", {}),
                                    ("/../../abs", b"abs", {})))
    ctr = root / CTR.lstrip("/")
    assert (ctr / str(host).lstrip("/") / "secret").read_bytes() == b"pwned"
    assert (ctr / "abs").read_bytes() == b"abs"
    assert (host / "secret").read_bytes() == SECRET


def test_members_below_a_symlinked_dir_stay_in_the_root(world: tuple[Path, Path, int]) -> None:
    root, host, fd = world
    ctr = root / CTR.lstrip("/")
    (ctr / "to_host").symlink_to(host)
    (ctr / "slash").symlink_to("/")
    (ctr / "up").symlink_to("../../../../../../..")
    before = _host_state(host)
    extract_into_root(fd, CTR, _tar(("to_host/one", b"pwned 1", {}),
                                    (f"slash{host}/two", b"pwned 2", {}),
                                    (f"up{host}/three", b"pwned 3", {})))
    assert _host_state(host) == before
    inside = root / str(host).lstrip("/")  # all three resolved to one directory in the root
    assert sorted(p.name for p in inside.iterdir()) == ["one", "three", "two"]


def test_a_tar_that_plants_a_symlink_then_writes_through_it(
        world: tuple[Path, Path, int]) -> None:
    """The classic: `l -> /host/dir`, then `l/secret`. The link is made as asked; the file
    lands where the link leads *inside the root*."""
    root, host, fd = world
    before = _host_state(host)
    extract_into_root(fd, CTR, _tar(("l", str(host), {}), ("l/secret", b"pwned", {}),
                                    ("s", "/", {}), ("s" + str(host / "new"), b"new", {})))
    assert _host_state(host) == before
    assert os.readlink(root / CTR.lstrip("/") / "l") == str(host)
    assert (root / str(host).lstrip("/") / "secret").read_bytes() == b"pwned"
    assert (root / str(host).lstrip("/") / "new").read_bytes() == b"new"
    with pytest.raises(CopyError, match="invalid symlink"):  # docker's breakout check
        extract_into_root(fd, CTR, _tar(("rel", "../../host", {})))


def test_an_existing_symlink_is_replaced_not_written_through(
        world: tuple[Path, Path, int]) -> None:
    root, host, fd = world
    ctr = root / CTR.lstrip("/")
    (ctr / "victim").symlink_to(host / "secret")
    (ctr / "vdir").symlink_to(host)
    before = _host_state(host)
    extract_into_root(fd, CTR, _tar(("victim", b"replaced", {}), ("vdir", None, {})))
    assert _host_state(host) == before
    assert (ctr / "victim").read_bytes() == b"replaced" and not (ctr / "victim").is_symlink()
    assert (ctr / "vdir").is_dir() and not (ctr / "vdir").is_symlink()


def test_hard_links_pointing_outside_are_refused(world: tuple[Path, Path, int]) -> None:
    root, host, fd = world
    ctr = root / CTR.lstrip("/")
    (ctr / "to_host").symlink_to(host)
    (ctr / "file").write_bytes(b"f")

    def link(target: str) -> io.BytesIO:
        return _tar(("h", b"", {"type": tarfile.LNKTYPE, "linkname": target}))

    before = _host_state(host)
    with pytest.raises(CopyError, match="outside of the destination"):
        extract_into_root(fd, CTR, link("../../host/secret"))
    for target in ("to_host/secret", str(host / "secret")):  # resolved in the root: missing
        with pytest.raises(CopyError, match="No such file"):
            extract_into_root(fd, CTR, link(target))
    assert _host_state(host) == before  # the sentinel's link count is still 1
    with pytest.raises(CopyError, match="invalid hard link"):
        extract_into_root(fd, CTR, link("h"))
    extract_into_root(fd, CTR, link("/file"))  # absolute: below the destination
    assert (ctr / "h").stat().st_ino == (ctr / "file").stat().st_ino


def test_destination_is_resolved_in_the_root(world: tuple[Path, Path, int]) -> None:
    root, host, fd = world
    ctr = root / CTR.lstrip("/")
    (ctr / "to_host").symlink_to(host)
    (ctr / "alias").symlink_to("/etc")
    before = _host_state(host)
    with pytest.raises(CopyPathNotFound):
        extract_into_root(fd, CTR + "/to_host", _tar(("pwned", b"x", {})))
    with pytest.raises(CopyPathNotFound):
        extract_into_root(fd, f"/../..{host}", _tar(("pwned", b"x", {})))
    with pytest.raises(CopyError, match="not a directory"):
        extract_into_root(fd, "/etc/passwd", _tar(("pwned", b"x", {})))
    extract_into_root(fd, CTR + "/alias", _tar(("new", b"x", {})))  # a link to a dir
    assert (root / "etc/new").read_bytes() == b"x"
    assert _host_state(host) == before


def test_dir_and_non_dir_conflicts_follow_docker(world: tuple[Path, Path, int]) -> None:
    root, _, fd = world
    ctr = root / CTR.lstrip("/")
    (ctr / "d/inner").mkdir(parents=True)
    (ctr / "f").write_bytes(b"file")
    with pytest.raises(CopyError, match="cannot overwrite directory"):
        extract_into_root(fd, CTR, _tar(("d", b"now a file", {})),
                          no_overwrite_dir_non_dir=True)
    with pytest.raises(CopyError, match="cannot overwrite non-directory"):
        extract_into_root(fd, CTR, _tar(("f", None, {})), no_overwrite_dir_non_dir=True)
    assert (ctr / "d/inner").is_dir() and (ctr / "f").read_bytes() == b"file"
    extract_into_root(fd, CTR, _tar(("d", None, {"mode": 0o700}), ("d/new", b"n", {})))
    assert (ctr / "d/inner").is_dir() and (ctr / "d/new").exists()  # merged
    assert stat.S_IMODE((ctr / "d").stat().st_mode) == 0o700
    extract_into_root(fd, CTR, _tar(("d", b"now a file", {}), ("f", None, {})))
    assert (ctr / "d").read_bytes() == b"now a file" and (ctr / "f").is_dir()
    extract_into_root(fd, CTR, _tar((".", None, {"mode": 0o700})))  # "." is skipped
    assert stat.S_IMODE(ctr.stat().st_mode) != 0o700


def test_refused_entries(world: tuple[Path, Path, int]) -> None:
    _, _, fd = world
    device = {"type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3}
    with pytest.raises(CopyError, match="device nodes are refused"):
        extract_into_root(fd, CTR, _tar(("null", b"", device)))
    whole = _tar(("f", b"x" * 5000, {})).getvalue()
    with pytest.raises(CopyError, match="truncated"):
        extract_into_root(fd, CTR, io.BytesIO(whole[:1536]))
    with pytest.raises(CopyError, match="truncated"):
        extract_into_root(fd, CTR, io.BytesIO(whole[:512 * 11]))
    with pytest.raises(CopyError, match="NUL"):  # a PAX path record can hold one
        extract_into_root(fd, CTR, _tar(("x", b"", {"pax_headers": {"path": "a\0b"}})))


# --- round trips --------------------------------------------------------------------------


def _build_tree(top: Path) -> None:
    """Files (setuid, empty, large, odd sizes), nested and special-mode directories, relative,
    absolute, dangling and directory symlinks, hard links across directories, a FIFO, a
    non-ASCII and a long name (PAX); fixed mtimes."""
    top.mkdir()
    (top / "a.txt").write_bytes(b"alpha\n")
    (top / "exe").write_bytes(os.urandom(70_001))
    os.chmod(top / "exe", 0o4755)
    (top / "private").write_bytes(b"p")
    os.chmod(top / "private", 0o600)
    (top / "empty").write_bytes(b"")
    (top / "sub/deep").mkdir(parents=True)
    (top / "sub/deep/file").write_bytes(b"deep" * 1000)
    os.chmod(top / "sub", 0o2775)
    (top / "sticky").mkdir(mode=0o777)
    os.chmod(top / "sticky", 0o1777)
    (top / "ro").mkdir()
    (top / "ro/inside").write_bytes(b"under a read-only dir")
    os.chmod(top / "ro", 0o555)
    (top / "link_rel").symlink_to("a.txt")
    (top / "link_abs").symlink_to("/tree/a.txt")
    (top / "dangling").symlink_to("nowhere/at/all")
    (top / "sub_link").symlink_to("sub")
    os.link(top / "a.txt", top / "hard")
    os.link(top / "exe", top / "sub/deep/hard2")
    os.mkfifo(top / "pipe", 0o640)
    (top / "ünïcödé").write_bytes("ü".encode())
    (top / ("long" * 40)).write_bytes(b"long name")
    for path in sorted([top, *top.rglob("*")], key=lambda p: -len(p.parts)):
        os.utime(path, ns=(MTIME * 10**9, MTIME * 10**9), follow_symlinks=False)


def _snapshot(top: Path, owners: bool) -> dict[str, tuple[object, ...]]:
    """Every entry below top (top itself as "."): type, mode, size, content digest or link
    target, mtime, owner (when asked), and which entries share an inode."""
    entries: dict[str, tuple[object, ...]] = {}
    groups: dict[tuple[int, int], str] = {}
    for path in sorted([top, *top.rglob("*")]):
        rel = str(path.relative_to(top))
        st = path.lstat()
        if stat.S_ISREG(st.st_mode):
            body: object = hashlib.sha256(path.read_bytes()).hexdigest()
        elif stat.S_ISLNK(st.st_mode):
            body = os.readlink(path)
        else:
            body = None
        first = groups.setdefault((st.st_dev, st.st_ino), rel)
        entries[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode),
                        st.st_size if stat.S_ISREG(st.st_mode) else None, body,
                        st.st_mtime_ns // 10**9, first,
                        (st.st_uid, st.st_gid) if owners else None)
    return entries


def _round_trip(tmp_path: Path, owners: bool, chown: bool = True,
                owner: tuple[int, int] | None = None) -> tuple[Path, Path]:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir(parents=True)
    (dst / "out").mkdir(parents=True)
    (dst / "copy").mkdir()
    _build_tree(src / "tree")
    if owners:
        for rel, ids in (("a.txt", (1000, 1000)), ("sub", (1234, 5678)),
                         ("sub/deep/file", (0, 42)), ("link_rel", (42, 43)),
                         ("pipe", (7, 8)), ("ro", (65534, 65534))):
            os.chown(src / "tree" / rel, *ids, follow_symlinks=False)
    src_fd, dst_fd = inroot.open_root(str(src)), inroot.open_root(str(dst))
    try:
        data = _archive(src_fd, "/tree")
        extract_into_root(dst_fd, "/out", io.BytesIO(data), chown=chown, owner=owner)
        extract_into_root(dst_fd, "/copy", io.BytesIO(_archive(src_fd, "/tree/.")),
                          chown=chown, owner=owner)
    finally:
        os.close(src_fd)
        os.close(dst_fd)
    return src, dst


def test_round_trip_is_byte_for_byte(tmp_path: Path) -> None:
    src, dst = _round_trip(tmp_path, owners=False)
    before = _snapshot(src / "tree", owners=False)
    assert len(before) >= 20
    assert _snapshot(dst / "out/tree", owners=False) == before
    # Through "/tree/.": the contents into an existing directory, whose own entry is skipped.
    copied = _snapshot(dst / "copy", owners=False)
    assert {k: v for k, v in copied.items() if k != "."} == \
        {k: v for k, v in before.items() if k != "."}


def test_round_trip_keeps_owners(tmp_path: Path) -> None:
    require_root()
    src, dst = _round_trip(tmp_path, owners=True)
    assert _snapshot(dst / "out/tree", owners=True) == _snapshot(src / "tree", owners=True)
    assert (dst / "out/tree/sub").stat().st_uid == 1234
    assert os.lstat(dst / "out/tree/link_rel").st_gid == 43


def test_owners_can_be_dropped_or_forced(tmp_path: Path) -> None:
    require_root()
    _, dst = _round_trip(tmp_path / "drop", owners=True, chown=False)
    assert {p.lstat().st_uid for p in (dst / "out/tree").rglob("*")} == {0}
    _, dst = _round_trip(tmp_path / "force", owners=True, owner=(4321, 8765))
    assert {(p.lstat().st_uid, p.lstat().st_gid) for p in (dst / "out/tree").rglob("*")} == \
        {(4321, 8765)}


# --- the CVE-2018-15664 class: a directory swapped for a symlink during the copy -----------


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange_forever(pairs: list[tuple[bytes, bytes]], stop: threading.Event,
                      count: list[int]) -> None:
    """Atomically swap each (dir, symlink) pair of names, over and over (renameat2
    RENAME_EXCHANGE, as the CVE's proof of concept does)."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    while not stop.is_set():
        for a, b in pairs:
            if libc.renameat2(_AT_FDCWD, a, _AT_FDCWD, b, _RENAME_EXCHANGE) != 0:
                raise OSError(ctypes.get_errno(), "renameat2")
            count[0] += 1


def test_a_directory_swapped_for_a_symlink_never_reaches_the_host(
        world: tuple[Path, Path, int]) -> None:
    root, host, fd = world
    ctr = root / CTR.lstrip("/")
    for name in ("d", "e"):
        (ctr / name).mkdir()
        for i in range(8):
            (ctr / name / f"f{i}").write_bytes(b"inside\n")
    (ctr / "d_link").symlink_to(host)  # the host dir's absolute path
    (ctr / "e_link").symlink_to("../" * 12 + str(host).lstrip("/"))  # climbing out
    for i in range(8):  # names a leak would copy, with the sentinel in them
        (host / f"f{i}").write_bytes(SECRET)
    before = _host_state(host)
    # Many members below the swapped names: each one's parent is looked up again.
    upload = _tar(*[(f"{top}/new{i}", b"uploaded\n", {}) for i in range(16)
                    for top in ("d", "d/sub", "e")], ("e/f0", b"overwritten\n", {})).getvalue()
    small = _tar(("f1", b"overwritten\n", {}), ("sub/pwned", b"pwned\n", {})).getvalue()

    stop, swaps = threading.Event(), [0]
    pairs = [(bytes(ctr / "d"), bytes(ctr / "d_link")),
             (bytes(ctr / "e"), bytes(ctr / "e_link"))]
    swapper = threading.Thread(target=_exchange_forever, args=(pairs, stop, swaps))
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    done = {"archive": 0, "extract": 0}
    try:
        swapper.start()
        start = time.monotonic()
        # About 1.2 s of copies, longer (up to 2.5 s) on a slow machine until each kind has
        # succeeded a few times under the swapping.
        while (elapsed := time.monotonic() - start) < 1.2 or (
                elapsed < 2.5 and min(done.values()) < 10):
            for path in ("", "/d", "/d/.", "/e/", "/d/f0", "/e/f1"):
                try:
                    raw = _archive(fd, CTR + path, follow_link=True)
                except CopyError:
                    continue  # missing at that instant (the link's target is not in root)
                assert SECRET not in raw
                done["archive"] += 1
            for dest, data in (("", upload), ("/d", small), ("/e", small)):
                try:
                    extract_into_root(fd, CTR + dest, io.BytesIO(data))
                except CopyError:
                    continue
                done["extract"] += 1
    finally:
        stop.set()
        swapper.join()
        sys.setswitchinterval(interval)
    assert swaps[0] > 1000, swaps
    assert min(done.values()) >= 10, done
    assert _host_state(host) == before
