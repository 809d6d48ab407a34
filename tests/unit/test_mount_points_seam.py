"""rootfs.mount_points through the recording double (no root): targets found inside the
view, parents before children, binds recursive, `ro` a remount of the new mount, tmpfs with
docker's flags, everything before the root goes read-only and before pivot_root. The
effects are tests/kernel/test_mounts.py's."""

from __future__ import annotations

import errno

import pytest

from adapters.kernel import rootfs
from adapters.kernel.recording import Recording
from core.mounts import MountPoint, parse_tmpfs, root_propagation
from core.security import Security
from tests.unit.test_rootfs_seam import FILESYSTEMS, IMAGE, ROOT, plan

HOST = {"/srv/www": "dir", "/srv/www/index.html": "file", "/srv/one.conf": "file",
        "/vol/data/_data": "dir"}


def _built(mounts: list[tuple[MountPoint, str | int]], tree: dict | None = None,
           security: Security | None = None) -> Recording:
    rec = Recording(tree={**IMAGE, **HOST, **(tree or {})}, filesystems=FILESYSTEMS)
    rootfs.build(plan(security, mounts=mounts), syscall=rec)
    return rec


def _mount_calls(rec: Recording) -> list[str]:
    """The mount points' calls, each magic-link target shown as the path it stands for."""
    out = []
    for call in rec.calls:
        if call.name == "mount_target":
            out.append(f"target {call.args[1]} {call.flags[0]}")
        elif call.name in ("mount", "attach") and (isinstance(call.args[1], int) or str(
                call.args[1]).startswith("/proc/self/fd")):
            out.append(f"{call.name} {call.args[0]} {'|'.join(call.flags)}".strip())
    return out


def test_binds_volumes_and_tmpfs_in_order_with_their_flags() -> None:
    rec = _built([
        (MountPoint("bind", "/www/static", "/srv/www", read_only=True), "/srv/www"),
        (MountPoint("volume", "/var/lib/db", "data"), "/vol/data/_data"),
        (MountPoint("bind", "/www", "/srv/www"), "/srv/www"),
        (MountPoint("bind", "/etc/one.conf", "/srv/one.conf"), "/srv/one.conf"),
        (parse_tmpfs("/run/t", "size=1m,exec"), ""),
    ])
    assert _mount_calls(rec) == [
        "target /www dir", "mount /srv/www MS_BIND|MS_REC",  # a parent first
        "target /www/static dir", "mount /srv/www MS_BIND|MS_REC",
        "target /www/static dir", "mount None MS_RDONLY|MS_REMOUNT|MS_BIND",
        "target /etc/one.conf file", "mount /srv/one.conf MS_BIND|MS_REC",
        "target /run/t dir", "mount tmpfs MS_NOSUID|MS_NODEV",
        "target /var/lib/db dir", "mount /vol/data/_data MS_BIND|MS_REC",
    ]
    tmpfs = next(c for c in rec.calls if c.name == "mount" and c.args[0] == "tmpfs"
                 and str(c.args[1]).startswith("/proc"))
    assert tmpfs.args[3] == "size=1m"
    assert rec.kind(f"{ROOT}/etc/one.conf") == "file"  # a file's bind gets a file target
    assert rec.kind(f"{ROOT}/var/lib/db") == "dir"
    assert rec.open_fds() == {}  # every target's fd closed


def test_mounts_come_before_read_only_root_and_pivot() -> None:
    rec = _built([(MountPoint("volume", "/data", "v"), "/vol/data/_data")],
                 security=Security(read_only=True))
    names = [c.name for c in rec.calls]
    last_target = max(i for i, n in enumerate(names) if n == "mount_target")
    read_only_root = next(i for i, c in enumerate(rec.calls) if c.name == "mount"
                          and c.args[1] == ROOT and "MS_REMOUNT" in c.flags)
    assert last_target < read_only_root < names.index("pivot_root")


