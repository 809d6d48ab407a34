"""The monitor's long half: what watches one container until it exits.

Why a second program: the monitor is forked from the lamina command that starts the
container, and a fork carries that command's whole memory (~25 MB with the engine
imported). The forked monitor (adapters/runtime/monitor.py) uses the functions here to
read init's start report (an exec failure arrives on a pipe) and tell the client, and to
wait for the client's word that the start is recorded (or kill init on silence). A
container that has ended by then, or within a tenth of a second, is watched to its end by
that same process (`watch`): starting a fresh interpreter would be most of its run's cost.
Any other has its watch run by this module's `main`, in a fresh `python -S` that imports
only what watching needs (~10 MB), which keeps the monitor's file descriptors and its place
as init's parent. The watch:
- copies the container's output to the json-file log and to an attached client;
- when init ends, writes `exit.json` and sends the exit code to the attached client;
- finally has adapters/record_exit.py record the exit in the log unless someone (stop,
  kill, the attached client) already did, and release the container's cgroup and mount;
  with a restart policy, apply it (wait the back-off and start the container again, which
  forks the next run's monitor). The warm monitor calls it in-process; this lean one asks
  the root's fork server to run it (`_served`: its warm child, no interpreter to start),
  and only when no server does it becomes `python -m adapters.record_exit` (exec).

Imports here are limited to the interpreter's fast built-ins, json, and the two small
modules the stream and log formats live in.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import select
import struct
import sys
import termios
from typing import TYPE_CHECKING, cast

from adapters.runtime import frames
from adapters.runtime.logfile import JsonLog, NoLog

if TYPE_CHECKING:
    import socket


def exit_file(container_dir: str) -> str:
    return os.path.join(container_dir, "exit.json")


def read_exit(container_dir: str, pid: int) -> dict | None:
    """The monitor's record of how process `pid` ended, once it is written."""
    try:
        with open(exit_file(container_dir)) as f:
            data = json.load(f)
    except (FileNotFoundError, ValueError):
        return None
    return data if data.get("pid") == pid else None


TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def boot_argv(job: dict) -> list[str]:
    """How the monitor execs this module: no site (the venv's .pth files and site-packages
    cost start-up time and memory), lamina's own directory put on sys.path by hand."""
    boot = (f"import sys; sys.path.insert(0, {TOP!r}); "
            "from adapters.runtime.supervise import main; main(sys.argv[1])")
    return [sys.executable, "-S", "-c", boot, json.dumps(job)]


class _Client:
    """The attached client, if any; once it goes away we stop writing to it. `recorded`:
    it said its start is in the log (frames.RECORDED), without which the end is not ours
    to record (a start whose record failed has no end to record)."""

    def __init__(self, sock: socket.socket, recorded: bool = True) -> None:
        self.sock: socket.socket | None = sock
        self.was_attached = False  # still there when the container's process ended
        self.recorded = recorded

    def send(self, stream: int, data: bytes) -> None:
        if self.sock is None:
            return
        try:
            frames.send(self.sock, stream, data)
        except OSError:
            self.drop()

    def drop(self) -> None:
        if self.sock is not None:
            self._drain()
            self.sock.close()
            self.sock = None

    def _drain(self) -> None:
        """Read what the client sent before it went: a client that let go at once (`run
        -d` of a container that ended at once) sent RECORDED, then DETACH, and closed,
        maybe before we wrote to it, or before the exit code we then failed to write.
        Neither word may be lost with the socket: without RECORDED its end would go
        unrecorded until a recovery; without DETACH it would be taken for a client that
        was there at the end, which records the end and removes an --rm container itself:
        nobody would remove it."""
        assert self.sock is not None
        self.sock.setblocking(False)
        try:
            while (frame := frames.recv(self.sock)) is not None:
                if frame[0] == frames.RECORDED:
                    self.recorded = True
                elif frame[0] == frames.DETACH:
                    self.was_attached = False
        except OSError:  # nothing more (EAGAIN), or its reset once the queue is read
            pass


