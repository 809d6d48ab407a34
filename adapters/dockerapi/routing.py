"""What every handler shares: the service's context (Ctx), the routing table, a refusal as
docker's status code, JSON bodies, a connection handed over to a worker.

Kept apart from server.py (the loop that accepts, routes and answers) so that the handler
modules (containers, archive, images, execs, system, volumes) and streams import this, never
the server, and the server imports them all at its top: their @route decorators fill ROUTES
when it loads.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from adapters import logs
from adapters.dockerapi.http import Conn, HttpError, Request
from adapters.dockerapi.worker import Report, Workers
from core.errors import Ambiguous, BadInput, Conflict, IllegalMove, LaminaError, NotFound

Handler = Callable[..., Awaitable[Any]]
TAKEN = object()  # a handler's answer when a child took the connection over


@dataclass
class Parked:
    """An attach that came before its container's start (docker run does that): the 101 is
    sent, the socket waits here for the start worker to take it."""

    conn: Conn
    stdin: bool
    stdout: bool
    stderr: bool
    leftover: bytes
    since: float = field(default_factory=time.monotonic)
    ws: str = ""  # a websocket attach: "binary" or "text" messages
    keys: bytes = b""  # its detach keys


@dataclass
class Ctx:
    root: str
    engine: Any
    workers: Workers
    parked: dict[str, Parked] = field(default_factory=dict)
    resizers: dict[str, int] = field(default_factory=dict)
    execs: dict[str, Any] = field(default_factory=dict)
    clients: int = 0
    next_recover: float = 0.0  # when recover() may start the engine's recover() again
    recovering: set[asyncio.Task[Report]] = field(default_factory=set)

    @property
    def log(self) -> Any:
        return self.engine.log

    def meta(self, req: Request) -> dict[str, Any]:
        """Who asked, for the event meta: the peer's uid and pid from SO_PEERCRED."""
        import pwd

        conn = req.conn
        try:
            user = pwd.getpwuid(conn.uid).pw_name
        except KeyError:
            user = str(conn.uid)
        return {"uid": conn.uid, "user": user, "pid": conn.pid, "gid": conn.gid,
                "host": os.uname().nodename, "via": "docker-api",
                "argv": ["docker-api", req.method, req.path], "service_pid": os.getpid()}

    async def idle(self, req: Request, timeout: float) -> bool:
        """Wait for the next worker to end or `timeout`; False once the client hung up."""
        gone = req.conn.hangup()
        settle = asyncio.ensure_future(self.workers.settle(timeout))
        await asyncio.wait([gone, settle],  # type: ignore[type-var]  # mixed futures
                           return_when=asyncio.FIRST_COMPLETED)
        settle.cancel()
        return not gone.done()

    async def run(self, req: Request, job: Callable[[Any, Any], Any],
                  keep: tuple[int, ...] = (), on_exit: Callable[[], None] | None = None
                  ) -> Report:
        return await self.workers.call(job, self.meta(req), keep, on_exit)

    def recover(self, req: Request) -> None:
        """The engine's recover() (a live container whose process and monitor are gone gets
        its end recorded), at most once every RECOVER_EVERY seconds however many ask, for
        the requests that wait on a container (wait): nothing else would record such an end
        until the next command that changes state. It changes state, so it runs in a worker
        as every such command does, never in this process; it does not block the caller,
        whose next look at the log (Ctx.idle wakes when the worker ends) sees what it did."""
        from core.engine.host import RECOVER_EVERY

        now = time.monotonic()
        if now < self.next_recover:
            return
        self.next_recover = now + RECOVER_EVERY
        task = asyncio.ensure_future(self.run(req, recover_host))
        self.recovering.add(task)
        task.add_done_callback(_recovered)
        task.add_done_callback(self.recovering.discard)


def recover_host(e: Any, _: Any) -> list[str]:
    """Ctx.recover's job, module-level so that it pickles (it runs in the workers' spare)."""
    return list(e.recover())


def _recovered(task: asyncio.Task[Report]) -> None:
    """A recover that failed is logged; the next one looks again."""
    if task.cancelled():
        return
    err = task.exception()
    error = repr(err) if err is not None else task.result().error
    if error:
        logs.log("warning", "recover failed", error=error)


def raise_for(report: Report, not_modified: bool = False, capital: bool = True) -> Any:
    """A worker's refusal as docker's status code; its value otherwise. `capital`: docker
    capitalizes its container and image errors, not its volume and network ones."""
    if report.ok:
        return report.value
    message = capitalized(report.error) if capital else report.error
    raise HttpError(status_for(report.kind, not_modified), message)


def status_for(kind: str, not_modified: bool = False) -> int:
    if kind == NotFound.__name__:
        return 404
    if kind == IllegalMove.__name__:
        return 304 if not_modified else 409
    if kind == "ActiveEndpoints":  # a network with containers on it: moby's Forbidden
        return 403
    if kind in (Conflict.__name__, "ConcurrencyError"):
        return 409
    if kind in (BadInput.__name__, Ambiguous.__name__):
        return 400
    return 500


def capitalized(message: str) -> str:
    """docker's messages start with a capital (`No such container: x`), except those its
    daemon passes on from a package of its own (`logger: no log driver named ...`)."""
    if message.startswith(_AS_IS):
        return message
    return message[:1].upper() + message[1:]


_AS_IS = ("logger: ",)


def error_for(err: LaminaError, capital: bool = True) -> HttpError:
    message = capitalized(str(err)) if capital else str(err)
    return HttpError(status_for(type(err).__name__), message)


# --- the routing table ---------------------------------------------------------------------------

ROUTES: list[tuple[str, re.Pattern[str], str, Handler]] = []


def route(method: str, pattern: str, body: str = "json") -> Callable[[Handler], Handler]:
    """Register a handler; `body` says how its request body is read: json (in memory, 1 MiB
    at most), file (spooled to <root>/tmp) or none."""
    compiled = re.compile("^" + pattern + "$")

    def deco(fn: Handler) -> Handler:
        ROUTES.append((method, compiled, body, fn))
        return fn

    return deco


def match(method: str, path: str) -> tuple[Handler, str, dict[str, str]]:
    allowed = False
    for m, pattern, body, fn in ROUTES:
        found = pattern.match(path)
        if found:
            if m == method or (method == "HEAD" and m == "GET"):
                return fn, body, found.groupdict()
            allowed = True
    if allowed:
        raise HttpError(405, f"method {method} not allowed for {path}")
    raise HttpError(404, f"page not found: {method} {path}")


# --- what handlers share -----------------------------------------------------------------------


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


def find_container(ctx: Ctx, ref: str) -> Any:
    """The container `ref` names, or docker's 404 (400 for an ambiguous or bad reference)."""
    try:
        return ctx.engine.container(ref)
    except NotFound:
        raise HttpError(404, f"No such container: {ref}") from None
    except LaminaError as err:
        raise HttpError(400, str(err)) from None


async def take_over(ctx: Ctx, req: Request, job: Any) -> Any:
    """Hand the connection to a worker that answers on it itself; this process lets go."""
    fd = req.conn.sock.fileno()
    ctx.workers.fork(job, ctx.meta(req), keep=(fd,))
    req.conn.taken = True
    req.conn.close()
    return TAKEN
