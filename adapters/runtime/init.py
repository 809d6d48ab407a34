"""What runs in the forked child that becomes the container's PID 1, up to its exec.

Order matters: join the cgroup (so every later allocation is accounted), unshare the mount,
UTS, IPC and network namespaces (the PID namespace was made by the monitor, whose child this
is), set the hostname, bring up loopback, build the root filesystem and pivot into it, look
up the user in the container's own passwd, wire stdio, drop capabilities, set no_new_privs,
change user, close every other descriptor, exec. Any failure is written to `err_fd` (close-on-
exec, so a successful exec closes it with nothing written) and the child exits 127.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import termios
from collections.abc import Sequence
from dataclasses import dataclass, field

from adapters.kernel import libc, namespaces, rootfs, security
from adapters.runtime import users
from core.process import ProcessSpec


@dataclass
class InitPlan:
    spec: ProcessSpec
    rootfs: str
    cgroup_dirs: Sequence[str]
    files: dict[str, str] = field(default_factory=dict)
    stdin: int = -1
    stdout: int = -1
    stderr: int = -1
    console: str | None = None  # the pty slave's path when there is a terminal


def _join_cgroup(dirs: Sequence[str]) -> None:
    for d in dirs:
        with open(os.path.join(d, "cgroup.procs"), "w") as f:
            f.write("0")


def _stdio(plan: InitPlan) -> None:
    for fd, target in ((plan.stdin, 0), (plan.stdout, 1), (plan.stderr, 2)):
        if fd != target:
            os.dup2(fd, target)
    os.setsid()
    if plan.spec.tty:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def become(ident: users.Identity, spec: ProcessSpec) -> None:
    security.drop_capabilities(security.DEFAULT_CAPS)
    if spec.no_new_privs:
        security.set_no_new_privs()
    os.setgroups(list(ident.groups))
    os.setgid(ident.gid)
    os.setuid(ident.uid)  # a non-zero uid loses its permitted capabilities here


def process_env(spec: ProcessSpec, ident: users.Identity) -> dict[str, str]:
    env = dict(item.partition("=")[::2] for item in spec.env)
    env.setdefault("HOME", ident.home)
    if spec.tty:
        env.setdefault("TERM", "xterm")
    return env


def enter_workdir(cwd: str) -> None:
    os.makedirs(cwd, exist_ok=True)  # docker creates a missing WorkingDir
    os.chdir(cwd)


def close_other_fds(keep: int) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd != keep:
            with contextlib.suppress(OSError):
                os.close(fd)


def run(plan: InitPlan, err_fd: int) -> None:
    """Become the container's init; returns only by exec (or exits 127 on failure)."""
    spec = plan.spec
    step = "start"
    try:
        step = "cgroup"
        _join_cgroup(plan.cgroup_dirs)
        step = "namespaces"
        libc.unshare(namespaces.container_flags(spec.network))
        socket.sethostname(spec.hostname)
        if spec.network != "host":
            namespaces.loopback_up()
        step = "rootfs"
        rootfs.build(plan.rootfs, host_network=spec.network == "host", console=plan.console,
                     files=plan.files)
        step = "user"
        ident = users.resolve(spec.user)
        _stdio(plan)
    except BaseException as err:  # noqa: BLE001 - everything must reach the pipe
        fail(err_fd, f"{step}: {err}", 127)
    exec_process(spec, ident, err_fd)


def exec_process(spec: ProcessSpec, ident: users.Identity, err_fd: int) -> None:
    """The end both init and exec share: working directory, credentials, descriptors, exec.

    Failures go to err_fd with docker's exit codes: 127 not found, 126 not executable."""
    step = "workdir"
    try:
        env = process_env(spec, ident)
        enter_workdir(spec.cwd)
        step = "security"
        become(ident, spec)
        close_other_fds(err_fd)
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


def fail(err_fd: int, message: str, code: int) -> None:
    try:
        os.write(err_fd, f"{code} {message}".encode())
    finally:
        os._exit(code)
