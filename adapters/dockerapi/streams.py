"""What workers write on a connection they took over: attach and exec streams (docker's
8-byte header, or raw bytes with a TTY), tar downloads; plus log frames and stats samples."""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from adapters.dockerapi.http import error_body, hijack_head, raw_response
from adapters.dockerapi.routing import capitalized, status_for
from adapters.dockerapi.wires import Wire, wire_for
from adapters.runtime import frames
from core.errors import LaminaError


@dataclass
class AttachSpec:
    """A parked attach handed to the start worker (fds are inherited through fork)."""

    fd: int = -1
    stdin: bool = False
    stdout: bool = False
    stderr: bool = False
    leftover: bytes = b""
    resize_fd: int = -1
    ws: str = ""  # a websocket attach: "binary" or "text" messages (wires.WebSocket)
    keys: bytes = b""  # its detach keys (with a TTY and stdin)

    @classmethod
    def of(cls, parked: Any, resize_fd: int) -> AttachSpec:
        if parked is None:
            return cls()
        return cls(parked.conn.sock.fileno(), parked.stdin, parked.stdout, parked.stderr,
                   parked.leftover, resize_fd, parked.ws, parked.keys)


def start_and_attach(e: Any, rep: Any, ref: str, spec: AttachSpec) -> None:
    """Worker: start the container; report; then, when a client attached or the container
    removes itself on exit, stay as the monitor's client until the exit (pumping the
    stream), and remove the container if asked to (docker run --rm). A client that
    detaches with its keys (docker run -it) leaves the container running: its monitor
    records its end, and removes it if asked to."""
    sock = socket.socket(fileno=spec.fd) if spec.fd >= 0 else None
    try:
        c = e.start(ref)
    except BaseException:
        if sock is not None:
            _close(sock)
        with contextlib.suppress(LaminaError):  # docker run --rm removes what failed to start
            refused = e.container(ref)
            if refused.config.get("auto_remove") and refused.state == "stopped":
                e.rm(refused.id, force=True, volumes=True)
        raise
    auto = bool(c.config.get("auto_remove"))
    if sock is None and not auto:
        detach(e.runtime.attach(c.id))
        rep.ok(c.id)
        return
    tty = bool(c.config.get("tty"))
    client = wire_for(sock, tty, spec.ws, spec.leftover) if sock is not None else None
    ctl = e.runtime.attach(c.id)
    rep.ok(c.id)
    code = None
    if ctl is not None:
        code = pump_attach(ctl, client, tty, spec, spec.keys)
        detach(ctl)
    if client is not None:
        client.close()
    if code == DETACHED:
        audit(e.detached, c.id)
        return
    if code is not None:
        _record_exit(e, c)
    if auto:
        from adapters.record_exit import wait_recorded

        wait_recorded(e, c.id)
        with contextlib.suppress(LaminaError):
            e.rm(c.id, force=True, volumes=True)


def detach(ctl: socket.socket | None, timeout: float = 2) -> None:
    """Let go of the monitor's stream without a reset: say we are done writing, read what it
    still sends until it hangs up, then close. (Closing a socket with unread output in it
    sends a TCP-style reset, which the monitor's recv takes for an error, not a hang-up.)"""
    if ctl is None:
        return
    with contextlib.suppress(OSError):
        frames.send(ctl, frames.DETACH, b"")
        ctl.shutdown(socket.SHUT_WR)
        ctl.settimeout(timeout)
        while ctl.recv(65536):
            pass
    ctl.close()


def audit(record: Any, *args: Any) -> None:
    """An attach's audit record (Engine.attached, detached); one that fails (the container
    removed meanwhile) does not end the attach."""
    with contextlib.suppress(LaminaError):
        record(*args)


def _record_exit(e: Any, c: Any) -> None:
    """Record the exit now, as an attached `lamina run` does, where the runtime lets its
    client do so (adapters/record_exit.py: whoever comes first records it, the
    monitor's own record then finds it done); else the monitor records it."""
    try:
        from adapters.record_exit import record_exit
    except ImportError:
        return
    with contextlib.suppress(Exception):
        record_exit(e, c.id, c.pid)


