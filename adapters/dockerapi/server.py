"""The service's loop: accept on the Unix socket, parse with h11, route, answer.

One process, one thread. Read-only requests are answered inline from the read model; the
rest go to forked workers (worker.py). Each request is one access-log line (structlog). The
routing table and what handlers share are in routing.py; importing the handler modules
below fills it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

from adapters import logs
from adapters.dockerapi import (  # noqa: F401 - their routes
    admin,
    archive,
    containers,
    execs,
    images,
    networks,
    spares,
    system,
    volumes,
)
from adapters.dockerapi.http import FILE_LIMIT, JSON_LIMIT, Conn, HttpError, Request, error_body
from adapters.dockerapi.routing import TAKEN, Ctx, error_for, match
from adapters.dockerapi.worker import Workers
from adapters.fastpath.forkserver import file_id, unlink_own, unlink_stale
from core.errors import LaminaError

# --- serving -----------------------------------------------------------------------------------


async def handle(ctx: Ctx, conn: Conn) -> None:
    """Requests on one connection until it closes, is taken over, or breaks."""
    try:
        while True:
            req = await conn.next_request()
            if req is None:
                return
            if not await answer(ctx, req) or not conn.reusable():
                return
    except (ConnectionError, OSError):
        return
    except HttpError as err:  # malformed HTTP before a request was routed
        with contextlib.suppress(Exception):
            await conn.respond(err.status, error_body(err.message))
    except Exception as err:  # h11's protocol errors land here
        logs.log("warning", "bad request", error=repr(err), uid=conn.uid, pid=conn.pid)
        with contextlib.suppress(Exception):
            await conn.respond(400, error_body(f"bad request: {err}"))
    finally:
        if not conn.taken:
            conn.close()


async def answer(ctx: Ctx, req: Request) -> bool:
    """Route and answer one request; False when the connection must not be reused."""
    t0 = time.perf_counter()
    status, keep = 200, True
    conn = req.conn
    try:
        fn, body, params = match(req.method, req.path)
        await read_body(ctx, req, body)
        result = await fn(ctx, req, **params)
        if result is TAKEN:
            conn.taken = True
            status, keep = 101, False
        else:
            status = result if isinstance(result, int) else 200
    except HttpError as err:
        status = err.status
        keep = await send_error(conn, err)
    except LaminaError as err:
        http = error_for(err)
        status = http.status
        keep = await send_error(conn, http)
    except (ConnectionError, BrokenPipeError):
        status, keep = 499, False
    except Exception as err:  # a bug must cost one request, never the service
        logs.log("error", "request failed", path=req.path, error=repr(err))
        status = 500
        keep = await send_error(conn, HttpError(500, f"internal error: {err}"))
    finally:
        if conn.forget_hangup():
            keep = False
        if req.body_path:
            with contextlib.suppress(OSError):
                os.unlink(req.body_path)
    logs.log("info", "request", method=req.method, path=req.path, status=status,
             api=req.api_version, uid=conn.uid, pid=conn.pid,
             ms=round((time.perf_counter() - t0) * 1000, 2))
    return keep


async def send_error(conn: Conn, err: HttpError) -> bool:
    if conn.taken:
        return False
    try:
        await conn.respond(err.status, error_body(err.message))
    except Exception:
        return False
    return err.status not in (413,) and conn.reusable()


async def read_body(ctx: Ctx, req: Request, mode: str) -> None:
    length = req.headers.get("content-length", "")
    limit = FILE_LIMIT if mode == "file" else JSON_LIMIT
    if length.isdigit() and int(length) > limit:  # refused before a byte of it is read
        raise HttpError(413, f"request body too large ({length} bytes; at most {limit})")
    if mode == "file":
        tmp = os.path.join(ctx.root, "tmp")
        os.makedirs(tmp, exist_ok=True)
        req.body_path = os.path.join(tmp, f"upload-{os.getpid()}-{os.urandom(6).hex()}")
        await req.conn.body_to_file(req.body_path, FILE_LIMIT)
    else:  # "none" reads (and drops) an empty body all the same: h11 then reuses the conn
        req.body = await req.conn.read_body(JSON_LIMIT)


async def accept_loop(ctx: Ctx, listener: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()
    while True:
        sock, _ = await loop.sock_accept(listener)
        sock.setblocking(False)
        try:
            conn = Conn(sock, loop)
        except OSError:
            sock.close()
            continue
        task = loop.create_task(_client(ctx, conn))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


async def _client(ctx: Ctx, conn: Conn) -> None:
    ctx.clients += 1
    try:
        await handle(ctx, conn)
    finally:
        ctx.clients -= 1


def listen(path: str, gid: int | None = None) -> socket.socket:
    """The Unix socket: root-owned, mode 0660, group `gid` (docker's docker.sock is the
    same, group docker). A socket file another server still answers on is refused, never
    replaced; a stale one (its server gone) is removed first."""
    unlink_stale(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o117)
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    if gid is not None:
        os.chown(path, 0, gid)
    os.chmod(path, 0o660)
    sock.listen(256)
    sock.setblocking(False)
    return sock


def serve(root: str, socket_path: str, ready: Callable[[], None] | None = None,
          listener: socket.socket | None = None, gid: int | None = None) -> int:
    """Serve the Docker Engine API on `socket_path` over the lamina root until SIGTERM/SIGINT;
    on `listener` instead when one is given (systemd's: its file is systemd's, left alone)."""
    from adapters.bootstrap import build_engine

    preload()
    engine = build_engine(root)
    engine.log.con  # noqa: B018 - create or migrate the log before serving
    # the workers' fork server first: nothing of the loop or the sockets may be in it
    spare_pid, spare_address = spares.start(spares.Jobs(engine), root)
    try:
        return _serve(root, engine, spare_address, socket_path, ready, listener, gid)
    finally:
        spares.stop(spare_pid)


def _serve(root: str, engine: Any, spare_address: bytes, socket_path: str,
           ready: Callable[[], None] | None, listener: socket.socket | None,
           gid: int | None) -> int:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):  # before the socket: a SIGTERM as soon as
        # a client sees it still stops us cleanly (and removes it)
        loop.add_signal_handler(sig, lambda: None if stop.done() else stop.set_result(None))
    if listener is None:
        listener = listen(socket_path, gid)
        mine = file_id(socket_path)
    else:
        listener.setblocking(False)
        socket_path, mine = listener.getsockname(), None
    ctx = Ctx(root=root, engine=engine, workers=Workers(engine, loop, spares=spare_address))
    logs.log("info", "serving", socket=socket_path, root=root, pid=os.getpid())
    if ready is not None:
        ready()
    server = loop.create_task(accept_loop(ctx, listener))
    janitor = loop.create_task(containers.janitor(ctx))
    try:
        loop.run_until_complete(stop)
    finally:
        server.cancel()
        janitor.cancel()
        listener.close()
        unlink_own(socket_path, mine)
        for parked in ctx.parked.values():
            parked.conn.close()
        loop.run_until_complete(_drain(ctx))
        loop.close()
    return 0


# What workers use, imported before the first fork: a child then pays nothing for imports,
# and every worker runs the same code as the server that forked it.
PRELOAD = ("adapters.runtime.linux", "adapters.runtime.monitor", "adapters.runtime.init",
           "adapters.runtime.exec", "adapters.runtime.frames", "adapters.runtime.logfile",
           "adapters.runtime.terminal", "adapters.storage.store", "adapters.storage.archive",
           "adapters.storage.layertar", "adapters.storage.inspect", "adapters.kernel.cgroups",
           "adapters.kernel.namespaces", "adapters.kernel.libc", "adapters.kernel.units",
           "core.engine", "core.engine.images", "core.engine.commit", "core.engine.archives",
           "core.engine.loading", "core.engine.volumes", "core.engine.networks", "core.images",
           "core.process",
           "core.mounts", "core.engine.mounting", "adapters.kernel.inroot",
           "adapters.storage.volumes",
           "events.types",
           "adapters.eventstore.query", "adapters.eventstore.sqlite_log", "pwd", "tarfile",
           "hashlib", "adapters.runtime.supervise", "adapters.runtime.hostcheck", "core.build",
           "adapters.record_exit", "adapters.build_host", "core.engine.files",
           "adapters.runtime.files", "adapters.storage.copyio", "adapters.kernel.inroot",
           "adapters.storage.archive")


def preload() -> None:
    import importlib

    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


async def _drain(ctx: Ctx, timeout: float = 10) -> None:
    """Wait (a while) for the workers still running: they finish their engine calls."""
    deadline = time.monotonic() + timeout
    while ctx.workers.children and time.monotonic() < deadline:
        await ctx.workers.settle(0.1)
