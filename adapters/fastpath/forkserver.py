"""The fork server: a resident, single-threaded process with lamina already imported, that
keeps children forked ahead, each of which runs CLI commands (`lamina serve` starts it;
client.py talks to it).

Why a fork server and not threads: a command's child forks the container's monitor and
init, which run Python before they exec; fork() is only safe from a process with one
thread. Why children: every command then runs exactly the code it runs without a server
(adapters.cli.run), in a process of its own, with its own SQLite connection; the server
holds none (a connection must never cross a fork) and no state besides imported modules.
A child whose command left nothing behind (no descriptor, thread, child process, signal
handler, limit, namespace or credential changed: reuse.py) takes the next command instead
of exiting, once its client has gone; any other ends, and the server forks anew.
What it imports, prepares and runs is the CLI's to say (Commands: adapters/cli/app.Served):
this package knows no command, and the CLI that starts it is the only one to import it.

Protocol on `<root>/cli.sock` (mode 0600): the client sends a 4-byte big-endian length and
its request (client.encode_request) with its fds 0, 1, 2 attached (SCM_RIGHTS);
the server answers the child's pid (4 bytes) at once and its exit code (4 bytes) when it
ends; instead of a pid, RUN_HERE (0) tells the client to run the command itself (its
namespaces, credentials or limits are not the server's: peer.py) and REFUSED (-1) that it
may not use this server. Only root or the server's own uid may connect (SO_PEERCRED); the
child records the client's uid and pid in every event's meta, not its own.

Who serves a root: the process holding a record lock on <root>/cli.pid (claim, holder), be
it the server a client started (adapters/cli/served.py --ready-fd, the auto-start) or the
one `lamina serve` forks; whoever starts one holds <root>/cli.start (flock) meanwhile, so
two commands that find no server start one between them.
"""

from __future__ import annotations

import contextlib
import gc
import os
import select
import selectors
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from adapters.fastpath import hotpages, reuse
from adapters.fastpath.client import CLI_LOCK, REFUSED, RUN_HERE, SOCKET_NAME
from adapters.fastpath.peer import View, peer_of, runs_like, view_of
from adapters.kernel import proc
from core.errors import Conflict

MAX_REQUEST = 1 << 20
WATCH_EVERY = 2.0  # seconds between two looks of a watched server at its socket and code
HOT_EVERY = 1.0  # seconds: how often a command's child lists its pages for the spares
# Children kept forked ahead. Two: a spare needs a few ms after its fork to get ready (the
# root's log opened, its live containers read, its pages taken ahead), and a command that
# follows another at once (a script's pause then unpause) found the one forked for it not
# yet accepting, waiting out the rest; with two, one is ready while the other gets ready.
SPARES = 2
# The second of them is forked only once one has been short this long: a child whose command
# is over comes back as a spare within a few ms (reuse.py; a `run --rm` after its deletions),
# and back-to-back commands then run with no fork at all. The first is never waited for.
SECOND_AFTER = 0.05
HOT = b"H"  # a message on ctl that lists them (hotpages.py), not a taken connection
BACK = b"B"  # a message on ctl: a child whose command is over may serve another (reuse.py)
HANG_UP_WITHIN = 2.0  # seconds a child waits for its client to go before it serves another


class Commands(Protocol):
    """What the server runs, handed in by whoever starts it (the CLI: adapters/cli/app.Served)."""

    serves_again: bool  # whether a child whose command is over may take another (reuse.py)

    def warm(self) -> None:
        """In the server, once: import what commands need and build what they build first."""

    def prepare(self, root: str) -> None:
        """In the spare, while no client waits: what every command of `root` does first."""

    def run(self, argv: list[str], peer: dict[str, int]) -> int:
        """In the command's child, with the client's stdio, environment and directory: run
        `argv` for the client `peer` (its uid and pid) and return the exit code."""

    def finish(self) -> None:
        """In the command's child, once the client has its exit code and its stdio is let
        go: the work the command left for after the answer."""

    def done(self, pid: int) -> None:
        """In the server, once its child `pid` (a spare or a command's) is reaped, takes a
        client, or its command is over: make again what the server keeps for its commands,
        if a command took it."""

    def stopped(self) -> None:
        """In the server, once it serves no more: remove what it kept for its commands."""
