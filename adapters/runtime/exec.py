"""`exec`: a new process inside a running container's namespaces and cgroup, or none at all.

Fail closed: a container whose init has just exited still shows as running until its monitor
records the exit, and an exec in that window must not run anywhere else (the host's
namespaces, say). So the lamina command (P) holds the init by a pidfd and checks it is still
that init (pid and start time: a reused pid is never joined), notes which namespaces it owns,
makes the process's stdio (pipes, or a pty with -t: never our own descriptors) and forks J.
J puts those stdio on its fds 0-2 (so nothing of the caller's goes further), joins every
namespace of the init in one setns(pidfd, flags) (all or nothing, ESRCH once the init has
exited; the user namespace too on a --userns-remap root, and J then takes the container
root's ids: no process of host root's stays in the container), then the container's
cgroup, checks the init still lives, and forks E: only a child
enters a joined PID namespace, and that fork fails once the namespace's init is gone. E
starts a session of its own (no controlling terminal of the caller's: /dev/tty reaches
nothing) and goes through init.exec_process. J passes E's exit status back; P relays the
pipes or the pty to its own stdio until J ends. Any failure to join is "container X is not
running", exit 126 (docker's code for an exec that could not start), and no process runs.

J and E are the native program lamina-join when it is built (adapters/runtime/joiner.c,
nativejoin.py: P resolves the user and writes the plan, then posix_spawns it), else forks
of this process (`_joiner`, `_execer`): the same steps, the same words.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from adapters.kernel import libc, namespaces
from adapters.kernel.proc import is_init_of
from adapters.runtime import frames, nativejoin, users
from adapters.runtime.init import exec_process, fail, made_for_it, make_console, process_env
from adapters.runtime.terminal import (
    Detached,
    PipeRelay,
    drain,
    outlive,
    proxy_pty,
    received_master,
    window_size,
)
from core.ports import ExecDetached
from core.process import ProcessSpec, merge_env

NOT_RUNNING = "not-running"  # J's failure tag on the error pipe
CANNOT_START = 126


@dataclass(frozen=True)
class ExecTarget:
    """The container's init as its ContainerStarted recorded it, and its cgroup dirs."""

    container_id: str
    pid: int
    start_time: int  # 0 for a start recorded before start times were: the cgroup decides
    cgroup_dirs: tuple[str, ...]
    root_ids: tuple[int, int] | None = None  # host uid, gid of its root: --userns-remap


@dataclass
class Stdio:
    """The process's fds 0-2 (ours to close after the fork) and our ends of them."""

    child: tuple[int, int, int]
    outputs: dict[int, int]  # our read end of a pipe -> our fd (1, 2) it is copied to
    stdin: int | None = None  # our write end of its stdin pipe (-i without -t)
    master: int | None = None  # the pty's master (-t), once E has sent it
    console: int | None = None  # our end of the socket E sends it on (-t)

    def ours(self) -> list[int]:
        return [*self.outputs, *(fd for fd in (self.stdin, self.master, self.console)
                                 if fd is not None)]


