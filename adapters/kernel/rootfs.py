"""The container's filesystem view, built inside its new mount namespace, then pivot_root.

Docker's defaults: a fresh /proc, a minimal /dev on tmpfs, /sys read-only, masked paths
(bind /dev/null over files, an empty read-only tmpfs over directories) and read-only paths.
Mount propagation is made private first, so nothing done here reaches the host.
"""

from __future__ import annotations

import os
import stat

from adapters.kernel import libc

MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

# (name, major, minor) of the character devices every container gets, mode 0666.
DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8),
           ("urandom", 1, 9), ("tty", 5, 0))
DEV_LINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
             ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"),
             ("ptmx", "pts/ptmx"), ("core", "/proc/kcore"))

NOSUID_NODEV_NOEXEC = libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC


def _mkdir(path: str, mode: int = 0o755) -> None:
    os.makedirs(path, mode=mode, exist_ok=True)


def mount_dev(rootfs: str, console: str | None) -> None:
    """tmpfs /dev with docker's device nodes, devpts (its own instance), shm and mqueue."""
    dev = rootfs + "/dev"
    _mkdir(dev)
    libc.mount("tmpfs", dev, "tmpfs", libc.MS_NOSUID | libc.MS_STRICTATIME, "mode=755,size=65536k")
    for name, major, minor in DEVICES:
        path = f"{dev}/{name}"
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
        os.chmod(path, 0o666)
    for name, target in DEV_LINKS:
        os.symlink(target, f"{dev}/{name}")
    _mkdir(dev + "/pts")
    libc.mount("devpts", dev + "/pts", "devpts", libc.MS_NOSUID | libc.MS_NOEXEC,
               "newinstance,ptmxmode=0666,mode=0620,gid=5")
    _mkdir(dev + "/shm", 0o1777)
    libc.mount("shm", dev + "/shm", "tmpfs", NOSUID_NODEV_NOEXEC, "mode=1777,size=65536k")
    _mkdir(dev + "/mqueue")
    libc.mount("mqueue", dev + "/mqueue", "mqueue", NOSUID_NODEV_NOEXEC)
    if console:
        open(dev + "/console", "a").close()
        libc.mount(console, dev + "/console", None, libc.MS_BIND)


def mount_proc_sys(rootfs: str, host_network: bool) -> None:
    _mkdir(rootfs + "/proc")
    libc.mount("proc", rootfs + "/proc", "proc", NOSUID_NODEV_NOEXEC)
    _mkdir(rootfs + "/sys")
    if host_network:  # sysfs can't be mounted fresh without our own net namespace
        libc.mount("/sys", rootfs + "/sys", None, libc.MS_BIND | libc.MS_REC)
        libc.mount(None, rootfs + "/sys", None,
                   libc.MS_BIND | libc.MS_REMOUNT | libc.MS_RDONLY | NOSUID_NODEV_NOEXEC)
    else:
        libc.mount("sysfs", rootfs + "/sys", "sysfs", NOSUID_NODEV_NOEXEC | libc.MS_RDONLY)


def mask_paths(rootfs: str) -> None:
    """Hide what a container must not read: /dev/null over files, empty tmpfs over dirs."""
    for path in MASKED_PATHS:
        full = rootfs + path
        if os.path.isdir(full) and not os.path.islink(full):
            libc.mount("tmpfs", full, "tmpfs", libc.MS_RDONLY, None)
        elif os.path.exists(full):
            libc.mount(rootfs + "/dev/null", full, None, libc.MS_BIND)


def readonly_paths(rootfs: str) -> None:
    for path in READONLY_PATHS:
        full = rootfs + path
        if not os.path.exists(full):
            continue
        libc.mount(full, full, None, libc.MS_BIND | libc.MS_REC)
        libc.mount(None, full, None,
                   libc.MS_BIND | libc.MS_REMOUNT | libc.MS_RDONLY | NOSUID_NODEV_NOEXEC)


def bind_files(rootfs: str, files: dict[str, str]) -> None:
    """Bind host files (hostname, hosts, resolv.conf) over paths in the container."""
    for inside, host in files.items():
        target = rootfs + inside
        _mkdir(os.path.dirname(target))
        if not os.path.exists(target) or os.path.islink(target):
            if os.path.islink(target):
                os.unlink(target)
            open(target, "a").close()
        libc.mount(host, target, None, libc.MS_BIND)


def pivot(rootfs: str) -> None:
    """pivot_root into rootfs and drop the old root (runc's pivot_root(".", ".") trick)."""
    os.chdir(rootfs)
    libc.pivot_root(".", ".")
    libc.umount(".", libc.MNT_DETACH)
    os.chdir("/")


def build(rootfs: str, *, host_network: bool, console: str | None,
          files: dict[str, str]) -> None:
    """Everything between unshare(CLONE_NEWNS) and exec, in order."""
    libc.make_mounts_private("/")
    libc.mount(rootfs, rootfs, None, libc.MS_BIND | libc.MS_REC)  # pivot_root needs a mount
    mount_proc_sys(rootfs, host_network)
    mount_dev(rootfs, console)
    bind_files(rootfs, files)
    mask_paths(rootfs)
    readonly_paths(rootfs)
    pivot(rootfs)
