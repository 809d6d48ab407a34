"""The container's filesystem view, built inside its new mount namespace, then pivot_root.

Docker's defaults: a fresh /proc, a minimal /dev on tmpfs, a fresh /sys read-only (with
--network host too: a bind of the host's /sys would carry its writable cgroup mounts), the
container's own cgroups read-only at /sys/fs/cgroup (through its cgroup namespace), masked
paths (bind /dev/null over files, an empty read-only tmpfs over directories) and read-only
paths; --privileged leaves /sys and the cgroups writable and masks nothing, --read-only
makes the root itself read-only. Mount propagation is made private first, so nothing done
here reaches the host.

Every call goes through `syscall` (adapters/kernel/syscalls.py): the kernel by default, a
recording double in tests/unit/test_rootfs_seam.py, which checks order and flags without
root; tests/kernel/ checks the effects.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from adapters.kernel import devices, libc
from adapters.kernel.syscalls import LINUX, Syscalls
from core.devices import DEFAULT_NODES, Node
from core.mounts import MountPoint
from core.security import Security

MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/proc/interrupts", "/sys/firmware", "/sys/devices/virtual/powercap",
    "/sys/devices/system/cpu/cpu*/thermal_throttle",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

DEV_LINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
             ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"),
             ("ptmx", "pts/ptmx"), ("core", "/proc/kcore"))

NOSUID_NODEV_NOEXEC = libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC


def _mkdir(syscall: Syscalls, path: str, mode: int = 0o755) -> None:
    syscall.makedirs(path, mode, True)


def mount_dev(rootfs: str, security: Security,
              nodes: Sequence[Node], sources: Mapping[str, str | int] | None = None, *,
              shm_size: int = 64 << 20, syscall: Syscalls = LINUX) -> None:
    """tmpfs /dev with its device nodes (docker's defaults, --device's, or the host's with
    --privileged: adapters/kernel/devices.py), devpts (its own instance), shm and mqueue.
    /dev/shm follows --ipc: the host's own with `host`, none with `none`.

    With `sources` (a remapped container: a user namespace may not mknod) each node is a
    bind of the host's node at sources[node.path] instead; the devices cgroup still decides
    what may be opened. /dev stays 0755 either way: a bind target in a sticky
    world-writable directory could not be opened."""
    dev = rootfs + "/dev"
    _mkdir(syscall, dev)
    syscall.mount("tmpfs", dev, "tmpfs", libc.MS_NOSUID | libc.MS_STRICTATIME,
                  "mode=755,size=65536k")
    if sources is None:
        devices.make_nodes(dev, nodes, syscall=syscall)
    else:
        bind_nodes(dev, nodes, sources, syscall=syscall)
    for name, target in DEV_LINKS:
        syscall.symlink(target, f"{dev}/{name}")
    _mkdir(syscall, dev + "/pts")
    syscall.mount("devpts", dev + "/pts", "devpts", libc.MS_NOSUID | libc.MS_NOEXEC,
                  "newinstance,ptmxmode=0666,mode=0620,gid=5")
    _mkdir(syscall, dev + "/shm", 0o1777)
    if security.ipc == "host":
        syscall.mount("/dev/shm", dev + "/shm", None, libc.MS_BIND)
    elif security.ipc != "none":
        syscall.mount("shm", dev + "/shm", "tmpfs", NOSUID_NODEV_NOEXEC, shm_options(shm_size))
    _mkdir(syscall, dev + "/mqueue")
    if sources is None or security.ipc != "host":  # the host's IPC namespace's mqueue is
        syscall.mount("mqueue", dev + "/mqueue", "mqueue", NOSUID_NODEV_NOEXEC)  # not ours


def shm_options(shm_size: int) -> str:
    """/dev/shm's tmpfs options for --shm-size (bytes)."""
    size = f"{shm_size // 1024}k" if shm_size % 1024 == 0 else str(shm_size)
    return f"mode=1777,size={size}"