def run_exec(target: ExecTarget, spec: ProcessSpec, argv: Sequence[str], user: str,
             options: Mapping[str, Any], seccomp: bytes | None = None,
             before_fork: Callable[[], None] = lambda: None,
             durable: Callable[[], None] = lambda: None,
             forked: Callable[[], object] = lambda: None) -> int:
    """Run argv in the container; its exit code, or 126 with one line on stderr. With a
    terminal and stdin, the detach keys raise ExecDetached (see `_watcher`);
    `before_fork` readies the caller for a fork then (closes its log); `durable` puts the
    exec's start on the disk, if its caller deferred that (SqliteEventLog.sync_deferred):
    at once for a process that may wait for us (stdin, a terminal) or runs detached, else
    once it has run START_SYNC_WITHIN without ending (_sync_start); `forked()` runs in this
    process once the joiner is forked (the caller's cgroups.Warming waits there: see
    LinuxRuntime.exec)."""
    detached = bool(options.get("detach"))  # exec -d: /dev/null, no terminal (docker's)
    tty = bool(options.get("tty")) and not detached
    interactive = bool(options.get("interactive"))
    proc = ProcessSpec(argv=tuple(argv), env=merge_env(spec.env, options.get("env") or []),
                       cwd=options.get("workdir") or spec.cwd, user=user or spec.user,
                       tty=tty, security=spec.security, rlimits=spec.rlimits,
                       console_size=_start_size(options) if tty else (0, 0))
    try:
        pidfd, flags = hold_init(target)
    except (OSError, namespaces.NotJoinable):
        return _not_running(target)
    required = namespaces.owned_flags(spec.network, spec.security,
                                      remapped=target.root_ids is not None)
    # J's exit code, written on a pipe as well when the detach keys may leave it: a
    # detached exec's watcher is not J's parent (the CLI's process that is leaves at
    # once), so it can't wait for J
    watched = tty and interactive and bool(options.get("detach_keys")) \
        and not options.get("detach")
    native = nativejoin.program()
    if native is not None:  # the user resolved here: the program reads no file of theirs
        try:
            if required & ~flags:
                raise namespaces.NotJoinable("its init shares namespaces it must own")
            ident = nativejoin.identity(target.pid, pidfd, proc)
            plan = nativejoin.plan(
                proc, ident, process_env(proc, ident), flags=flags,
                remapped=target.root_ids is not None, cgroups=len(target.cgroup_dirs),
                done=watched,
                seccomp=seccomp)
            cgroups = nativejoin.open_cgroups(target.cgroup_dirs)
        except (OSError, namespaces.NotJoinable):
            os.close(pidfd)
            return _not_running(target)
        except nativejoin.Unstartable as err:  # what E's exec step said of it
            os.close(pidfd)
            return _refused(target, f"127 exec: {err}".encode(), options, durable)
        except Exception as err:  # noqa: BLE001 - what E said of a user it can't become
            os.close(pidfd)
            return _refused(target, f"{CANNOT_START} setup: {err}".encode(), options,
                            durable)
    _own_std_fds()
    stdio = _no_stdio() if detached else make_stdio(tty, interactive)
    if target.root_ids is not None:  # the container's root gives them to its user
        for fd in set(stdio.child):
            if made_for_it(fd):  # not a stdin of /dev/null: that is the host's node
                os.fchown(fd, *target.root_ids)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    done_r, done_w = os.pipe2(os.O_CLOEXEC) if watched else (-1, -1)
    if native is not None:
        child = nativejoin.spawn(native, stdio.child, pidfd, err_w, done_w, cgroups, plan)
    else:
        child = os.fork()
        if child == 0:
            os.close(err_r)
            _joiner(target, pidfd, flags, required, stdio, proc, err_w, seccomp, done_w)
    forked()
    for fd in {pidfd, err_w, done_w, *stdio.child} - {-1}:
        os.close(fd)
    if detached:  # exec -d: no stdio to relay; say whether it started, then wait for it
        said = frames.read_to_end(err_r)
        durable()
        started = options.get("started")
        if started is not None:
            started(_started_text(target, said))
        return _outcome(target, child, err_r, said)
    _sync_start(child, tty or interactive, durable)
    if stdio.console is not None:
        stdio.master, stdio.console = received_master(stdio.console), None
        if stdio.master is None:  # E failed before its terminal: the error pipe says why
            return _reaped(target, child, err_r, done_r)
    stay = bool(options.get("stay"))
    try:
        _relay(stdio, child, interactive, options.get("detach_keys"), stay,
               int(options.get("resize_fd", -1)))
    except Detached:
        assert stdio.master is not None
        raise ExecDetached(_watcher(target, stdio.master, child, err_r, done_r, stay,
                                    before_fork)) from None
    return _reaped(target, child, err_r, done_r)


def _reaped(target: ExecTarget, child: int, err_r: int, done_r: int) -> int:
    """_outcome, J's exit code pipe closed only once J is reaped: J writes the code there
    after E ends, and a pipe with no reader kills it (SIGPIPE: 141). The pty's hang-up,
    which ends the relay, comes with E's end, before that write, now that J does not
    hold the terminal (E makes it)."""
    try:
        return _outcome(target, child, err_r)
    finally:
        if done_r >= 0:
            os.close(done_r)


def _sync_start(child: int, waits_for_us: bool, durable: Callable[[], None]) -> None:
    """`durable()` now, unless J (`child`) ends within START_SYNC_WITHIN: then the caller's
    record of its end takes its start to the disk with it. A process that may wait for our
    stdin or terminal is not waited for; one that writes more than a pipe holds meanwhile
    blocks until we relay, and so is synced after START_SYNC_WITHIN, like any long one."""
    import select

    if not waits_for_us:
        done = os.pidfd_open(child)
        try:
            if select.select([done], [], [], frames.START_SYNC_WITHIN)[0]:
                return  # ended (not reaped: _outcome does)
        finally:
            os.close(done)
    durable()


