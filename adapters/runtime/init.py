"""What runs in the forked child that becomes the container's PID 1, up to its exec.

Order matters: join the cgroup (so every later allocation is accounted, and the cgroup
namespace made next is rooted there), unshare the mount, cgroup, UTS, IPC and network
namespaces (the PID namespace was made by the monitor, whose child this is; on a
--userns-remap root the monitor also made its user namespace, and the namespaces unshared
here are then that user namespace's), set the
hostname, bring up loopback, build the root filesystem and pivot into it, look up the user
in the container's own passwd, wire stdio; then, shared with exec: a new session keyring,
capabilities, no_new_privs, the user, the seccomp filter, close every other descriptor,
exec. Any failure is written to `err_fd` (close-on-exec, so a successful exec closes it
with nothing written) and the child exits 127.
"""

from __future__ import annotations

import fcntl
import os
import resource  # here, not at its use: after pivot_root the host's modules are out of reach
import signal
import socket
import stat
import struct
import termios
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from adapters.kernel import keyring, libc, namespaces, rootfs, security
from adapters.kernel import seccomp as filters
from adapters.runtime import users
from adapters.runtime.terminal import set_size
from core.devices import Node
from core.mounts import MountPoint, root_propagation
from core.process import ProcessSpec

if TYPE_CHECKING:
    from adapters.kernel.idmap import IdMap
    from adapters.kernel.rootfs import CgroupMount


@dataclass
class InitPlan:
    spec: ProcessSpec
    rootfs: str
    cgroup_dirs: Sequence[str]
    files: dict[str, str | int] = field(default_factory=dict)  # inside -> host path or tree
    stdin: int = -1
    stdout: int = -1
    stderr: int = -1
    seccomp: bytes | None = None  # the compiled filter (adapters/kernel/seccomp.py)
    cgroup_mounts: Sequence[CgroupMount] = ()  # its /sys/fs/cgroup, namespaced
    devices: Sequence[Node] = ()  # the nodes of its /dev (adapters/kernel/devices.py)
    # A --userns-remap root's container: its maps, and the host node bound at each path of
    # its /dev (a user namespace may not mknod), a detached mount of it (adapters/kernel/
    # idmap.py cloned_tree) as its bound files are. The monitor starts init in a user
    # namespace of its own, in the union view's directory.
    idmap: IdMap | None = None
    dev_sources: Mapping[str, str | int] = field(default_factory=dict)
    cgroup_fds: Sequence[int] = ()  # its cgroup.procs, opened by the monitor
    # its -v/--mount/--tmpfs with their host sources (adapters/kernel/rootfs.py mount_points)
    mounts: Sequence[tuple[MountPoint, str | int]] = ()
    # the network namespace made and wired for it (adapters/network/endpoints.py), which
    # init enters first thing (the monitor stays in the caller's, where the run's end is
    # unwired); -1: none (init unshares its own, or --network host keeps the host's)
    netns_fd: int = -1
    # a pipe's read end: the union view is mounted once a byte comes (its EOF: the start
    # was given up); -1: mounted before init was forked (a remapped one's)
    go_fd: int = -1
    # the native program is this init (adapters/runtime/nativeinit.py), as the starting
    # command decided: when it is built and its environment does not turn it off
    native: bool = False


def _join_cgroup(plan: InitPlan) -> None:
    """Into each of the container's cgroups; a remapped init, which may not open them,
    writes to the cgroup.procs its monitor opened (the kernel judges the opener)."""
    if plan.cgroup_fds:
        for fd in plan.cgroup_fds:
            os.write(fd, b"0")
            os.close(fd)
        return
    for d in plan.cgroup_dirs:
        with open(os.path.join(d, "cgroup.procs"), "w") as f:
            f.write("0")


def _await_view(go_fd: int) -> None:
    """Wait for the starting command's word that the union view is mounted."""
    word = os.read(go_fd, 1)
    os.close(go_fd)
    if word != b"g":
        raise RuntimeError("the start was given up before its view was mounted")


