"""rootfs.build's order and flags, without root: the build runs against the recording double
of the kernel seam (adapters/kernel/recording.py), whose filesystem answers come from a
fresh /proc and /sys described below, the way a new mount shows them.

What is checked here is the sequence (propagation private first, masks after /proc, the root
read-only after every other mount, pivot last) and each mount's flags, for the options that
change them; tests/kernel/ checks the same options' effects on a real kernel, as root.
"""

from __future__ import annotations

import errno
from collections.abc import Callable

import pytest

from adapters.kernel import devices, rootfs
from adapters.kernel.recording import Call, Recording
from core.devices import DEFAULT_NODES, Node
from core.security import Security, security_of

ROOT = "/r"
# What a fresh mount of each filesystem shows, as far as rootfs looks: the masked and
# read-only paths, some of them missing (as on this host: no /proc/asound), two CPUs.
PROC = {"kcore": "file", "keys": "file", "acpi": "dir", "timer_list": "file",
        "sched_debug": "file", "scsi": "dir", "interrupts": "file", "bus": "dir", "fs": "dir",
        "irq": "dir", "sys": "dir", "sysrq-trigger": "file", "self": "-> 1", "1": "dir"}
SYSFS = {"firmware": "dir", "devices/virtual/powercap": "dir",
         "devices/system/cpu/cpu0/thermal_throttle": "dir",
         "devices/system/cpu/cpu1/thermal_throttle": "dir", "devices/system/cpu/online": "file",
         "fs/cgroup": "dir"}
FILESYSTEMS = {"proc": PROC, "sysfs": SYSFS}
IMAGE = {f"{ROOT}/bin/sh": "file", f"{ROOT}/etc/passwd": "file",
         f"{ROOT}/etc/resolv.conf": "-> ../run/resolv.conf", f"{ROOT}/run": "dir"}
FILES = {"/etc/hostname": "/h/hostname", "/etc/hosts": "/h/hosts",
         "/etc/resolv.conf": "/h/resolv.conf"}
CGROUPS = (rootfs.CgroupMount("memory", "cgroup", "memory"),
           rootfs.CgroupMount("pids", "cgroup", "pids"))
NOSUID_NODEV_NOEXEC = "MS_NOSUID|MS_NODEV|MS_NOEXEC"
MOUNTS = ("mount", "umount", "attach", "pivot_root")


def plan(security: Security | None = None, **kw: object) -> rootfs.RootfsPlan:
    fields: dict = {"path": ROOT, "files": FILES, "cgroups": CGROUPS,
                    "security": security or Security()}
    return rootfs.RootfsPlan(**(fields | kw))


def built(p: rootfs.RootfsPlan, **kw: object) -> Recording:
    rec = Recording(tree=kw.pop("tree", IMAGE), filesystems=FILESYSTEMS, **kw)  # type: ignore
    rootfs.build(p, syscall=rec)
    return rec


def mounts(rec: Recording) -> list[str]:
    return rec.trace(*MOUNTS)


def index(rec: Recording, match: Callable[[Call], bool]) -> int:
    hits = [i for i, call in enumerate(rec.calls) if match(call)]
    assert len(hits) == 1, f"{len(hits)} calls match, one expected: {rec.trace()}"
    return hits[0]


# --- the default container, call by call -------------------------------------------------------