def _watcher(target: ExecTarget, master: int, child: int, err_r: int, done_r: int,
             stay: bool, before_fork: Callable[[], None]
             ) -> Callable[[Callable[[int], None]], int | None]:
    """ExecDetached's `watch`: a server's worker (`stay`: its client's connection is shut
    already) drains the pty and waits for J itself, records and returns the code (the
    API's exec inspect then shows it); the CLI's process leaves at once (None), a child of
    it that outlives it draining the pty and recording the code J wrote on `done_r`."""

    def watch(record: Callable[[int], None]) -> int | None:
        if stay:
            drain(master)
            os.close(done_r)
            code = _outcome(target, child, err_r)
            record(code)
            return code

        def behind() -> None:
            drain(master)
            said = os.read(done_r, 16)
            if said.strip().lstrip(b"-").isdigit():  # nothing: J was killed, code unknown
                record(int(said))

        before_fork()
        outlive(behind)
        for fd in (master, done_r, err_r):
            os.close(fd)
        return None

    return watch


def _started_text(target: ExecTarget, said: bytes) -> str:
    """`started`, or `CODE MESSAGE`: why the process could not start."""
    code, _, message = said.decode(errors="replace").partition(" ")
    if not said:
        return "started"
    if message.startswith(NOT_RUNNING):
        return f"{CANNOT_START} container {target.container_id[:12]} is not running"
    return f"{code} exec failed: {message}"


def _refused(target: ExecTarget, said: bytes, options: Mapping[str, Any],
             durable: Callable[[], None]) -> int:
    """What E says of a start it can't make (`CODE MESSAGE`), said before there is one: to
    a detached exec's `started`, and on stderr, as `_outcome` tells E's."""
    started = options.get("started")
    if options.get("detach") and started is not None:
        durable()
        started(_started_text(target, said))
    code, _, message = said.decode(errors="replace").partition(" ")
    sys.stderr.write(f"lamina: exec failed: {message}\n")
    return int(code)


def _no_stdio() -> Stdio:
    """exec -d: the process reads and writes /dev/null, as docker's detached exec."""
    null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
    return Stdio((null, null, null), {})


def _outcome(target: ExecTarget, child: int, err_r: int, said: bytes | None = None) -> int:
    """J's exit code once it ended, and what J or E wrote on the error pipe, if anything."""
    _, status = os.waitpid(child, 0)
    if said is None:
        said = os.read(err_r, 4096)
    message = said.decode(errors="replace").partition(" ")[2]
    os.close(err_r)
    code = os.waitstatus_to_exitcode(status)
    if message.startswith(NOT_RUNNING):
        return _not_running(target)
    if message:
        sys.stderr.write(f"lamina: exec failed: {message}\n")
    return 128 - code if code < 0 else code


def hold_init(target: ExecTarget) -> tuple[int, int]:
    """A pidfd on the container's init, checked to be that very process (checked after the
    pidfd is open, so the fd holds the process checked), and the setns flags of the
    namespaces it does not share with us. Raises OSError or NotJoinable."""
    if not target.cgroup_dirs:
        raise namespaces.NotJoinable("no cgroup")
    pidfd = os.pidfd_open(target.pid)
    try:
        if not is_init_of(target.pid, target.start_time, target.container_id):
            raise namespaces.NotJoinable("its pid is another process's now")
        theirs = _inodes_of(target.pid)
        return pidfd, namespaces.differing(theirs, _inodes_of("self"))
    except BaseException:
        os.close(pidfd)
        raise


def _inodes_of(pid: int | str) -> dict[str, int]:
    ns_dir = namespaces.open_ns_dir(pid)
    try:
        return namespaces.inodes(ns_dir)
    finally:
        os.close(ns_dir)


def _not_running(target: ExecTarget) -> int:
    sys.stderr.write(f"lamina: error: container {target.container_id[:12]} is not running\n")
    return CANNOT_START


def _own_std_fds() -> None:
    """Our fds 0-2 open (on /dev/null if they were closed), so that no pipe made next takes
    their numbers and our relay writes where it means to."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            os.open("/dev/null", os.O_RDWR)  # the lowest free number: this one


def _start_size(options: Mapping[str, Any]) -> tuple[int, int]:
    """The size an exec's terminal starts with: the API's ConsoleSize, else our own
    terminal's (the CLI's client's); (0, 0) for none."""
    given = options.get("console_size")
    if given:
        return int(given[0]), int(given[1])
    return window_size() or (0, 0)


