"""`lamina cp` without root: docker's client-side path rules (adapters/cli/files.py), the tar
rebase, the container side's user lookup and read-only check (adapters/runtime/files.py, on
plain directories), and the engine's part on the in-memory ports (core/engine/files.py):
what is recorded, what is refused, and that a stat records nothing.

The same rules on a real kernel, end to end: tests/kernel/test_cp.py."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from adapters.cli.files import (
    CopyInfo,
    asserts_directory,
    copy_info_destination_path,
    copy_info_source_path,
    prepare_archive_copy,
    preserve_trailing_dot_or_separator,
    rebase_name,
    resolve_local_path,
    split_cp_arg,
    split_path_dir_entry,
    validate_output_path,
)
from adapters.kernel import inroot
from adapters.runtime.files import ChunkReader, View, _user_ids, _writable, name_rebaser, rebased
from core.errors import BadInput, NotFound
from core.memory import memory_engine
from core.mounts import MountPoint

# --- where the arguments point ---------------------------------------------------------------


@pytest.mark.parametrize("arg, want", [
    ("web:/etc/passwd", ("web", "/etc/passwd")),
    ("web:etc", ("web", "etc")),  # relative to the container's /
    ("web:", ("web", "")),
    ("/abs/file:name.txt", ("", "/abs/file:name.txt")),  # absolute: local, colon and all
    ("./file:name.txt", ("", "./file:name.txt")),  # explicit relative: local
    ("../up:x", ("", "../up:x")),
    ("file.txt", ("", "file.txt")),
    ("-", ("", "-")),
    ("host0/cname:/x", ("host0/cname", "/x")),  # a name with a slash is still a container
])
def test_split_cp_arg_follows_docker(arg: str, want: tuple[str, str]) -> None:
    assert split_cp_arg(arg) == want


@pytest.mark.parametrize("cleaned, original, want", [
    ("/a/b", "/a/b/", "/a/b/"),
    ("/a/b", "/a/b/.", "/a/b/."),
    ("/a/b", "/a/b", "/a/b"),
    ("/", "/.", "/."),
    ("/", "//", "/"),
    ("/a/b", "/a/b/./", "/a/b/./"),  # as Go: Base("/a/b/./") is "."
])
def test_trailing_forms_are_kept(cleaned: str, original: str, want: str) -> None:
    assert preserve_trailing_dot_or_separator(cleaned, original) == want


@pytest.mark.parametrize("path, want", [
    ("/a/b", ("/a", "b")), ("/a/b/", ("/a", "b")), ("/a/b/.", ("/a/b", ".")),
    ("/a", ("/", "a")), ("/", ("/", "/")), ("rel/x", ("rel", "x")), ("x", (".", "x")),
])
def test_split_path_dir_entry(path: str, want: tuple[str, str]) -> None:
    assert split_path_dir_entry(path) == want


def test_asserts_directory() -> None:
    assert asserts_directory("/a/") and asserts_directory("/a/.") and asserts_directory(".")
    assert not asserts_directory("/a") and not asserts_directory("/a/..b")


def test_local_paths_become_absolute_with_their_trailing_forms(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_local_path("x") == f"{tmp_path}/x"
    assert resolve_local_path("x/") == f"{tmp_path}/x/"
    assert resolve_local_path("x/.") == f"{tmp_path}/x/."
    assert resolve_local_path(".") == f"{tmp_path}/."


# --- what lands where: PrepareArchiveCopy ------------------------------------------------------


FILE, DIR = CopyInfo("/src/f", True, False), CopyInfo("/src/d", True, True)


@pytest.mark.parametrize("src, dst, want", [
    # a file
    (FILE, CopyInfo("/dst/new"), ("/dst", ("f", "new"))),  # to a new name: takes it
    (FILE, CopyInfo("/dst/old", True, False), ("/dst", ("f", "old"))),  # overwrites a file
    (FILE, CopyInfo("/dst/dir", True, True), ("/dst/dir", None)),  # into a directory
    (FILE, CopyInfo("/dst/dir/", True, True), ("/dst/dir/", None)),
    # a directory
    (DIR, CopyInfo("/dst/new"), ("/dst", ("d", "new"))),  # to a new name: becomes it
    (DIR, CopyInfo("/dst/dir", True, True), ("/dst/dir", None)),  # into it, by name
    (CopyInfo("/src/d/.", True, True), CopyInfo("/dst/new"), ("/dst", (".", "new"))),
    (CopyInfo("/src/d/.", True, True), CopyInfo("/dst/dir", True, True), ("/dst/dir", None)),
    # a followed link keeps the link's name
    (CopyInfo("/src/target", True, False, "link"), CopyInfo("/dst/n"), ("/dst", ("link", "n"))),
])
def test_prepare_archive_copy(src: CopyInfo, dst: CopyInfo,
                              want: tuple[str, tuple[str, str] | None]) -> None:
    assert prepare_archive_copy(src, dst) == want


@pytest.mark.parametrize("src, dst, error", [
    (DIR, CopyInfo("/dst/file", True, False), "cannot copy directory"),  # a dir onto a file
    (FILE, CopyInfo("/dst/new/"), "no such directory"),  # `new/` must exist
    (FILE, CopyInfo("/dst/new/."), "no such directory"),
])
def test_prepare_archive_copy_refusals(src: CopyInfo, dst: CopyInfo, error: str) -> None:
    with pytest.raises(BadInput, match=error):
        prepare_archive_copy(src, dst)


def test_rebase_name_is_dockers_get_rebase_name() -> None:
    assert rebase_name("/a/link", "/a/target") == ("/a/target", "link")
    assert rebase_name("/a/link/", "/a/target") == ("/a/target/", "link")
    assert rebase_name("/a/link/.", "/a/target") == ("/a/target/.", "")  # base "." both
    assert rebase_name("/a/same", "/b/same") == ("/b/same", "")


def test_local_source_resolution(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real/f").write_bytes(b"f")
    (tmp_path / "linkdir").symlink_to("real")
    (tmp_path / "linkfile").symlink_to("real/f")
    # the link itself, unless followed
    info = copy_info_source_path(f"{tmp_path}/linkfile", False)
    assert (info.path, info.is_dir, info.rebase_name) == (f"{tmp_path}/linkfile", False, "")
    info = copy_info_source_path(f"{tmp_path}/linkfile", True)
    assert (info.path, info.rebase_name) == (f"{tmp_path}/real/f", "linkfile")
    # a trailing slash resolves the directory link, which keeps its name
    info = copy_info_source_path(f"{tmp_path}/linkdir/", False)
    assert (info.path, info.is_dir, info.rebase_name) == (f"{tmp_path}/real/", True, "linkdir")
    # parents are resolved
    info = copy_info_source_path(f"{tmp_path}/linkdir/f", False)
    assert info.path == f"{tmp_path}/real/f"
    with pytest.raises(BadInput, match=r"^lstat .*/missing: no such file or directory$"):
        copy_info_source_path(f"{tmp_path}/missing", False)


def test_local_destination_resolution(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_bytes(b"")
    (tmp_path / "to-dir").symlink_to("dir")
    (tmp_path / "chain").symlink_to("to-dir")
    (tmp_path / "dangling").symlink_to("newname")
    assert copy_info_destination_path(f"{tmp_path}/chain") == CopyInfo(f"{tmp_path}/dir",
                                                                       True, True)
    assert copy_info_destination_path(f"{tmp_path}/file") == CopyInfo(f"{tmp_path}/file",
                                                                      True, False)
    # a dangling link: the copy creates its target
    assert copy_info_destination_path(f"{tmp_path}/dangling") == CopyInfo(f"{tmp_path}/newname")
    assert copy_info_destination_path(f"{tmp_path}/new") == CopyInfo(f"{tmp_path}/new")
    with pytest.raises(BadInput, match="no such file or directory"):
        copy_info_destination_path(f"{tmp_path}/nodir/new")
    with pytest.raises(BadInput, match="not a directory"):
        copy_info_destination_path(f"{tmp_path}/file/")
    (tmp_path / "loop").symlink_to("loop")
    with pytest.raises(BadInput, match="too many symlinks"):
        copy_info_destination_path(f"{tmp_path}/loop")


def test_validate_output_path(tmp_path: Path) -> None:
    validate_output_path(f"{tmp_path}/new")
    validate_output_path(str(tmp_path))
    with pytest.raises(BadInput, match='directory ".*/nodir" does not exist'):
        validate_output_path(f"{tmp_path}/nodir/x")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(BadInput, match="must be a directory or a regular file: got an "
                                       "irregular file"):
        validate_output_path(f"{tmp_path}/fifo")


# --- RebaseArchiveEntries ----------------------------------------------------------------------


def _tar() -> bytes:
    out = io.BytesIO()
    long = "deep/" * 30 + "file"
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data in (("src", tarfile.DIRTYPE, b""), ("src/a", tarfile.REGTYPE, b"a"),
                                 (f"src/{long}", tarfile.REGTYPE, b"long" * 300),
                                 ("src/hard", tarfile.LNKTYPE, b""),
                                 ("srcx/other", tarfile.REGTYPE, b"o")):
            info = tarfile.TarInfo(name)
            info.type, info.size, info.mtime, info.uid, info.gid = kind, len(data), 1234, 5, 6
            info.mode = 0o4755
            if kind == tarfile.LNKTYPE:
                info.linkname = "src/a"
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_rebased_renames_the_first_element_and_keeps_the_rest() -> None:
    new = "n" * 120  # longer than ustar's name field: PAX carries it
    data = ChunkReader(rebased(io.BytesIO(_tar()), "src", new)).read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        got = {m.name: m for m in tar.getmembers()}
        long = f"{new}/" + "deep/" * 30 + "file"
        assert sorted(got) == sorted([new, f"{new}/a", long, f"{new}/hard", "srcx/other"])
        assert got[f"{new}/hard"].linkname == f"{new}/a"
        m = got[long]
        assert (m.mtime, m.uid, m.gid, m.mode, m.size) == (1234, 5, 6, 0o4755, 1200)
        f = tar.extractfile(m)
        assert f is not None and f.read() == b"long" * 300


def test_name_rebaser() -> None:
    assert name_rebaser("a", "b")("a/x") == "b/x"
    assert name_rebaser("a", "b")("ab/x") == "ab/x"
    assert name_rebaser(".", "new")("./x") == "new/x"
    assert name_rebaser(".", "new")(".") == "new"
    assert name_rebaser("", "new")("/etc/x") == "new/etc/x"  # from a root archive
    assert name_rebaser("/", "new")("bin") == "new/bin"


def test_chunk_reader_gives_what_it_is_asked() -> None:
    r = ChunkReader(iter([b"ab", b"", b"cdef", b"g"]))
    assert [r.read(3), r.read(1), r.read(10), r.read(1)] == [b"abc", b"d", b"efg", b""]


# --- the container side, on a plain directory -------------------------------------------------


@pytest.fixture
def root(tmp_path: Path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n"
                                         "app:x:1000:1001::/home/app:/bin/sh\n")
    (tmp_path / "etc/group").write_text("root:x:0:\nstaff:x:50:\n")
    (tmp_path / "data/sub").mkdir(parents=True)
    (tmp_path / "link").symlink_to("/data/sub")
    fd = inroot.open_root(str(tmp_path))
    yield fd
    os.close(fd)


@pytest.mark.parametrize("user, want", [
    ("app", (1000, 1001)), ("1000", (1000, 1001)), ("4242", (4242, 0)), ("app:staff", (1000, 50)),
    ("app:77", (1000, 77)), (":50", (0, 50)), ("0", (0, 0)),
])
def test_copy_uid_gid_looks_the_user_up_in_the_container(root: int, user: str,
                                                        want: tuple[int, int]) -> None:
    assert _user_ids(root, user) == want


def test_an_unknown_user_or_group_is_refused(root: int) -> None:
    with pytest.raises(BadInput, match='failed to look up user "nobody2" in container'):
        _user_ids(root, "nobody2")
    with pytest.raises(BadInput, match='failed to look up group "wheel" in container'):
        _user_ids(root, "app:wheel")


def test_the_read_only_check_resolves_the_destination_first(root: int) -> None:
    view = View("c" * 64, running=False, mounts=(
        (MountPoint("bind", "/data", "/host/data", read_only=True), "/host/data"),
        (MountPoint("volume", "/data/sub/rw", "v"), "/v")), read_only_root=True)
    for path in ("/data", "/data/x/", "/link"):  # /link is /data/sub: read-only
        with pytest.raises(BadInput, match="mounted volume is marked read-only"):
            _writable(view, root, path)
    _writable(view, root, "/data/sub/rw/deeper")  # the innermost mount decides
    with pytest.raises(BadInput, match="container rootfs is marked read-only"):
        _writable(view, root, "/etc")
    _writable(View("c" * 64, running=False), root, "/etc")


# --- the engine's part, on the in-memory ports -------------------------------------------------


@pytest.fixture
def engine():
    e = memory_engine(user="test")
    e.runtime.layers = e.layers  # the container's files: its rw layer's
    e.import_image({"bin/sh": "ash"}, "busybox")
    return e


def _upload(**files: bytes) -> io.BytesIO:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    out.seek(0)
    return out


def _types(e) -> list[str]:
    return [r.type for r in e.log.read()]


@pytest.mark.parametrize("state", ["stopped", "running", "paused"])
def test_copies_are_recorded_in_the_containers_stream(engine, state: str) -> None:
    cid = engine.create("busybox", ["sh"], name="web")
    if state != "stopped":
        engine.start("web")
    if state == "paused":
        engine.pause("web")
    before = engine.log.container(cid)
    assert before.state == state
    upload = _upload(**{"hello.txt": b"hello\n"})
    raw = upload.getvalue()
    engine.copy_to("web", "/", upload)
    out = io.BytesIO()
    seen = []
    stat = engine.copy_from("web", "/hello.txt", out, on_stat=seen.append)
    assert seen == [stat] and stat["name"] == "hello.txt" and stat["size"] == 6
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        f = tar.extractfile("hello.txt")
        assert f is not None and f.read() == b"hello\n"
    records = list(engine.log.read(stream=f"container:{cid}"))
    to, out_rec = records[-2], records[-1]
    import hashlib

    assert (to.type, to.data["path"], to.data["size"]) == ("ContainerCopiedTo", "/", len(raw))
    assert to.data["digest"] == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert (out_rec.type, out_rec.data["path"], out_rec.data["size"]) == \
        ("ContainerCopiedFrom", "/hello.txt", len(out.getvalue()))
    assert to.meta["command"] == "cp" and to.meta["user"] == "test"
    after = engine.log.container(cid)
    assert after.state == state  # audit records: the state does not move
    assert after.version == before.version + 2 == records[-1].version


def test_a_stat_is_a_query_and_records_nothing(engine) -> None:
    engine.create("busybox", ["sh"], name="web")
    engine.copy_to("web", "/", _upload(**{"d/f": b"x"}))
    n = len(_types(engine))
    assert engine.path_stat("web", "/d")["mode"] & (1 << 31)
    with pytest.raises(NotFound, match="Could not find the file /nope in container web"):
        engine.path_stat("web", "/nope")
    with pytest.raises(NotFound, match="no such container"):
        engine.path_stat("gone", "/d")
    assert len(_types(engine)) == n


def test_refusals_are_recorded(engine) -> None:
    cid = engine.create("busybox", ["sh"], name="web")
    engine.copy_to("web", "/", _upload(f=b"x"))
    with pytest.raises(NotFound, match="Could not find the file /nope in container web"):
        engine.copy_from("web", "/nope", io.BytesIO())
    with pytest.raises(BadInput, match="extraction point is not a directory"):
        engine.copy_to("web", "/f", _upload(g=b"y"))
    with pytest.raises(NotFound, match="no such container: other"):
        engine.copy_to("other", "/", _upload(g=b"y"))
    with pytest.raises(BadInput, match="path cannot be empty"):
        engine.copy_from("web", "", io.BytesIO())
    engine.rm("web")
    with pytest.raises(NotFound, match="no such container"):  # only a removed one
        engine.copy_from(cid, "/f", io.BytesIO())
    rejected = [r.data for r in engine.log.read() if r.type == "CommandRejected"]
    assert [(r["command"], r["target"]) for r in rejected] == [
        ("cp", "web"), ("cp", "web"), ("cp", "other"), ("cp", "web"), ("cp", cid)]
