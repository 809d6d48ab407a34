"""A container's monitor forked ahead by the CLI's fork server, handed the job of a plain
start instead of the start forking one.

Why: a served start forked its monitor from the command's child, a ~45 MB process: ~3 ms
of page tables in the fork, then ~1,100 copy-on-write faults (~4 ms) in what the command
ran next (the union view's mount, the start's record) while the monitor made its PID
namespace and forked init beside it, each on the client's clock. A spare is forked by the
server ahead of the start that takes it, with its PID namespace made, and waits.

How: the server (`keep`, at its start, as each child takes a client and after each of its
commands ends, as it keeps a container's cgroup ready) makes one spare that is no child of
the server (whose loop reaps only its commands): where the server's parent is init (a
server a client started, or systemd's), cloned as init's child directly (CLONE_PARENT);
elsewhere forked through a child that exits at once, so that init adopts it, as a monitor
forked by a command always was. The spare listens on `/run/lamina/spares/<the server's
stamp>.sock` (a 0700 directory of root's), named so only once it listens. A start in one of
the server's commands whose monitor would be plain (no --userns-remap, its own PID
namespace) claims it by renaming that file (one taker wins), connects, and sends the job:
the MonitorJob, its descriptors, the command's environment and umask. The connection is
then the start's control socket, as the socketpair was. Anything else, or no spare (a start
beside took it, the next is not made yet, no server), forks a monitor as before.

An unclaimed spare also watches its server (a pidfd): when the server ends, killed
outright or not, it unlinks its file and exits. `release` (the server's stop) claims and
kills it first; `sweep` (each server's start) removes files left by servers that died
with their spare.
"""

from __future__ import annotations

import array
import contextlib
import dataclasses
import os
import pickle
import select
import signal
import socket
from collections.abc import Mapping

from adapters.fastpath.peer import adopt_limits, peer_of
from adapters.kernel import libc, proc
from adapters.runtime import frames, nativejoin
from adapters.runtime.init import InitPlan
from adapters.runtime.monitor import MonitorJob, name_process

DIR = "/run/lamina/spares"
SPARE_NAME = "lamina-spare"  # its name in ps -e and top until a start is handed to it
MAX_FDS = 64  # descriptors one job may bring (its subpath holds, view word, netns)

_path: str | None = None  # the spare this fork server keeps; its children inherit the name
_pid = 0  # and its pid (the server's, to kill it at its stop)
_pending: tuple[int, int] | None = None  # the child between and the word's pipe, until it comes


@dataclasses.dataclass
class Handed:
    """What a start sends its spare besides the descriptors themselves."""

    job: MonitorJob
    fds: tuple[int, ...]  # the sender's numbers of the descriptors that come with it
    env: dict[str, str]
    umask: int


def path_for(stamp: str) -> str:
    return os.path.join(DIR, f"{stamp}.sock")


# --- in the fork server -----------------------------------------------------------------


def keep() -> None:
    """Fork a spare unless the one kept is still unclaimed (one stat) or still getting
    ready. The server does not wait for it (~5 ms of forks and set-up, beside the next
    command): the name is known ahead (its stamp's), and a start that comes before the
    spare listens there forks its own monitor."""
    global _path, _pid, _pending
    if _pending is not None and not _settled(block=False):
        return
    if _path is not None and os.path.exists(_path):
        return
    _path, _pid = None, 0
    try:
        os.makedirs(DIR, mode=0o700, exist_ok=True)
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    except OSError:
        return
    server, path = os.getpid(), path_for(proc.stamp())
    try:
        child = _beside(path, ready_r, ready_w) if os.getppid() == 1 else 0
        if child == 0:
            child = os.fork()
            if child == 0:
                _between(server, path, ready_r, ready_w)
    except OSError:
        os.close(ready_r)
        os.close(ready_w)
        return
    os.close(ready_w)
    os.set_blocking(ready_r, False)
    _path, _pending = path, (child, ready_r)