def bind(source: str | int, target: str, *, syscall: Syscalls = LINUX) -> None:
    """A bind of a host path, or the attach of a detached tree (an fd: a remapped init's
    sources, cloned by the host with open_tree, since a bind's source must be a path in
    the caller's own mount namespace)."""
    if isinstance(source, int):
        syscall.attach(source, target)
    else:
        syscall.mount(source, target, None, libc.MS_BIND)


def bind_nodes(dev: str, nodes: Sequence[Node], sources: Mapping[str, str | int], *,
               syscall: Syscalls = LINUX) -> None:
    """Each node as a bind of its host node (an empty file made first as the target)."""
    for node in nodes:
        target = dev + node.path.removeprefix("/dev")
        _mkdir(syscall, os.path.dirname(target))
        try:
            syscall.close(syscall.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                                       | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))
            bind(sources[node.path], target, syscall=syscall)
        except (OSError, KeyError) as err:
            reason = err.strerror if isinstance(err, OSError) else "no host node"
            raise devices.DeviceError(f"cannot bind device node {node.path}: {reason}") \
                from None


def node_sources(nodes: Sequence[Node], security: Security, *,
                 syscall: Syscalls = LINUX) -> dict[str, str | int]:
    """The host node to bind at each node's path: the host's own /dev path for the
    defaults, and below a --device's host path for its nodes (a later one wins, as in
    devices.container_nodes). The runtime clones each and checks it is that very device."""
    out: dict[str, str | int] = {node.path: node.path for node in nodes}
    for device in security.devices:
        host = syscall.realpath(device.host) if syscall.islink(device.host) else device.host
        for node in nodes:
            if node.path == device.inside or node.path.startswith(device.inside + "/"):
                out[node.path] = host + node.path[len(device.inside):]
    return out


@dataclass(frozen=True)
class CgroupMount:
    """One cgroup hierarchy the container sits in, as it is mounted inside: `name` is its
    directory under /sys/fs/cgroup ("" for a unified host's single cgroup2 tree) and `data`
    the hierarchy's mount options (a v1 hierarchy mounts only with exactly its own)."""

    name: str
    fstype: str
    data: str


@dataclass(frozen=True)
class RootfsPlan:
    path: str
    files: Mapping[str, str | int]
    security: Security = field(default_factory=Security)
    cgroups: Sequence[CgroupMount] = ()
    devices: Sequence[Node] = DEFAULT_NODES
    remapped: bool = False  # path is "." (the monitor's cwd): see build
    dev_sources: Mapping[str, str | int] = field(default_factory=dict)
    # -v/--mount/--tmpfs: each mount point with its host source (a path; a detached tree
    # for a remapped init, read-only already if asked; "" for a tmpfs)
    mounts: Sequence[tuple[MountPoint, str | int]] = ()
    shm_size: int = 64 << 20  # /dev/shm's tmpfs (--shm-size), in bytes
    # the root mount's propagation once pivoted (core/mounts.root_propagation; "": private)
    root_propagation: str = ""


def cgroup_mounts(dirs: Iterable[Path | str],
                  mountinfo: str = "/proc/self/mountinfo") -> list[CgroupMount]:
    """The hierarchies of the container's cgroup directories, read from the host's mounts
    (in the parent, before the fork): only hierarchies the container joined are shown to
    it, since a namespace rooted in someone else's cgroup would show their tree."""
    with open(mountinfo) as f:
        mounts = [(fields[4], fields[-3], fields[-1]) for fields in map(str.split, f)
                  if fields[-3] in ("cgroup", "cgroup2")]
    out = []
    for d in dirs:
        point, fstype, options = max((m for m in mounts if str(d).startswith(m[0] + "/")),
                                     key=lambda m: len(m[0]))
        data = ",".join(o for o in options.split(",") if o not in ("rw", "ro"))
        name = "" if fstype == "cgroup2" and point == "/sys/fs/cgroup" else os.path.basename(point)
        out.append(CgroupMount(name, fstype, data))
    return out


