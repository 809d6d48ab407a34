"""Container endpoints. Queries answer inline; commands run in forked workers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from adapters.dockerapi import shapes, streams
from adapters.dockerapi.http import HttpError, Request
from adapters.dockerapi.routing import (
    TAKEN,
    Ctx,
    Parked,
    dumps,
    find_container,
    raise_for,
    route,
    take_over,
)
from core import compat, runopts
from core.engine.networks import every
from core.errors import LaminaError, NotFound

PARK_LIMIT = 600.0  # seconds an attach may wait for its container's start


# --- queries ------------------------------------------------------------------------------------


@route("GET", "/containers/json", body="none")
async def list_containers(ctx: Ctx, req: Request) -> int:
    """docker ps: core.filters.select decides, as for the CLI's `ps --filter`."""
    from core import filters as rule

    log = ctx.log
    everything = req.flag("all")
    filters = req.filters()
    try:
        limit = int(req.q("limit") or -1)
    except ValueError:
        raise HttpError(400, f"invalid limit: {req.q('limit')}") from None
    whole = everything or limit > 0 or bool({"status", "before", "since", "id"} & set(filters))
    images = {i.id: i for i in log.images()}
    try:
        chosen = rule.select(log.containers(None if whole else ("running", "paused")), images,
                             filters, everything, limit)
    except LaminaError as err:  # docker's words as they are: "invalid filter 'x'"
        raise HttpError(404 if isinstance(err, NotFound) else 400, str(err)) from None
    networks = every(ctx.engine)
    out = [shapes.container_summary(c, images.get(c.image), ctx.root, networks,
                                    req.api_version) for c in chosen]
    await req.conn.respond(200, dumps(out))
    return 200


@route("GET", "/containers/(?P<ref>[^/]+)/json", body="none")
async def inspect(ctx: Ctx, req: Request, ref: str) -> int:
    c = find_container(ctx, ref)
    store = ctx.engine.layers
    doc = shapes.container_inspect(c, ctx.log.image(c.image), store, ctx.root,
                                   every(ctx.engine), req.api_version)
    await req.conn.respond(200, dumps(doc))
    return 200


@route("GET", "/containers/(?P<ref>[^/]+)/changes", body="none")
async def changes(ctx: Ctx, req: Request, ref: str) -> int:
    from adapters.storage import inspect as files

    c = find_container(ctx, ref)
    image = ctx.log.image(c.image)
    out = [{"Kind": files.CHANGE_KINDS[kind], "Path": path}
           for kind, path in ctx.engine.layers.changes(c.rw_layer,
                                                       image.layers if image else ())]
    await req.conn.respond(200, dumps(out or None))
    return 200


@route("GET", "/containers/(?P<ref>[^/]+)/top", body="none")
async def top(ctx: Ctx, req: Request, ref: str) -> int:
    """docker top: the host's ps (ps_args, -ef by default) over the container's cgroup."""
    from adapters.runtime import top as ps

    c = find_container(ctx, ref)
    if c.state not in ("running", "paused"):
        raise HttpError(409, f"container {c.id} is not running")
    try:
        titles, rows = await asyncio.to_thread(ps.top, ps.container_pids(c),
                                               req.q("ps_args") or "")
    except LaminaError as err:
        raise HttpError(400 if not isinstance(err, ps.TopError) else 500, str(err)) from None
    await req.conn.respond(200, dumps({"Titles": titles, "Processes": rows}))
    return 200


