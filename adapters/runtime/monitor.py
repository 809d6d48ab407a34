"""The monitor: one small detached process per running container, parent of its init.

It exists because only a parent learns a process's exit status. Forked (detached) from the
command that starts the container, it makes the PID namespace (unshare CLONE_NEWPID, then
fork init as PID 1 there; on a --userns-remap root one clone makes the user namespace and
the PID namespace it owns), the container's stdio, its attach socket and json log; it
reports the start (init's exec, or why it failed) and waits for the client's word that the
start is recorded. Then the watch (adapters/runtime/supervise.py: copy the output to the
json-file log and an attached client, write the exit status, have the exit recorded by
adapters/record_exit.py) runs here if init ended within a tenth of a second, else in the
lean interpreter this process execs, which stays init's parent.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from dataclasses import dataclass

from adapters.kernel import libc, proc
from adapters.kernel.proc import close_all_but
from adapters.runtime import frames, nativeinit, nativejoin, supervise, terminal
from adapters.runtime.init import InitPlan, made_for_it
from adapters.runtime.init import run as run_init

NAME = "lamina-monitor"  # in ps -e and top, until it execs the lean interpreter


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
    (plus waiting for it) cost the start ~5 ms. The pty's master init sends it was opened
    with O_NOCTTY, so being a session leader gives the monitor no controlling terminal."""
    if os.fork():
        return
    try:
        os.setsid()
        code = run(job, ctl, keep_fds)
    except BaseException:  # noqa: BLE001 - a monitor must never unwind into the client
        code = 1
    os._exit(code)


def name_process(name: str) -> None:
    """This process's name (its comm, 15 bytes at most) as ps -e and top show it."""
    with contextlib.suppress(OSError), open("/proc/self/comm", "w") as f:
        f.write(name)


def _stdio_pipes(job: MonitorJob) -> tuple[dict[int, str], int | None, int | None]:
    """Make the container's stdio; returns (our read fds -> stream name, our stdin fd, the
    socket init sends its terminal's master on). With -t init makes the terminal in the
    container's own devpts (init.make_console, joiner.c `console`), as runc's init does.

    A remapped container's root owns the pipes' ends: only then may init give them to a
    non-root user (init.own_stdio), since root of a user namespace has no say over files
    of host ids it does not map."""
    plan = job.plan
    if plan.spec.tty:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        plan.stdin = plan.stdout = plan.stderr = theirs.detach()
        return {}, None, mine.detach()
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
    return {out_r: "stdout", err_r: "stderr"}, in_w, None


def _start_init(job: MonitorJob, ctl: socket.socket, err_w: int) -> int:
    """Fork init (PID 1 of the namespace unshared before); a remapped one is cloned into a
    user namespace and a PID namespace it owns (adapters/kernel/userns.py: the map is
    written before it runs a line of its own), from the union view's directory, which the
    monitor leaves at once (a cwd there would keep the view busy). The host files a
    remapped init binds came opened (LinuxRuntime.start): it can't walk to them."""
    plan = job.plan

    def init() -> int:
        ctl.close()
        run_init(plan, err_w)
        return 127

    if plan.idmap is None:
        pid = os.fork()
        if pid == 0:
            os._exit(init())
        return pid
    from adapters.kernel import userns

    # Opened here, written by init: the kernel judges a cgroup.procs write by who opened it,
    # so init joins as its first step, as a plain one does (joining from here instead
    # would hold the monitor ~12 ms, the cost of a migration, off its own start).
    plan.cgroup_fds = nativejoin.open_cgroups(plan.cgroup_dirs)
    os.chdir(plan.rootfs)  # rootfs.build works from here
    try:
        return userns.spawn(plan.idmap, init, flags=libc.CLONE_NEWUSER | libc.CLONE_NEWPID)
    finally:
        os.chdir("/")