def enter_bind_of_cwd(*, syscall: Syscalls = LINUX) -> None:
    """Bind the cwd (the union view) onto itself and move into the bind, for pivot_root:
    the view's own mount came with the mount namespace, and a mount copied into a
    namespace of a less privileged user namespace is locked (pivot_root refuses it). A
    bind made by path would not be entered by "." (the cwd stays on the mount below), and
    the path to the view is not ours to walk: so the bind is a detached clone of the cwd,
    attached onto it, and its fd is where we fchdir."""
    fd = syscall.clone_tree(".")
    try:
        syscall.attach(fd, ".")
        syscall.fchdir(fd)
    finally:
        syscall.close(fd)


def mount_proc_sys(rootfs: str, security: Security, *, syscall: Syscalls = LINUX) -> None:
    """A fresh sysfs, even sharing the host's network namespace: root of the initial user
    namespace may mount one, and a bind of the host's /sys would bring its submounts."""
    _mkdir(syscall, rootfs + "/proc")
    syscall.mount("proc", rootfs + "/proc", "proc", NOSUID_NODEV_NOEXEC)
    _mkdir(syscall, rootfs + "/sys")
    readonly = 0 if security.privileged else libc.MS_RDONLY
    syscall.mount("sysfs", rootfs + "/sys", "sysfs", NOSUID_NODEV_NOEXEC | readonly)


def mount_cgroups(rootfs: str, cgroups: Sequence[CgroupMount], security: Security, *,
                  syscall: Syscalls = LINUX) -> None:
    """The container's own cgroups at /sys/fs/cgroup, read-only unless privileged. Mounted
    after unshare(CLONE_NEWCGROUP), each hierarchy's root is the container's cgroup: its
    own limits are what it sees, and a v1 hierarchy's release_agent (a root-only file) is
    not there at all."""
    target = rootfs + "/sys/fs/cgroup"
    readonly = 0 if security.privileged else libc.MS_RDONLY
    flags = NOSUID_NODEV_NOEXEC | readonly
    if not cgroups or not syscall.isdir(target):
        return
    if len(cgroups) == 1 and cgroups[0].name == "":
        syscall.mount("cgroup2", target, "cgroup2", flags)
        return
    syscall.mount("tmpfs", target, "tmpfs", NOSUID_NODEV_NOEXEC, "mode=755")
    for cg in cgroups:
        _mkdir(syscall, f"{target}/{cg.name}")
        syscall.mount("cgroup", f"{target}/{cg.name}", cg.fstype, flags, cg.data or None)
    syscall.mount(None, target, None, libc.MS_REMOUNT | NOSUID_NODEV_NOEXEC | libc.MS_RDONLY,
                  "mode=755")


def compile_patterns() -> None:
    """Compile MASKED_PATHS' wildcards into fnmatch's cache now (a warm process's: the fork
    server's), so that each container's init doesn't compile them again (0.3-0.6 ms of
    every start's init, measured with cProfile)."""
    import fnmatch

    for path in MASKED_PATHS:
        for name in path.split("/"):
            if glob.has_magic(name):
                fnmatch.filter([], name)


def mask_paths(rootfs: str, *, syscall: Syscalls = LINUX) -> None:
    """Hide what a container must not read: /dev/null over files, empty tmpfs over dirs.
    (Only the fresh /proc and /sys are walked: nothing of the image's own is followed.)"""
    for full in (m for path in MASKED_PATHS
                 for m in syscall.glob(rootfs + path) or [rootfs + path]):
        if syscall.isdir(full) and not syscall.islink(full):
            syscall.mount("tmpfs", full, "tmpfs", libc.MS_RDONLY, None)
        elif syscall.exists(full):
            syscall.mount(rootfs + "/dev/null", full, None, libc.MS_BIND)


def readonly_paths(rootfs: str, *, syscall: Syscalls = LINUX) -> None:
    for path in READONLY_PATHS:
        full = rootfs + path
        if not syscall.exists(full):
            continue
        syscall.mount(full, full, None, libc.MS_BIND | libc.MS_REC)
        syscall.mount(None, full, None,
                      libc.MS_BIND | libc.MS_REMOUNT | libc.MS_RDONLY | NOSUID_NODEV_NOEXEC)


