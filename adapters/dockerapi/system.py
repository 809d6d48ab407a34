"""System endpoints: _ping, version, info, events, and swarm's as a node outside one."""

from __future__ import annotations

import os
import platform
import time
from typing import Any

from adapters.dockerapi import shapes
from adapters.dockerapi.http import API_VERSION, HttpError, Request, passes
from adapters.dockerapi.routing import Ctx, dumps, raise_for, route
from core import __version__


@route("GET", "/_ping", body="none")
async def ping(ctx: Ctx, req: Request) -> int:
    await req.conn.respond(200, b"OK", "text/plain; charset=utf-8",
                           [("Cache-Control", "no-cache, no-store, must-revalidate"),
                            ("Pragma", "no-cache"), ("Builder-Version", "1")],
                           head=req.method == "HEAD")
    return 200


def version_doc() -> dict[str, Any]:
    uname = os.uname()
    details = {"ApiVersion": API_VERSION, "MinAPIVersion": "1.40", "Os": "linux",
               "Arch": _arch(), "KernelVersion": uname.release, "GitCommit": "",
               "GoVersion": "python" + platform.python_version(), "BuildTime": ""}
    return {"Platform": {"Name": "lamina"},
            "Components": [{"Name": "Engine", "Version": __version__, "Details": details}],
            "Version": __version__, **details}


def _arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


@route("GET", "/version", body="none")
async def version(ctx: Ctx, req: Request) -> int:
    await req.conn.respond(200, dumps(version_doc()))
    return 200


@route("GET", "/info", body="none")
async def info(ctx: Ctx, req: Request) -> int:
    from adapters.hostinfo import info_doc

    await req.conn.respond(200, dumps(info_doc(ctx.log, ctx.root)))
    return 200


# --- events ------------------------------------------------------------------------------------


def _wanted(msg: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    """docker's event filters: type, event (action), container, image, volume, network,
    scope and daemon (`label` is judged by the stream, in _batch)."""
    actor = msg["Actor"]
    attrs = actor["Attributes"]
    checks = {
        "volume": lambda v: msg["Type"] == "volume" and actor["ID"] == v,
        "network": lambda v: msg["Type"] == "network" and (
            actor["ID"].startswith(v) or attrs.get("name") == v),
        "scope": lambda v: v == "local",
        "daemon": lambda v: v in ("lamina", os.uname().nodename),
        "type": lambda v: msg["Type"] == v,
        "event": lambda v: msg["Action"] == v or msg["Action"].split(":")[0] == v,
        "container": lambda v: msg["Type"] == "container" and (
            actor["ID"].startswith(v) or attrs.get("name") == v),
        "image": lambda v: attrs.get("image", "").startswith(v.removeprefix("sha256:"))
        or attrs.get("name") == v or shapes.familiar(attrs.get("name", "")) == v,
    }
    return passes(checks, filters)


def _time_arg(req: Request, name: str) -> str | None:
    from adapters.eventstore.query import parse_time

    value = req.q(name)
    if not value:
        return None
    try:
        return parse_time(value)
    except Exception as err:
        raise HttpError(400, str(err)) from None


def _batch(ctx: Ctx, after: int, since: str | None, until: str | None,
           filters: dict[str, list[str]]) -> tuple[list[dict[str, Any]], int]:
    from adapters.eventstore.query import ContainerNames, time_bounds
    from adapters.eventstore.sqlite_log import EVENT_COLUMNS, recorded

    bounds, more = time_bounds(since, until)
    sql = " AND ".join([f"SELECT {EVENT_COLUMNS} FROM events WHERE seq > ?", *bounds])
    args: list[Any] = [after, *more]
    names = ContainerNames(ctx.log.con)
    labelled: set[str] | None = None
    if filters.get("label"):
        from adapters.eventstore.query import labelled_streams

        labelled = set(labelled_streams(ctx.log.con, filters["label"]))
    rest = {k: v for k, v in filters.items() if k != "label"}
    out, last = [], after
    for row in ctx.log.con.execute(sql + " ORDER BY seq", args):
        rec = recorded(row)
        last = rec.seq
        if labelled is not None and rec.stream not in labelled:
            continue
        out += [m for m in shapes.docker_events(rec, names, ctx.log.con) if _wanted(m, rest)]
    return out, last


@route("GET", "/events", body="none")
async def events(ctx: Ctx, req: Request) -> int:
    """Every event since `since` (back to the first one lamina recorded), then new ones as
    they come, until `until` or the client goes away."""
    since, until = _time_arg(req, "since"), _time_arg(req, "until")
    filters = req.filters()
    conn = req.conn
    if since is None:  # docker's default: what happens from now on, no backlog
        msgs: list[dict[str, Any]] = []
        last = ctx.log.last_seq()
    else:
        msgs, last = _batch(ctx, 0, since, until, filters)
    await conn.start_stream(200, "application/json")
    await conn.stream(b"".join(dumps(m) + b"\n" for m in msgs))
    until_at = shapes.parse_at(until) if until else None
    until_t = until_at.timestamp() if until_at else None
    while until_t is None or time.time() < until_t:
        if not await ctx.idle(req, 0.1):
            return 499
        msgs, last = _batch(ctx, last, since, until, filters)
        if msgs:
            await conn.stream(b"".join(dumps(m) + b"\n" for m in msgs))
    await conn.end_stream()
    return 200


# --- swarm: lamina is a node that is not part of one ----------------------------------------

NO_SWARM = "This node is not part of a swarm"


@route("GET", "/swarm", body="none")
@route("GET", "/swarm/unlockkey", body="none")
@route("POST", "/swarm/(?:leave|update|unlock)", body="none")
async def not_in_a_swarm(ctx: Ctx, req: Request) -> int:
    """What docker's daemon answers on a node outside a swarm (moby's errNoSwarm, 503): what
    clients read to know there is none (docker-py's leave_swarm(force=True) takes it as
    done)."""
    raise HttpError(503, NO_SWARM)


@route("POST", "/swarm/(?:init|join)")
async def swarm_refused(ctx: Ctx, req: Request) -> int:
    """Joining or making a swarm: refused by name, and recorded as refused."""
    def job(e: Any, _: Any) -> None:
        e.refuse("swarm init" if req.path.endswith("init") else "swarm join", "swarm",
                 "swarm mode is not supported by lamina")

    raise_for(await ctx.run(req, job), capital=False)
    return 400  # not reached: the refusal raised
