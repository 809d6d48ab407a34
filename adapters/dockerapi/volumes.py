"""Volume endpoints: list and inspect (inline, from the read model); create, remove and
prune (workers, each recorded as the CLI's are). Shapes are moby's api/swagger.yaml
(Volume, VolumeListResponse, VolumePruneResponse); errors carry docker's own words, lower
case as its daemon sends them (`get x: no such volume`)."""

from __future__ import annotations

from typing import Any

from adapters.dockerapi.http import HttpError, Request
from adapters.dockerapi.routing import Ctx, dumps, error_for, raise_for, route
from adapters.storage.volumes import doc
from core.errors import LaminaError

# VolumeCreateRequest's fields; any other one with a value is refused by name.
CREATE_FIELDS = ("Name", "Driver", "DriverOpts", "Labels")




def _doc(e: Any, v: Any) -> dict[str, Any]:
    return doc(v, e.volumes.path(v.id))


@route("GET", "/volumes", body="none")
async def list_volumes(ctx: Ctx, req: Request) -> int:
    try:
        volumes = ctx.engine.volume_list(req.filters())
    except LaminaError as err:
        raise error_for(err, capital=False) from None
    out = {"Volumes": [_doc(ctx.engine, v) for v in volumes], "Warnings": []}
    await req.conn.respond(200, dumps(out))
    return 200


@route("POST", "/volumes/create")
async def create(ctx: Ctx, req: Request) -> int:
    body = req.json()
    if not isinstance(body, dict):
        raise HttpError(400, "invalid JSON: a volume's configuration is an object")
    extra = sorted(k for k, v in body.items() if k not in CREATE_FIELDS and v)
    if extra:  # ClusterVolumeSpec (swarm's), or a field docker does not know
        raise HttpError(400, f"{extra[0]} is not supported by lamina yet")
    name = body.get("Name") or None
    driver = body.get("Driver") or "local"
    labels, options = body.get("Labels") or {}, body.get("DriverOpts") or {}
    for what, value in (("Name", name), ("Driver", driver)):
        if value is not None and not isinstance(value, str):
            raise HttpError(400, f"invalid JSON: {what} must be a string")
    for what, value in (("Labels", labels), ("DriverOpts", options)):
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise HttpError(400, f"invalid JSON: {what} must map strings to strings")

    def job(e: Any, _: Any) -> dict[str, Any]:
        made = e.volume_create(name, driver, labels, options)
        return _doc(e, e.volume(made))

    out = raise_for(await ctx.run(req, job), capital=False)
    await req.conn.respond(201, dumps(out))
    return 201


@route("GET", "/volumes/(?P<name>[^/]+)", body="none")
async def inspect(ctx: Ctx, req: Request, name: str) -> int:
    try:
        v = ctx.engine.volume(name)
    except LaminaError as err:
        raise error_for(err, capital=False) from None
    await req.conn.respond(200, dumps(_doc(ctx.engine, v)))
    return 200


@route("DELETE", "/volumes/(?P<name>[^/]+)", body="none")
async def remove(ctx: Ctx, req: Request, name: str) -> int:
    force = req.flag("force")

    def job(e: Any, _: Any) -> None:
        e.volume_rm([name], force=force)

    raise_for(await ctx.run(req, job), capital=False)
    await req.conn.respond(204)
    return 204


@route("POST", "/volumes/prune", body="none")
async def prune(ctx: Ctx, req: Request) -> int:
    filters = req.filters()

    def job(e: Any, _: Any) -> dict[str, Any]:
        pruned = e.volume_prune(filters)
        return {"VolumesDeleted": pruned.names, "SpaceReclaimed": pruned.reclaimed}

    out = raise_for(await ctx.run(req, job), capital=False)
    await req.conn.respond(200, dumps(out))
    return 200