def _until_read(sock: socket.socket, timeout: float = 1.0) -> None:
    """Wait (a little) until the client has read what we sent (SIOCOUTQ: the bytes still in
    its receive queue). A client that reads the upgrade's head with a buffered HTTP reader
    and then the stream from the raw socket (docker-py's attach) loses whatever arrived
    with the head into its buffer: the log of a stream=0 attach, sent at once, came back
    empty about one time in four."""
    import fcntl
    import struct
    import termios

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            queued = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ,
                                                    b"\0\0\0\0"))[0]
        except OSError:
            return
        if queued == 0:
            return
        time.sleep(0.001)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


DETACHED = -1  # pump_attach's answer when the client typed the detach keys


def pump_attach(ctl: socket.socket, client: Wire | None, tty: bool,
                spec: AttachSpec, detach_keys: bytes = b"", stay: bool = True
                ) -> int | None:
    """Monitor frames to the client (in its wire's shape), the client's bytes to the
    container's stdin, resizes from the server's pipe; until the exit code. A client that
    goes away stops being written to; the pump still waits for the exit (unless not
    `stay`: an attach to a running container just ends then). A client's half-close ends
    its input only. With a TTY and stdin, the client's detach keys end the pump at once
    (DETACHED)."""
    from core.logfilter import EscapeProxy

    escape = EscapeProxy(detach_keys) if detach_keys and tty and spec.stdin else None
    sel = selectors.DefaultSelector()
    sel.register(ctl, selectors.EVENT_READ, "ctl")
    if client is not None:
        sel.register(client, selectors.EVENT_READ, "client")
        first = client.pending()
        if spec.stdin and first:
            frames.send(ctl, frames.STDIN, first)
    if spec.resize_fd >= 0:
        sel.register(spec.resize_fd, selectors.EVENT_READ, "resize")
    wanted = {frames.STDOUT: spec.stdout or tty, frames.STDERR: spec.stderr}
    while True:
        for key, _ in sel.select():
            if key.data == "ctl":
                frame = frames.recv(ctl)
                if frame is None:
                    return None
                stream, payload = frame
                if stream == frames.EXIT:
                    return int(payload)
                if client is not None and wanted.get(stream):
                    try:
                        client.send(stream, payload)
                    except OSError:
                        with contextlib.suppress(KeyError):
                            sel.unregister(client)
                        client = None
                        if not stay:
                            return None
            elif key.data == "client":
                try:
                    data = client.recv() if client is not None else b""
                except OSError:
                    data = b""
                if data is None:  # no input (a websocket's ping)
                    continue
                if data and escape is not None:
                    kept = escape.feed(data)
                    if kept is None:
                        return DETACHED  # docker's detach: the container runs on
                    if not kept:
                        continue
                    data = kept
                if spec.stdin:
                    with contextlib.suppress(OSError):
                        frames.send(ctl, frames.STDIN, data)
                if not data:  # a half-close (docker's CLI) still reads our output
                    sel.unregister(key.fileobj)
            else:
                _resize(ctl, spec.resize_fd, sel)


def attach_running(e: Any, fd: int, head: bytes, cid: str, tty: bool, spec: AttachSpec,
                   logs: bool, detach_keys: bytes) -> None:
    """Worker: an attach to a running container, through its monitor's attach socket
    (adapters/runtime/frames.Attachers): `head` (the 101 or 200), the log so far if
    asked, then its output from now on and the client's bytes to its stdin, until it
    ends, the client leaves or types the detach keys (docker's `docker attach`)."""
    sock = socket.socket(fileno=fd)
    client = wire_for(sock, tty, spec.ws, spec.leftover)
    ctl = frames.connect_attach(e.runtime.container_dir(cid))
    try:
        sock.sendall(head)
        if logs:
            _send_log(e, client, cid, tty, spec)
        if ctl is not None:
            audit(e.attached, cid, spec.stdin, spec.stdout, spec.stderr)
            if pump_attach(ctl, client, tty, spec, detach_keys, stay=False) == DETACHED:
                audit(e.detached, cid)
    except OSError:
        pass
    finally:
        if ctl is not None:
            ctl.close()
        client.close()


def logs_only(e: Any, fd: int, head: bytes, cid: str, tty: bool, spec: AttachSpec,
              logs: bool) -> None:
    """Worker: an attach with stream=0: `head`, the log so far (with logs=1), the end."""
    sock = socket.socket(fileno=fd)
    client = wire_for(sock, tty, spec.ws, spec.leftover)
    try:
        sock.sendall(head)
        _until_read(sock)
        if logs:
            _send_log(e, client, cid, tty, spec)
    except OSError:
        pass
    finally:
        client.close()