def socket_path(root: str) -> str:
    return os.path.join(root, SOCKET_NAME)


def warm(commands: Commands) -> None:
    """Import what commands need, once (Commands.warm), then keep it out of the collector's
    reach."""
    commands.warm()
    # Children share the server's memory copy-on-write; a garbage collection in a child
    # would walk (and so copy) every object the server holds. Freeze them out of its reach.
    gc.collect()
    gc.freeze()


@dataclass
class _Job:
    """A forked child: the spare waiting for a client, or a command being run."""

    pid: int
    pidfd: int
    reply: socket.socket  # the server's answer to the child's BACK: the listener, or none
    conn: socket.socket | None = None  # the client's connection, once the child took one


@dataclass
class Request:
    argv: list[str]
    cwd: str
    umask: int
    env: dict[str, str]


def decode_request(payload: bytes) -> Request:
    fields = payload.decode("utf-8", "surrogateescape").split("\0")
    cwd, umask, argc = fields[0], int(fields[1]), int(fields[2])
    argv = fields[3:3 + argc]
    env = dict(item.partition("=")[::2] for item in fields[3 + argc:] if "=" in item)
    return Request(argv=argv, cwd=cwd, umask=umask, env=env)


def _receive(conn: socket.socket) -> tuple[Request, list[int]]:
    """The request and the client's three stdio fds; ValueError on anything malformed."""
    conn.settimeout(5)  # a client that connects and says nothing must not stall the server
    fds: list[int] = []
    data, ancdata, _flags, _addr = conn.recvmsg(65536, socket.CMSG_SPACE(3 * 4))
    for level, kind, cdata in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(cdata) - len(cdata) % 4
            fds += list(struct.unpack(f"{usable // 4}i", cdata[:usable]))
    if len(data) < 4 or len(fds) != 3:
        _close_all(fds)
        raise ValueError("malformed request")
    size = int.from_bytes(data[:4], "big")
    if size > MAX_REQUEST:
        _close_all(fds)
        raise ValueError("request too large")
    payload = data[4:]
    while len(payload) < size:
        chunk = conn.recv(size - len(payload))
        if not chunk:
            _close_all(fds)
            raise ValueError("truncated request")
        payload += chunk
    conn.settimeout(None)
    return decode_request(payload), fds


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


# --- one server per root, and only our own sockets removed ----------------------------


def unlink_stale(path: str) -> None:
    """Remove the socket file at `path` only when it is a dead server's leftover (nobody
    listens: connection refused); a server that answers, or anything else at that path, is
    a Conflict (fail closed: never remove what might be in use, nor what is no socket)."""
    import stat

    try:
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise Conflict(f"{path} exists and is not a socket")
    except FileNotFoundError:
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    except FileNotFoundError:
        return
    except OSError as err:
        raise Conflict(f"{path} is in use by another server ({err})") from None
    finally:
        probe.close()
    raise Conflict(f"{path} is in use by another server")


