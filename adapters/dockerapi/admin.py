"""Rename, update, the prunes of containers and images, and disk usage: docker's endpoints
(moby's api/swagger.yaml: ContainerUpdateResponse, ContainerPruneResponse,
ImagePruneResponse, SystemDataUsageResponse). Commands run in forked workers and are
recorded as the CLI's are; df is a query, answered inline."""

from __future__ import annotations

from typing import Any

from adapters.dockerapi import shapes
from adapters.dockerapi.http import HttpError, Request
from adapters.dockerapi.routing import Ctx, dumps, raise_for, route
from core import resources

# UpdateConfig's fields (Resources and RestartPolicy) lamina applies, by its option key
_APPLIED = {"Memory": "memory", "NanoCpus": "cpus", "PidsLimit": "pids",
            "RestartPolicy": "restart", **{api: key for key, api in resources.KEYS.items()}}


@route("POST", "/containers/(?P<ref>[^/]+)/rename", body="none")
async def rename(ctx: Ctx, req: Request, ref: str) -> int:
    name = req.q("name") or ""

    def job(e: Any, _: Any) -> None:
        e.rename(ref, name)

    raise_for(await ctx.run(req, job))
    await req.conn.respond(204)
    return 204


def update_options(body: Any) -> dict[str, Any]:
    """docker's UpdateConfig as the engine's update options: a field at its zero value (or
    PidsLimit null, RestartPolicy without a name) asks nothing; one lamina can't change is
    kept to be refused by name."""
    if not isinstance(body, dict):
        raise HttpError(400, "the update body must be a JSON object")
    options: dict[str, Any] = {"unsupported": []}
    for name, value in body.items():
        key = _APPLIED.get(name)
        if name == "PidsLimit":
            if value is not None:
                options["pids"] = value
        elif name == "RestartPolicy":
            if isinstance(value, dict) and value.get("Name"):
                options["restart"] = value
        elif value in (None, 0, "", [], {}, False):
            continue
        elif name == "Memory":
            options["memory"] = value
        elif name == "NanoCpus":
            options["cpus"] = value / 1e9
        elif key is None:
            options["unsupported"].append(f"HostConfig.{name}")
        else:
            options[key] = value
    return options


@route("POST", "/containers/(?P<ref>[^/]+)/update")
async def update(ctx: Ctx, req: Request, ref: str) -> int:
    options = update_options(req.json())

    def job(e: Any, _: Any) -> None:
        e.update(ref, options)

    raise_for(await ctx.run(req, job))
    await req.conn.respond(200, dumps({"Warnings": []}))
    return 200


@route("POST", "/containers/prune", body="none")
async def prune_containers(ctx: Ctx, req: Request) -> int:
    filters = req.filters()

    def job(e: Any, _: Any) -> dict[str, Any]:
        pruned = e.container_prune(filters)
        return {"ContainersDeleted": pruned.ids or None, "SpaceReclaimed": pruned.reclaimed}

    await req.conn.respond(200, dumps(raise_for(await ctx.run(req, job), capital=False)))
    return 200


@route("POST", "/images/prune", body="none")
async def prune_images(ctx: Ctx, req: Request) -> int:
    filters = req.filters()

    def job(e: Any, _: Any) -> dict[str, Any]:
        pruned = e.image_prune(filters)
        deleted = [{k: shapes.familiar(v) if k == "Untagged" else v for k, v in d.items()}
                   for d in pruned.deleted]
        return {"ImagesDeleted": deleted or None, "SpaceReclaimed": pruned.reclaimed}

    await req.conn.respond(200, dumps(raise_for(await ctx.run(req, job), capital=False)))
    return 200


@route("GET", "/system/df", body="none")
async def disk_usage(ctx: Ctx, req: Request) -> int:
    """docker's SystemDataUsageResponse; `type=` (container, image, volume, build-cache)
    narrows it, as docker's does."""
    from adapters.storage.volumes import doc as volume_doc
    from core.engine.networks import every

    usage = ctx.engine.disk_usage()
    wanted = set(req.query.get("type") or ()) or {"container", "image", "volume",
                                                  "build-cache"}
    images = {i.image.id: i.image for i in usage.images}
    layers = {la.id: la for la in ctx.log.layers()}
    out: dict[str, Any] = {}
    if "image" in wanted:
        out["LayersSize"] = usage.layers_size
        out["Images"] = [{**shapes.image_summary(i.image, layers, i.containers),
                          "SharedSize": i.shared, "Size": i.size}
                         for i in usage.images]
    if "container" in wanted:
        nets = every(ctx.engine)
        out["Containers"] = [{**shapes.container_summary(c.container,
                                                         images.get(c.container.image),
                                                         ctx.root, nets, req.api_version),
                              "SizeRw": c.size_rw, "SizeRootFs": c.size_root}
                             for c in usage.containers]
    if "volume" in wanted:
        out["Volumes"] = [{**volume_doc(v.volume, ctx.engine.volumes.path(v.volume.id)),
                           "UsageData": {"Size": v.size, "RefCount": v.refs}}
                          for v in usage.volumes]
    if "build-cache" in wanted:
        out["BuildCache"] = []
        out["BuilderSize"] = 0
    await req.conn.respond(200, dumps(out))
    return 200


@route("POST", "/build/prune", body="none")
async def prune_build_cache(ctx: Ctx, req: Request) -> int:
    """lamina's build cache is its intermediate images (image prune's): there is no other
    cache to prune, and nothing to record."""
    await req.conn.respond(200, dumps({"CachesDeleted": None, "SpaceReclaimed": 0}))
    return 200
