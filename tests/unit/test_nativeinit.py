"""adapters/runtime/nativeinit.py: which inits are native, and the root's plan; the native
init's effects are tests/kernel/test_native_init.py's."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from adapters.kernel import libc, rootfs
from adapters.kernel.idmap import IdMap
from adapters.runtime import nativeinit, nativejoin
from adapters.runtime.init import InitPlan
from core.devices import Node
from core.mounts import MountPoint
from core.process import ProcessSpec
from core.security import Security


@pytest.fixture
def built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "lamina-join").write_bytes(b"\x7fELF")
    (tmp_path / "lamina-join").chmod(0o755)
    monkeypatch.setattr(nativejoin, "PROGRAM", str(tmp_path / "lamina-join"))
    monkeypatch.delenv("LAMINA_JOINER", raising=False)


def _plan(**kw: object) -> InitPlan:
    spec = ProcessSpec(argv=("true",), env=(), hostname="h1", network="none",
                       shm_size=1 << 20)
    return InitPlan(spec=spec, rootfs="/r", cgroup_dirs=["/c/a", "/c/b"], **kw)  # type: ignore[arg-type]


def test_built_and_not_turned_off_every_init_is_native(
        built: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The starting command's one test (InitPlan.native), for every container alike;
    LAMINA_JOINER=python turns off both programs, and so does a missing one."""
    assert nativejoin.built()
    monkeypatch.setenv("LAMINA_JOINER", "python")
    assert not nativejoin.built()
    monkeypatch.delenv("LAMINA_JOINER")
    monkeypatch.setattr(nativejoin, "PROGRAM", "/nonexistent/lamina-join")
    assert not nativejoin.built()


def test_the_plan_is_init_cs_fields_in_order_with_rootfs_own_lists() -> None:
    node = Node("/dev/extra/null", "c", 1, 3, 0o640, 5, 6)
    plan = _plan(files={"/etc/hosts": "/host/hosts"}, devices=[node],
                 cgroup_mounts=[rootfs.CgroupMount("memory", "cgroup", "memory")])
    plan.go_fd = 9
    fields = nativeinit.plan(plan)[0].split(b"\0")
    assert fields[-1] == b""  # every field ends with its NUL
    links = [x.encode() for link in rootfs.DEV_LINKS for x in link]
    masked = [p.encode() for p in rootfs.MASKED_PATHS]
    readonly = [p.encode() for p in rootfs.READONLY_PATHS]
    flags = libc.CLONE_NEWNS | libc.CLONE_NEWCGROUP | libc.CLONE_NEWUTS | libc.CLONE_NEWIPC \
        | libc.CLONE_NEWNET
    assert fields[:-1] == [
        b"lamina-init 2", b"2", b"1", b"0", str(flags).encode(), b"1", b"h1", b"1", b"/r",
        b"0", b"0", b"", b"mode=1777,size=1024k", b"1",
        b"/dev/extra/null", b"c", b"1", b"3", str(0o640).encode(), b"5", b"6", b"-1",
        str(len(rootfs.DEV_LINKS)).encode(), *links, b"1", b"/etc/hosts", b"/host/hosts",
        b"-1", b"1", b"memory", b"cgroup", b"memory", str(len(masked)).encode(), *masked,
        str(len(readonly)).encode(), *readonly, b"0", b"0", b"0"]


def test_privileged_uts_host_and_no_masks_are_said() -> None:
    sec = Security(privileged=True, uts="host", masked_paths=False, read_only=True)
    plan = _plan()
    plan.spec = dataclasses.replace(plan.spec, security=sec, network="host")
    fields = nativeinit.plan(plan)[0].split(b"\0")
    flags = libc.CLONE_NEWNS | libc.CLONE_NEWCGROUP | libc.CLONE_NEWIPC
    assert fields[4:11] == [str(flags).encode(), b"0", b"h1", b"0", b"/r", b"0", b"1"]
    # no masks, no read-only paths, --read-only; no mounts, the root's propagation as is
    assert fields[-7:-1] == [b"0", b"0", b"0", b"1", b"0", b"0"]


def test_a_nul_is_refused_before_any_start() -> None:
    with pytest.raises(ValueError, match="null byte"):
        nativeinit.plan(_plan(files={"/etc/hosts": "/a\0b"}))


def test_a_remapped_roots_plan_works_in_its_view_with_trees_in_order() -> None:
    """A remapped init works from the view it is started in ("."), and binds each node and
    file from the detached trees the runtime cloned (fds 40, 41, 42 in the monitor),
    numbered after the two cgroup.procs files in the order the plan names them."""
    node = Node("/dev/null", "c", 1, 3)
    plan = _plan(idmap=IdMap.shifted(100000, 65536), devices=[node],
                 dev_sources={"/dev/null": 41}, files={"/etc/hosts": 42})
    plan.mounts = [(MountPoint("volume", "/v", "vol"), 40)]
    encoded, trees = nativeinit.plan(plan)
    fields = encoded.split(b"\0")
    assert fields[8:10] == [b".", b"1"]
    assert fields[14:22] == [b"/dev/null", b"c", b"1", b"3", str(0o666).encode(), b"0",
                             b"0", b"10"]
    hosts = fields.index(b"/etc/hosts")
    assert fields[hosts:hosts + 3] == [b"/etc/hosts", b"", b"11"]
    volume = fields.index(b"/v")
    assert fields[volume:volume + 4] == [b"/v", b"tree", b"", b"12"]
    assert trees == [41, 42, 40]


def test_mounts_go_parent_first_with_rootfs_flags_and_trees_after_the_cgroups(
        tmp_path: Path) -> None:
    """Each mount point as rootfs.mount_points mounts it: a parent first, a tmpfs's options
    as tmpfs_options reads them, a bind recursive with its `ro` a remount after, a
    detached tree (here fd 40 in the monitor) at its number in init after the cgroup.procs
    files, with its propagation; a shared bind makes the root shared after pivot_root."""
    src = tmp_path / "d"
    src.mkdir()
    mounts = [
        (MountPoint("bind", "/a/b", str(src), read_only=True), str(src)),
        (MountPoint("tmpfs", "/t", options="size=1m,exec"), ""),
        (MountPoint("bind", "/a", str(src), propagation="shared"), 40),
    ]
    fields = nativeinit.plan(_plan(mounts=mounts))[0].split(b"\0")
    at = fields.index(b"3", len(fields) - 30)
    tmpfs_flags = libc.MS_NOSUID | libc.MS_NODEV
    bind = libc.MS_BIND | libc.MS_REC
    remount = libc.MS_BIND | libc.MS_REMOUNT | libc.MS_RDONLY
    assert [f.decode() for f in fields[at + 1:-1]] == [
        "/t", "tmpfs", "", "-1", "1", str(tmpfs_flags), "size=1m", "0", "0",
        "/a", "tree", "", "10", "1", str(bind), "", str(libc.MS_SHARED), "0",
        "/a/b", "bind", str(src), "-1", "1", str(bind), "", "0", str(remount),
        str(libc.MS_SHARED)]