def make_stdio(tty: bool, interactive: bool) -> Stdio:
    """With -t, a socket for E to send the master of the pty it makes in the container
    (_console); else pipes for stdout and stderr, and for stdin a pipe with -i or
    /dev/null without (docker's closed stdin). All close-on-exec until J moves them."""
    if tty:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        return Stdio(child=(theirs.detach(),) * 3, outputs={}, console=mine.detach())
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    if interactive:
        in_r, in_w = os.pipe()
        return Stdio((in_r, out_w, err_w), {out_r: 1, err_r: 2}, stdin=in_w)
    null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    return Stdio((null, out_w, err_w), {out_r: 1, err_r: 2})


def _relay(stdio: Stdio, child: int, interactive: bool, detach_keys: bytes | None = None,
           stay: bool = False, resize_fd: int = -1) -> None:
    if stdio.master is not None:
        proxy_pty(stdio.master, child, interactive, detach_keys, stay, resize_fd)
        return
    done = os.pidfd_open(child)
    try:
        PipeRelay(stdio.outputs, stdio.stdin).run(done)
    finally:
        os.close(done)


def _joiner(target: ExecTarget, pidfd: int, flags: int, required: int, stdio: Stdio,
            proc: ProcessSpec, err_w: int, seccomp: bytes | None, done_w: int) -> None:
    """J: never returns. The exit code is E's (written on `done_w` too, if there is
    one), or 126 with NOT_RUNNING on the error pipe. A session of its own first: never in
    our terminal's foreground group, which our end hangs up (a detached exec's J outlives
    us to pass its code on)."""
    try:
        os.setsid()
        # no longer dumpable (runc's rule; E inherits it until its exec): a container
        # process can't open our /proc files, /proc/E/exe (the host's python3) among them
        libc.prctl(libc.PR_SET_DUMPABLE, 0)
        _take_stdio(stdio)
        procs = [os.open(os.path.join(d, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)
                 for d in target.cgroup_dirs]  # opened in our mount namespace
        if target.root_ids is not None:  # imported while our files are still in reach
            from adapters.kernel.userns import become_root
        namespaces.join(pidfd, flags, required)
        if target.root_ids is not None:  # its root, not host root, from here on
            become_root()
        for fd in procs:  # allowed by who opened them
            os.write(fd, b"0")
            os.close(fd)
        if _exited(pidfd):
            raise namespaces.NotJoinable("its init exited")
        os.close(pidfd)
        child = os.fork()
    except BaseException as err:  # noqa: BLE001 - everything must reach the pipe
        fail(err_w, f"{NOT_RUNNING} {err}", CANNOT_START)
    if child == 0:
        _execer(proc, err_w, seccomp)
    os.close(err_w)
    _, status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)
    code = 128 - code if code < 0 else code
    if done_w >= 0:
        try:  # noqa: SIM105 - a watcher gone is no reason not to exit with the code
            os.write(done_w, str(code).encode())
        except OSError:
            pass
    os._exit(code)


def _take_stdio(stdio: Stdio) -> None:
    """The process's stdio onto our fds 0-2 (the caller's are gone from here on), and
    none of P's ends kept: a stdin pipe whose write end we held would never reach EOF."""
    for n, fd in enumerate(stdio.child):
        os.dup2(fd, n)
    for fd in {*stdio.child, *stdio.ours()}:
        os.close(fd)


def _exited(pidfd: int) -> bool:
    import select

    return bool(select.select([pidfd], [], [], 0)[0])


def _execer(proc: ProcessSpec, err_w: int, seccomp: bytes | None) -> None:
    """E: with -t its pty made in the container (_console); a session of its own, the pty
    its terminal; then the shared end."""
    try:
        if proc.tty:
            make_console(proc.console_size, bound=False)
        os.setsid()
        if proc.tty:
            import fcntl
            import termios

            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        ident = users.resolve(proc.user, group_add=proc.security.group_add)
    except BaseException as err:  # noqa: BLE001 - everything must reach the pipe
        fail(err_w, f"setup: {err}", CANNOT_START)
    exec_process(proc, ident, err_w, seccomp)
