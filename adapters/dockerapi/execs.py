"""exec: create (an instance in memory, as dockerd keeps them), start (a worker takes the
connection: ExecStarted/ExecExited are its events), inspect (its exit code)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

from adapters.dockerapi import streams
from adapters.dockerapi.http import HttpError, Request
from adapters.dockerapi.routing import TAKEN, Ctx, dumps, find_container, raise_for, route
from core.errors import LaminaError
from core.logfilter import detach_keys

MAX_EXECS = 10000  # finished instances kept for inspect; the oldest go first


# An exec's fields lamina doesn't build: a request that sets one is refused by name and
# recorded (the others, Cmd, Env, WorkingDir, User, Tty, ConsoleSize, DetachKeys and the
# Attach* flags, are applied).
EXEC_REFUSED = {"Privileged": "exec --privileged"}


@route("POST", "/containers/(?P<ref>[^/]+)/exec")
async def create(ctx: Ctx, req: Request, ref: str) -> int:
    body = req.json()
    if not isinstance(body, dict):
        raise HttpError(400, "the exec body must be a JSON object")
    cmd = body.get("Cmd") or []
    if isinstance(cmd, str):
        cmd = [cmd]
    if not cmd:
        raise HttpError(400, "No exec command specified")
    refused = [f"{field} ({flag}) is not supported by lamina yet"
               for field, flag in EXEC_REFUSED.items() if body.get(field)]
    if refused:
        def refuse(e: Any, _: Any) -> None:
            e.refuse("exec", ref, refused[0])

        raise_for(await ctx.run(req, refuse))
    try:
        asked = next((v for k, v in body.items() if k.lower() == "detachkeys"), None)
        keys = detach_keys(asked or None)  # Go's JSON names match case-insensitively
        size = _console_size(body)
    except LaminaError as err:
        raise HttpError(400, str(err)) from None
    c = find_container(ctx, ref)
    if c.state != "running":
        def job(e: Any, _: Any) -> None:  # the engine judges and records the refusal
            e.exec(ref, cmd)

        raise_for(await ctx.run(req, job))
    exec_id = os.urandom(32).hex()
    ctx.execs[exec_id] = {
        "ID": exec_id, "ContainerID": c.id, "Cmd": [str(a) for a in cmd],
        "Env": body.get("Env") or [], "WorkingDir": body.get("WorkingDir") or None,
        "User": body.get("User") or "", "Tty": bool(body.get("Tty")),
        "AttachStdin": bool(body.get("AttachStdin")),
        "AttachStdout": bool(body.get("AttachStdout", True)),
        "AttachStderr": bool(body.get("AttachStderr", True)),
        "DetachKeys": keys.hex(), "ConsoleSize": size, "Running": False, "ExitCode": None,
        "done": None,
    }
    _trim(ctx)
    await req.conn.respond(201, dumps({"Id": exec_id}))
    return 201


def _console_size(body: Any) -> list[int] | None:
    """ConsoleSize [height, width] of an exec's create or start body (docker's CLI sends it
    in both); None when it is absent or [0, 0]."""
    from core.runopts import checked_console_size

    value = body.get("ConsoleSize") if isinstance(body, dict) else None
    return None if value is None else checked_console_size(value)


def _trim(ctx: Ctx) -> None:
    while len(ctx.execs) > MAX_EXECS:
        oldest = next(iter(ctx.execs))
        ctx.execs.pop(oldest)


def _instance(ctx: Ctx, exec_id: str) -> dict[str, Any]:
    inst = ctx.execs.get(exec_id)
    if inst is None:
        raise HttpError(404, f"No such exec instance: {exec_id}")
    return inst


@route("POST", "/exec/(?P<exec_id>[^/]+)/start")
async def start(ctx: Ctx, req: Request, exec_id: str) -> Any:
    inst = _instance(ctx, exec_id)
    body = req.json()
    detach = bool(body.get("Detach")) if isinstance(body, dict) else False
    raw = bool(body.get("Tty")) if isinstance(body, dict) else False  # framing: start's Tty
    if inst["Running"] or inst["ExitCode"] is not None:
        raise HttpError(409, f"exec {exec_id[:12]} has already run")
    try:
        size = _console_size(body)
    except LaminaError as err:
        raise HttpError(400, str(err)) from None
    fd = req.conn.sock.fileno()
    upgrade = req.upgrade
    # its terminal's resizes (/exec/ID/resize) reach the worker that holds the pty here
    resize_r, resize_w = os.pipe2(os.O_CLOEXEC) if inst["Tty"] and not detach else (-1, -1)
    spec = {**{k: v for k, v in inst.items() if k not in ("done", "resize_w")},
            "ConsoleSize": size or inst["ConsoleSize"], "resize_fd": resize_r}

    def job(e: Any, _: Any) -> int:
        return streams.exec_stream(e, fd, upgrade, spec, detach, raw)

    try:
        r = ctx.workers.fork(job, ctx.meta(req), keep=(fd, resize_r) if resize_r >= 0 else (fd,))
    finally:
        if resize_r >= 0:
            os.close(resize_r)
    req.conn.taken = True
    req.conn.close()
    inst["Running"] = True
    inst["resize_w"] = resize_w
    inst["done"] = asyncio.ensure_future(_finish(ctx, inst, r))
    return TAKEN


async def _finish(ctx: Ctx, inst: dict[str, Any], r: int) -> None:
    report = await ctx.workers.report(r)
    if inst.get("resize_w", -1) >= 0:
        os.close(inst.pop("resize_w"))
    inst["Running"] = False
    inst["ExitCode"] = report.value if report.ok and isinstance(report.value, int) else 126
    inst["Error"] = report.error


@route("GET", "/exec/(?P<exec_id>[^/]+)/json", body="none")
async def inspect(ctx: Ctx, req: Request, exec_id: str) -> int:
    inst = _instance(ctx, exec_id)
    done = inst.get("done")
    if inst["Running"] and done is not None:  # the stream may have ended a moment ago
        await asyncio.wait([done], timeout=0.05)
    doc = {"ID": inst["ID"], "Running": inst["Running"], "ExitCode": inst["ExitCode"],
           "ProcessConfig": {"tty": inst["Tty"], "entrypoint": inst["Cmd"][0],
                             "arguments": inst["Cmd"][1:], "privileged": False,
                             "user": inst["User"]},
           "OpenStdin": inst["AttachStdin"], "OpenStdout": inst["AttachStdout"],
           "OpenStderr": inst["AttachStderr"], "CanRemove": False,
           "ContainerID": inst["ContainerID"], "DetachKeys": "", "Pid": 0}  # docker's too
    await req.conn.respond(200, dumps(doc))
    return 200


@route("POST", "/exec/(?P<exec_id>[^/]+)/resize", body="none")
async def resize(ctx: Ctx, req: Request, exec_id: str) -> int:
    """The running exec's terminal resized: the worker relaying its pty sets the size. An
    exec without a terminal, or not running, has none to size (docker's answer: 200)."""
    inst = _instance(ctx, exec_id)
    h, w = req.q("h") or "0", req.q("w") or "0"
    if not (h.isdigit() and w.isdigit()):
        raise HttpError(400, "resize needs numeric h and w")
    fd = inst.get("resize_w", -1)
    if fd >= 0 and int(h) and int(w):
        with contextlib.suppress(OSError):
            os.write(fd, f"{h} {w}\n".encode())
    await req.conn.respond(200)
    return 200