def test_the_default_container() -> None:
    rec = built(plan())
    assert mounts(rec) == [
        "mount - / - - MS_REC|MS_PRIVATE",
        "mount /r /r - - MS_BIND|MS_REC",
        f"mount proc /r/proc proc - {NOSUID_NODEV_NOEXEC}",
        f"mount sysfs /r/sys sysfs - MS_RDONLY|{NOSUID_NODEV_NOEXEC}",
        f"mount tmpfs /r/sys/fs/cgroup tmpfs mode=755 {NOSUID_NODEV_NOEXEC}",
        f"mount cgroup /r/sys/fs/cgroup/memory cgroup memory MS_RDONLY|{NOSUID_NODEV_NOEXEC}",
        f"mount cgroup /r/sys/fs/cgroup/pids cgroup pids MS_RDONLY|{NOSUID_NODEV_NOEXEC}",
        f"mount - /r/sys/fs/cgroup - mode=755 MS_RDONLY|{NOSUID_NODEV_NOEXEC}|MS_REMOUNT",
        "mount tmpfs /r/dev tmpfs mode=755,size=65536k MS_NOSUID|MS_STRICTATIME",
        "mount devpts /r/dev/pts devpts newinstance,ptmxmode=0666,mode=0620,gid=5 "
        "MS_NOSUID|MS_NOEXEC",
        f"mount shm /r/dev/shm tmpfs mode=1777,size=65536k {NOSUID_NODEV_NOEXEC}",
        f"mount mqueue /r/dev/mqueue mqueue - {NOSUID_NODEV_NOEXEC}",
        "mount /h/hostname /r/etc/hostname - - MS_BIND",
        "mount /h/hosts /r/etc/hosts - - MS_BIND",
        "mount /h/resolv.conf /r/etc/resolv.conf - - MS_BIND",
        # masked: a read-only tmpfs over each directory, /dev/null over each file
        "mount tmpfs /r/proc/acpi tmpfs - MS_RDONLY",
        "mount /r/dev/null /r/proc/kcore - - MS_BIND",
        "mount /r/dev/null /r/proc/keys - - MS_BIND",
        "mount /r/dev/null /r/proc/timer_list - - MS_BIND",
        "mount /r/dev/null /r/proc/sched_debug - - MS_BIND",
        "mount tmpfs /r/proc/scsi tmpfs - MS_RDONLY",
        "mount /r/dev/null /r/proc/interrupts - - MS_BIND",
        "mount tmpfs /r/sys/firmware tmpfs - MS_RDONLY",
        "mount tmpfs /r/sys/devices/virtual/powercap tmpfs - MS_RDONLY",
        "mount tmpfs /r/sys/devices/system/cpu/cpu0/thermal_throttle tmpfs - MS_RDONLY",
        "mount tmpfs /r/sys/devices/system/cpu/cpu1/thermal_throttle tmpfs - MS_RDONLY",
        # read-only: a recursive bind of each, then its remount read-only
        *(line for path in ("bus", "fs", "irq", "sys", "sysrq-trigger") for line in (
            f"mount /r/proc/{path} /r/proc/{path} - - MS_BIND|MS_REC",
            f"mount - /r/proc/{path} - - MS_RDONLY|{NOSUID_NODEV_NOEXEC}|MS_REMOUNT|MS_BIND")),
        "pivot_root . .",
        "umount . MNT_DETACH",
    ]
    assert rec.trace("chdir") == ["chdir /r", "chdir /"]
    assert rec.calls[-4:] == [Call("chdir", ("/r",)), Call("pivot_root", (".", ".")),
                              Call("umount", (".",), ("MNT_DETACH",)), Call("chdir", ("/",))]


def test_the_default_dev() -> None:
    """docker's nodes made with their modes, its links, the bound files made first as
    empty files (a symlinked resolv.conf replaced, not followed), no fd left open."""
    rec = built(plan())
    assert rec.trace("mknod") == [
        f"mknod /r/dev/{n.path[5:]} chr 0o666 {n.major}:{n.minor}" for n in DEFAULT_NODES]
    assert rec.trace("symlink") == [
        "symlink /proc/self/fd /r/dev/fd", "symlink /proc/self/fd/0 /r/dev/stdin",
        "symlink /proc/self/fd/1 /r/dev/stdout", "symlink /proc/self/fd/2 /r/dev/stderr",
        "symlink pts/ptmx /r/dev/ptmx", "symlink /proc/kcore /r/dev/core"]
    assert "makedirs /r/dev/shm 0o1777" in rec.trace("makedirs")
    assert rec.trace("unlink", "touch") == [
        "touch /r/etc/hostname", "touch /r/etc/hosts", "unlink /r/etc/resolv.conf",
        "touch /r/etc/resolv.conf"]
    assert rec.kind("/r/run/resolv.conf") is None, "the symlink's target must not be made"
    assert rec.kind("/r/dev/null") == "chr" and rec.kind("/r/dev/console") is None
    assert rec.open_fds() == {}


# --- what holds for every option ---------------------------------------------------------------