def _beside(path: str, ready_r: int, ready_w: int) -> int:
    """The spare cloned as a child of the server's parent, init (CLONE_PARENT), which reaps
    it as it reaps an orphan: one fork of the server where _between makes two and an exit
    (each fork of the ~45 MB server copies its page tables, ~3 ms of CPU, and each exit
    tears them down: docs/benchmarks.md). Its pid, or 0 where a raw clone can't be made
    (a thread in the server: userns.clone refuses), and _between does it."""
    from adapters.kernel import userns

    watch = os.pidfd_open(os.getpid())  # opened ahead: the spare never watches a stranger
    try:
        child = userns.clone(CLONE_PARENT)
    except userns.UsernsError:
        os.close(watch)
        return 0
    if child == 0:
        os.close(ready_r)
        _spare(watch, path, ready_w)
    os.close(watch)
    return child


CLONE_PARENT = 0x00008000


def _settled(block: bool) -> bool:
    """Whether the spare being made has said it listens (its pid) or died; with `block`,
    waits for either. The child between is reaped once it has ended."""
    global _path, _pid, _pending
    assert _pending is not None
    child, ready_r = _pending
    if block:
        os.set_blocking(ready_r, True)
    try:
        word = frames.read_to_end(ready_r)
    except BlockingIOError:
        return False
    with contextlib.suppress(ChildProcessError):  # (a spare cloned beside is no child)
        os.waitpid(child, 0)  # it forked the spare and exited: long done
    os.close(ready_r)
    _pending = None
    if len(word) == 4:
        _pid = int.from_bytes(word, "big")
    else:
        _path = None
    return True


def release() -> None:
    """As the server stops: its unclaimed spare goes (claimed first, so no start takes a
    spare being killed)."""
    global _path, _pid
    if _pending is not None:
        _settled(block=True)
    taken = _claim(_path) if _path is not None else None
    if taken is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(_pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.unlink(taken)
    _path, _pid = None, 0


def sweep() -> None:
    """Remove the files of spares whose server is gone (a spare killed with its server)."""
    try:
        names = os.listdir(DIR)
    except OSError:
        return
    for name in names:
        stamp = ".".join(name.split(".")[:2])
        if not proc.stamp_alive(stamp):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(DIR, name))


# --- in a start ---------------------------------------------------------------------------


def hand(job: MonitorJob, fds: tuple[int, ...]) -> socket.socket | None:
    """The server's spare monitor given `job` (its descriptors `fds` go with it), as the
    start's control socket; None if there is none to take or it can't be used: the
    caller forks a monitor."""
    if _path is None or not _portable(job.plan, fds) or len(fds) > MAX_FDS:
        return None
    taken = _claim(_path)
    if taken is None:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(taken)
        payload = pickle.dumps(Handed(job, fds, dict(os.environ), _umask()))
        sock.sendmsg([len(payload).to_bytes(4, "big")],
                     [(socket.SOL_SOCKET, socket.SCM_RIGHTS, _ints(fds))] if fds else [])
        sock.sendall(payload)
    except OSError:  # its server ended meanwhile, and it with it
        sock.close()
        return None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(taken)
    return sock


def _claim(path: str) -> str | None:
    """The spare's file renamed to a name of this process's (the claim), or None."""
    taken = f"{path}.taken.{os.getpid()}"
    try:
        os.rename(path, taken)
    except OSError:
        return None
    return taken


def _portable(plan: InitPlan, fds: tuple[int, ...]) -> bool:
    """Whether every descriptor the plan names comes with it, and its monitor would be
    plain: a remapped one is cloned into a user namespace, a --pid host one makes no PID
    namespace (the spare has made one)."""
    if plan.idmap is not None or plan.spec.security.pid == "host" or plan.cgroup_fds:
        return False
    return set(_fds_of(plan)) <= set(fds)


def _fds_of(plan: InitPlan) -> list[int]:
    named = [plan.go_fd, plan.netns_fd, *(s for _, s in plan.mounts if isinstance(s, int)),
             *(v for v in plan.files.values() if isinstance(v, int)),
             *(v for v in plan.dev_sources.values() if isinstance(v, int))]
    return [fd for fd in named if fd >= 0]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _ints(fds: tuple[int, ...]) -> bytes:
    return array.array("i", fds).tobytes()


# --- in the spare ---------------------------------------------------------------------------