def file_id(path: str) -> tuple[int, int] | None:
    """(device, inode) of the file at `path`: which socket file is there now."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def unlink_own(path: str, mine: tuple[int, int] | None) -> None:
    """Remove the socket file we bound, and only it: another server may have replaced a
    file we lost (it answered nobody), and its socket is not ours to remove."""
    if mine is not None and file_id(path) == mine:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


SERVE_LOCK = "serve.pid"


def claim(root: str, name: str = SERVE_LOCK) -> int:
    """One `lamina serve` (name serve.pid), one fork server (cli.pid) per root: a POSIX
    record lock on <root>/<name>, held by this process until it exits or closes the fd (the
    kernel drops it even on SIGKILL, so there is no stale lock to clean up). Record locks
    are per process, so the processes it forks never hold it; and any close of that file
    by the holder drops it: the holder must not open it again (holder() is for others).
    Returns the lock file's fd, to keep open; Conflict naming the holder's pid when another
    holds it."""
    import fcntl

    os.makedirs(root, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(root, name), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        pid = _holder(fd)
        os.close(fd)
        what = "lamina serve" if name == SERVE_LOCK else "a fork server"
        raise Conflict(f"{what} is already running for {root}, pid {pid}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


_FLOCK = "hhqqi4x"  # struct flock on Linux: l_type, l_whence, l_start, l_len, l_pid


def holder(root: str, name: str = CLI_LOCK) -> int | None:
    """The pid of the process holding <root>/<name>'s lock (claim), None when nobody does;
    asked of the kernel (F_GETLK), which takes no lock. Not for the holder itself."""
    import fcntl

    try:
        fd = os.open(os.path.join(root, name), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        query = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        kind, _, _, _, pid = struct.unpack(_FLOCK, fcntl.fcntl(fd, fcntl.F_GETLK, query))
    finally:
        os.close(fd)
    return None if kind == fcntl.F_UNLCK else pid


def stop_server(root: str, wait: float = 20.0, only: int | None = None,
                gone: bool = False) -> int | None:
    """Ask the fork server serving `root` (if any; `only`: if it is that process) to stop,
    and wait until it has let go of the socket; its commands in flight finish on their
    own. With `gone`, wait until the server has exited too, its commands reaped: for a
    caller about to remove the root, which they may still write to until then. The pid
    asked, or None. Conflict when it still serves (or, `gone`, runs) after `wait` s."""
    pid = holder(root)
    if pid is None or pid <= 0 or only not in (None, pid):
        return None
    exited = _pidfd(pid) if gone else None
    try:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + wait
        while holder(root) == pid:
            if time.monotonic() > deadline:
                raise Conflict(f"the fork server of {root} (pid {pid}) did not stop")
            time.sleep(0.02)
        if exited is not None and not select.select(
                [exited], [], [], max(0.0, deadline - time.monotonic()))[0]:
            raise Conflict(f"the fork server of {root} (pid {pid}) did not exit")
    finally:
        if exited is not None:
            os.close(exited)
    return pid


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return None


START_LOCK = "cli.start"


@contextlib.contextmanager
def starting(root: str) -> Iterator[None]:
    """Held while a fork server for `root` is being started (the clients take the same
    flock on <root>/cli.start before starting one): one starter at a time."""
    import fcntl

    fd = os.open(os.path.join(root, START_LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _holder(fd: int, wait: float = 1.0) -> str:
    """The pid the lock's holder wrote (it writes just after locking: wait a moment)."""
    deadline = time.monotonic() + wait
    while True:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        if text.isdigit() or time.monotonic() > deadline:
            return text or "unknown"
        time.sleep(0.02)