def main(arg: str) -> None:
    import _socket

    job = json.loads(arg)
    # _socket, not socket: this process starts with every container, and socket costs an
    # import; the object is the same one socket.socket wraps.
    ctl = cast("socket.socket", _socket.socket(fileno=job["ctl"]))
    listener = cast("socket.socket", _socket.socket(fileno=job["attach"])) \
        if job.get("attach") is not None else None
    code = 1
    try:
        code = watch(job, ctl, listener)
    finally:
        os._exit(code)


def report_start(job: dict, ctl: socket.socket, err_fd: int, start_time: int) -> int | None:
    """Init's start, told to the client: its pid and start time, or None when it failed
    (reaped, said)."""
    pid = job["pid"]
    failure = frames.read_to_end(err_fd).decode(errors="replace")
    os.close(err_fd)
    if failure:
        os.waitpid(pid, 0)
        _report(ctl, f"failed {failure}")
        return None
    _report(ctl, f"started {pid} {start_time}")
    return int(pid)


def watch(job: dict, ctl: socket.socket, listener: socket.socket | None,
          warm: bool = False, recorded: bool = True) -> int:
    """Copy init's output until it ends, then have its end recorded. In the monitor forked
    from lamina (`warm`: it records the end itself, see _record), or in this lean
    interpreter it execs (main). `listener`: the attach socket the monitor made before it
    reported the start (so that whoever sees the container running can attach: they wait
    in its backlog). `recorded` False: the warm monitor of an init that ended before its
    client said the start is recorded; the output and the exit code go out at once (the
    client reads them once it has recorded the start) and the end is recorded only after
    that word."""
    pid = job["pid"]
    poller = select.epoll()
    attachers = frames.Attachers(job["cdir"], poller, bool(job.get("stdin_once")), listener)
    outputs = {int(fd): name for fd, name in job["outputs"].items()}
    client = _Client(ctl, recorded)
    code = _supervise(job, pid, client, outputs, job["stdin"], poller, attachers)
    if client.recorded:
        _record(job, pid, attached=client.was_attached, warm=warm)
    return code


def _report(ctl: socket.socket, text: str) -> None:
    try:  # noqa: SIM105 - contextlib would be one more import
        frames.send(ctl, frames.REPORT, text.encode())
    except OSError:
        pass


def await_recorded(ctl: socket.socket) -> bool:
    """The client says ContainerStarted is in the log; silence or a hang-up means abort."""
    try:
        frame = frames.recv(ctl)
    except OSError:
        return False
    return frame is not None and frame[0] == frames.RECORDED


def _supervise(job: dict, pid: int, client: _Client, outputs: dict[int, str],
               stdin_fd: int | None, poller: select.epoll, attachers: frames.Attachers
               ) -> int:
    log = log_of(job)
    for fd in outputs:
        poller.register(fd, select.EPOLLIN)
    assert client.sock is not None
    ctl_fd = client.sock.fileno()
    poller.register(ctl_fd, select.EPOLLIN)
    once = attachers.once  # docker's StdinOnce (never with a terminal)
    open_outputs = set(outputs)
    while open_outputs:
        for fd, _ in poller.poll():
            if fd == ctl_fd:
                stdin_fd = _from_client(client, poller, ctl_fd, stdin_fd, once)
                continue
            if fd in attachers:
                stdin_fd = attachers.ready(fd, stdin_fd)
                continue
            if fd not in open_outputs:  # closed earlier in this poll's events: none of ours
                continue
            data = _read(fd)
            if not data:
                poller.unregister(fd)
                open_outputs.discard(fd)
                continue
            log.write(outputs[fd], data)
            stream = frames.STDOUT if outputs[fd] == "stdout" else frames.STDERR
            client.send(stream, data)
            attachers.send(stream, data)
    log.close()
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    code = 128 - code if code < 0 else code
    path = exit_file(job["cdir"])
    with open(path + ".tmp", "w") as f:
        json.dump({"pid": pid, "code": code}, f)
    os.replace(path + ".tmp", path)
    client.was_attached = client.sock is not None
    attachers.close(code)
    client.send(frames.EXIT, str(code).encode())
    _await_hangup(client)
    return 0