def _between(server: int, path: str, ready_r: int, ready_w: int) -> None:
    """The child that forks the spare and exits, so that the spare is nobody's child."""
    code = 1
    try:
        os.close(ready_r)
        watch = os.pidfd_open(server)
        if os.getppid() == server:  # else it died before the pidfd: a stranger's
            if os.fork() == 0:
                _spare(watch, path, ready_w)
            code = 0
    finally:
        os._exit(code)


def _spare(server: int, path: str, ready_w: int) -> None:
    """Get ready as a monitor does first, listen, say so, then wait for a start or for
    the server's end."""
    code = 1
    try:
        os.setsid()
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        proc.close_all_but({server, ready_w, *nativejoin.held()})  # a native init's program
        devnull = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            if fd != devnull:
                os.dup2(devnull, fd)
        if devnull > 2:
            os.close(devnull)
        os.chdir("/")
        name_process(SPARE_NAME)
        libc.unshare(libc.CLONE_NEWPID)  # its next child, init, is PID 1 of a namespace
        listener = _listen(path)
        os.write(ready_w, os.getpid().to_bytes(4, "big"))
        os.close(ready_w)
        code = _wait(listener, server, path)
    finally:
        os._exit(code)


def _listen(path: str) -> socket.socket:
    staged = f"{path}.{os.getpid()}.new"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(staged)
    listener.listen(1)
    os.rename(staged, path)  # named only once it listens: a taker's connect never fails
    return listener


def _wait(listener: socket.socket, server: int, path: str) -> int:
    poller = select.poll()
    poller.register(listener, select.POLLIN)
    poller.register(server, select.POLLIN)
    while True:
        ready = dict(poller.poll())
        if server in ready:  # the server ended: nobody will take it
            with contextlib.suppress(OSError):
                os.unlink(path)
            return 0
        conn, _ = listener.accept()
        start, uid = peer_of(conn)
        if uid in (0, os.getuid()):
            break
        conn.close()
    listener.close()
    os.close(server)
    handed, fds = _receive(conn)
    if not adopt_limits(start):  # the command's (its client's): its container inherits them
        frames.send(conn, frames.REPORT, b"failed 125 monitor: cannot take the starting "
                                         b"command's resource limits")
        return 1
    return _run(handed, fds, conn)


def _receive(conn: socket.socket) -> tuple[Handed, list[int]]:
    head, fds = b"", []
    while len(head) < 4:
        data, ancdata, _flags, _addr = conn.recvmsg(4 - len(head),
                                                    socket.CMSG_SPACE(MAX_FDS * 4))
        if not data:
            raise EOFError("the start hung up before its job came")
        head += data
        for level, kind, cdata in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                got = array.array("i")
                got.frombytes(cdata[:len(cdata) - len(cdata) % got.itemsize])
                fds += got.tolist()
    size, payload = int.from_bytes(head, "big"), b""
    while len(payload) < size:
        chunk = conn.recv(size - len(payload))
        if not chunk:
            raise EOFError("the start hung up before its job came")
        payload += chunk
    return pickle.loads(payload), fds  # noqa: S301 - a root peer's, checked above


def _run(handed: Handed, fds: list[int], conn: socket.socket) -> int:
    """Become the start's monitor: its environment and umask, its descriptors under the
    numbers its plan has here."""
    from adapters.runtime import monitor

    proc.take_environment(handed.env)
    os.umask(handed.umask)
    moved = dict(zip(handed.fds, fds, strict=True))
    job = dataclasses.replace(handed.job, plan=renumbered(handed.job.plan, moved))
    return monitor.run(job, conn, tuple(fds), pid_namespace_made=True)


def renumbered(plan: InitPlan, moved: Mapping[int, int]) -> InitPlan:
    """The plan with each descriptor it names under its number in this process."""
    def fd(value: int) -> int:
        return moved[value] if value >= 0 else value

    def either(value: str | int) -> str | int:
        return fd(value) if isinstance(value, int) else value

    return dataclasses.replace(
        plan, go_fd=fd(plan.go_fd), netns_fd=fd(plan.netns_fd),
        mounts=[(point, either(source)) for point, source in plan.mounts],
        files={inside: either(v) for inside, v in plan.files.items()},
        dev_sources={p: either(v) for p, v in plan.dev_sources.items()})
