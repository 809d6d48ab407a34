"""Starting a process in a new user namespace whose maps its parent writes first.

Why the parent writes them: a process in a fresh user namespace has no mapping yet, and
only a process privileged in the parent namespace (lamina, host root) may map it onto a
subordinate range. So the child must wait until the parent has written uid_map and gid_map
(and, for a container, put it into its cgroups, which the remapped child could no longer
do), then become root of its namespace and go on.

Two ways, both here (`Method`), measured in /work/notes/userns-design.md:

- CLONE: one raw clone(2) with CLONE_NEWUSER|CLONE_NEWPID (and whatever else is asked).
  The kernel makes the user namespace first, so the new PID namespace is owned by it, which
  the container's root needs to mount /proc; the child is PID 1 and a direct child of the
  caller (the monitor stays init's parent and learns its exit status). Python's fork hooks
  run around it as os.fork() runs them, and the syscall is made holding the GIL (PyDLL).
  Only a single-threaded process may do it: glibc's own fork bookkeeping (malloc locks,
  atfork handlers) is skipped, harmless only when no other thread can hold those locks.
- FORK: os.fork(), the child unshare()s, then tells the parent it is ready. unshare of a
  PID namespace applies to the caller's *children*, so with CLONE_NEWPID the child must
  fork again for PID 1 and stay to pass its exit status on: one more process and one more
  round trip, and the PID 1 is a grandchild.
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import os
import signal
from collections.abc import Callable

from adapters.kernel import libc
from adapters.kernel.idmap import IdMap, write_maps

SYS_CLONE = 56  # x86_64
_SIGCHLD = 17

_pylibc = ctypes.PyDLL("libc.so.6", use_errno=True)  # PyDLL: the GIL stays held
_api = ctypes.pythonapi


class UsernsError(OSError):
    """The process could not be started in its user namespace; the message says why."""


class Method(enum.Enum):
    CLONE = "clone"
    FORK = "fork"


def thread_count() -> int:
    return len(os.listdir("/proc/self/task"))


def clone(flags: int) -> int:
    """clone(2) without a new stack: fork's semantics plus namespace `flags`. Returns 0 in
    the child, its pid in the parent. Refused in a process with more than one thread."""
    if thread_count() != 1:
        raise UsernsError(0, "a raw clone needs a single-threaded process "
                             f"({thread_count()} threads)")
    _api.PyOS_BeforeFork()
    pid = _pylibc.syscall(ctypes.c_long(SYS_CLONE), ctypes.c_long(flags | _SIGCHLD),
                          ctypes.c_long(0), ctypes.c_long(0), ctypes.c_long(0),
                          ctypes.c_long(0))
    if pid == 0:
        _api.PyOS_AfterFork_Child()
        return 0
    err = ctypes.get_errno()
    _api.PyOS_AfterFork_Parent()
    if pid < 0:
        raise UsernsError(err, f"clone: {os.strerror(err)}")
    return pid


def become_root() -> None:
    """Take uid and gid 0 of the (mapped) user namespace, with no supplementary groups.

    Until then the process keeps the host's ids, which the map does not cover: it shows as
    the overflow uid (65534) and could create no file (EOVERFLOW)."""
    os.setresgid(0, 0, 0)
    os.setgroups([])
    os.setresuid(0, 0, 0)


def spawn(idmap: IdMap, run: Callable[[], int],
          flags: int = libc.CLONE_NEWUSER | libc.CLONE_NEWPID,
          method: Method = Method.CLONE,
          prepare: Callable[[int], None] | None = None) -> int:
    """Start `run` as root of a new user namespace mapped by `idmap`; returns the pid to
    wait for, whose exit status is run's return value (127 if it raised).

    `flags` must include CLONE_NEWUSER; the other namespaces in it are owned by the new
    user namespace. `prepare(pid)` runs in the parent after the maps are written and before
    the child goes on (for the monitor: join the child to the container's cgroups). If
    either fails, the child is killed and reaped, and the error raised here."""
    if not flags & libc.CLONE_NEWUSER:
        raise UsernsError(0, "spawn needs CLONE_NEWUSER in its flags")
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    if method is Method.CLONE:
        pid = _spawn_clone(flags, go_r, go_w, run)
    else:
        pid = _spawn_fork(flags, go_r, go_w, run)
    try:
        write_maps(pid, idmap)
        if prepare is not None:
            prepare(pid)
        os.write(go_w, b"g")
    except BaseException:
        _kill(pid)
        raise
    finally:
        os.close(go_w)
    return pid


def _spawn_clone(flags: int, go_r: int, go_w: int, run: Callable[[], int]) -> int:
    try:
        pid = clone(flags)
    except BaseException:
        os.close(go_r)
        os.close(go_w)
        raise
    if pid == 0:
        os.close(go_w)
        _child(go_r, run)
    os.close(go_r)
    return pid


def _spawn_fork(flags: int, go_r: int, go_w: int, run: Callable[[], int]) -> int:
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os.close(go_w)
        os.close(ready_r)
        _middle(flags, go_r, ready_w, run)
    os.close(go_r)
    os.close(ready_w)
    try:
        ready = os.read(ready_r, 64)
    finally:
        os.close(ready_r)
    if ready != b"r":
        os.close(go_w)
        _kill(pid)
        raise UsernsError(0, f"the child could not unshare: {ready.decode(errors='replace')}")
    return pid


def _middle(flags: int, go_r: int, ready_w: int, run: Callable[[], int]) -> None:
    """The FORK method's child: unshare, report, then run (or fork PID 1 and wait for it)."""
    try:
        libc.unshare(flags)
    except OSError as err:
        os.write(ready_w, str(err).encode())
        os._exit(1)
    os.write(ready_w, b"r")
    os.close(ready_w)
    if not flags & libc.CLONE_NEWPID:
        _child(go_r, run)
    if os.read(go_r, 1) != b"g":
        os._exit(1)
    os.close(go_r)
    pid = os.fork()
    if pid == 0:
        _child(-1, run)
    status = os.waitpid(pid, 0)[1]
    code = os.waitstatus_to_exitcode(status)
    os._exit(128 - code if code < 0 else code)


def _child(go_r: int, run: Callable[[], int]) -> None:
    """Wait for the parent's go (unless already given), become root, run; never returns."""
    code = 127
    try:
        if go_r >= 0:
            if os.read(go_r, 1) != b"g":
                os._exit(1)  # the parent failed (or died) before the maps were written
            os.close(go_r)
        become_root()
        code = run()
    except BaseException as err:  # noqa: BLE001 - a child must never unwind into the caller
        _report(err)
    os._exit(code)


def _report(err: BaseException) -> None:
    """Best effort: the child's error on its stderr, one line."""
    with contextlib.suppress(OSError):
        os.write(2, f"userns child: {err}\n".encode())


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