def bind_files(rootfs: str, files: Mapping[str, str | int], *,
               syscall: Syscalls = LINUX) -> None:
    """Bind host files (hostname, hosts, resolv.conf) over paths in the container (a path,
    or a detached tree: see `bind`)."""
    for inside, host in files.items():
        target = rootfs + inside
        _mkdir(syscall, os.path.dirname(target))
        if not syscall.exists(target) or syscall.islink(target):
            if syscall.islink(target):
                syscall.unlink(target)
            syscall.touch(target)
        bind(host, target, syscall=syscall)


def mount_points(rootfs: str, mounts: Sequence[tuple[MountPoint, str | int]], *,
                 syscall: Syscalls = LINUX) -> None:
    """The container's binds, volumes and tmpfs, a parent before what is mounted below it
    (docker's order). Each target is found inside the view (syscalls.mount_target: openat2
    RESOLVE_IN_ROOT, missing parts made there) and mounted on through its fd. A bind by
    path is private, as everything in this namespace is; a clone the runtime made (a
    detached tree: a remapped container's, a subpath's, a shared or slave bind's) came
    with its source's peer group, and gets its propagation (rprivate unless asked) once
    attached. `ro` is a read-only remount of the new mount, found again through the view,
    which a container without CAP_SYS_ADMIN can't undo."""
    for m, source in in_mount_order(mounts):
        is_dir = m.type != "bind" or isinstance(source, int) or syscall.isdir(source)
        fd = syscall.mount_target(rootfs, m.target, is_dir)
        try:
            where = f"/proc/self/fd/{fd}"
            if m.type == "tmpfs":
                flags, data = tmpfs_options(m)
                syscall.mount("tmpfs", where, "tmpfs", flags, data)
                continue
            if isinstance(source, int):  # made read-only where it was cloned
                syscall.attach(source, fd)
            else:
                syscall.mount(source, where, None, libc.MS_BIND | libc.MS_REC)
        finally:
            syscall.close(fd)
        propagation, remount = flags_after(m, source)
        fd = syscall.mount_target(rootfs, m.target, is_dir) if propagation or remount else -1
        try:  # through the view again: now the new mount's root
            for flags in (f for f in (propagation, remount) if f):
                syscall.mount(None, f"/proc/self/fd/{fd}", None, flags)
        finally:
            if fd >= 0:
                syscall.close(fd)


def in_mount_order(mounts: Sequence[tuple[MountPoint, str | int]]
                   ) -> list[tuple[MountPoint, str | int]]:
    """A parent before what is mounted below it (docker's order)."""
    return sorted(mounts, key=lambda ms: len(ms[0].target.strip("/").split("/")))


def flags_after(m: MountPoint, source: str | int) -> tuple[int, int]:
    """(propagation, read-only remount) made on a mount once it is there (0: none): a
    detached tree's propagation (it came with its source's peer group), a bind's `ro`."""
    tree = isinstance(source, int)
    propagation = PROPAGATION_FLAGS[m.propagation] if tree else 0
    remount = libc.MS_BIND | libc.MS_REMOUNT | libc.MS_RDONLY if m.read_only and not tree else 0
    return propagation, remount


# docker's bind propagation modes as mount(2) flags ("": docker's default, rprivate)
PROPAGATION_FLAGS = {"": libc.MS_PRIVATE | libc.MS_REC, "private": libc.MS_PRIVATE,
                     "rprivate": libc.MS_PRIVATE | libc.MS_REC, "shared": libc.MS_SHARED,
                     "rshared": libc.MS_SHARED | libc.MS_REC, "slave": libc.MS_SLAVE,
                     "rslave": libc.MS_SLAVE | libc.MS_REC}


