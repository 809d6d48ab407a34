"""Network endpoints: list and inspect (inline, from the read model); create, remove and
prune (workers, each recorded as the CLI's are). Shapes are moby's api/swagger.yaml
(Network, NetworkCreateResponse, NetworkPruneResponse); errors carry docker's own words,
lower case as its daemon sends them (`network x not found`).

A request field lamina doesn't honour (swarm's ingress, scope and config networks, an IPAM
driver or options, a third subnet) is refused by name before anything happens, and
recorded as refused, in docker's 400."""

from __future__ import annotations

from typing import Any

from adapters.dockerapi.http import HttpError, Request
from adapters.dockerapi.routing import Ctx, dumps, error_for, raise_for, route
from core.errors import LaminaError

# NetworkCreateRequest's fields lamina takes; CheckDuplicate is moot (names are unique).
# Attachable is recorded and shown (on a local network every container may join already).
CREATE_FIELDS = ("Name", "CheckDuplicate", "Driver", "Scope", "Internal", "IPAM", "Options",
                 "Labels", "EnableIPv4", "EnableIPv6", "Attachable")
IPAM_CONFIG_FIELDS = ("Subnet", "Gateway", "IPRange", "AuxiliaryAddresses")
SWARM = ("Ingress", "ConfigOnly", "ConfigFrom")


async def _refuse(ctx: Ctx, req: Request, command: str, target: str, reason: str) -> None:
    """Record the refusal (one CommandRejected) and answer it as docker's 400."""
    def job(e: Any, _: Any) -> None:
        e.refuse(command, target, reason)

    raise_for(await ctx.run(req, job), capital=False)


def _unsupported(body: dict[str, Any]) -> str | None:
    """The first field of a create request lamina can't honour, named; None if none."""
    for key, value in body.items():
        if key == "EnableIPv4":
            if value is False:
                return "EnableIPv4 (false) is not supported by lamina yet"
        elif key in SWARM and value:
            return f"{key} is not supported by lamina: it has no swarm mode"
        elif key not in CREATE_FIELDS and value:
            return f"{key} is not supported by lamina yet"
    if body.get("Scope") not in (None, "", "local"):
        return (f"Scope {body['Scope']!r} is not supported by lamina: its networks are "
                "local (it has no swarm mode)")
    if body.get("Driver") in ("overlay", "ingress"):
        return (f"network driver {body['Driver']!r} is not supported by lamina: it has no "
                "swarm mode")
    ipam = body.get("IPAM") or {}
    if not isinstance(ipam, dict):
        return None
    if ipam.get("Driver") not in (None, "", "default"):
        return f"IPAM driver {ipam['Driver']!r} is not supported by lamina yet"
    if ipam.get("Options"):
        return "IPAM Options is not supported by lamina yet"
    configs = ipam.get("Config") or []
    if isinstance(configs, list):
        for config in configs:
            if isinstance(config, dict):
                for key, value in config.items():
                    if key not in IPAM_CONFIG_FIELDS and value:
                        return f"IPAM Config {key} is not supported by lamina yet"
    return None


def _ipam(body: dict[str, Any]) -> dict[str, Any]:
    """IPAM.Config as network_create's keywords: one entry per family at most (subnet,
    gateway, ip_range; subnet6, gateway6, ip_range6), the auxiliary addresses of all."""
    ipam = body.get("IPAM") or {}
    if not isinstance(ipam, dict):
        raise HttpError(400, "invalid JSON: IPAM must be an object")
    configs = ipam.get("Config") or []
    if not isinstance(configs, list) or not all(isinstance(c, dict) for c in configs):
        raise HttpError(400, "invalid JSON: IPAM.Config must be a list of objects")
    out: dict[str, Any] = {}
    aux: dict[str, str] = {}
    for config in configs:
        fields = {k: config.get(api) or None for api, k in
                  (("Subnet", "subnet"), ("Gateway", "gateway"), ("IPRange", "ip_range"))}
        for what, value in fields.items():
            if value is not None and not isinstance(value, str):
                raise HttpError(400, f"invalid JSON: IPAM.Config.{what} must be a string")
        given = [v for v in fields.values() if v]
        suffix = "6" if given and ":" in given[0] else ""
        for key, value in fields.items():
            if value is None:
                continue
            if f"{key}{suffix}" in out:
                raise HttpError(400, "more than one IPv6 subnet (or IPv4) is not supported "
                                     "by lamina yet" if suffix else
                                "more than one IPv4 subnet is not supported by lamina yet")
            out[f"{key}{suffix}"] = value
        more = config.get("AuxiliaryAddresses") or {}
        if not isinstance(more, dict) or not all(isinstance(v, str) for v in more.values()):
            raise HttpError(400, "invalid JSON: AuxiliaryAddresses must map names to "
                                 "addresses")
        aux.update(more)
    if aux:
        out["aux_addresses"] = aux
    return out