@route("POST", "/containers/(?P<ref>[^/]+)/wait")
async def wait(ctx: Ctx, req: Request, ref: str) -> int:
    """Answer when the container is stopped (`not-running`), ends its next run (`next-exit`)
    or is removed (`removed`). After its first second, the engine's recover() once a second
    (Ctx.recover, in a worker), as `lamina wait` does: a run whose monitor died with it
    (killed, or its record failed) has its end recorded, instead of a wait that never ends."""
    from core.engine.host import RECOVER_EVERY

    condition = req.q("condition") or "not-running"
    c = find_container(ctx, ref)
    first = c.finished_at
    conn = req.conn
    await conn.start_stream(200, "application/json")
    look = time.monotonic() + RECOVER_EVERY
    while True:
        if time.monotonic() >= look:
            ctx.recover(req)
            look = time.monotonic() + RECOVER_EVERY
        now = ctx.log.container(c.id)
        code = None
        if now is None:
            code = last_exit_code(ctx, c.id)
        elif condition != "removed" and now.state == "stopped" and \
                (condition == "not-running" or now.finished_at != first):
            code = now.exit_code or 0
        if code is not None:
            await conn.stream(dumps({"StatusCode": code, "Error": None}) + b"\n")
            await conn.end_stream()
            return 200
        if now is not None:
            c = now
        if not await ctx.idle(req, 0.1):
            return 499


def last_exit_code(ctx: Ctx, cid: str) -> int:
    """The exit code of a container's last run, from the log (it may be removed by now)."""
    row = ctx.log.con.execute(
        "SELECT json_extract(data, '$.exit_code') FROM events WHERE stream = ? AND type IN "
        "('ContainerExited', 'ContainerStopped', 'ContainerKilled') ORDER BY seq DESC LIMIT 1",
        (f"container:{cid}",)).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


@route("GET", "/containers/(?P<ref>[^/]+)/logs", body="none")
async def logs(ctx: Ctx, req: Request, ref: str) -> int:
    """docker logs: the window of since/until/tail (core/logfilter.py, as the CLI's), with
    timestamps and details; follow until the container stops or `until` is past."""
    from core import logfilter

    c = find_container(ctx, ref)
    if runopts.log_driver(c.config) == runopts.NONE:  # docker's ErrReadLogsNotSupported
        raise HttpError(501, "configured logging driver does not support reading")
    runtime = ctx.engine.runtime
    tty = bool(c.config.get("tty"))
    want = {"stdout": req.flag("stdout"), "stderr": req.flag("stderr")}
    if not (want["stdout"] or want["stderr"]):
        raise HttpError(400, "You must choose at least one stream")
    follow = req.flag("follow")
    shape = {"stamps": req.flag("timestamps"), "details": req.flag("details")}
    try:
        window = logfilter.Window.of(req.q("since"), req.q("until"), req.q("tail"))
    except LaminaError as err:
        raise HttpError(400, str(err)) from None
    selection = logfilter.Selection(window)
    offset, entries = selection.pick(runtime.logs(c.id))
    offset = offset or 0
    conn = req.conn
    ctype = "application/vnd.docker.raw-stream" if tty else \
        "application/vnd.docker.multiplexed-stream"
    await conn.start_stream(200, ctype)
    await conn.stream(streams.log_frames(entries, want, tty, **shape))
    while follow and not selection.done and not window.ended():
        now = ctx.log.container(c.id)
        last, more = selection.pick(runtime.logs(c.id, offset))
        if last is not None:
            offset = last
        if more:
            await conn.stream(streams.log_frames(more, want, tty, **shape))
        if now is None or now.state == "stopped":
            break
        if not await ctx.idle(req, 0.1):
            return 499
    await conn.end_stream()
    return 200


@route("GET", "/containers/(?P<ref>[^/]+)/stats", body="none")
async def stats(ctx: Ctx, req: Request, ref: str) -> int:
    """docker's StatsJSON (adapters/runtime/sampling.py): one (stream=0 or one-shot) or one
    a second until the container stops or the client goes."""
    from adapters.runtime import sampling

    c = find_container(ctx, ref)
    ncpu, total = shapes.ncpu(), shapes.mem_total()
    first = sampling.sample(c)
    one_shot = req.flag("one-shot")
    if not one_shot:
        await asyncio.sleep(0.25)
    second = sampling.sample(c)
    doc = sampling.docker_doc(c, second, first, ncpu, total)
    conn = req.conn
    if not req.flag("stream", True) or one_shot:
        await conn.respond(200, dumps(doc))
        return 200
    await conn.start_stream(200, "application/json")
    await conn.stream(dumps(doc) + b"\n")
    while (now := ctx.log.container(c.id)) is not None and now.state != "stopped":
        if not await ctx.idle(req, 1):
            return 499
        first, second = second, sampling.sample(now)
        await conn.stream(dumps(sampling.docker_doc(now, second, first, ncpu, total)) + b"\n")
    await conn.end_stream()
    return 200