def test_a_symlink_in_the_image_is_followed_inside_the_view_only() -> None:
    """An image whose /data is a symlink to / or to ../../.. of the host: the mount lands
    at the view's own root or below it, never at a host path."""
    rec = _built([(MountPoint("volume", "/data", "v"), "/vol/data/_data"),
                  (MountPoint("volume", "/logs/app", "w"), "/vol/data/_data")],
                 tree={f"{ROOT}/data": "-> /etc", f"{ROOT}/logs": "-> ../../../../host"})
    found = [c for c in rec.calls if c.name == "mount_target"]
    assert [c.args[1] for c in found] == ["/data", "/logs/app"]
    assert rec.kind(f"{ROOT}/etc") == "dir"
    assert rec.kind(f"{ROOT}/host/app") == "dir"  # made inside the view
    assert rec.kind("/host") is None and rec.kind("/etc") is None


def test_a_remapped_init_attaches_the_clones_the_runtime_made() -> None:
    rec = Recording(tree={**IMAGE, **HOST}, filesystems=FILESYSTEMS, fds={7: "/srv/www"})
    rootfs.mount_points(ROOT, [(MountPoint("bind", "/www", "/srv/www", read_only=True), 7)],
                        syscall=rec)
    # ro: on the clone; the clone came with its source's peer group: docker's rprivate
    assert _mount_calls(rec) == ["target /www dir", "attach /srv/www", "target /www dir",
                                 "mount None MS_REC|MS_PRIVATE"]


@pytest.mark.parametrize("mode, flags", [("rshared", "MS_REC|MS_SHARED"),
                                         ("shared", "MS_SHARED"), ("slave", "MS_SLAVE"),
                                         ("rslave", "MS_REC|MS_SLAVE")])
def test_a_shared_or_slave_bind_is_a_clone_given_its_propagation(mode: str,
                                                                  flags: str) -> None:
    """The runtime clones a shared or slave bind before init's namespace turns private
    (adapters/runtime/linux.py _held_mounts); once attached, the new mount's root (found
    through the view again) gets the mode asked for, and the container's root after
    pivot_root gets docker's: shared for a shared bind, rslave for a slave one."""
    rec = Recording(tree={**IMAGE, **HOST}, filesystems=FILESYSTEMS, fds={7: "/srv/www"})
    m = MountPoint("bind", "/www", "/srv/www", propagation=mode)
    rootfs.build(plan(mounts=[(m, 7)], root_propagation=root_propagation([m])), syscall=rec)
    assert _mount_calls(rec) == ["target /www dir", "attach /srv/www", "target /www dir",
                                 f"mount None {flags}"]
    root = "MS_SHARED" if "shared" in mode else "MS_REC|MS_SLAVE"
    assert rec.trace()[-1] == f"mount - / - - {root}"
    assert root_propagation([MountPoint("bind", "/a", "/a")]) == ""


def test_a_failed_mount_closes_its_target() -> None:
    rec = Recording(tree={**IMAGE, **HOST}, filesystems=FILESYSTEMS)
    rec.fail("mount", f"{ROOT}/www", errno.EPERM)
    with pytest.raises(OSError):
        rootfs.mount_points(ROOT, [(MountPoint("bind", "/www", "/srv/www"), "/srv/www")],
                            syscall=rec)
    assert rec.open_fds() == {}


def test_the_masked_paths_wildcards_are_compiled_ahead_by_a_warm_process() -> None:
    """rootfs.compile_patterns (the fork server's warm-up): every container's init then
    finds MASKED_PATHS' wildcards in fnmatch's cache instead of compiling them."""
    import fnmatch

    from adapters.kernel import rootfs

    fnmatch._compile_pattern.cache_clear()
    rootfs.compile_patterns()
    cached = fnmatch._compile_pattern.cache_info().currsize
    assert cached == sum(1 for p in rootfs.MASKED_PATHS for n in p.split("/") if "*" in n)
    fnmatch.filter([], "cpu*")
    assert fnmatch._compile_pattern.cache_info().hits >= 1