class ForkServer:
    """Keeps spare children forked ahead of time (SPARES), blocked in accept(): a command
    starts in a process that is already forked, so the fork is not on the client's clock. (Also
    walking every object in the spare, to take the copy-on-write faults early, was
    measured: it cost more CPU, beside the next client, than it saved.)
    The spare hands the server a copy of the connection it took (over `ctl`), the server
    forks the next spare, and reaps the command's child: the child sends its own exit
    code; the server answers for it only if it was killed by a signal."""

    def __init__(self, root: str, commands: Commands, path: str | None = None,
                 listener: socket.socket | None = None) -> None:
        """`listener`: a socket already listening (one systemd passed: LISTEN_FDS), served
        as it is and never unlinked; else bind() makes <root>/cli.sock."""
        self.root = root
        self.commands = commands
        self.path = path or socket_path(root)
        self.sel = selectors.DefaultSelector()
        self.listener: socket.socket | None = listener
        self.ctl, self._spare_ctl = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.jobs: dict[int, _Job] = {}  # by pid
        self.spares: dict[int, _Job] = {}  # by pid: forked, no command taken yet
        self.stopping = False
        self.bound: tuple[int, int] | None = None  # the socket file we made (file_id)
        self.lock: int | None = None  # <root>/cli.pid's claim, dropped when we stop serving
        self.watch: Callable[[], str | None] | None = None  # why to stop, looked at now and then
        self.view: View | None = view_of("self")  # what a client must share (peer.py)
        self._next_look = 0.0
        self.hot = b""  # the pages the last listing child took (hotpages.py): spares take them
        self._hot_at = -HOT_EVERY  # when that list came
        self._list_hot = True  # whether the next spare lists its pages when its command ends
        self._reply: socket.socket | None = None  # a child's end of its _Job.reply
        self._short_since: float | None = None  # since when fewer than SPARES wait (_short_for)
        self.sel.register(self.ctl, selectors.EVENT_READ)
        self._wakeup, self._wakeup_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.sel.register(self._wakeup, selectors.EVENT_READ)

    def bind(self) -> None:
        """Listen on the socket; one another server answers on is refused (Conflict).

        Bound under a name of its own and renamed into place once it listens: a socket
        file that is there but not yet listening refuses a client's connect, and a
        refused client starts a server of its own, which stops this one (served.started)."""
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        unlink_stale(self.path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        staged = f"{self.path}.{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staged)  # a server of this pid before a reboot
        old = os.umask(0o177)
        try:
            listener.bind(staged)
        finally:
            os.umask(old)
        try:
            listener.listen(64)
            os.rename(staged, self.path)
        except BaseException:
            listener.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(staged)
            raise
        self.listener = listener
        self.bound = file_id(self.path)

    def close(self) -> None:
        """Stop taking commands: the socket goes, commands in flight stay; the claim on
        cli.pid goes with the socket (a successor may start while they finish).

        Each child waiting for a client is told to leave by the end of its reply socket
        (_wait_for_client), and leaves unless a client came first. Which child is a spare
        is the child's to know: one that has just taken a client says so on `ctl`, and a
        server busy elsewhere (done() forking a spare monitor under load) may not have read
        that yet. Killing the ones the server still listed as spares killed such a command
        after its answer, amid its deferred deletions (adapters/deferred.py), and left them
        under <root>/tmp. The listening socket itself is left as it is: systemd may hold it
        too (lamina.socket), and polls it to start the next server."""
        if self.listener is not None:
            self.listener.close()
            self.listener = None
            unlink_own(self.path, self.bound)
        if self.lock is not None:
            os.close(self.lock)
            self.lock = None
        for job in self.jobs.values():
            with contextlib.suppress(OSError):
                job.reply.shutdown(socket.SHUT_WR)

    def serve_forever(self) -> None:
        """Serve until `stop()`; then reap the commands in flight and return."""
        while True:
            if self.stopping and self.listener is not None:
                self.close()
            if self.listener is None and not self.jobs:
                return
            while self.listener is not None and len(self.spares) < SPARES and \
                    (not self.spares or self._short_for() >= SECOND_AFTER):
                self._fork_spare()
            if self.watch is not None and self.listener is not None:
                self._look()
            for key, _ in self.sel.select(self._timeout()):
                if key.fileobj is self.ctl:
                    self._taken()
                elif key.fileobj is self._wakeup:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wakeup, 512)
                else:
                    self._reap(key.data)

    def _short_for(self) -> float:
        """How long the server has kept fewer than SPARES spares (0 when it has them)."""
        if len(self.spares) >= SPARES:
            self._short_since = None
            return 0.0
        if self._short_since is None:
            self._short_since = time.monotonic()
        return time.monotonic() - self._short_since

    def _timeout(self) -> float | None:
        """The select's: until the second spare is due, or the next look of the watch."""
        waits = [WATCH_EVERY] if self.watch else []
        if self.listener is not None and 0 < len(self.spares) < SPARES:
            waits.append(max(0.0, SECOND_AFTER - self._short_for()))
        return min(waits, default=None)

    def _look(self) -> None:
        """A watched server stops when its watch gives a reason (served.py: its socket file
        is gone or another's, its code changed on disk)."""
        assert self.watch is not None
        now = time.monotonic()
        if now < self._next_look:
            return
        self._next_look = now + WATCH_EVERY
        reason = self.watch()
        if reason:
            print(f"lamina fork server {os.getpid()}: stopping: {reason}", file=sys.stderr,
                  flush=True)
            self.stopping = True

    def stop(self, _signum: int = 0, _frame: object = None) -> None:
        """A signal handler: only sets a flag (the wakeup fd ends the select)."""
        self.stopping = True

    def _fork_spare(self) -> None:
        server = os.getpid()
        self._list_hot = time.monotonic() - self._hot_at >= HOT_EVERY
        reply, self._reply = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            pid = os.fork()
        except OSError:
            self._reply.close()
            reply.close()
            raise
        if pid == 0:
            reply.close()
            self._spare(server)
        self._reply.close()
        pidfd = os.pidfd_open(pid)
        self.spares[pid] = self.jobs[pid] = _Job(pid, pidfd, reply)
        self.sel.register(pidfd, selectors.EVENT_READ, self.jobs[pid])

    def _taken(self) -> None:
        """The spare took a connection: keep a copy of it, and fork the next spare. Or a
        command's child lists the pages it took (hotpages.py), for the next spares.

        A connection taken also makes again what a command before it took of what the server
        keeps (Commands.done: a ready cgroup, a spare monitor), while that command still
        finishes after its answer: the command just taken asks for them ~10 ms on, and one
        made only once the command before had finished came too late for it in one run of
        eight of a tight loop (it forked its own monitor: +14 ms, and a child that can't
        serve again)."""
        data, ancdata, _flags, _addr = self.ctl.recvmsg(1 + hotpages.MAX_PAGES * 8,
                                                        socket.CMSG_SPACE(4))
        if data[:1] == HOT:
            self.hot, self._hot_at = data[1:], time.monotonic()
            return
        if data[:1] == BACK:
            self._back(int.from_bytes(data[1:5], "big"))
            return
        pid = int.from_bytes(data, "big")
        for level, kind, cdata in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fd = struct.unpack("i", cdata[:4])[0]
                job = self.jobs.get(pid)
                if job is None:
                    os.close(fd)
                    continue
                job.conn = socket.socket(fileno=fd)
        self.spares.pop(pid, None)
        self.commands.done(pid)

    def _back(self, pid: int) -> None:
        """A child whose command is over and that is as it was forked (reuse.py) asks to
        wait for another client: it gets the listener, unless the server stops or keeps
        enough spares already (one more than SPARES: the one forked when it was taken)."""
        job = self.jobs.get(pid)
        if job is None:
            return
        if job.conn is not None:
            job.conn.close()
            job.conn = None
        take = self.listener is not None and not self.stopping and len(self.spares) <= SPARES
        with contextlib.suppress(OSError):  # it died meanwhile: reaped as any child
            if take:
                assert self.listener is not None
                socket.send_fds(job.reply, [b"Y"], [self.listener.fileno()])
                self.spares[pid] = job
            else:
                job.reply.send(b"N")
        self.commands.done(pid)

    def _reap(self, job: _Job) -> None:
        self.sel.unregister(job.pidfd)
        os.close(job.pidfd)
        job.reply.close()
        del self.jobs[job.pid]
        _, status = os.waitpid(job.pid, 0)
        self.commands.done(job.pid)
        if self.spares.pop(job.pid, None) is not None and self.listener is not None:
            time.sleep(0.05)  # a spare that dies at once must not make the loop spin
        if job.conn is not None:
            if os.WIFSIGNALED(status):
                with contextlib.suppress(OSError):
                    job.conn.sendall((128 + os.WTERMSIG(status)).to_bytes(4, "big"))
            job.conn.close()

    # --- in the spare ------------------------------------------------------------------

    def _spare(self, server: int) -> None:
        code = 125
        try:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL)
            signal.set_wakeup_fd(-1)
            from adapters.kernel import libc

            libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)  # no spare outlives its server
            if os.getppid() != server:  # it died before the line above: no signal comes
                return
            self.sel.close()
            os.close(self._wakeup)
            os.close(self._wakeup_w)
            self.ctl.close()
            for job in self.jobs.values():
                os.close(job.pidfd)
                job.reply.close()
                if job.conn is not None:
                    job.conn.close()
            self._get_ready()
            hotpages.take_ahead(self.hot, self._client_waits)  # the faults a command takes,
            self.hot = b""  # taken while no client waits
            assert self.listener is not None
            self.listener.setblocking(False)  # shared by every child: _wait_for_client
            base = reuse.baseline(self.listener.fileno())
            served = 0
            while True:
                code, again = self._serve_one()
                served += 1
                if not again or not self._again(server, base, served):
                    break
        finally:
            os._exit(code)

    def _again(self, server: int, base: reuse.Baseline, served: int) -> bool:
        """Whether this child, its command over, waits for another client: only when it is
        as it was before its first (reuse.py) and the server hands it the listener again."""
        from adapters.kernel import libc

        reuse.restore(base)
        gc.collect()  # what the command dropped in cycles, with their descriptors
        self._get_ready()
        if reuse.changed(base, served) is not None:
            return False
        assert self._reply is not None
        try:
            self._spare_ctl.send(BACK + os.getpid().to_bytes(4, "big"))
            answer, fds, _flags, _addr = socket.recv_fds(self._reply, 1, 1)
        except OSError:
            return False
        if answer != b"Y" or len(fds) != 1:
            _close_all(fds)
            return False
        # SCM_RIGHTS hands it over inheritable; closed once a client is taken, and no exec
        # may ever take it meanwhile either
        os.set_inheritable(fds[0], False)
        self.listener = socket.socket(fileno=fds[0])
        libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)  # waiting, it goes with its server
        return os.getppid() == server

    def _client_waits(self) -> bool:
        """Whether a client's connection waits to be accepted (by this spare)."""
        assert self.listener is not None
        return bool(select.select([self.listener], [], [], 0)[0])

    def _get_ready(self) -> None:
        """While no client waits, do what the next command does first: open the root's
        event log and read its live containers, as Engine.recover will (Commands.prepare).
        Besides the connect and schema check, this takes the copy-on-write faults of the
        pages those paths write (a child shares the server's pages until it writes them,
        and running Python writes them: reference counts). Measured on a pause in a fresh
        child: ~950 page faults and 9-11 ms without, ~580 and 5.5-7.5 ms with. Running a
        whole `ps -a` as well saved ~130 faults more but costs in proportion to the number
        of containers, on every command."""
        self.commands.prepare(self.root)

    def _serve_one(self) -> tuple[int, bool]:
        """Take a client, run its command, answer, and do what the command left for after
        the answer; (its exit code, whether it may serve another). One that may waits for
        its client's hang-up first: a signal the client forwards to this pid must never
        reach the next client's command."""
        conn = self._wait_for_client()
        if conn is None:
            return 0, False
        assert self.listener is not None
        from adapters.kernel import libc

        libc.prctl(libc.PR_SET_PDEATHSIG, 0)  # a command, once taken, finishes on its own
        with contextlib.suppress(OSError):  # a server that just died: we run it all the same
            self._spare_ctl.sendmsg([os.getpid().to_bytes(4, "big")],
                                    [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                      struct.pack("i", conn.fileno()))])
        self.listener.close()
        self.listener = None
        try:
            code, ran = self._answer(conn)
            if ran:
                let_go_of_stdio()
                self.commands.finish()
                self._send_hot()
            again = self.commands.serves_again and _hung_up(conn)
        finally:
            conn.close()
        return code, again

    def _wait_for_client(self) -> socket.socket | None:
        """The next client's connection, or None once the server has told this child to
        leave (close: its reply socket ends) and no client came first. The listener is
        non-blocking (_spare): every child waiting wakes for a client, one takes it."""
        assert self.listener is not None and self._reply is not None
        while True:
            ready = select.select([self.listener, self._reply], [], [])[0]
            if self.listener in ready:
                try:
                    return self.listener.accept()[0]
                except BlockingIOError:  # another child took it
                    pass
            if self._reply in ready:
                return None

    def _answer(self, conn: socket.socket) -> tuple[int, bool]:
        """The client's command run and answered: its exit code, and whether it ran here."""
        try:
            pid, uid = peer_of(conn)
            if uid not in (0, os.getuid()):
                conn.sendall(REFUSED.to_bytes(4, "big", signed=True))
                return 125, False
            request, fds = _receive(conn)
            if not runs_like(self.view, pid):  # not in the client's place: it runs it
                _close_all(fds)
                conn.sendall(RUN_HERE.to_bytes(4, "big", signed=True))
                return 0, False
        except (OSError, ValueError):
            return 125, False
        code = 125
        try:
            conn.sendall(os.getpid().to_bytes(4, "big", signed=True))
            code = run_command(request, fds, {"uid": uid, "pid": pid}, self.commands)
        finally:
            with contextlib.suppress(OSError):
                conn.sendall(code.to_bytes(4, "big", signed=True))
        return code, True

    def _send_hot(self) -> None:
        """After the answer: the pages this child took, for the spares the server forks
        next (at most one list every HOT_EVERY: listing costs ~1 ms of CPU)."""
        if not self._list_hot:
            return
        self._list_hot = False  # once a child: later, its pages are all its own
        with contextlib.suppress(OSError):  # a server that went: no spares to tell
            self._spare_ctl.send(HOT + hotpages.dirty())