_TMPFS_FLAGS = {"ro": libc.MS_RDONLY, "nosuid": libc.MS_NOSUID, "nodev": libc.MS_NODEV,
                "noexec": libc.MS_NOEXEC, "noatime": libc.MS_NOATIME,
                "nodiratime": libc.MS_NODIRATIME, "relatime": libc.MS_RELATIME,
                "strictatime": libc.MS_STRICTATIME}
_TMPFS_CLEARS = {"suid": libc.MS_NOSUID, "dev": libc.MS_NODEV, "exec": libc.MS_NOEXEC,
                 "atime": libc.MS_NOATIME, "diratime": libc.MS_NODIRATIME,
                 "norelatime": libc.MS_RELATIME, "nostrictatime": libc.MS_STRICTATIME}


def tmpfs_options(m: MountPoint) -> tuple[int, str | None]:
    """(mount flags, data) of a tmpfs: docker's nosuid,nodev,noexec, then its options in
    order (`exec` clears noexec), `ro`; the rest (size=, mode=, ...) is the data."""
    flags = NOSUID_NODEV_NOEXEC | (libc.MS_RDONLY if m.read_only else 0)
    data = []
    for opt in (o for o in m.options.split(",") if o):
        if opt in _TMPFS_FLAGS:
            flags |= _TMPFS_FLAGS[opt]
        elif opt in _TMPFS_CLEARS:
            flags &= ~_TMPFS_CLEARS[opt]
        else:
            data.append(opt)
    return flags, ",".join(data) or None


def pivot(rootfs: str, *, syscall: Syscalls = LINUX) -> None:
    """pivot_root into rootfs and drop the old root (runc's pivot_root(".", ".") trick)."""
    syscall.chdir(rootfs)
    syscall.pivot_root(".", ".")
    syscall.umount(".", libc.MNT_DETACH)
    syscall.chdir("/")


def make_readonly(rootfs: str, *, syscall: Syscalls = LINUX) -> None:
    """--read-only: the root's own mount only; /dev, /proc, /sys and the bound files keep
    their flags, as docker's."""
    syscall.mount(None, rootfs, None, libc.MS_BIND | libc.MS_REMOUNT | libc.MS_RDONLY)


def make_mounts_private(*, syscall: Syscalls = LINUX) -> None:
    """libc.make_mounts_private("/") through the seam: MS_REC|MS_PRIVATE on the whole tree,
    before any other mount, so that nothing mounted or unmounted here reaches the host."""
    syscall.mount(None, "/", None, libc.MS_REC | libc.MS_PRIVATE)


def build(plan: RootfsPlan, *, syscall: Syscalls = LINUX) -> None:
    """Everything between unshare(CLONE_NEWNS) and exec, in order.

    A remapped container's init is an unprivileged host uid, which may not walk the root's
    0700 directories down to its union view: the monitor starts it *in* the view (its cwd,
    `path` "."), and it works relative to that (`enter_bind_of_cwd`). The host files and
    nodes it binds come as detached trees the runtime cloned (fds)."""
    rootfs, security = plan.path, plan.security
    make_mounts_private(syscall=syscall)
    if plan.remapped:
        enter_bind_of_cwd(syscall=syscall)
    else:  # pivot_root needs a mount
        syscall.mount(rootfs, rootfs, None, libc.MS_BIND | libc.MS_REC)
    mount_proc_sys(rootfs, security, syscall=syscall)
    mount_cgroups(rootfs, plan.cgroups, security, syscall=syscall)
    mount_dev(rootfs, security, plan.devices,
              plan.dev_sources if plan.remapped else None, shm_size=plan.shm_size,
              syscall=syscall)
    bind_files(rootfs, plan.files, syscall=syscall)
    mount_points(rootfs, plan.mounts, syscall=syscall)
    if security.masked_paths:
        mask_paths(rootfs, syscall=syscall)
        readonly_paths(rootfs, syscall=syscall)
    if security.read_only:
        make_readonly(rootfs, syscall=syscall)
    pivot(rootfs, syscall=syscall)
    if plan.root_propagation:  # after pivot_root, which refuses a shared root
        syscall.mount(None, "/", None, PROPAGATION_FLAGS[plan.root_propagation])