def _send_log(e: Any, client: Wire, cid: str, tty: bool, spec: AttachSpec) -> None:
    from core.logfilter import Selection, Window

    _, past = Selection(Window()).pick(e.runtime.logs(cid))
    client.write(log_frames(past, {"stdout": spec.stdout, "stderr": spec.stderr},
                            tty or client.raw_logs))


def _resize(ctl: socket.socket, fd: int, sel: selectors.BaseSelector) -> None:
    try:
        data = os.read(fd, 4096)
    except OSError:
        data = b""
    if not data:
        sel.unregister(fd)
        return
    lines = data.decode(errors="replace").split()
    if len(lines) >= 2:
        with contextlib.suppress(OSError):
            frames.send(ctl, frames.RESIZE, f"{lines[-2]} {lines[-1]}".encode())


# --- exec ----------------------------------------------------------------------------------------


def exec_stream(e: Any, fd: int, upgrade: bool, inst: dict[str, Any], detach: bool,
                raw: bool = False) -> int:
    """Worker: answer exec start on the connection and run the process. Its terminal is
    exec create's Tty; the answer's framing is exec start's (moby's router): raw bytes
    with it, docker's frames (a terminal's output all stdout) without. The client's bytes
    are its stdin; with a terminal its detach keys end our stream, the process runs on."""
    conn = socket.socket(fileno=fd)
    conn.setblocking(True)
    tty = bool(inst["Tty"])
    options = {"env": inst["Env"], "workdir": inst["WorkingDir"], "tty": tty,
               "interactive": bool(inst["AttachStdin"]),
               "detach_keys": bytes.fromhex(inst.get("DetachKeys") or ""), "stay": True,
               "console_size": inst.get("ConsoleSize"), "resize_fd": inst.get("resize_fd", -1)}
    argv, user, cid = inst["Cmd"], inst["User"], inst["ContainerID"]
    if detach:
        conn.sendall(raw_response(200, "OK", [("Content-Type", "application/json")], b""))
        _close(conn)
        devnull = os.open("/dev/null", os.O_RDWR)
        for n in (0, 1, 2):
            os.dup2(devnull, n)
        return e.exec(cid, argv, user, {**options, "tty": False, "interactive": False,
                                        "detach": True})
    conn.sendall(hijack_head(upgrade, raw))
    if raw:
        for n in (0, 1, 2):
            os.dup2(fd, n)
        try:
            return e.exec(cid, argv, user, options)
        finally:
            _close(conn)
    return _exec_framed(e, conn, cid, argv, user, options, inst)


def _exec_framed(e: Any, conn: socket.socket, cid: str, argv: list[str], user: str,
                 options: dict[str, Any], inst: dict[str, Any]) -> int:
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pump = os.fork()
    if pump == 0:
        os.close(out_w)
        os.close(err_w)
        _frame_pipes(conn, {out_r: frames.STDOUT, err_r: frames.STDERR},
                     inst["AttachStdout"], inst["AttachStderr"])
        os._exit(0)
    os.close(out_r)
    os.close(err_r)
    devnull = os.open("/dev/null", os.O_RDWR)
    os.dup2(conn.fileno() if inst["AttachStdin"] else devnull, 0)
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    os.close(out_w)
    os.close(err_w)
    try:
        return e.exec(cid, argv, user, options)
    finally:
        for n in (0, 1, 2):
            os.dup2(devnull, n)
        os.waitpid(pump, 0)
        _close(conn)


def _frame_pipes(conn: socket.socket, pipes: dict[int, int], out: bool, err: bool) -> None:
    sel = selectors.DefaultSelector()
    for fd in pipes:
        sel.register(fd, selectors.EVENT_READ)
    alive = True
    while pipes:
        for key, _ in sel.select():
            data = os.read(key.fd, 65536)
            if not data:
                sel.unregister(key.fd)
                pipes.pop(key.fd)
                continue
            stream = pipes[key.fd]
            if alive and ((stream == frames.STDOUT and out) or (stream == frames.STDERR
                                                                and err)):
                try:
                    conn.sendall(frames.pack(stream, data))
                except OSError:
                    alive = False