def _hung_up(conn: socket.socket) -> bool:
    """Whether the client closed its end within HANG_UP_WITHIN (it has its answer and is
    gone): whatever it sends meanwhile is read and dropped."""
    conn.settimeout(HANG_UP_WITHIN)
    try:
        while conn.recv(4096):
            pass
    except OSError:
        return False
    return True


def run_command(request: Request, fds: list[int], peer: dict[str, int],
                commands: Commands) -> int:
    """Take the client's stdio, environment and directory, then run the command."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    _close_all([fd for fd in fds if fd > 2])
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if os.getsid(0) != os.getpid():  # a child serving its second command has its own
        os.setsid()  # the server's session and signals are not the command's
    os.umask(request.umask)
    proc.take_environment(request.env)
    sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the process's own stdio
    sys.stdout = open(1, "w", buffering=1 if os.isatty(1) else -1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, errors="backslashreplace", closefd=False)  # noqa: SIM115
    sys.argv = ["lamina", *request.argv]
    try:
        os.chdir(request.cwd)
    except OSError as err:
        print(f"lamina: error: cannot enter {request.cwd}: {err.strerror}", file=sys.stderr)
        return 125
    try:
        code = commands.run(request.argv, peer)
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code if isinstance(exit_.code, int) else 2
    with contextlib.suppress(OSError):
        sys.stdout.flush()
    with contextlib.suppress(OSError):
        sys.stderr.flush()
    return code


def let_go_of_stdio() -> None:
    """/dev/null on 0, 1 and 2: the client's terminal or pipes are no longer held (whoever
    reads the client's output sees its end when the client ends, not when we do)."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def start_background(root: str, commands: Commands, path: str | None = None,
                     listener: socket.socket | None = None) -> int:
    """Fork the server off the calling process (before it starts any thread); it dies with
    its parent. A fork server a client started for this root stops first (stop_server).
    Returns its pid once the socket accepts connections."""
    server = ForkServer(root, commands, path, listener)
    with starting(root):
        stop_server(root)
        if listener is None:
            server.bind()
        pid = os.fork()
        if pid == 0:
            try:
                from adapters.kernel import libc

                libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGTERM)
                server.lock = claim(root, CLI_LOCK)
                run_server(server)
            finally:
                os._exit(0)
    assert server.listener is not None
    server.listener.close()  # the child serves it; ours would keep the socket alive
    for fd in (server._wakeup, server._wakeup_w):
        os.close(fd)
    server.ctl.close()
    server._spare_ctl.close()
    return pid


def run_server(server: ForkServer) -> None:
    """Serve until SIGTERM or SIGINT; commands in flight finish and are reaped first. The
    handlers come first: a SIGTERM during the warm-up must still take the socket away."""
    signal.set_wakeup_fd(server._wakeup_w)
    signal.signal(signal.SIGTERM, server.stop)
    signal.signal(signal.SIGINT, server.stop)
    warm(server.commands)
    try:
        server.serve_forever()
    finally:
        server.commands.stopped()