VARIANTS: dict[str, Callable[[], Recording]] = {
    "default": lambda: built(plan()),
    "privileged": lambda: built(plan(security_of({"privileged": True}))),
    "read-only": lambda: built(plan(security_of({"read_only": True}))),
    "ipc host": lambda: built(plan(security_of({"ipc": "host"}))),
    "ipc none": lambda: built(plan(security_of({"ipc": "none"}))),
    "unified cgroup": lambda: built(plan(cgroups=(rootfs.CgroupMount("", "cgroup2", ""),))),
    "no cgroups": lambda: built(plan(cgroups=())),
    "remapped": lambda: remapped_build()[0],
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_propagation_is_private_before_any_mount(variant: str) -> None:
    """MS_REC|MS_PRIVATE on / is the very first call: nothing mounted, attached or
    cloned before it could propagate to the host."""
    rec = VARIANTS[variant]()
    assert rec.calls[0] == Call("mount", (None, "/", None, None), ("MS_REC", "MS_PRIVATE"))
    assert sum(c.name == "mount" and "MS_PRIVATE" in c.flags for c in rec.calls) == 1


@pytest.mark.parametrize("variant", VARIANTS)
def test_pivot_is_last(variant: str) -> None:
    """pivot_root(".", ".") from inside the root, the old root detached, then "/": and
    nothing after it."""
    rec = VARIANTS[variant]()
    root = "." if variant == "remapped" else ROOT
    assert rec.trace()[-4:] == [f"chdir {root}", "pivot_root . .", "umount . MNT_DETACH",
                                "chdir /"]
    assert index(rec, lambda c: c.name == "pivot_root") == len(rec.calls) - 3


@pytest.mark.parametrize("variant", VARIANTS)
def test_masks_follow_the_mounts_they_mask(variant: str) -> None:
    """Each mask lands on the fresh /proc or /sys (mounted before it), with /dev/null made
    before it is bound; the read-only root, if any, comes after the last of them."""
    rec = VARIANTS[variant]()
    root = "." if variant == "remapped" else ROOT
    proc = index(rec, lambda c: c.name == "mount" and c.args[2] == "proc")
    sysfs = index(rec, lambda c: c.name == "mount" and c.args[2] == "sysfs")
    null = index(rec, lambda c: c.name in ("mknod", "attach") and
                 str(c.target).endswith("/dev/null"))
    for i, call in enumerate(rec.calls):
        target = str(call.target)
        masks = call.args[0] == f"{root}/dev/null" or call.flags == ("MS_RDONLY",)
        if call.name == "mount" and masks:
            assert i > (proc if "/proc/" in target else sysfs) and i > null, call


# --- options -----------------------------------------------------------------------------------


def test_privileged() -> None:
    """sysfs and the cgroups writable, nothing masked or made read-only, the host's nodes
    (block devices, nested paths) made as they are."""
    host = [*DEFAULT_NODES, Node("/dev/sda", "b", 8, 0, 0o660, 0, 6),
            Node("/dev/snd/timer", "c", 116, 33, 0o660, 0, 29)]
    rec = built(plan(security_of({"privileged": True}), devices=host))
    lines = mounts(rec)
    assert f"mount sysfs /r/sys sysfs - {NOSUID_NODEV_NOEXEC}" in lines
    assert f"mount cgroup /r/sys/fs/cgroup/memory cgroup memory {NOSUID_NODEV_NOEXEC}" in lines
    assert not [line for line in lines if "/r/proc/" in line or "/r/sys/firmware" in line]
    assert not [line for line in lines if "MS_RDONLY" in line and "/r/sys/fs/cgroup " not in line]
    assert rec.trace("mkdir", "mknod", "chown")[-5:] == [
        "mknod /r/dev/sda blk 0o660 8:0", "chown /r/dev/sda 0 6", "mkdir /r/dev/snd 0o755",
        "mknod /r/dev/snd/timer chr 0o660 116:33", "chown /r/dev/snd/timer 0 29"]
    assert rec.open_fds() == {}


def test_read_only_remounts_the_root_after_every_other_mount() -> None:
    rec = built(plan(security_of({"read_only": True})))
    remount = f"mount - {ROOT} - - MS_RDONLY|MS_REMOUNT|MS_BIND"
    lines = mounts(rec)
    assert lines[-3:] == [remount, "pivot_root . .", "umount . MNT_DETACH"]
    i = rec.trace().index(remount)
    writes = ("makedirs", "mkdir", "mknod", "symlink", "touch", "unlink", "open")
    assert [c for c in rec.calls[i:] if c.name in writes] == [], "written after going ro"
    assert remount not in mounts(built(plan())), "only with --read-only"


def test_host_network_still_gets_a_fresh_sysfs() -> None:
    """Never a bind of the host's /sys (it would bring its writable cgroup mounts along):
    rootfs has no network branch at all, and the sysfs it mounts is its own, read-only."""
    fields = set(rootfs.RootfsPlan.__dataclass_fields__)
    assert not {"network", "net"} & fields
    rec = built(plan())
    sys_mounts = [c for c in rec.calls if c.name == "mount" and c.target == f"{ROOT}/sys"]
    assert sys_mounts == [Call("mount", ("sysfs", f"{ROOT}/sys", "sysfs", None),
                               ("MS_RDONLY", "MS_NOSUID", "MS_NODEV", "MS_NOEXEC"))]
    assert not [c for c in rec.calls if c.name == "mount" and c.args[0] == "/sys"]


def test_ipc_host_and_none() -> None:
    host, none = (mounts(built(plan(security_of({"ipc": mode})))) for mode in ("host", "none"))
    assert "mount /dev/shm /r/dev/shm - - MS_BIND" in host
    assert not [line for line in host if line.startswith("mount shm ")]
    assert f"mount mqueue /r/dev/mqueue mqueue - {NOSUID_NODEV_NOEXEC}" in host
    assert not [line for line in none if " /r/dev/shm " in line], "--ipc none: no /dev/shm"
    assert f"mount mqueue /r/dev/mqueue mqueue - {NOSUID_NODEV_NOEXEC}" in none


def test_unified_and_no_cgroups() -> None:
    unified = mounts(built(plan(cgroups=(rootfs.CgroupMount("", "cgroup2", ""),))))
    assert [line for line in unified if "/r/sys/fs/cgroup" in line] == [
        f"mount cgroup2 /r/sys/fs/cgroup cgroup2 - MS_RDONLY|{NOSUID_NODEV_NOEXEC}"]
    assert not [line for line in mounts(built(plan(cgroups=()))) if "cgroup" in line]
    bare = Recording(tree=IMAGE, filesystems={"proc": PROC, "sysfs": {"firmware": "dir"}})
    rootfs.build(plan(), syscall=bare)  # a sysfs with no fs/cgroup to mount them on
    assert not [line for line in mounts(bare) if "cgroup" in line]


def test_masked_paths_are_looked_up_on_the_fresh_mounts() -> None:
    """Only what the fresh /proc and /sys hold is masked: the image's own /proc/asound and
    its /sys/firmware symlink are hidden by those mounts before any mask is looked up (so
    never followed), and cpu* expands to each CPU."""
    tree = IMAGE | {f"{ROOT}/proc/asound": "dir", f"{ROOT}/sys/firmware": "-> /etc"}
    lines = mounts(built(plan(), tree=tree))
    assert not [line for line in lines if "asound" in line]
    assert "mount tmpfs /r/sys/firmware tmpfs - MS_RDONLY" in lines
    throttles = [line for line in lines if "thermal_throttle" in line]
    assert len(throttles) == 2


# --- a --userns-remap root ---------------------------------------------------------------------

HOST_FDS = {7: "tree:/dev/null", 8: "tree:/dev/zero", 9: "tree:/dev/full",
            10: "tree:/dev/random", 11: "tree:/dev/urandom", 12: "tree:/dev/tty",
            13: "tree:/h/hostname"}


def remapped_build(fail: tuple[str, str, int] | None = None) -> tuple[Recording, Exception | None]:
    """A remapped init: it starts in the union view (its cwd), binds nothing by path, and
    attaches the detached trees (fds) the runtime cloned for its nodes and files."""
    image = {"/view/bin/sh": "file", "/view/etc/passwd": "file"}
    rec = Recording(tree=image, filesystems=FILESYSTEMS, fds=HOST_FDS, cwd="/view")
    if fail:
        rec.fail(*fail)
    sources = {n.path: fd for n, fd in zip(DEFAULT_NODES, range(7, 13), strict=True)}
    p = plan(path=".", remapped=True, dev_sources=sources, files={"/etc/hostname": 13})
    try:
        rootfs.build(p, syscall=rec)
    except Exception as err:  # noqa: BLE001 - returned for the test to look at
        return rec, err
    return rec, None


def test_a_remapped_root_binds_host_nodes_and_never_mknods() -> None:
    rec, err = remapped_build()
    assert err is None
    assert rec.trace()[:5] == ["mount - / - - MS_REC|MS_PRIVATE", "clone_tree .",
                               "attach /view .", "fchdir /view", "close /view"]
    assert rec.trace("mknod") == []
    assert not [c for c in rec.calls if "MS_BIND" in c.flags and c.args[0] == "."]
    excl = "O_WRONLY|O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC"
    for node, fd in zip(DEFAULT_NODES, range(7, 13), strict=True):
        target = "./dev" + node.path[4:]
        i = rec.trace().index(f"open /view{target[1:]} {excl}")
        assert rec.trace()[i + 1:i + 3] == [f"close /view{target[1:]}",
                                           f"attach {HOST_FDS[fd]} {target}"]
        assert rec.kind("/view" + target[1:]) == "file"
    assert "attach tree:/h/hostname ./etc/hostname" in rec.trace()
    assert "mount mqueue ./dev/mqueue mqueue - MS_NOSUID|MS_NODEV|MS_NOEXEC" in mounts(rec)
    assert rec.open_fds() == HOST_FDS, "the runtime's fds are its own to close"


def test_a_remapped_root_fails_closed() -> None:
    """A node that can't be bound stops the build with the node's name: no pivot, no
    container without its /dev/null."""
    rec, err = remapped_build(("attach", "/view/dev/null", errno.EPERM))
    assert isinstance(err, devices.DeviceError)
    assert str(err).startswith("cannot bind device node /dev/null: ")
    assert str(err).endswith("Operation not permitted")
    assert rec.calls[-1] == Call("attach", ("tree:/dev/null", "./dev/null"))
    assert "pivot_root" not in {c.name for c in rec.calls}


def test_ipc_host_on_a_remapped_root_mounts_no_mqueue() -> None:
    """The host IPC namespace's mqueue is not a remapped root's to mount."""
    image = {"/view/bin/sh": "file"}
    rec = Recording(tree=image, filesystems=FILESYSTEMS, fds=HOST_FDS, cwd="/view")
    sources = {n.path: fd for n, fd in zip(DEFAULT_NODES, range(7, 13), strict=True)}
    rootfs.build(plan(security_of({"ipc": "host"}), path=".", remapped=True,
                      dev_sources=sources, files={}), syscall=rec)
    assert "mount /dev/shm ./dev/shm - - MS_BIND" in mounts(rec)
    assert not [line for line in mounts(rec) if "mqueue" in line]


# --- failures ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name,path", [("mount", f"{ROOT}/sys"), ("mount", f"{ROOT}/dev"),
                                       ("mknod", f"{ROOT}/dev/tty"),
                                       ("mount", f"{ROOT}/proc/kcore"),
                                       ("mount", f"{ROOT}/etc/hosts")])
