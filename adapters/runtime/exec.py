"""`exec`: a new process inside a running container's namespaces and cgroup.

The client forks A, which joins the container's cgroup and namespaces (setns; mount last) and
forks B: only a child enters a joined PID namespace. B sets up stdio, user, capabilities and
no_new_privs as init did, and execs. A passes B's exit status back as its own.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from adapters.kernel import namespaces
from adapters.runtime import users
from adapters.runtime.init import exec_process, fail
from adapters.runtime.terminal import proxy_pty
from core.process import ProcessSpec, merge_env


def run_exec(pid: int, cgroup_dirs: Sequence[str], spec: ProcessSpec, argv: Sequence[str],
             user: str, options: Mapping[str, Any]) -> int:
    tty = bool(options.get("tty"))
    proc = ProcessSpec(argv=tuple(argv), env=merge_env(spec.env, options.get("env") or []),
                       cwd=options.get("workdir") or spec.cwd, user=user or spec.user,
                       tty=tty, no_new_privs=spec.no_new_privs)
    ns = namespaces.open_namespaces(pid)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    master, slave = os.openpty() if tty else (None, None)
    child = os.fork()
    if child == 0:
        os.close(err_r)
        _joiner(cgroup_dirs, ns, proc, slave, bool(options.get("interactive")), err_w)
    for fd, _ in ns:
        os.close(fd)
    os.close(err_w)
    if slave is not None:
        os.close(slave)
    if master is not None:
        proxy_pty(master, child)
    _, status = os.waitpid(child, 0)
    message = os.read(err_r, 4096).decode(errors="replace")
    os.close(err_r)
    code = os.waitstatus_to_exitcode(status)
    if message:
        sys.stderr.write(f"lamina: exec failed: {message.partition(' ')[2]}\n")
    return 128 - code if code < 0 else code


def _joiner(cgroup_dirs: Sequence[str], ns: list[tuple[int, int]], proc: ProcessSpec,
            slave: int | None, interactive: bool, err_w: int) -> None:
    try:
        for d in cgroup_dirs:
            with open(os.path.join(d, "cgroup.procs"), "w") as f:
                f.write("0")
        namespaces.join(ns)
        child = os.fork()
        if child == 0:
            _execer(proc, slave, interactive, err_w)
        os.close(err_w)
        _, status = os.waitpid(child, 0)
        code = os.waitstatus_to_exitcode(status)
        os._exit(128 - code if code < 0 else code)
    except BaseException as err:  # noqa: BLE001
        fail(err_w, f"join: {err}", 126)


def _execer(proc: ProcessSpec, slave: int | None, interactive: bool, err_w: int) -> None:
    try:
        if slave is not None:
            for fd in (0, 1, 2):
                os.dup2(slave, fd)
            os.setsid()
            import fcntl
            import termios

            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        elif not interactive:
            devnull = os.open("/dev/null", os.O_RDONLY)
            os.dup2(devnull, 0)
        ident = users.resolve(proc.user)
    except BaseException as err:  # noqa: BLE001 - everything must reach the pipe
        fail(err_w, f"setup: {err}", 126)
    exec_process(proc, ident, err_w)