def log_of(job: dict) -> JsonLog | NoLog:
    """The container's log as its --log-driver/--log-opt ask (json-file unless said)."""
    driver, max_size, max_file = job.get("log") or ("json-file", -1, 1)
    if driver == "none":
        return NoLog()
    return JsonLog(os.path.join(job["cdir"], f"{job['cid']}-json.log"), max_size, max_file)


def _await_hangup(client: _Client, timeout: float = 5) -> None:
    """An attached client records the exit itself, then hangs up: wait for that (without
    a limit while its start's record is still to come, as the monitor's start waits)."""
    if client.sock is None:
        return
    poller = select.epoll()
    poller.register(client.sock.fileno(), select.EPOLLIN)
    try:
        while poller.poll(timeout if client.recorded else -1):
            frame = frames.recv(client.sock)
            if frame is None:
                break
            if frame[0] == frames.RECORDED:
                client.recorded = True
            elif frame[0] == frames.DETACH:  # it let go before it heard of the exit
                client.was_attached = False
    except OSError:
        pass
    poller.close()
    client.drop()


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError as err:
        if err.errno == errno.EIO:  # a pty whose last slave closed
            return b""
        raise


def _from_client(client: _Client, poller: select.epoll, ctl_fd: int, stdin_fd: int | None,
                 once: bool) -> int | None:
    """A frame from the client: stdin bytes, a resize, or its hang-up. The end of its
    input (an empty STDIN frame, or a hang-up without DETACH) closes the container's stdin
    with StdinOnce (`docker run -i`: the container's stdin reaches EOF); else it stays
    open for the next attach."""
    try:
        frame = frames.recv(client.sock) if client.sock is not None else None
    except OSError:  # a client that closed with unread data: a reset, i.e. a hang-up
        frame = None
    if frame is None or frame[0] == frames.DETACH:  # DETACH: gone as a hang-up is
        if client.sock is not None:
            poller.unregister(ctl_fd)
        client.drop()
        return frames.closed_stdin(stdin_fd) if frame is None and once else stdin_fd
    stream, payload = frame
    if stream == frames.RECORDED:
        client.recorded = True
    elif stream == frames.STDIN and stdin_fd is not None:
        if not payload:
            return frames.closed_stdin(stdin_fd) if once else stdin_fd
        os.write(stdin_fd, payload)
    elif stream == frames.RESIZE and stdin_fd is not None:
        rows, cols = (int(x) for x in payload.split())
        fcntl.ioctl(stdin_fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    return stdin_fd


def _recorded(job: dict, pid: int) -> tuple[bool, bool, bool]:
    """Whether the log already shows this process ended (an attached client, stop, kill
    or rm got there first): then there is nothing to record and no engine to start.

    Asked under the container's lock (the one stop, kill and rm hold from their signal to
    their append), so a stop in flight is seen finished, not still running."""
    try:
        lock = os.open(os.path.join(job["cdir"], "lock"),
                       os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except FileNotFoundError:
        return True, False, False  # rm took the container's directory away
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _recorded_in_log(job, pid)
    finally:
        os.close(lock)


def _recorded_in_log(job: dict, pid: int) -> tuple[bool, bool, bool]:
    """(the exit is in the log, the container asked to be removed when it ends, it has a
    restart policy: core/restart.py decides, in adapters/record_exit.py)."""
    from adapters.eventstore.peek import Unreadable, container_row
    from core.errors import LaminaError

    try:  # wherever the root's log lives (adapters/eventstore/where.py)
        row = container_row(job["root"], job["cid"])
    except (Unreadable, LaminaError, OSError):
        return False, False, False
    if row is None:
        return True, False, False
    state, doc = row
    doc = json.loads(doc)
    config = doc.get("config") or {}
    policy = (config.get("restart") or {}).get("Name") or "no"
    return (state not in ("running", "paused") or doc.get("pid") != pid,
            bool(config.get("auto_remove")), policy != "no")


def _record(job: dict, pid: int, attached: bool, warm: bool = False) -> None:
    """Record the exit with the engine (adapters/record_exit.py), and remove a container
    that asked for it (--rm, AutoRemove) when no client is attached to do it: a detached
    one, or one whose client went away, is removed all the same.

    The lean interpreter asks the root's fork server to do it (_served), or else becomes
    the full one that does it (exec). A `warm` monitor, forked
    from a lamina that has the engine imported (the watch of a container that ended at
    once), calls it in this process: a fresh interpreter importing the engine cost ~100 ms
    of CPU per container (far more on a busy machine), and the Docker API's `wait` for a
    container nobody attached waits for this record. Named by string, not imported: the
    runtime never imports the composition root that wires it (bootstrap)."""
    args = recorder_args(job, pid, attached)
    if args is None:
        return
    if warm:
        import importlib

        importlib.import_module("adapters.record_exit").in_monitor(args)
        return
    if _served(job["root"], args):
        return
    os.chdir(TOP)
    os.execv(sys.executable, [sys.executable, "-m", "adapters.record_exit", *args])


def recorder_args(job: dict, pid: int, attached: bool) -> list[str] | None:
    """The recorder's arguments for the end of run `pid` (`job`: its root, cid and cdir),
    None when it has nothing to do: the end is recorded already (by an attached client,
    stop, kill or rm) and there is neither a removal nor a restart policy to see to."""
    recorded, auto_remove, policy = _recorded(job, pid)
    remove = auto_remove and not attached
    if recorded and not remove and not policy:
        return None
    # with a restart policy, whoever recorded the end: the recorder applies it (and, in
    # its back-off, is this container's monitor still: the same pid)
    return [job["root"], job["cid"], str(pid), *(["--remove"] if remove else []),
            *(["--policy"] if policy else [])]


SERVED_RECORD = "monitor-exit/3"  # what a monitor asks the fork server (app.Served.run)


def _served(root: str, args: list[str]) -> bool:
    """Whether the root's running fork server did the recorder's work (`args`:
    recorder_args'; adapters/record_exit.py for_monitor): its spare, forked from a server
    with the engine imported and the log open, does in ~25-40 ms of CPU (the next spare's
    preparation included) what the recorder exec'd afresh does in ~130-180 (an
    interpreter's start, lamina's imports: bench/recorder.py), and ~10x sooner. Asked only
    once the look at the log found work to do: an end that stop, kill or an attached
    client recorded costs this process that look (~5 ms), not a request. While the
    server's child follows a restart policy's back-off, this process waits for its
    answer: it is still the container's monitor (LinuxRuntime.watched), as the recorder
    it would become is.

    Not when our environment (the starting command's) has LAMINA_NO_SERVER, and not
    when no server answers (none runs, it stops, it runs the command elsewhere: peer.py),
    nor when it did not say 0: a server of older code that doesn't know the request
    (argparse's 2), or one that refused it (we are not the container's monitor it knows):
    then the recorder is exec'd as before. Whoever records first wins (Engine.exited), and
    a removal or restart asked twice is done once, so a server that went away after
    recording leaves the recorder nothing to do."""
    if os.environ.get("LAMINA_NO_SERVER"):
        return False
    try:
        from adapters.fastpath import client

        return client.ask(root, [SERVED_RECORD, *args], client.environment()) == 0
    except Exception:  # noqa: BLE001 - whatever went wrong, the recorder still records
        return False