@route("GET", "/networks", body="none")
async def list_networks(ctx: Ctx, req: Request) -> int:
    from core.engine.networks import doc

    try:
        networks = ctx.engine.network_list(req.filters())
    except LaminaError as err:
        raise error_for(err, capital=False) from None
    await req.conn.respond(200, dumps([doc(n) for n in networks]))
    return 200


@route("POST", "/networks/create")
async def create(ctx: Ctx, req: Request) -> int:
    body = req.json()
    if not isinstance(body, dict):
        raise HttpError(400, "invalid JSON: a network's configuration is an object")
    name = body.get("Name")
    if not isinstance(name, str):
        raise HttpError(400, "invalid JSON: Name must be a string")
    refused = _unsupported(body)
    if refused:
        await _refuse(ctx, req, "network create", name or "(no name)", refused)
    ipam = _ipam(body)
    driver = body.get("Driver") or "bridge"
    labels, options = body.get("Labels") or {}, body.get("Options") or {}
    if not isinstance(driver, str):
        raise HttpError(400, "invalid JSON: Driver must be a string")
    for what, value in (("Labels", labels), ("Options", options)):
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise HttpError(400, f"invalid JSON: {what} must map strings to strings")
    internal = bool(body.get("Internal"))
    ipam.update(ipv6=bool(body.get("EnableIPv6")), attachable=bool(body.get("Attachable")))

    def job(e: Any, _: Any) -> str:
        nid: str = e.network_create(name, internal=internal, labels=labels, options=options,
                                    driver=driver, **ipam)
        return nid

    nid = raise_for(await ctx.run(req, job), capital=False)
    await req.conn.respond(201, dumps({"Id": nid, "Warning": ""}))
    return 201


@route("POST", "/networks/prune", body="none")
async def prune(ctx: Ctx, req: Request) -> int:
    filters = req.filters()

    def job(e: Any, _: Any) -> dict[str, Any]:
        return {"NetworksDeleted": e.network_prune(filters)}

    out = raise_for(await ctx.run(req, job), capital=False)
    await req.conn.respond(200, dumps(out))
    return 200


@route("GET", "/networks/(?P<ref>[^/]+)", body="none")
async def inspect(ctx: Ctx, req: Request, ref: str) -> int:
    from adapters.storage.netsettings import network_doc
    from core.engine.networks import members

    try:
        n = ctx.engine.network(ref)
    except LaminaError as err:
        raise error_for(err, capital=False) from None
    if req.q("scope") not in (None, "", "local"):  # every network of lamina's is local
        raise HttpError(404, f"network {ref} not found")
    await req.conn.respond(200, dumps(network_doc(n, members(ctx.engine, n))))
    return 200


@route("DELETE", "/networks/(?P<ref>[^/]+)", body="none")
async def remove(ctx: Ctx, req: Request, ref: str) -> int:
    def job(e: Any, _: Any) -> None:
        e.network_rm([ref])

    raise_for(await ctx.run(req, job), capital=False)
    await req.conn.respond(204)
    return 204


def _endpoint_request(body: dict[str, Any]) -> dict[str, Any]:
    """A connect's EndpointConfig as network_connect's keywords (aliases, ip, ip6, mac,
    links, link_local_ips, driver_opts), judged by the engine."""
    from core.engine.attaching import endpoint_request

    config = body.get("EndpointConfig") or {}
    if not isinstance(config, dict):
        raise HttpError(400, "invalid JSON: EndpointConfig must be an object")
    if not isinstance(config.get("IPAMConfig") or {}, dict):
        raise HttpError(400, "invalid JSON: EndpointConfig.IPAMConfig must be an object")
    try:
        return endpoint_request(config)
    except LaminaError as err:
        raise error_for(err, capital=False) from None


def _container_of(body: Any) -> str:
    if not isinstance(body, dict):
        raise HttpError(400, "invalid JSON: the request is an object")
    container = body.get("Container")
    if not isinstance(container, str) or not container:
        raise HttpError(400, "invalid JSON: Container must be a container's name or id")
    return container


@route("POST", "/networks/(?P<ref>[^/]+)/connect")
async def connect(ctx: Ctx, req: Request, ref: str) -> int:
    """docker network connect: the container joins at once when it runs, at its next start
    otherwise (moby's 200, no body)."""
    body = req.json()
    container = _container_of(body)
    settings = _endpoint_request(body)

    def job(e: Any, _: Any) -> None:
        e.network_connect(ref, container, **settings)

    raise_for(await ctx.run(req, job), capital=False)
    await req.conn.respond(200)
    return 200


@route("POST", "/networks/(?P<ref>[^/]+)/disconnect")
async def disconnect(ctx: Ctx, req: Request, ref: str) -> int:
    """docker network disconnect (moby's 200, no body)."""
    body = req.json()
    container = _container_of(body)
    force = bool(body.get("Force"))

    def job(e: Any, _: Any) -> None:
        e.network_disconnect(ref, container, force=force)

    raise_for(await ctx.run(req, job), capital=False)
    await req.conn.respond(200)
    return 200