# --- commands -----------------------------------------------------------------------------------


def create_options(body: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """docker's create body -> (cmd, lamina's run options, as the CLI records them).

    Every field goes through core.compat's table: an applied one becomes its option, a
    refused one (or one outside docker's schema) that carries a request is kept so that the
    engine refuses it by name and records the refusal; docker's own defaults, which its
    clients send with every create, are no request."""
    if not isinstance(body, dict):
        raise HttpError(400, "the create body must be a JSON object")
    cmd = body.get("Cmd") or []
    if isinstance(cmd, str):
        cmd = [cmd]
    options: dict[str, Any] = {"unsupported": []}
    sections = (("Config", {k: v for k, v in body.items()
                            if k not in ("HostConfig", "NetworkingConfig")}),
                ("HostConfig", body.get("HostConfig") or {}),
                ("NetworkingConfig", body.get("NetworkingConfig") or {}))
    for section, fields in sections:
        if not isinstance(fields, dict):
            raise HttpError(400, f"{section} must be a JSON object")
        for name, value in fields.items():
            _take(options, f"{section}.{name}", value)
    _entrypoint(options, body.get("Entrypoint"))
    _system_paths(options, body.get("HostConfig") or {})
    if body.get("NetworkDisabled"):
        options.setdefault("network", "none")
    return [str(a) for a in cmd], options


# What docker's clients send when nothing was asked (beside empty and zero values).
_DEFAULTS: dict[str, tuple[Any, ...]] = {
    "HostConfig.NetworkMode": ("default",), "HostConfig.CgroupnsMode": ("private",),
    "HostConfig.MemorySwappiness": (-1,),
    "HostConfig.PidsLimit": (-1,), "HostConfig.MemorySwap": (-1,),
    "HostConfig.ConsoleSize": ([0, 0],),
}
_CONVERT: dict[str, Callable[[Any], Any]] = {
    "HostConfig.NanoCpus": lambda v: v / 1e9,
    "HostConfig.Devices": lambda v: [_device(d) for d in v],
    "Config.Tty": bool, "Config.OpenStdin": bool, "Config.StdinOnce": bool,
    "HostConfig.Privileged": bool,
    "HostConfig.ReadonlyRootfs": bool, "HostConfig.AutoRemove": bool, "HostConfig.Init": bool,
}


def _deep_zero(value: Any) -> bool:
    if isinstance(value, dict):
        return all(_deep_zero(v) for v in value.values())
    return compat.is_zero(value)


def _no_request(api: str, value: Any) -> bool:
    if api == "Config.StopTimeout":  # 0 asks: kill at once
        return value is None
    if api in ("Config.Volumes", "Config.ExposedPorts"):  # {"/path": {}}: keys ask
        return not value
    if api == "NetworkingConfig.EndpointsConfig" and isinstance(value, dict):
        # docker's CLI names the network NetworkMode asked for, with empty settings
        return set(value) <= {"default", "none", "host"} and _deep_zero(value)
    if _deep_zero(value) or value in _DEFAULTS.get(api, ()):
        return True
    if api == "HostConfig.RestartPolicy" and isinstance(value, dict):
        return value.get("Name") in (None, "", "no") and not value.get("MaximumRetryCount")
    if api == "HostConfig.LogConfig" and isinstance(value, dict):
        return value.get("Type") in (None, "", "json-file") and not value.get("Config")
    return False


def _take(options: dict[str, Any], api: str, value: Any) -> None:
    field = compat.BY_API.get(api) or compat.BY_API_FOLDED.get(api.lower())
    if field is None:
        if not _no_request(api, value):
            options["unsupported"].append(api)
        return
    if field.key and field.status is not compat.Status.CLIENT \
            and not _no_request(api, value) and field.key not in ("entrypoint",):
        options[field.key] = _CONVERT.get(api, lambda v: v)(value)


def _entrypoint(options: dict[str, Any], entrypoint: Any) -> None:
    """null keeps the image's; [""] (or "") resets it, as docker's."""
    if entrypoint is None:
        return
    entrypoint = [entrypoint] if isinstance(entrypoint, str) else list(entrypoint)
    options["entrypoint"] = [] if entrypoint in ([""], []) else entrypoint


def _system_paths(options: dict[str, Any], host: dict[str, Any]) -> None:
    """docker's CLI says --security-opt systempaths=unconfined by sending both lists empty."""
    if host.get("MaskedPaths") == [] and host.get("ReadonlyPaths") == []:
        options["security_opt"] = [*options.get("security_opt", []), "systempaths=unconfined"]


def _device(d: Any) -> str:
    """HostConfig.Devices' {PathOnHost, PathInContainer, CgroupPermissions}, as --device."""
    if not isinstance(d, dict) or not d.get("PathOnHost"):
        raise HttpError(400, f"HostConfig.Devices: invalid device {d!r}")
    inside = d.get("PathInContainer") or d["PathOnHost"]
    return f"{d['PathOnHost']}:{inside}:{d.get('CgroupPermissions') or 'rwm'}"


@route("POST", "/containers/create")
async def create(ctx: Ctx, req: Request) -> int:
    body = req.json()
    cmd, options = create_options(body)
    image = body.get("Image") or ""
    if not image:
        raise HttpError(400, "config cannot be empty in order to create a container")
    name = req.q("name") or None
    cid = raise_for(await ctx.run(req, partial(_create, image, cmd, name, options)))
    await req.conn.respond(201, dumps({"Id": cid, "Warnings": []}))
    return 201


# The jobs of the commands `docker run` makes: module-level functions (partial() gives them
# their arguments), so that they pickle and run in the workers' fork server's spare
# (spares.py) rather than in a child forked from the loop.


def _create(image: str, cmd: Any, name: str | None, options: dict[str, Any], e: Any,
            _: Any) -> Any:
    return e.create(image, cmd, name=name, config=options)


def _start(ref: str, spec: streams.AttachSpec, e: Any, rep: Any) -> None:
    streams.start_and_attach(e, rep, ref, spec)


def _rm(ref: str, force: bool, volumes: bool, e: Any, _: Any) -> None:
    e.rm(ref, force=force, volumes=volumes)


def _move(name: str, ref: str, args: tuple[Any, ...], e: Any, _: Any) -> None:
    """stop, restart, kill, pause, unpause."""
    getattr(e, name)(ref, *args)
    if name == "restart":
        streams.detach(e.runtime.attach(e.container(ref).id))


@route("POST", "/containers/(?P<ref>[^/]+)/start")
async def start(ctx: Ctx, req: Request, ref: str) -> int:
    try:
        cid = ctx.engine.container(ref).id
    except LaminaError:
        cid = ""
    parked = ctx.parked.pop(cid, None) if cid else None
    keep: tuple[int, ...] = ()
    resize_r = resize_w = -1
    if parked is not None:
        resize_r, resize_w = os.pipe2(os.O_CLOEXEC)
        keep = (parked.conn.sock.fileno(), resize_r)
    spec = streams.AttachSpec.of(parked, resize_r)

    def ended() -> None:
        if ctx.resizers.get(cid) == resize_w:
            ctx.resizers.pop(cid, None)
        with contextlib.suppress(OSError):
            os.close(resize_w) if resize_w >= 0 else None

    r = ctx.workers.fork(partial(_start, ref, spec), ctx.meta(req), keep, on_exit=ended)
    if parked is not None:
        os.close(resize_r)
        ctx.resizers[cid] = resize_w
        parked.conn.close()  # the worker has its own copy now
    return await _answer(ctx, req, ref, await ctx.workers.report(r), already="running")


async def _answer(ctx: Ctx, req: Request, ref: str, report: Any,
                  already: str | None = None) -> int:
    """204 when the move was made. When the state machine refused it because the container
    is already where it leads (`already`), docker's 304, the refusal still recorded; any
    other refusal as its error."""
    if already and not report.ok and report.kind == "IllegalMove":
        try:
            state = ctx.engine.container(ref).state
        except LaminaError:
            state = None
        if state == already:
            await req.conn.respond(304)
            return 304
    raise_for(report)
    await req.conn.respond(204)
    return 204


def _simple(name: str, call: Any, not_modified: bool = False) -> Any:
    async def handler(ctx: Ctx, req: Request, ref: str) -> int:
        report = await ctx.run(req, partial(_move, name, ref, call(req)))
        return await _answer(ctx, req, ref, report, "stopped" if not_modified else None)

    handler.__name__ = name
    return handler


def _timeout(req: Request) -> tuple[float | None]:
    """None: the container's StopTimeout, or docker's 10 s."""
    t = req.q("t") or req.q("timeout")
    try:
        return (float(t) if t not in (None, "") else None,)
    except ValueError:
        raise HttpError(400, f"invalid timeout: {t}") from None


def _signal(req: Request) -> tuple[str]:
    """The engine parses it: a bad signal is a recorded refusal (docker's 400)."""
    return (req.q("signal") or "KILL",)


route("POST", "/containers/(?P<ref>[^/]+)/stop")(_simple("stop", _timeout, True))
route("POST", "/containers/(?P<ref>[^/]+)/restart")(_simple("restart", _timeout))
route("POST", "/containers/(?P<ref>[^/]+)/kill")(_simple("kill", _signal))
route("POST", "/containers/(?P<ref>[^/]+)/pause")(_simple("pause", lambda req: ()))
route("POST", "/containers/(?P<ref>[^/]+)/unpause")(_simple("unpause", lambda req: ()))


@route("DELETE", "/containers/(?P<ref>[^/]+)", body="none")
async def remove(ctx: Ctx, req: Request, ref: str) -> int:
    raise_for(await ctx.run(req, partial(_rm, ref, req.flag("force"), req.flag("v"))))
    for cid in [cid for cid in ctx.parked if ctx.log.container(cid) is None]:
        ctx.parked.pop(cid).conn.close()  # an attach to a container that is gone now
    await req.conn.respond(204)
    return 204


@route("DELETE", "/containers/(?P<parent>[^/]+)/(?P<alias>[^/]+)", body="none")
async def remove_link(ctx: Ctx, req: Request, parent: str, alias: str) -> int:
    """docker's DELETE /containers/PARENT/ALIAS?link=1: a legacy link removed."""
    if not req.flag("link"):
        raise HttpError(404, f"page not found: DELETE {req.path}")

    def job(e: Any, _: Any) -> None:
        e.unlink(f"{parent}/{alias}")

    raise_for(await ctx.run(req, job))
    await req.conn.respond(204)
    return 204


@route("POST", "/containers/(?P<ref>[^/]+)/attach", body="none")
async def attach(ctx: Ctx, req: Request, ref: str) -> Any:
    """docker attach. stream=0: the log so far (logs=1) and the end. A stopped container:
    the 101 now, the stream when it starts (docker run attaches first). A running one: a
    worker joins its monitor's attach socket (output, stdin, the detach keys)."""
    return await _attach(ctx, req, ref, "")


@route("GET", "/containers/(?P<ref>[^/]+)/attach/ws", body="none")
async def attach_ws(ctx: Ctx, req: Request, ref: str) -> Any:
    """docker's websocket attach: as attach, its bytes in websocket messages (binary from
    API 1.42, text before, as docker's daemon; adapters/dockerapi/wires.py)."""
    version = tuple(int(n) for n in (req.api_version or "1.51").split("."))
    return await _attach(ctx, req, ref, "binary" if version >= (1, 42) else "text")


async def _attach(ctx: Ctx, req: Request, ref: str, ws: str) -> Any:
    from adapters.dockerapi import wires
    from adapters.dockerapi.http import hijack_head
    from core.logfilter import detach_keys

    c = find_container(ctx, ref)
    try:
        keys = detach_keys(req.q("detachKeys") or None)
        tty = bool(c.config.get("tty"))
        head = wires.handshake(req.headers) if ws else hijack_head(req.upgrade, tty)
    except (LaminaError, ValueError) as err:
        raise HttpError(400, str(err)) from None
    if not req.flag("stream") or c.state != "stopped":
        fd = req.conn.sock.fileno()
        spec = streams.AttachSpec(fd, req.flag("stdin"), req.flag("stdout"),
                                  req.flag("stderr"), req.conn.leftover(), ws=ws)
        logs, cid = req.flag("logs"), c.id

        def job(e: Any, _: Any) -> None:
            if not req.flag("stream"):
                streams.logs_only(e, fd, head, cid, tty, spec, logs)
            else:
                streams.attach_running(e, fd, head, cid, tty, spec, logs, keys)

        return await take_over(ctx, req, job)
    old = ctx.parked.pop(c.id, None)
    if old is not None:
        old.conn.close()
    stdin, stdout, stderr, cid = req.flag("stdin"), req.flag("stdout"), req.flag("stderr"), c.id
    await ctx.run(req, lambda e, _: streams.audit(e.attached, cid, stdin, stdout, stderr))
    conn = req.conn
    await conn.send(head)
    conn.taken = True
    ctx.parked[c.id] = Parked(conn, req.flag("stdin"), req.flag("stdout"), req.flag("stderr"),
                              conn.leftover(), ws=ws, keys=keys)
    return TAKEN


@route("POST", "/containers/(?P<ref>[^/]+)/resize", body="none")
async def resize(ctx: Ctx, req: Request, ref: str) -> int:
    c = find_container(ctx, ref)
    h, w = req.q("h") or "0", req.q("w") or "0"
    if not (h.isdigit() and w.isdigit()):
        raise HttpError(400, "resize needs numeric h and w")
    fd = ctx.resizers.get(c.id)
    if not (int(h) and int(w)):
        pass
    elif fd is not None:  # attached through start: its worker passes the size on
        with contextlib.suppress(OSError):
            os.write(fd, f"{h} {w}\n".encode())
    elif c.config.get("tty") and c.state in ("running", "paused"):
        _resize_running(ctx, c.id, f"{h} {w}")
    await req.conn.respond(200)
    return 200


def _resize_running(ctx: Ctx, cid: str, size: str) -> None:
    """A terminal attached to a running container (docker attach, not through start): the
    size goes to its monitor as any attach client's does, which sets the container's pty."""
    from adapters.runtime import frames

    ctl = frames.connect_attach(ctx.engine.runtime.container_dir(cid))
    if ctl is None:
        return
    with contextlib.suppress(OSError):
        frames.send(ctl, frames.RESIZE, size.encode())
    ctl.close()


@route("GET", "/containers/(?P<ref>[^/]+)/export", body="none")
async def export(ctx: Ctx, req: Request, ref: str) -> Any:
    fd = req.conn.sock.fileno()

    def job(e: Any, rep: Any) -> None:
        streams.download(fd, lambda out: e.export(ref, out, file="docker-api"))

    return await take_over(ctx, req, job)


async def janitor(ctx: Ctx) -> None:
    """Close attaches whose container never started (their client gave up, surely)."""
    while True:
        await asyncio.sleep(30)
        now = time.monotonic()
        for cid, parked in list(ctx.parked.items()):
            if now - parked.since > PARK_LIMIT or ctx.log.container(cid) is None:
                ctx.parked.pop(cid, None)
                parked.conn.close()