def test_any_refusal_stops_the_build_before_pivot(name: str, path: str) -> None:
    rec = Recording(tree=IMAGE, filesystems=FILESYSTEMS)
    rec.fail(name, path, errno.EPERM)
    with pytest.raises((OSError, devices.DeviceError), match="Operation not permitted"):
        rootfs.build(plan(), syscall=rec)
    failed = [c for c in rec.calls if c.name == name and c.target == path]
    assert failed, f"the {name} on {path} was never tried"
    after = rec.calls[rec.calls.index(failed[0]) + 1:]
    assert {c.name for c in after} <= {"close"}, "nothing but closing its fds after"
    assert "pivot_root" not in {c.name for c in rec.calls}


def test_a_missing_mount_point_is_enoent_as_in_the_kernel() -> None:
    """The double refuses a mount on nothing, so a mount before its directory is made
    would fail here as it fails in the kernel."""
    with pytest.raises(FileNotFoundError):
        Recording().mount("proc", "/r/proc", "proc")
    rec = Recording(tree={"/r": "dir"})
    rootfs.mount_proc_sys("/r", Security(), syscall=rec)  # makes its mount points first
    assert rec.trace("makedirs", "mount")[:2] == [
        "makedirs /r/proc 0o755", f"mount proc /r/proc proc - {NOSUID_NODEV_NOEXEC}"]


def test_node_sources_follow_a_device_symlink() -> None:
    """The host node bound for a --device given as a symlink is the node it points at."""
    rec = Recording(tree={"/dev/disk/by-id/x": "-> ../../sda", "/dev/sda": "blk"})
    security = security_of({"devices": ["/dev/disk/by-id/x:/dev/xvda"]})
    nodes = [*DEFAULT_NODES, Node("/dev/xvda", "b", 8, 0)]
    got = rootfs.node_sources(nodes, security, syscall=rec)
    assert got["/dev/xvda"] == "/dev/sda" and got["/dev/null"] == "/dev/null"