# --- downloads -----------------------------------------------------------------------------------


class HttpWriter:
    """A file-like writer on a taken-over socket that sends the 200 head (with `headers`,
    which may grow until then) with the first bytes: until then an error can still be
    answered as docker's error JSON.

    The last TAIL bytes are held back until finish(). The engine records a download (its
    event) once it has produced the last byte, and a tar's end (two zero blocks, padded
    to a 10 KiB record) lets a client stop reading before the connection closes: docker's
    CLI then exits, and its next `docker events` could miss the record. Held back, the
    end reaches the client only after the record, as docker's daemon, which records
    before it streams, has it. An error before the first TAIL bytes is still an error
    answer, not a cut tar."""

    TAIL = 10240

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.started = False
        self.headers: list[tuple[str, str]] = [("Content-Type", "application/x-tar"),
                                               ("Connection", "close")]
        self.held = b""

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        if len(view) >= self.TAIL:
            self._send(self.held)
            self._send(view[:-self.TAIL])
            self.held = bytes(view[-self.TAIL:])
        else:
            self.held += bytes(view)
            if len(self.held) > self.TAIL:
                self._send(self.held[:-self.TAIL])
                self.held = self.held[-self.TAIL:]
        return len(view)

    def flush(self) -> None:
        pass

    def finish(self) -> None:
        """The held tail (and the head, when nothing went before it): the answer is whole."""
        self._send(self.held, always=True)
        self.held = b""

    def _send(self, data: bytes | memoryview, always: bool = False) -> None:
        if not data and not always:
            return
        if not self.started:
            self.sock.sendall(raw_response(200, "OK", self.headers))
            self.started = True
        self.sock.sendall(data)


def download(fd: int, produce: Callable[[HttpWriter], Any],
             status: Callable[[str], int] = status_for) -> None:
    """Worker: a tar (save, export, a container's path) straight onto the connection, its
    end once `produce` has returned, the engine's record made (HttpWriter). A client gone
    mid-way ends the worker; the engine recorded nothing (its event comes after the last
    byte). An error before the answer began is answered with `status` of its kind."""

    sock = socket.socket(fileno=fd)
    sock.setblocking(True)
    out = HttpWriter(sock)
    try:
        produce(out)
        out.finish()
    except LaminaError as err:
        if not out.started:
            sock.sendall(raw_response(status(type(err).__name__), "Error",
                                      [("Content-Type", "application/json"),
                                       ("Connection", "close")],
                                      error_body(capitalized(str(err)))))
        raise
    finally:
        _close(sock)


# --- build ---------------------------------------------------------------------------------------