def run(job: MonitorJob, ctl: socket.socket, keep_fds: tuple[int, ...],
        pid_namespace_made: bool = False) -> int:
    """The monitor's life, in a process of its own session: forked for the start, or a
    spare that was given the job (adapters/runtime/sparemonitor.py), which has unshared
    its PID namespace already."""
    name_process(NAME)
    exe = nativejoin.held() if job.plan.native else set()  # the program init is
    close_all_but({0, 1, 2, ctl.fileno(), *keep_fds, *exe})
    devnull = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if job.plan.spec.security.pid != "host" and job.plan.idmap is None \
            and not pid_namespace_made:
        libc.unshare(libc.CLONE_NEWPID)
    outputs, stdin_fd, console = _stdio_pipes(job)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    ask = None
    try:
        if job.plan.native:
            pid, ask = nativeinit.spawn(job.plan, err_w)
        else:
            pid = _start_init(job, ctl, err_w)
    except (OSError, ValueError) as err:  # the user namespace, a plan: said, not "died
        # before reporting"
        frames.send(ctl, frames.REPORT, f"failed 125 init: {err}".encode())
        return 1
    os.close(err_w)
    if job.plan.netns_fd >= 0:  # init's now: the monitor stays in ours, where it unwires
        os.close(job.plan.netns_fd)
    if job.plan.go_fd >= 0:
        os.close(job.plan.go_fd)
    for fd in {job.plan.stdin, job.plan.stdout, job.plan.stderr}:
        if fd not in outputs and fd != stdin_fd:
            os.close(fd)
    lean = {"root": job.root, "cid": job.container_id, "cdir": job.container_dir, "pid": pid,
            "ctl": ctl.fileno(), "stdin": stdin_fd,
            "stdin_once": job.plan.spec.stdin_once and not job.plan.spec.tty, "log": (
                job.plan.spec.log_driver, job.plan.spec.log_max_size,
                job.plan.spec.log_max_file),
            "outputs": {str(fd): name for fd, name in outputs.items()}}
    # Made before the start is reported: a `run -d` returns as soon as the start is
    # recorded, and an attach or `logs` right after it must find both.
    listener = frames.listen(job.container_dir)
    supervise.log_of(lean).close()
    start_time = _note(job.container_dir, pid)
    if ask is not None:  # the native init's root is built: the user, and the process
        nativeinit.answer(ask, pid, job.plan)
    if console is not None:  # its terminal, made in its root (None: it failed before)
        master = terminal.received_master(console)
        if master is not None:
            outputs, stdin_fd = {master: "stdout"}, master
            lean.update(stdin=master, outputs={str(master): "stdout"})
    started = supervise.report_start(lean, ctl, err_r, start_time)
    own_pids = job.plan.spec.security.pid != "host"
    if started is not None and own_pids and _ended_first(pid, ctl.fileno()):
        # the output and exit code go out now, the end recorded after the client's word
        return supervise.watch(lean, ctl, listener, warm=True, recorded=False)
    if started is None or not supervise.await_recorded(ctl):
        if started is not None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        frames.unlisten(job.container_dir, listener)
        return 1
    if own_pids and _ends_soon(pid, ctl.fileno()):
        # here, the exit recorded here too: no second interpreter to start
        return supervise.watch(lean, ctl, listener, warm=True)
    if listener is not None:
        lean["attach"] = listener.fileno()
    for fd in (ctl.fileno(), *outputs, *([stdin_fd] if stdin_fd is not None else []),
               *([listener.fileno()] if listener is not None else [])):
        os.set_inheritable(fd, True)
    argv = supervise.boot_argv(lean)
    os.execv(argv[0], argv)  # the long watch runs in a lean interpreter (supervise.py)


def _note(cdir: str, pid: int) -> int:
    """Init's start time (for ContainerStarted: sent with the start report), and who its
    monitor is, kept in `<cdir>/monitor` as `pid.starttime`: reconciliation leaves a
    container whose init is gone to a monitor that still lives, since that monitor is about
    to record the exit. Done here while init builds its root, not by the client after the
    report: that was ~1 ms of every start's path."""
    with open(os.path.join(cdir, "monitor"), "w") as f:
        f.write(proc.stamp())
    return proc.start_time(pid) or 0


def _ended_first(pid: int, ctl_fd: int) -> bool:
    """Whether init ends before its client's word on the start (RECORDED, or a hang-up
    that aborts it), which is the usual order for a container that runs a moment: the
    monitor then copies its output and exit code at once, while the client still records
    the start, instead of after (~1.5 ms off `run --rm true`)."""
    import select

    pidfd = os.pidfd_open(pid)
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        poller.register(ctl_fd, select.POLLIN)
        ready = dict(poller.poll())
    finally:
        os.close(pidfd)
    return pidfd in ready


WARM_WINDOW = 0.1  # seconds a started container may take to end before the monitor execs


def _ends_soon(pid: int, ctl_fd: int, window: float = WARM_WINDOW) -> bool:
    """Whether init ends within `window` while its client says nothing: then this process,
    forked from a warm lamina, watches the rest itself (the output already written, the
    exit code), which spares a short container the ~15 ms (far more on a busy machine) of
    starting the lean interpreter. Anything else (it still runs, or its client sent stdin,
    a resize or its detach) goes to the lean interpreter, so a long-lived container's
    monitor keeps its ~12 MB. A container in the host's PID namespace never stays here:
    its init's end doesn't end its other processes, which may hold the output open."""
    import select

    pidfd = os.pidfd_open(pid)
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        poller.register(ctl_fd, select.POLLIN)
        ready = dict(poller.poll(int(window * 1000)))
    finally:
        os.close(pidfd)
    return pidfd in ready and ctl_fd not in ready
