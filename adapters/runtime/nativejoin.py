"""An exec's J and E as the native program adapters/runtime/joiner.c (the venv's
bin/lamina-join): finding it, what the command decides for it (the user, resolved in the
container's own files; the plan), and its start.

Why: J and E were forks of the command's ~45 MB Python process, E ran its setup in Python
and its exec tore that image down; started with posix_spawn (a vfork) the program does the
same in a fraction of the time (docs/benchmarks.md). Without it (a checkout not built with
`make`, or LAMINA_JOINER=python) exec forks J and E in Python as before: the same steps,
the same messages, which tests hold both to.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import sys
from collections.abc import Iterator, Sequence

from adapters.kernel import namespaces, security
from adapters.runtime import users
from core.process import ProcessSpec

PROGRAM = os.path.join(os.path.dirname(sys.executable), "lamina-join")
VERSION = "lamina-join 2"
TTY_NONE, TTY_CONSOLE, TTY_BOUND = 0, 2, 3  # joiner.h: the plan's terminal
# where the program finds what it is given (see joiner.c): stdio 0-2, then these
PIDFD, ERR, DONE, PLAN, CGROUPS = 3, 4, 5, 6, 7
_ABOVE = 64  # sources are moved up here first, so that no dup2 overwrites another's fd
_DEFAULT = [s for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP)]


# this process's sealed copy of PROGRAM (a memfd), once made: its fd, and its inode, so
# that a number a caller closed (exec -d's child closes all but its pipe) and reused for
# another file is never taken for it
_sealed: tuple[int, int, int] | None = None


def built() -> bool:
    """Whether the native program is built and not turned off (LAMINA_JOINER=python, for
    exec's joiner and a container's init alike)."""
    return os.environ.get("LAMINA_JOINER") != "python" and os.access(PROGRAM, os.X_OK)


def program() -> int | None:
    """The native joiner to start: a sealed copy of it (see `sealed`), if it is `built`."""
    return sealed() if built() else None


def held() -> set[int]:
    """The sealed copy's fd while this process holds it: a process that closes all its
    other descriptors (a spare monitor) keeps this one, which a start then needs."""
    if _sealed is None:
        return set()
    fd, dev, ino = _sealed
    with contextlib.suppress(OSError):
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) == (dev, ino):
            return {fd}
    return set()


def sealed() -> int:
    """A memfd holding a copy of PROGRAM, sealed against any write, made once per process
    (the fork server makes it before its first fork: its children share it).

    Why not the file itself: E runs the program inside the container until its exec, and
    a container process allowed to trace it (--cap-add SYS_PTRACE) could open /proc/E/exe
    then and, once no joiner runs it, write the host's binary through that descriptor:
    the next exec would run its code as the host's root (runc's CVE-2019-5736). A sealed
    memfd can't be written by anyone. Close-on-exec: nothing started keeps it."""
    global _sealed
    if _sealed is not None:
        fd, dev, ino = _sealed
        try:
            st = os.fstat(fd)
        except OSError:
            st = None
        if st is not None and (st.st_dev, st.st_ino) == (dev, ino):
            return fd
        _sealed = None
    src = os.open(PROGRAM, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fd = os.memfd_create("lamina-join", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        size, done = os.fstat(src).st_size, 0
        while done < size:
            done += os.sendfile(fd, src, done, size - done)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK
                    | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
    finally:
        os.close(src)
    st = os.fstat(fd)
    _sealed = (fd, st.st_dev, st.st_ino)
    return _sealed[0]


@contextlib.contextmanager
def container_files(pid: int, pidfd: int) -> Iterator[users.Reader]:
    """The container's files as its init sees them, for users.resolve: paths in its root
    (/proc/PID/root, each resolved inside it: its symlinks never lead to the host's), and
    its /proc/self's id maps (/proc/PID's). Opened while `pidfd`'s process still lives, so
    they are that process's and not a reused pid's."""
    root = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        proc = os.open(f"/proc/{pid}", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except BaseException:
        os.close(root)
        raise
    try:
        if select.select([pidfd], [], [], 0)[0]:
            raise namespaces.NotJoinable("its init exited")

        def read(path: str) -> str | None:
            if not path.startswith("/proc/self/"):
                return users.read_in_root(root, path)
            try:
                fd = os.open(path.removeprefix("/proc/self/"), os.O_RDONLY | os.O_CLOEXEC,
                             dir_fd=proc)
            except FileNotFoundError:
                return None
            try:
                return os.read(fd, 1 << 16).decode()
            finally:
                os.close(fd)

        yield read
    finally:
        os.close(proc)
        os.close(root)


def identity(pid: int, pidfd: int, proc: ProcessSpec) -> users.Identity:
    """The process's user, resolved in the container's /etc as E did inside it."""
    with container_files(pid, pidfd) as read:
        return users.resolve(proc.user, group_add=proc.security.group_add, read=read)


class Unstartable(ValueError):
    """A string execve would refuse (a NUL in it): E's exec step says so, exit 127."""


def plan(proc: ProcessSpec, ident: users.Identity, env: dict[str, str], *, flags: int,
         remapped: bool, cgroups: int, done: bool, seccomp: bytes | None,
         terminal: int = TTY_CONSOLE) -> bytes:
    """The program's plan: NUL-terminated fields in joiner.c's read_plan order, the
    compiled seccomp filter last. Unstartable for a NUL in a string (execve's refusal).
    `terminal`, with proc.tty: the pty the program makes in the container and sends over
    fd 0 (TTY_CONSOLE, an exec's; TTY_BOUND, a container's init's, on /dev/console too)."""
    sec = proc.security
    environ = [f"{k}={v}" for k, v in env.items()]
    tty = terminal if proc.tty else TTY_NONE
    rows, cols = proc.console_size if tty in (TTY_CONSOLE, TTY_BOUND) else (0, 0)
    fields: list[object] = [
        VERSION, flags, int(remapped), cgroups, int(done), tty, rows, cols, ident.uid,
        ident.gid, len(ident.groups), *ident.groups, security.caps_mask(sec.caps),
        int(sec.no_new_privs), len(proc.rlimits), *(n for row in proc.rlimits for n in row),
        proc.cwd, len(proc.argv), *proc.argv, len(environ), *environ,
        ":".join(os.get_exec_path(env)), len(seccomp or b"")]
    encoded = [os.fsencode(str(f)) for f in fields]
    if any(b"\0" in f for f in encoded):
        raise Unstartable("embedded null byte")
    return b"".join(f + b"\0" for f in encoded) + (seccomp or b"")


def open_cgroups(cgroup_dirs: Sequence[str]) -> list[int]:
    """The container's cgroup.procs files, opened here in the host's mount namespace for
    the program to write to (an OSError: the container is not running for this exec)."""
    fds: list[int] = []
    try:
        for d in cgroup_dirs:
            fds.append(os.open(os.path.join(d, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC))
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return fds


def spawn(program_fd: int, stdio: Sequence[int], pidfd: int, err_w: int, done_w: int,
          cgroups: Sequence[int], plan_bytes: bytes) -> int:
    """Start the program as exec's joiner with what it is given on its fds, in a session
    of its own: never in our terminal's foreground group, which our end hangs up (a
    detached exec's J outlives us to pass its code on); its pid. The `cgroups` fds
    (open_cgroups') are closed here, whatever happens."""
    given = {0: stdio[0], 1: stdio[1], 2: stdio[2], PIDFD: pidfd, ERR: err_w,
             **{CGROUPS + i: fd for i, fd in enumerate(cgroups)}}
    if done_w >= 0:
        given[DONE] = done_w
    return start(program_fd, "lamina-join", given, plan_bytes, setsid=True, closing=cgroups)


def start(program_fd: int, name: str, given: dict[int, int], plan_bytes: bytes, *,
          setsid: bool, closing: Sequence[int] = ()) -> int:
    """posix_spawn the program (a vfork: nothing of this process copied) with each fd of
    `given` at its number, the plan at PLAN, every signal at its default and none
    blocked; its pid. `closing` is closed here, whatever happens."""
    opened: list[int] = list(closing)
    try:
        memfd = plan_file(name, plan_bytes)
        opened.append(memfd)
        actions = []
        for target, fd in {**given, PLAN: memfd}.items():
            high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, _ABOVE)
            opened.append(high)
            actions.append((os.POSIX_SPAWN_DUP2, high, target))
        # started by a number no dup2 above lands on (they all go below _ABOVE)
        exe = fcntl.fcntl(program_fd, fcntl.F_DUPFD_CLOEXEC, _ABOVE)
        opened.append(exe)
        return os.posix_spawn(f"/proc/self/fd/{exe}", [name], {}, file_actions=actions,
                              setsigdef=_DEFAULT, setsigmask=(), setsid=setsid)
    finally:
        for fd in opened:
            os.close(fd)


def plan_file(name: str, plan_bytes: bytes) -> int:
    """A memfd holding the plan, for the program to find at PLAN (close-on-exec here)."""
    memfd = os.memfd_create(f"{name}-plan", os.MFD_CLOEXEC)
    try:
        view = memoryview(plan_bytes)
        while view:
            view = view[os.write(memfd, view):]
    except BaseException:
        os.close(memfd)
        raise
    return memfd