class JsonStream:
    """docker's JSON progress answer (build): one message per chunk of an HTTP/1.1 chunked
    body, each sent as it comes, as docker's flushing writer does. The 200 head goes with
    the first message, so a refusal before it can still be an HTTP error."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.started = False
        self.alive = True

    def send(self, doc: dict[str, Any]) -> None:
        if not self.alive:
            return
        data = json.dumps(doc, separators=(",", ":")).encode() + b"\r\n"
        try:
            if not self.started:
                self.started = True
                self.sock.sendall(raw_response(200, "OK", [
                    ("Content-Type", "application/json"), ("Transfer-Encoding", "chunked"),
                    ("Connection", "close")]))
            self.sock.sendall(b"%x\r\n%s\r\n" % (len(data), data))
        except OSError:
            self.alive = False  # the client left: the build goes on, unwatched

    def refuse(self, status: int, message: str) -> None:
        """An HTTP error instead of the stream (only before anything was sent)."""
        with contextlib.suppress(OSError):
            self.sock.sendall(raw_response(status, "Error", [
                ("Content-Type", "application/json"), ("Connection", "close")],
                error_body(message)))

    def end(self) -> None:
        if self.started and self.alive:
            with contextlib.suppress(OSError):
                self.sock.sendall(b"0\r\n\r\n")


def build_stream(e: Any, fd: int, body: str | None, tmp: str, options: dict[str, Any]) -> None:
    """Worker: unpack the context, build, and answer docker's JSON messages: {"stream": ...}
    lines, {"aux": {"ID": ...}} as each stage is built (before `Successfully built`, as
    docker's classic builder sends it), or {"error": ...}. With `q` docker keeps them all
    back and sends only the id, or, on failure, all it kept and the error. A request field
    lamina can't honour is refused with a 400 before anything else."""
    import shutil
    import tarfile
    import tempfile

    from adapters.build_host import build
    from core.build import BuildFailedError, Extras, Unsupported

    sock = socket.socket(fileno=fd)
    sock.setblocking(True)
    out = JsonStream(sock)
    context = tempfile.mkdtemp(prefix="build-context-", dir=tmp)
    kept: list[dict[str, Any]] = []
    send = kept.append if options["quiet"] else out.send
    extras = Extras(labels=options["labels"], cache_from=options["cache_from"],
                    refused=options["refused"], run_options=options["run_options"],
                    keep_containers=options["keep_containers"], squash=options["squash"],
                    aux=lambda iid: send({"aux": {"ID": f"sha256:{iid}"}}))
    try:
        try:
            if body and not options["refused"]:
                with tarfile.open(body) as tar:
                    tar.extractall(context, filter="data")
            iid = build(e, context, options["dockerfile"], options["tags"],
                        options["build_args"], options["no_cache"], options["target"],
                        lambda text: send({"stream": text}), extras)
            if options["quiet"]:
                out.send({"stream": f"sha256:{iid}\n"})
        except Unsupported as err:
            out.refuse(400, str(err))
        except (LaminaError, tarfile.TarError, OSError) as err:
            for doc in kept:
                out.send(doc)
            detail: dict[str, Any] = {"message": str(err)}
            if isinstance(err, BuildFailedError) and err.code is not None:
                detail = {"code": err.code, **detail}
            out.send({"errorDetail": detail, "error": str(err)})
        out.end()
    finally:
        shutil.rmtree(context, ignore_errors=True)
        if body:
            with contextlib.suppress(OSError):
                os.unlink(body)
        _close(sock)


# --- logs and stats ------------------------------------------------------------------------------


def log_frames(entries: list[dict[str, Any]], want: dict[str, bool], tty: bool,
               stamps: bool = False, details: bool = False) -> bytes:
    from core.logfilter import line

    out = []
    for entry in entries:
        stream = entry.get("stream", "stdout")
        if not want.get(stream):
            continue
        data = line(entry, stamps, details).encode()
        out.append(data if tty else frames.pack(frames.STDERR if stream == "stderr"
                                                else frames.STDOUT, data))
    return b"".join(out)


def cgroup_sample(c: Any) -> dict[str, Any]:
    from adapters.kernel.cgroups import Cgroup, CgroupError
    from core import cgroupparent

    sample: dict[str, Any] = {"at": time.time(), "system": _system_ns(), "cpu": 0,
                              "memory": 0, "limit": 0, "pids": 0}
    with contextlib.suppress(CgroupError, OSError):
        s = Cgroup.open(c.id, parent=cgroupparent.of(c.config)).stats()
        sample.update(cpu=s.cpu_ns, memory=s.memory_bytes, limit=s.memory_limit or 0,
                      pids=s.pids)
    return sample


def _system_ns() -> int:
    """Host CPU time in ns (/proc/stat's first line), the denominator docker's CPU % uses."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:8]
    return sum(int(x) for x in fields) * 10**9 // os.sysconf("SC_CLK_TCK")


def stats_doc(c: Any, now: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    from adapters.dockerapi.shapes import mem_total, ncpu

    def cpu(s: dict[str, Any]) -> dict[str, Any]:
        return {"cpu_usage": {"total_usage": s["cpu"], "usage_in_kernelmode": 0,
                              "usage_in_usermode": 0},
                "system_cpu_usage": s["system"], "online_cpus": ncpu(),
                "throttling_data": {"periods": 0, "throttled_periods": 0,
                                    "throttled_time": 0}}

    def stamp(t: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"

    return {"read": stamp(now["at"]), "preread": stamp(before["at"]), "id": c.id,
            "name": f"/{c.name}", "pids_stats": {"current": now["pids"]},
            "num_procs": 0, "cpu_stats": cpu(now), "precpu_stats": cpu(before),
            "memory_stats": {"usage": now["memory"], "limit": now["limit"] or mem_total(),
                             "stats": {}},
            "blkio_stats": {}, "networks": {}}