def _stdio(plan: InitPlan) -> None:
    """Stdio onto 0-2; with -t the terminal made here (fd 0 was the monitor's socket for
    it: make_console), in a session of its own."""
    for fd, target in ((plan.stdin, 0), (plan.stdout, 1), (plan.stderr, 2)):
        if fd != target:
            os.dup2(fd, target)
    if plan.spec.tty:
        make_console(plan.spec.console_size, bound=True)
    os.setsid()
    if plan.spec.tty:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)


TIOCSPTLCK = 0x40045431  # _IOW('T', 0x31, int): lock or unlock a pty's slave
TIOCGPTPEER = 0x5441  # _IO('T', 0x41): open the slave from its master, no path walked
TIOCGPTN = 0x80045430  # _IOR('T', 0x30, unsigned int): the pty's number


def make_console(size: tuple[int, int], bound: bool) -> None:
    """A terminal as runc's console socket makes it (joiner.c `console`, which the native
    program does): a pty from the container's own /dev/ptmx, so the process sees itself on
    the container's /dev/pts/N (the host's pty is nowhere in its /dev), sized before it
    runs, on /dev/console too for a container's init (`bound`); its master sent over the
    socket on fd 0, its slave onto 0-2. Run in the container, after pivot_root."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
    slave = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY)
    if all(size):
        set_size(master, *size)
    if bound:
        number = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0" * 4))[0]
        os.close(os.open("/dev/console", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
        libc.mount(f"/dev/pts/{number}", "/dev/console", None, libc.MS_BIND)
    with socket.socket(fileno=os.dup(0)) as sock:
        socket.send_fds(sock, [b"M"], [master])
    os.close(master)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)


def become(ident: users.Identity, spec: ProcessSpec, seccomp: bytes | None) -> None:
    """Keyring, bounding set, user, capabilities, no_new_privs, seccomp: runc's order. The
    user changes while CAP_SETUID/SETGID are still effective (--cap-drop ALL drops them);
    the filter goes last so that it never has to allow what this code calls, except that
    without no_new_privs the kernel only takes a filter from a process holding
    CAP_SYS_ADMIN, so then it goes before the user changes."""
    sec = spec.security
    keyring.join_new_session()
    security.drop_bounding(sec.caps)
    if seccomp is not None and not sec.no_new_privs:
        filters.install(seccomp)
    os.setgroups(list(ident.groups))
    os.setgid(ident.gid)
    os.setuid(ident.uid)  # a non-zero uid loses its permitted capabilities here
    security.limit_to(sec.caps)
    if sec.no_new_privs:
        security.set_no_new_privs()
        if seccomp is not None:
            filters.install(seccomp)


PTY_MAJORS = range(136, 144)  # Unix98 pty slaves


def made_for_it(fd: int) -> bool:
    """A pipe or a pty slave: what lamina makes for a container's stdio, and so the only
    kind of stdio that may be given away (a stdin of /dev/null is the host's node)."""
    st = os.fstat(fd)
    return stat.S_ISFIFO(st.st_mode) or (stat.S_ISCHR(st.st_mode)
                                         and os.major(st.st_rdev) in PTY_MAJORS)


def own_stdio(ident: users.Identity) -> None:
    """Give the container's user its own stdio, as runc does: the pipes and the pty lamina
    made for it (never anything else: the caller's files don't reach here), so that a
    non-root process can reopen /dev/stdout or /proc/self/fd/1 as root's could."""
    if ident.uid == 0 and ident.gid == 0:
        return
    for fd in (0, 1, 2):
        if made_for_it(fd):
            os.fchown(fd, ident.uid, ident.gid)


def process_env(spec: ProcessSpec, ident: users.Identity) -> dict[str, str]:
    env = dict(item.partition("=")[::2] for item in spec.env)
    env.setdefault("HOME", ident.home)
    if spec.tty:
        env.setdefault("TERM", "xterm")
    return env


def enter_workdir(cwd: str) -> None:
    os.makedirs(cwd, exist_ok=True)  # docker creates a missing WorkingDir
    os.chdir(cwd)


def set_rlimits(rlimits: Sequence[tuple[int, int, int]]) -> None:
    """--ulimit, as runc sets a process's rlimits: before the user and capabilities change
    (raising a hard limit needs CAP_SYS_RESOURCE); -1 is unlimited (RLIM_INFINITY)."""
    for which, soft, hard in rlimits:
        resource.setrlimit(which, (soft if soft >= 0 else resource.RLIM_INFINITY,
                                   hard if hard >= 0 else resource.RLIM_INFINITY))


def close_other_fds(keep: int) -> None:
    """Every descriptor but 0-2 and `keep` (close_range: no /proc to read, which a
    process no longer dumpable may not list in a remapped container)."""
    os.closerange(3, keep)
    os.closerange(keep + 1, 2**31 - 1)


def run(plan: InitPlan, err_fd: int) -> None:
    """Become the container's init; returns only by exec (or exits 127 on failure)."""
    spec = plan.spec
    step = "start"
    try:
        step = "cgroup"
        _join_cgroup(plan)
        if plan.go_fd >= 0:  # before the mount namespace, which must hold the view
            step = "view"
            _await_view(plan.go_fd)
        step = "namespaces"
        if plan.netns_fd >= 0:  # wired for it (adapters/network/endpoints.py): its first
            libc.setns(plan.netns_fd, libc.CLONE_NEWNET)  # instruction has its address
            os.close(plan.netns_fd)
        namespaces.enter(spec.network, spec.security, spec.hostname)
        step = "rootfs"
        rootfs.build(rootfs.RootfsPlan(
            path=plan.rootfs if plan.idmap is None else ".",
            files=plan.files, security=spec.security, cgroups=plan.cgroup_mounts,
            devices=plan.devices, remapped=plan.idmap is not None,
            dev_sources=plan.dev_sources, mounts=plan.mounts, shm_size=spec.shm_size,
            root_propagation=root_propagation([m for m, _ in plan.mounts])))
        step = "user"
        ident = users.resolve(spec.user, group_add=spec.security.group_add)
        _stdio(plan)
    except BaseException as err:  # noqa: BLE001 - everything must reach the pipe
        fail(err_fd, f"{step}: {err}", 127)
    exec_process(spec, ident, err_fd, plan.seccomp)


def exec_process(spec: ProcessSpec, ident: users.Identity, err_fd: int,
                 seccomp: bytes | None) -> None:
    """The end both init and exec share: working directory, credentials, descriptors, exec.

    Failures go to err_fd with docker's exit codes: 127 not found, 126 not executable."""
    step = "workdir"
    try:
        env = process_env(spec, ident)
        enter_workdir(spec.cwd)
        step = "rlimits"
        set_rlimits(spec.rlimits)
        step = "security"
        own_stdio(ident)
        become(ident, spec, seccomp)
        close_other_fds(err_fd)
        clean_signals()
        step = "exec"
        os.execvpe(spec.argv[0], list(spec.argv), env)
    except FileNotFoundError as err:
        fail(err_fd, f'exec: "{spec.argv[0]}": executable file not found in $PATH'
             if step == "exec" else f"{step}: {err}", 127)
    except PermissionError as err:
        fail(err_fd, f'exec: "{spec.argv[0]}": permission denied' if step == "exec"
             else f"{step}: {err}", 126)
    except BaseException as err:  # noqa: BLE001 - everything must reach the pipe
        fail(err_fd, f"{step}: {err}", 127)


def clean_signals() -> None:
    """Every signal at its default and none blocked, as a fresh process has them: exec
    keeps what is ignored and the mask, and lamina's own processes ignore SIGINT, SIGHUP,
    SIGPIPE and SIGXFSZ (the monitor, Python itself). Without this, Ctrl-C did nothing in
    `run -it ... sh` and `yes | head -2` said "Broken pipe"."""
    for sig in range(1, signal.NSIG):
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            try:
                signal.signal(sig, signal.SIG_DFL)
            except (OSError, ValueError):  # 32, 33: glibc's own, refused by its sigaction
                libc.default_signal(sig)
    signal.pthread_sigmask(signal.SIG_SETMASK, ())


def fail(err_fd: int, message: str, code: int) -> None:
    try:
        os.write(err_fd, f"{code} {message}".encode())
    finally:
        os._exit(code)
