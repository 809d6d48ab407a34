"""Image endpoints: list, inspect, history (inline); rmi, tag, commit, save, load, import
(workers)."""

from __future__ import annotations

import json
import os
import posixpath
from typing import Any

from adapters.dockerapi import shapes
from adapters.dockerapi.http import HttpError, Request
from adapters.dockerapi.routing import Ctx, capitalized, dumps, raise_for, route, take_over
from core.errors import LaminaError, NotFound


def find(ctx: Ctx, ref: str) -> Any:
    try:
        try:
            return ctx.engine.image(ref)
        except NotFound:
            if shapes.familiar(ref) == ref:
                raise
            return ctx.engine.image(shapes.familiar(ref))  # docker.io/library/x is x
    except NotFound:
        raise HttpError(404, f"No such image: {ref}") from None
    except LaminaError as err:
        raise HttpError(400, str(err)) from None


def _layers(ctx: Ctx) -> dict[str, Any]:
    return {la.id: la for la in ctx.log.layers()}


def _target(req: Request) -> str | None:
    """`repo` and `tag` as one reference (the CLI may put the whole REPO:TAG in repo)."""
    repo, name = shapes.familiar(req.q("repo") or ""), req.q("tag") or ""
    if not repo:
        return None
    if name:
        return f"{repo}:{name}"
    return repo if ":" in repo.rsplit("/", 1)[-1] else f"{repo}:latest"


@route("GET", "/images/json", body="none")
async def list_images(ctx: Ctx, req: Request) -> int:
    from core.images import children, image_filter

    images = ctx.log.images()
    layers = _layers(ctx)
    used: dict[str, int] = {}
    for c in ctx.log.containers():
        used[c.image] = used.get(c.image, 0) + 1
    everything = req.flag("all")
    try:
        wanted = image_filter({i.id: i for i in images}, req.filters())
    except NotFound as err:
        raise HttpError(404, str(err)) from None
    except LaminaError as err:
        raise HttpError(400, str(err)) from None
    out = []
    for i in reversed(images):
        intermediate = i.removed or (not i.tags and children(i.id, images))
        if intermediate and not everything or not wanted(i):
            continue
        out.append(shapes.image_summary(i, layers, used.get(i.id, 0)))
    await req.conn.respond(200, dumps(out))
    return 200


@route("GET", "/images/(?P<ref>.+)/json", body="none")
async def inspect(ctx: Ctx, req: Request, ref: str) -> int:
    image = find(ctx, ref)
    await req.conn.respond(200, dumps(shapes.image_inspect(image, _layers(ctx),
                                                           ctx.engine.layers)))
    return 200


@route("GET", "/images/(?P<ref>.+)/history", body="none")
async def history(ctx: Ctx, req: Request, ref: str) -> int:
    from adapters.storage import inspect as files

    image = find(ctx, ref)
    images = {i.id: i for i in ctx.log.images()}
    rows = files.history_rows(image, images, _layers(ctx))
    await req.conn.respond(200, dumps(shapes.history(rows)))
    return 200


@route("DELETE", "/images/(?P<ref>.+)", body="none")
async def remove(ctx: Ctx, req: Request, ref: str) -> int:
    force = req.flag("force")

    def job(e: Any, _: Any) -> list[dict[str, str]]:
        plan = e.rmi(ref, force=force)
        out = [{"Untagged": shapes.familiar(tag)} for _, tag in plan.untag]
        out += [{"Deleted": f"sha256:{iid}"} for iid, kept in plan.remove if not kept]
        return out

    report = await ctx.run(req, job)
    if not report.ok and report.kind == "Conflict":
        raise HttpError(409, report.error)
    await req.conn.respond(200, dumps(raise_for(report)))
    return 200


@route("POST", "/images/(?P<ref>.+)/tag", body="none")
async def tag(ctx: Ctx, req: Request, ref: str) -> int:
    target = _target(req)
    if not target:
        raise HttpError(400, "repository name must have at least one component")

    def job(e: Any, _: Any) -> None:
        e.tag(ref, target)

    raise_for(await ctx.run(req, job))
    await req.conn.respond(201)
    return 201


