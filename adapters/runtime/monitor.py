"""The monitor: one small detached process per running container, parent of its init.

It exists because only a parent learns a process's exit status. Forked (twice, detached)
from the command that starts the container, it makes the PID namespace (unshare
CLONE_NEWPID, then fork init as PID 1 there; on a --userns-remap root one clone makes the
user namespace and the PID namespace it owns) and the container's stdio, then execs the lean
interpreter of adapters/runtime/supervise.py, which stays init's parent: it reports the
start, copies the output to the json-file log and an attached client, writes the exit
status, and has the exit recorded (adapters/record_exit.py).
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from adapters.kernel import libc
from adapters.kernel.proc import close_all_but
from adapters.runtime import supervise
from adapters.runtime.init import InitPlan, made_for_it
from adapters.runtime.init import run as run_init

TTY_GID = 5  # the container's tty group, owner of its console as of its devpts' ptys


@dataclass
class MonitorJob:
    root: str
    container_id: str
    container_dir: str
    plan: InitPlan


def spawn(job: MonitorJob, keep_fds: tuple[int, ...], ctl: socket.socket) -> None:
    """Fork the monitor, detached in a session of its own, from the starting command.

    One fork, not the daemon's classic two: the starting command is short-lived, so the
    monitor is soon the init process's to reap, and a second fork of a 25 MB process
    (plus waiting for it) cost the start ~5 ms. The pty the monitor opens is opened with
    O_NOCTTY (openpty), so being a session leader gives it no controlling terminal."""
    if os.fork():
        return
    try:
        os.setsid()
        code = _main(job, ctl, keep_fds)
    except BaseException:  # noqa: BLE001 - a monitor must never unwind into the client
        code = 1
    os._exit(code)


def _stdio_pipes(job: MonitorJob) -> tuple[dict[int, str], int | None]:
    """Make the container's stdio; returns (our read fds -> stream name, our stdin fd).

    A remapped container's root owns its ends (its pty as root:tty, as runc's console):
    only then may init give them to a non-root user (init.own_stdio), since root of a user
    namespace has no say over files of host ids it does not map."""
    plan = job.plan
    if plan.spec.tty:
        master, slave = os.openpty()
        plan.stdin = plan.stdout = plan.stderr = slave
        plan.console = os.ttyname(slave)
        if plan.idmap is not None:
            os.fchown(slave, plan.idmap.host_uid(0), plan.idmap.host_gid(TTY_GID))
        return {master: "stdout"}, master
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    if plan.spec.interactive:
        in_r, in_w = os.pipe()
    else:
        in_r, in_w = os.open("/dev/null", os.O_RDONLY), None
    plan.stdin, plan.stdout, plan.stderr = in_r, out_w, err_w
    if plan.idmap is not None:
        for fd in {out_w, err_w, in_r}:
            if made_for_it(fd):  # not a stdin of /dev/null: that is the host's node
                os.fchown(fd, plan.idmap.host_uid(0), plan.idmap.host_gid(0))
    return {out_r: "stdout", err_r: "stderr"}, in_w


def _start_init(job: MonitorJob, ctl: socket.socket, err_w: int) -> int:
    """Fork init (PID 1 of the namespace unshared before); a remapped one is cloned into a
    user namespace and a PID namespace it owns (adapters/kernel/userns.py: the map is
    written before it runs a line of its own), from the union view's directory, which the
    monitor leaves at once (a cwd there would keep the view busy). The host files a
    remapped init binds came opened (LinuxRuntime.start): it can't walk to them."""
    plan = job.plan

    def run() -> int:
        ctl.close()
        run_init(plan, err_w)
        return 127

    if plan.idmap is None:
        pid = os.fork()
        if pid == 0:
            os._exit(run())
        return pid
    from adapters.kernel import userns

    # Opened here, written by init: the kernel judges a cgroup.procs write by who opened it,
    # so init joins as its first step, as a plain one does (joining from here instead
    # would hold the monitor ~12 ms, the cost of a migration, off its own start).
    plan.cgroup_fds = _open_procs(plan.cgroup_dirs)
    os.chdir(plan.rootfs)  # rootfs.build works from here
    try:
        return userns.spawn(plan.idmap, run, flags=libc.CLONE_NEWUSER | libc.CLONE_NEWPID)
    finally:
        os.chdir("/")


def _open_procs(dirs: Sequence[str]) -> list[int]:
    return [os.open(os.path.join(d, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC) for d in dirs]


def _main(job: MonitorJob, ctl: socket.socket, keep_fds: tuple[int, ...]) -> int:
    close_all_but({0, 1, 2, ctl.fileno(), *keep_fds})
    devnull = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if job.plan.spec.security.pid != "host" and job.plan.idmap is None:
        libc.unshare(libc.CLONE_NEWPID)
    outputs, stdin_fd = _stdio_pipes(job)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    try:
        pid = _start_init(job, ctl, err_w)
    except OSError as err:  # e.g. the user namespace: said, not "died before reporting"
        from adapters.runtime import frames

        frames.send(ctl, frames.REPORT, f"failed 125 init: {err}".encode())
        return 1
    os.close(err_w)
    if job.plan.netns_fd >= 0:  # init's now: the monitor stays in ours, where it unwires
        os.close(job.plan.netns_fd)
    for fd in {job.plan.stdin, job.plan.stdout, job.plan.stderr}:
        if fd not in outputs and fd != stdin_fd:
            os.close(fd)
    lean = {"root": job.root, "cid": job.container_id, "cdir": job.container_dir, "pid": pid,
            "ctl": ctl.fileno(), "err": err_r, "stdin": stdin_fd,
            "stdin_once": job.plan.spec.stdin_once and not job.plan.spec.tty, "log": (
                job.plan.spec.log_driver, job.plan.spec.log_max_size,
                job.plan.spec.log_max_file),
            "outputs": {str(fd): name for fd, name in outputs.items()}}
    for fd in (ctl.fileno(), err_r, *outputs, *([stdin_fd] if stdin_fd is not None else [])):
        os.set_inheritable(fd, True)
    argv = supervise.boot_argv(lean)
    os.execv(argv[0], argv)  # the long watch runs in a lean interpreter (supervise.py)
