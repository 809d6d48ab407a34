"""`lamina cp` on the real kernel: running, paused and stopped containers, their volumes,
binds and tmpfs, byte-for-byte round trips, and containers that try to lead a copy to the
host's files (CVE-2018-15664's class), a swapping race included.

Every hostile path here leads, if it were followed on the host, into a `host` directory of
the test holding a sentinel: a regression reads the sentinel or changes that directory,
and the test says so; it can't touch the real host's files. After each copy the host must
hold no mount of the copy's and no process of it.
"""

from __future__ import annotations

import io
import os
import stat
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.kernel import inroot
from adapters.kernel.proc import stat_fields
from adapters.storage import copyio
from tests.conftest import require_root, served_now
from tests.kernel.runtime_env import Lamina, busybox_lamina

pytestmark = pytest.mark.kernel

SECRET = b"HOST-SENTINEL-cp-5b1e: a host file no container path may reach\n"
MTIME = 1_500_000_000


@pytest.fixture(scope="module")
def lamina(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lamina]:
    require_root()
    _BEFORE.update(_all_children())
    yield from busybox_lamina(tmp_path_factory.mktemp("cp"))


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """The sentinel directory a leak would reach."""
    h = tmp_path / "host"
    h.mkdir()
    (h / "secret").write_bytes(SECRET)
    return h


def _state(directory: Path) -> dict[str, tuple[bytes, int]]:
    out = {"": (b"", directory.stat().st_mtime_ns)}
    for p in sorted(directory.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(directory))] = (
            p.read_bytes() if stat.S_ISREG(st.st_mode) else b"", st.st_mtime_ns)
    return out


def _mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(str(path))]


def _only_views(lamina: Lamina) -> bool:
    """Nothing mounted under the root but running containers' union views."""
    import re

    return all(re.fullmatch(r".*/layers/rw-[0-9a-f]{64}/merged", m)
               for m in _mounts_under(lamina.root))


_BEFORE: set[int] = set()  # children this process had before this module's first test


def _children() -> list[int]:
    """Our own children still around that this module's copies made (a copy must reap its
    own). Those of earlier test modules (a runtime contract's monitors forked from this
    process) are not a copy's."""
    return [pid for pid in _all_children() if pid not in _BEFORE]


def _all_children() -> list[int]:
    me = str(os.getpid())
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[1] == me:
                out.append(int(pid))
    return out


def reference_tar(path: Path) -> bytes:
    """The tar copyio makes of a host path: what the container side must give back."""
    root = inroot.open_root(str(path.parent))
    try:
        out = io.BytesIO()
        copyio.archive_from_root(root, "/" + path.name, out)
        return out.getvalue()
    finally:
        os.close(root)


def make_tree(base: Path) -> Path:
    """A tree with every kind cp must keep: modes (setuid, setgid, sticky), numeric owners,
    symlinks (relative, absolute, dangling), hard links, whole-second mtimes."""
    t = base / "tree"
    (t / "sub/deep").mkdir(parents=True)
    (t / "sticky").mkdir()
    (t / "plain").write_bytes(b"plain\n")
    (t / "setuid").write_bytes(b"#!/bin/sh\n")
    (t / "sub/data.bin").write_bytes(bytes(range(256)) * 300)
    (t / "sub/deep/owned").write_bytes(b"owned\n")
    (t / "empty").write_bytes(b"")
    os.link(t / "plain", t / "sub/hardlink")
    (t / "rel").symlink_to("sub/data.bin")
    (t / "abs").symlink_to("/etc/passwd")
    (t / "dangling").symlink_to("nowhere/at/all")
    os.chmod(t / "setuid", 0o4755)
    os.chmod(t / "sticky", 0o1777)
    os.chmod(t / "sub/deep", 0o2750)
    os.chmod(t / "sub/deep/owned", 0o600)
    os.chown(t / "sub/deep/owned", 1234, 5678)
    os.chown(t / "sub/deep", 4321, 8765)
    os.lchown(t / "rel", 99, 98)
    for p in sorted(t.rglob("*"), key=lambda p: -len(p.parts)) + [t]:
        os.utime(p, (MTIME, MTIME + len(p.name)), follow_symlinks=False)
    return t