@route("POST", "/commit")
async def commit(ctx: Ctx, req: Request) -> int:
    ref = req.q("container") or ""
    target = _target(req)
    comment, author = req.q("comment") or "", req.q("author") or ""
    body = req.json()
    keys = ("Cmd", "Entrypoint", "Env", "WorkingDir", "User", "Labels", "StopSignal")
    config = {k: body[k] for k in keys if isinstance(body, dict) and body.get(k)} or None
    changes = req.query.get("changes") or []

    def job(e: Any, _: Any) -> str:
        return e.commit(ref, target, comment=comment, author=author, config=config,
                        changes=changes)

    iid = raise_for(await ctx.run(req, job))
    await req.conn.respond(201, dumps({"Id": f"sha256:{iid}"}))
    return 201


@route("GET", "/images/get", body="none")
async def save_many(ctx: Ctx, req: Request) -> Any:
    names = req.query.get("names") or []
    return await _save(ctx, req, names)


@route("GET", "/images/(?P<ref>.+)/get", body="none")
async def save_one(ctx: Ctx, req: Request, ref: str) -> Any:
    return await _save(ctx, req, [ref])


async def _save(ctx: Ctx, req: Request, names: list[str]) -> Any:
    from adapters.dockerapi import streams

    if not names:
        raise HttpError(400, "save needs at least one image")
    fd = req.conn.sock.fileno()

    def job(e: Any, _: Any) -> None:
        streams.download(fd, lambda out: e.save(names, out, file="docker-api"))

    return await take_over(ctx, req, job)


@route("POST", "/images/load", body="file")
async def load(ctx: Ctx, req: Request) -> int:
    path = req.body_path

    def job(e: Any, _: Any) -> list[Any]:
        return e.load(path, file="docker-api")

    report = await ctx.run(req, job)
    if not report.ok and report.kind == "BadInput":
        # docker's: the load streams, so a bad archive is an error message in a 200 answer
        # (docker-py raises ImageLoadError from it)
        message = capitalized(report.error)
        await req.conn.respond(200, dumps({"errorDetail": {"message": message},
                                           "error": message}) + b"\n")
        return 200
    loaded = raise_for(report)
    lines = []
    for iid, tags in loaded:
        lines += [f"Loaded image: {shapes.familiar(t)}\n" for t in tags]
        if not tags:
            lines.append(f"Loaded image ID: sha256:{iid}\n")
    body = b"".join(dumps({"stream": line}) + b"\n" for line in lines)
    await req.conn.respond(200, body)
    return 200


@route("POST", "/images/create", body="file")
async def create(ctx: Ctx, req: Request) -> int:
    """`docker import` (fromSrc=-: the body is the tar); a pull has nowhere to pull from."""
    source = req.q("fromSrc")
    if source != "-":
        image = req.q("fromImage") or source or ""
        raise HttpError(404, f"pull access denied for {image}: lamina has no registry; "
                             "use docker load or docker import")
    target = _target(req)
    message = req.q("message") or ""
    path = req.body_path
    changes = req.query.get("changes") or []

    def job(e: Any, _: Any) -> str:
        return e.import_image(path, target, created_by="docker import -", comment=message,
                              changes=changes)

    iid = raise_for(await ctx.run(req, job))
    await req.conn.respond(200, dumps({"status": f"sha256:{iid}"}) + b"\n")
    return 200


def in_context(dockerfile: str | None) -> str | None:
    """The `dockerfile` parameter names a file of the uploaded context, as docker's daemon
    reads it: an absolute or ../ path is taken inside the context (the build host then
    refuses a symlink out of it), never as a path on this host."""
    if not dockerfile:
        return None
    return posixpath.normpath("/" + dockerfile).lstrip("/") or None


# /build's fields lamina doesn't build, and the CLI flag docker's users know each by; one
# with a value that asks for something is refused by name (and recorded) by the worker.
BUILD_REFUSED = {"remote": "", "pull": "--pull", "cgroupparent": "--cgroup-parent",
                 "ulimits": "--ulimit", "outputs": "--output",
                 "session": "", "buildid": ""}
_ZERO = ("", "0", "no", "false", "none", "null", "[]", "{}")  # docker's false, 0 or empty


def _truthy(value: str | None) -> bool:
    """docker's BoolValue: anything but empty, 0, no, false and none."""
    return (value or "").strip().lower() not in _ZERO[:5]


def _json_arg(req: Request, name: str, kind: type, what: str) -> Any:
    text = req.q(name)
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError as err:
        raise HttpError(400, f"error reading {what}: {err}") from None
    if not isinstance(value, kind):
        raise HttpError(400, f"error reading {what}: not a JSON {kind.__name__}")
    return value


def build_refusals(req: Request) -> list[str]:
    """The request's fields lamina can't honour, named as the refusal says them."""
    out = []
    for name, flag in BUILD_REFUSED.items():
        if any(v.strip().lower() not in _ZERO for v in req.query.get(name) or []):
            out.append(f"{name} ({flag})" if flag else name)
    version = req.q("version") or "1"
    if version not in ("1", "2"):
        raise HttpError(400, f'invalid version "{version}"')
    if version == "2":
        out.append("version=2 (BuildKit)")
    platform = req.q("platform") or ""
    if platform not in ("", "linux", "linux/amd64"):
        out.append(f"platform={platform} (--platform)")
    return out


# /build's resource parameters for the RUN containers, by core/resources.py's keys (judged
# there, at each RUN container's create, as a run's are)
_BUILD_RESOURCES = {"memswap": "memory_swap", "cpushares": "cpu_shares",
                    "cpusetcpus": "cpuset_cpus", "cpusetmems": "cpuset_mems",
                    "cpuperiod": "cpu_period", "cpuquota": "cpu_quota"}


def _build_resources(req: Request) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, key in _BUILD_RESOURCES.items():
        value = req.q(name)
        if value in (None, "", "0"):
            continue
        if key.startswith("cpuset_"):
            out[key] = value
            continue
        try:
            out[key] = int(value)
        except ValueError:
            raise HttpError(400, f"invalid {name}: {value}") from None
    return out


def build_options(req: Request) -> dict[str, Any]:
    """/build's query as the worker's options (docker's parsing, its 400s)."""
    if req.query.get("securityopt"):
        raise HttpError(400, "security options are not supported on linux")
    isolation = req.q("isolation") or ""
    if isolation not in ("", "default"):
        raise HttpError(400, f'unsupported isolation: "{isolation}"')
    args = _json_arg(req, "buildargs", dict, "build args") or {}
    labels = _json_arg(req, "labels", dict, "labels") or {}
    cache_from = _json_arg(req, "cachefrom", list, "cache-from")
    try:
        memory = int(req.q("memory") or 0)
    except ValueError:
        raise HttpError(400, f"invalid memory: {req.q('memory')}") from None
    network = req.q("networkmode") or "default"
    run_options: dict[str, Any] = {"memory": memory} if memory > 0 else {}
    try:
        shm = int(req.q("shmsize") or 0)
    except ValueError:
        raise HttpError(400, f"invalid shmsize: {req.q('shmsize')}") from None
    if shm:  # the RUN containers' /dev/shm, as docker's builder sizes it
        run_options["shm_size"] = shm
    run_options.update(_build_resources(req))
    if network != "default":  # host, none, or a network's name or id: the RUN containers'
        run_options["network"] = network
    hosts = [h for v in req.query.get("extrahosts") or [] for h in v.split(",") if h]
    if hosts:  # docker's CLI joins them with commas; docker-py repeats the parameter
        run_options["extra_hosts"] = hosts
    removing = _truthy(req.q("forcerm")) or req.q("rm") in (None, "") or _truthy(req.q("rm"))
    return {"dockerfile": in_context(req.q("dockerfile")),
            "tags": [shapes.familiar(t) for t in req.query.get("t") or []],
            "build_args": {str(k): str(v) for k, v in args.items() if v is not None},
            "no_cache": _truthy(req.q("nocache")), "target": req.q("target") or None,
            "quiet": _truthy(req.q("q")),
            "labels": {str(k): str(v) for k, v in labels.items()},
            "cache_from": [shapes.familiar(str(r)) for r in cache_from]
            if cache_from is not None else None,
            "refused": build_refusals(req), "run_options": run_options,
            "keep_containers": not removing, "squash": _truthy(req.q("squash"))}


@route("POST", "/build", body="file")
async def build(ctx: Ctx, req: Request) -> Any:
    """The classic builder (DOCKER_BUILDKIT=0): the body is the context as a tar; the
    worker unpacks it under <root>/tmp, builds with core/build.py through the same build
    host as `lamina build`, and streams docker's JSON progress on the connection."""
    from adapters.dockerapi import streams

    options = build_options(req)
    body, req.body_path = req.body_path, None  # the worker owns (and removes) it now
    fd = req.conn.sock.fileno()

    def job(e: Any, _: Any) -> None:
        streams.build_stream(e, fd, body, os.path.join(ctx.root, "tmp"), options)

    return await take_over(ctx, req, job)