def tar_of(lamina: Lamina, cid: str, path: str) -> bytes:
    out = subprocess.run([*_argv(lamina), "cp", f"{cid}:{path}", "-"], capture_output=True,
                         timeout=60, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _argv(lamina: Lamina) -> list[str]:
    from tests.kernel.runtime_env import LAMINA

    return [LAMINA, "--root", str(lamina.root)]


def members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: m for m in tar.getmembers()}


def content(data: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        f = tar.extractfile(name)
        assert f is not None
        return f.read()


def _container(lamina: Lamina, state: str, *flags: str, cmd: tuple[str, ...] = ()) -> str:
    """A container in `state` (running, paused, stopped-that-ran, created)."""
    command = cmd or ("sleep", "600")
    if state == "created":
        return lamina.ok("create", *flags, "busybox", *command).strip()
    cid = lamina.ok("run", "-d", *flags, "busybox", *command).strip()
    if state == "paused":
        lamina.ok("pause", cid)
    elif state == "stopped":
        lamina.ok("kill", cid)
    return cid


# --- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["running", "paused", "stopped", "created"])
def test_a_tree_round_trips_byte_for_byte(lamina: Lamina, tmp_path: Path, state: str) -> None:
    tree = make_tree(tmp_path / "src")
    want = reference_tar(tree)
    cid = _container(lamina, state)
    lamina.ok("cp", str(tree), f"{cid}:/")  # into an existing directory: /tree
    got = tar_of(lamina, cid, "/tree")
    assert got == want  # names, modes, owners, links, mtimes, contents: every byte
    m = members(got)
    assert m["tree/setuid"].mode == 0o4755 and m["tree/sticky"].mode == 0o1777
    assert (m["tree/sub/deep/owned"].uid, m["tree/sub/deep/owned"].gid) == (1234, 5678)
    assert m["tree/sub/hardlink"].islnk() and m["tree/sub/hardlink"].linkname == "tree/plain"
    assert m["tree/abs"].linkname == "/etc/passwd" and m["tree/dangling"].issym()
    # and back out onto the host: -a keeps the owners
    back = tmp_path / "back"
    back.mkdir()
    lamina.ok("cp", "-a", f"{cid}:/tree", str(back))
    assert reference_tar(back / "tree") == want
    assert (back / "tree/sub/hardlink").stat().st_ino == (back / "tree/plain").stat().st_ino
    # without -a the files are this command's (root's), as docker's CLI leaves them
    plain = tmp_path / "plain"
    lamina.ok("cp", f"{cid}:/tree", str(plain))
    assert (plain / "sub/deep/owned").stat().st_uid == 0
    assert (plain / "sub/deep/owned").read_bytes() == b"owned\n"
    assert _only_views(lamina)
    view = str(lamina.root / "layers" / f"rw-{cid}" / "merged")
    assert (view in _mounts_under(lamina.root)) == (state in ("running", "paused"))
    assert _children() == []


def test_a_stopped_container_leaves_no_mount_and_no_process(lamina: Lamina,
                                                            tmp_path: Path) -> None:
    vol_host = tmp_path / "bind"
    vol_host.mkdir()
    cid = _container(lamina, "stopped", "-v", f"{vol_host}:/bind", "-v", "cpstopped:/vol",
                     "--tmpfs", "/scratch")
    view = str(lamina.root / "layers" / f"rw-{cid}" / "merged")
    (tmp_path / "f").write_bytes(b"x\n")
    for target in ("/bind", "/vol", "/scratch", "/"):
        lamina.ok("cp", str(tmp_path / "f"), f"{cid}:{target}")
        assert view not in _mounts_under(lamina.root) and _only_views(lamina)
    assert (vol_host / "f").read_bytes() == b"x\n"
    assert (lamina.root / "volumes/cpstopped/_data/f").read_bytes() == b"x\n"
    assert not _mounts_under(vol_host) and _children() == []


# --- volumes, binds and tmpfs ------------------------------------------------------------------


@pytest.mark.parametrize("state", ["running", "stopped"])
def test_volumes_binds_and_tmpfs_are_the_containers(lamina: Lamina, tmp_path: Path,
                                                    state: str) -> None:
    bind = tmp_path / "bind"
    bind.mkdir()
    (bind / "from-host").write_bytes(b"bound\n")
    vol = f"cpvol-{state}"
    cid = _container(lamina, state, "-v", f"{bind}:/srv/bind", "-v", f"{vol}:/srv/vol",
                     "--tmpfs", "/srv/tmp",
                     cmd=("sh", "-c", "echo in-volume > /srv/vol/v; echo in-tmpfs > "
                          "/srv/tmp/t; exec sleep 600"))
    if state == "running":
        for _ in range(100):  # its first lines have run
            if lamina("exec", cid, "test", "-f", "/srv/tmp/t").returncode == 0:
                break
            time.sleep(0.05)
    src = tmp_path / "up"
    src.mkdir()
    (src / "hello").write_bytes(b"hello\n")
    for where in ("/srv/bind", "/srv/vol"):
        lamina.ok("cp", str(src / "hello"), f"{cid}:{where}/")
    assert (bind / "hello").read_bytes() == b"hello\n"
    assert (lamina.root / f"volumes/{vol}/_data/hello").read_bytes() == b"hello\n"
    # out of each: the bind's host file, the volume's, the tmpfs's
    assert members(tar_of(lamina, cid, "/srv/bind/from-host"))["from-host"].size == 6
    out = tmp_path / "out"
    lamina.ok("cp", f"{cid}:/srv/vol/v", str(out))
    assert out.read_bytes() == b"in-volume\n"
    tmpfs = members(tar_of(lamina, cid, "/srv/tmp"))
    if state == "running":  # the container's own tmpfs, live
        assert "tmp/t" in tmpfs
        lamina.ok("cp", str(src / "hello"), f"{cid}:/srv/tmp/")
        assert lamina.ok("exec", cid, "cat", "/srv/tmp/hello") == "hello\n"
    else:  # a stopped container's tmpfs is empty (a fresh one, as docker's view has)
        assert list(tmpfs) == ["tmp"]
    assert _children() == []


def test_read_only_mounts_and_root_refuse_copies_in_dockers_words(lamina: Lamina,
                                                                   tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    (tmp_path / "f").write_bytes(b"x\n")
    cid = _container(lamina, "running", "--read-only", "-v", f"{ro}:/ro:ro", "-v",
                     "cprw:/rw")
    out = lamina("cp", str(tmp_path / "f"), f"{cid}:/ro/")
    assert out.returncode == 1 and "mounted volume is marked read-only" in out.stderr
    out = lamina("cp", str(tmp_path / "f"), f"{cid}:/etc/")
    assert out.returncode == 1 and "container rootfs is marked read-only" in out.stderr
    lamina.ok("cp", str(tmp_path / "f"), f"{cid}:/rw/")  # a writable volume in it is fine
    assert not (ro / "f").exists()
    assert (lamina.root / "volumes/cprw/_data/f").exists()


def test_archive_mode_gives_files_the_containers_user(lamina: Lamina, tmp_path: Path) -> None:
    """-a is docker's copyUIDGID: the container's USER, looked up in its own /etc/passwd;
    without it the tar's owners stay."""
    cid = _container(lamina, "stopped", "--user", "nobody")
    f = tmp_path / "f"
    f.write_bytes(b"x\n")
    os.chown(f, 4242, 4343)
    lamina.ok("cp", str(f), f"{cid}:/tmp/kept")
    lamina.ok("cp", "-a", str(f), f"{cid}:/tmp/given")
    m = members(tar_of(lamina, cid, "/tmp"))
    assert (m["tmp/kept"].uid, m["tmp/kept"].gid) == (4242, 4343)
    assert (m["tmp/given"].uid, m["tmp/given"].gid) == (65534, 65534)  # busybox's nobody
    copied = [e["data"]["copy_uid_gid"] for e in lamina.events(f"container={cid}")
              if e["type"] == "ContainerCopiedTo"]
    assert copied == [False, True]


# --- what is recorded --------------------------------------------------------------------------


def test_copies_are_recorded_and_a_stat_is_not(lamina: Lamina, tmp_path: Path) -> None:
    from adapters.bootstrap import build_engine

    cid = _container(lamina, "running", "--name", "audited")
    (tmp_path / "f").write_bytes(b"recorded\n")
    lamina.ok("cp", str(tmp_path / "f"), "audited:/tmp/")
    data = tar_of(lamina, cid, "/tmp/f")
    e = build_engine(str(lamina.root))
    try:
        n = len(list(e.log.read()))
        assert e.path_stat("audited", "/tmp/f")["size"] == 9
        assert len(list(e.log.read())) == n  # a query records nothing
    finally:
        e.log.suspend()
    assert lamina("cp", "audited:/no/such", "-").returncode == 1
    events = [ev for ev in lamina.events("container=audited")
              if ev["type"] in ("ContainerCopiedTo", "ContainerCopiedFrom", "CommandRejected")]
    kinds = [ev["type"] for ev in events]
    assert kinds == ["ContainerCopiedTo", "ContainerCopiedFrom", "CommandRejected"]
    to, out, refused = (ev["data"] for ev in events)
    assert to["path"] == "/tmp/" and to["size"] > 0 and to["digest"].startswith("sha256:")
    import hashlib

    assert out == {"id": cid, "path": "/tmp/f", "size": len(data),
                   "digest": "sha256:" + hashlib.sha256(data).hexdigest()}
    assert refused["command"] == "cp" and "/no/such" in refused["reason"]


def test_the_clis_errors_are_one_line_in_dockers_words(lamina: Lamina, tmp_path: Path) -> None:
    cid = _container(lamina, "running")
    (tmp_path / "d").mkdir()
    (tmp_path / "file").write_bytes(b"f\n")
    cases = [
        (["cp", f"{cid}:/nope", str(tmp_path)], f"No such container:path: {cid}:/nope"),
        (["cp", "nosuch:/etc", str(tmp_path)], "no such container: nosuch"),
        (["cp", str(tmp_path / "d"), f"{cid}:/etc/hostname"], "cannot copy directory"),
        (["cp", str(tmp_path / "file"), f"{cid}:/newdir/"], "no such directory"),
        (["cp", "-", f"{cid}:/etc/hostname"], f'destination "{cid}:/etc/hostname" must be '
                                              "a directory"),
        (["cp", f"{cid}:/etc", str(tmp_path / "file") + "/"], "not a directory"),
        (["cp", str(tmp_path / "missing"), f"{cid}:/"], "no such file or directory"),
        (["cp", f"{cid}:/etc", f"{cid}:/tmp"], "copying between containers is not supported"),
        (["cp", "a", "b"], "must specify at least one container source"),
    ]
    for argv, words in cases:
        out = lamina(*argv)
        assert out.returncode == 1, argv
        assert words in out.stderr and out.stderr.count("\n") == 1, (argv, out.stderr)


def test_dockers_rules_for_what_lands_where(lamina: Lamina, tmp_path: Path) -> None:
    cid = _container(lamina, "running")
    src = tmp_path / "dir"
    (src / "inner").mkdir(parents=True)
    (src / "inner/x").write_bytes(b"x\n")
    (tmp_path / "file").write_bytes(b"file\n")

    def ls(path: str) -> list[str]:
        return sorted(lamina.ok("exec", cid, "ls", "-A", path).split())

    lamina.ok("exec", cid, "mkdir", "/into")
    lamina.ok("cp", str(src), f"{cid}:/into")  # a directory into an existing one: by name
    assert ls("/into") == ["dir"]
    lamina.ok("cp", str(src), f"{cid}:/renamed")  # to a new name: becomes it
    assert ls("/renamed") == ["inner"]
    lamina.ok("cp", f"{src}/.", f"{cid}:/into")  # `/.`: the contents
    assert ls("/into") == ["dir", "inner"]
    lamina.ok("cp", str(tmp_path / "file"), f"{cid}:/into/")  # a file into a directory
    lamina.ok("cp", str(tmp_path / "file"), f"{cid}:/into/other")  # to a new name
    lamina.ok("exec", cid, "sh", "-c", "echo old > /etc/old")
    lamina.ok("cp", str(tmp_path / "file"), f"{cid}:/etc/old")  # onto a file
    assert lamina.ok("exec", cid, "cat", "/into/other", "/etc/old") == "file\nfile\n"
    assert ls("/into") == ["dir", "file", "inner", "other"]
    # and out: the same rules on the host's side
    out = tmp_path / "out"
    out.mkdir()
    lamina.ok("cp", f"{cid}:/renamed", str(out))
    lamina.ok("cp", f"{cid}:/renamed", str(out / "new"))
    lamina.ok("cp", f"{cid}:/renamed/.", str(out))
    lamina.ok("cp", f"{cid}:/into/file", str(out / "f2"))
    assert sorted(p.name for p in out.iterdir()) == ["f2", "inner", "new", "renamed"]
    assert (out / "new/inner/x").read_bytes() == b"x\n"
    # -L: a symlink's target under the link's name, followed inside the container
    lamina.ok("exec", cid, "ln", "-s", "/into/other", "/link")
    lamina.ok("cp", "-L", f"{cid}:/link", str(out / "followed"))
    assert (out / "followed").read_bytes() == b"file\n"
    lamina.ok("cp", f"{cid}:/link", str(out / "kept"))
    assert os.readlink(out / "kept") == "/into/other"
    # a compressed tar on stdin, as docker accepts
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("zipped")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"gzip"))
    done = subprocess.run([*_argv(lamina), "cp", "-", f"{cid}:/into"], input=buf.getvalue(),
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert lamina.ok("exec", cid, "cat", "/into/zipped") == "gzip"


# --- the CVE class: nothing of the host, ever --------------------------------------------------


def test_symlinks_to_the_hosts_root_and_etc_stay_in_the_container(
        lamina: Lamina, tmp_path: Path, host: Path) -> None:
    before = _state(host)
    cid = _container(lamina, "running", cmd=(
        "sh", "-c", f"ln -s / /x; ln -s /etc /hostetc; ln -s {host} /h; "
        f"ln -s ../../../../../../../../{str(host).lstrip('/')} /climb; exec sleep 600"))
    for _ in range(100):
        if lamina("exec", cid, "test", "-L", "/climb").returncode == 0:
            break
        time.sleep(0.05)
    mine = lamina.ok("exec", cid, "cat", "/etc/hostname").encode()
    # / and /etc of the container's, not the host's
    assert content(tar_of(lamina, cid, "/x/etc/hostname"), "hostname") == mine
    assert content(tar_of(lamina, cid, "/hostetc/hostname"), "hostname") == mine
    assert content(tar_of(lamina, cid, "/x/etc/passwd"), "passwd") == \
        lamina.ok("exec", cid, "cat", "/etc/passwd").encode()
    for path in ("/h/secret", "/climb/secret", f"/x{host}/secret",
                 f"../../../../..{host}/secret", "/x/../../" + str(host) + "/secret"):
        out = lamina("cp", f"{cid}:{path}", "-")
        assert SECRET not in out.stdout.encode(errors="surrogateescape")
        assert out.returncode == 1 and "No such container:path" in out.stderr, (path, out)
    (tmp_path / "pwned").write_bytes(b"pwned\n")
    for dest in ("/h/", "/climb/", f"/x{host}/", f"../../..{host}/"):
        lamina("cp", str(tmp_path / "pwned"), f"{cid}:{dest}")
    assert _state(host) == before
    # a tar planting a symlink to the host's directory, then writing through it
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w") as tar:
        for name, target in (("abs", str(host)), ("rel", "../" * 12 + str(host).lstrip("/"))):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
        for name in ("abs/pwned", "rel/pwned", "../../pwned", f"..{host}/pwned"):
            info = tarfile.TarInfo(name)
            info.size = 6
            tar.addfile(info, io.BytesIO(b"pwned\n"))
    subprocess.run([*_argv(lamina), "cp", "-", f"{cid}:/tmp"], input=evil.getvalue(),
                   capture_output=True, timeout=60)
    assert _state(host) == before
    assert SECRET not in tar_of(lamina, cid, "/tmp")


SWAPPER = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
/* Swap each (a, b) pair of names over and over, as CVE-2018-15664's proof of concept;
   every 4096 rounds, the count in /count. */
int main(int argc, char **argv) {
    unsigned long n = 0;
    for (;;) {
        for (int i = 1; i + 1 < argc; i += 2)
            if (renameat2(AT_FDCWD, argv[i], AT_FDCWD, argv[i + 1], RENAME_EXCHANGE)) {
                perror("renameat2");
                return 1;
            }
        if (++n % 4096 == 0) {
            FILE *f = fopen("/count.new", "w");
            if (f) { fprintf(f, "%lu\n", n); fclose(f); rename("/count.new", "/count"); }
        }
    }
}
"""


def test_a_directory_swapped_for_a_symlink_mid_copy_never_reaches_the_host(
        lamina: Lamina, tmp_path: Path, host: Path) -> None:
    """A running container swaps /d with a symlink to / and /e with a symlink to the host
    directory's path, as fast as it can, while copies in and out go on through those
    names: each lands in the container or fails, and the host's sentinel is never read
    nor its directory changed."""
    from adapters.bootstrap import build_engine
    from core.errors import LaminaError

    source = tmp_path / "swap.c"
    source.write_text(SWAPPER)
    binary = tmp_path / "ctr/swap"
    binary.parent.mkdir()
    built = subprocess.run(["cc", "-static", "-O2", "-o", str(binary), str(source)],
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    ctr = binary.parent
    deep = ctr / "d" / str(host).lstrip("/")  # /d/<the host dir's path>/secret
    deep.mkdir(parents=True)
    (deep / "secret").write_bytes(b"inside\n")
    (ctr / "e").mkdir()
    (ctr / "e/secret").write_bytes(b"inside\n")
    (ctr / "d_link").symlink_to("/")
    (ctr / "e_link").symlink_to(host)
    before = _state(host)
    cid = lamina.ok("create", "busybox", "/swap", "/d", "/d_link", "/e", "/e_link").strip()
    lamina.ok("cp", f"{ctr}/.", f"{cid}:/")  # into the stopped container
    lamina.ok("start", cid)
    upload = io.BytesIO()
    with tarfile.open(fileobj=upload, mode="w") as tar:
        for i in range(8):
            info = tarfile.TarInfo(f"new{i}")
            info.size = 9
            tar.addfile(info, io.BytesIO(b"uploaded\n"))
    e = build_engine(str(lamina.root))
    done = {"out": 0, "in": 0}
    start = time.monotonic()
    try:
        while (elapsed := time.monotonic() - start) < 2 or (
                elapsed < 15 and min(done.values()) < 10):
            for path in (f"/d{host}/secret", f"/d{host}", "/e/secret", "/e", "/e/."):
                out = io.BytesIO()
                try:
                    e.copy_from(cid, path, out, follow_link=path.endswith("secret"))
                except LaminaError:
                    continue  # missing at that instant: the link's target isn't there
                assert SECRET not in out.getvalue()
                done["out"] += 1
            for dest in (f"/d{host}", "/e", "/e/."):
                upload.seek(0)
                try:
                    e.copy_to(cid, dest, upload)
                except LaminaError:
                    continue
                done["in"] += 1
    finally:
        e.log.suspend()
    assert min(done.values()) >= 10, done
    count = int(content(tar_of(lamina, cid, "/count"), "count"))
    assert count > 10_000, count  # it swapped all along
    assert _state(host) == before
    assert _children() == []


@pytest.mark.parametrize("state", ["running", "stopped"])
def test_a_copy_killed_midway_leaves_no_process_and_no_mount(lamina: Lamina, tmp_path: Path,
                                                             state: str) -> None:
    """SIGKILL the cp command while its child is in the container's view, waiting for more
    of the tar: the child dies with it (PR_SET_PDEATHSIG), and its mounts with its mount
    namespace. Served, the command is the fork server's child, not
    the client killed: it reads the tar until its end, which comes when the client is gone
    and we close our end, and then its child ends all the same; the fork server's child
    itself may live on to serve another command (adapters/fastpath/reuse.py), holding
    nothing of this one's."""
    import signal

    cid = _container(lamina, state)
    head = io.BytesIO()
    with tarfile.open(fileobj=head, mode="w") as tar:
        info = tarfile.TarInfo("big")
        info.size = 1 << 30
        tar.addfile(info)  # a header promising a GiB: the rest never comes
    proc = subprocess.Popen([*_argv(lamina), "cp", "-", f"{cid}:/tmp"], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert proc.stdin is not None
    proc.stdin.write(head.getvalue()[:512] + b"x" * (1 << 20))
    proc.stdin.flush()
    pipe = f"pipe:[{os.fstat(proc.stdin.fileno()).st_ino}]"
    readers: set[int] = set()
    children: set[int] = set()
    for _ in range(200):  # the command and its child, in the view
        readers, children = _copying(pipe)
        if children:
            break
        time.sleep(0.02)
    assert readers and children
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdin.close()
    served = served_now()
    gone = children if served else readers | children
    for _ in range(200):
        if not _alive(gone) and _copying(pipe) == (set(), set()):
            break
        time.sleep(0.02)
    assert _alive(gone) == set()
    assert _copying(pipe) == (set(), set())
    assert _only_views(lamina)
    assert (str(lamina.root / "layers" / f"rw-{cid}" / "merged") in
            _mounts_under(lamina.root)) == (state == "running")
    assert lamina.ok("system", "check").splitlines()[0] == "the log and the host agree"


def _copying(pipe: str) -> tuple[set[int], set[int]]:
    """The processes reading the tar from `pipe` as their stdin (the command; served, the
    client and the fork server's child that runs the command), and their children that
    don't (the copy's child in the container's view, once it kept only its own pipes)."""
    readers, parents = set(), {}
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            if os.readlink(f"/proc/{pid}/fd/0") == pipe:
                readers.add(pid)
        except OSError:
            pass
        fields = stat_fields(pid)
        if fields is not None:
            parents[pid] = int(fields[1])
    return readers, {pid for pid, ppid in parents.items() if ppid in readers} - readers


def _alive(pids: set[int]) -> set[int]:
    """Those of `pids` still running (a zombie waiting for its reaper is not)."""
    return {pid for pid in pids if (f := stat_fields(pid)) is not None and f[0] != "Z"}


# --- a --userns-remap root ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def remapped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lamina]:
    """A root configured with --userns-remap default (its users in a test prefix)."""
    from tests.kernel.remap_env import configure, host_state, subid_prefix
    from tests.kernel.runtime_env import busybox_tar, leftovers

    require_root()
    _BEFORE.update(_all_children())
    accounts = host_state()
    base = tmp_path_factory.mktemp("cp-remap")
    lam = Lamina(base / "root")
    configure(lam, subid_prefix(base / "prefix"))
    lam.ok("import", str(busybox_tar(base)), "busybox")
    yield lam
    ids = lam.remove_all()
    assert leftovers(lam.root, ids) == []
    assert host_state() == accounts


@pytest.mark.parametrize("state", ["running", "stopped"])
def test_a_remapped_root_copies_with_the_containers_own_ids(remapped: Lamina, tmp_path: Path,
                                                            state: str) -> None:
    """The running container's view shows its files shifted (its 0 as 100000 on the
    host): the tars in and out still speak the container's ids, and what is copied in is
    what the container's root and users own."""
    cid = _container(remapped, state, "-v", f"remapvol-{state}:/vol", cmd=(
        "sh", "-c", "echo x > /mine; chown 1000:1000 /mine; exec sleep 600"))
    for _ in range(100):
        if state != "running" or remapped("exec", cid, "stat", "-c", "%u", "/mine").stdout \
                == "1000\n":
            break
        time.sleep(0.05)
    tree = make_tree(tmp_path / "src")
    want = reference_tar(tree)
    for where in ("/", "/vol"):
        remapped.ok("cp", str(tree), f"{cid}:{where}")
        assert tar_of(remapped, cid, f"{where.rstrip('/')}/tree") == want
    if state == "running":
        out = remapped.ok("exec", cid, "stat", "-c", "%u:%g", "/tree/sub/deep/owned",
                          "/tree/plain", "/vol/tree/sub/deep/owned")
        assert out.split() == ["1234:5678", "0:0", "1234:5678"]  # as the container sees
        assert members(tar_of(remapped, cid, "/mine"))["mine"].uid == 1000
    # on disk, unshifted, whichever way it was copied: one layer for both views
    diff = remapped.root / "layers" / f"rw-{cid}" / "diff"
    assert (diff / "tree/sub/deep/owned").stat().st_uid == 1234
    assert (remapped.root / f"volumes/remapvol-{state}/_data/tree/plain").stat().st_uid == 0
    assert _only_views(remapped) and _children() == []
