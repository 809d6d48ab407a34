"""Network endpoints: list and inspect (inline, from the read model); create, remove and
prune (workers, each recorded as the CLI's are). Shapes are moby's api/swagger.yaml
(Network, NetworkCreateResponse, NetworkPruneResponse); errors carry docker's own words,
lower case as its daemon sends them (`network x not found`).

A request field lamina doesn't honour (IPv6, swarm's ingress and config networks,
an IPAM range or auxiliary addresses, a second subnet) is refused by name before anything
happens, and recorded as refused; so is an endpoint setting connect can't honour (IPv6 and
link-local addresses, links, a MAC address, driver options), in create's words."""

from __future__ import annotations

from typing import Any

from adapters.dockerapi.http import HttpError, Request
from adapters.dockerapi.routing import Ctx, dumps, error_for, raise_for, route
from core.errors import LaminaError

# NetworkCreateRequest's fields lamina takes; CheckDuplicate is moot (names are unique), and
# so is Attachable on a local network: it lets standalone containers join a swarm-scoped
# network, and every container may join a local one already (docker-compose 1.x sends it
# with every create). It is not recorded, so inspect shows Attachable false.
CREATE_FIELDS = ("Name", "CheckDuplicate", "Driver", "Scope", "Internal", "IPAM", "Options",
                 "Labels", "EnableIPv4", "Attachable")
IPAM_CONFIG_FIELDS = ("Subnet", "Gateway")




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
        elif key not in CREATE_FIELDS and value:
            return f"{key} is not supported by lamina yet"
    if body.get("Scope") not in (None, "", "local"):
        return f"Scope {body['Scope']!r} is not supported by lamina yet"
    ipam = body.get("IPAM") or {}
    if not isinstance(ipam, dict):
        return None
    if ipam.get("Driver") not in (None, "", "default"):
        return f"IPAM driver {ipam['Driver']!r} is not supported by lamina yet"
    if ipam.get("Options"):
        return "IPAM Options is not supported by lamina yet"
    configs = ipam.get("Config") or []
    if isinstance(configs, list):
        if len(configs) > 1:
            return "more than one IPAM Config is not supported by lamina yet"
        for config in configs:
            if isinstance(config, dict):
                for key, value in config.items():
                    if key not in IPAM_CONFIG_FIELDS and value:
                        return f"IPAM Config {key} is not supported by lamina yet"
    return None


def _ipam(body: dict[str, Any]) -> tuple[str | None, str | None]:
    ipam = body.get("IPAM") or {}
    if not isinstance(ipam, dict):
        raise HttpError(400, "invalid JSON: IPAM must be an object")
    configs = ipam.get("Config") or []
    if not isinstance(configs, list) or not all(isinstance(c, dict) for c in configs):
        raise HttpError(400, "invalid JSON: IPAM.Config must be a list of objects")
    if not configs:
        return None, None
    subnet, gateway = configs[0].get("Subnet") or None, configs[0].get("Gateway") or None
    for what, value in (("Subnet", subnet), ("Gateway", gateway)):
        if value is not None and not isinstance(value, str):
            raise HttpError(400, f"invalid JSON: IPAM.Config.{what} must be a string")
    return subnet, gateway


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
    subnet, gateway = _ipam(body)
    driver = body.get("Driver") or "bridge"
    labels, options = body.get("Labels") or {}, body.get("Options") or {}
    if not isinstance(driver, str):
        raise HttpError(400, "invalid JSON: Driver must be a string")
    for what, value in (("Labels", labels), ("Options", options)):
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise HttpError(400, f"invalid JSON: {what} must map strings to strings")
    internal = bool(body.get("Internal"))

    def job(e: Any, _: Any) -> str:
        nid: str = e.network_create(name, subnet=subnet, gateway=gateway, internal=internal,
                                    labels=labels, options=options, driver=driver)
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


def _endpoint_request(body: dict[str, Any]) -> tuple[list[str], str | None, str | None]:
    """A connect's EndpointConfig as (aliases, IPv4 address, the first field lamina can't
    honour, named in create's words; None if none)."""
    config = body.get("EndpointConfig") or {}
    if not isinstance(config, dict):
        raise HttpError(400, "invalid JSON: EndpointConfig must be an object")
    ipam = config.get("IPAMConfig") or {}
    if not isinstance(ipam, dict):
        raise HttpError(400, "invalid JSON: EndpointConfig.IPAMConfig must be an object")
    refused = None
    for key in ("IPv6Address", "LinkLocalIPs"):
        if ipam.get(key):
            refused = (f"{key} (--ip6, --link-local-ip) is not supported by lamina: its "
                       "networks are IPv4 only")
    for key in ("Links", "MacAddress", "DriverOpts"):
        if config.get(key):
            refused = refused or f"endpoint setting {key} is not supported by lamina yet"
    aliases = config.get("Aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise HttpError(400, "invalid JSON: EndpointConfig.Aliases must be a list of strings")
    ip = ipam.get("IPv4Address") or None
    if ip is not None and not isinstance(ip, str):
        raise HttpError(400, "invalid JSON: IPAMConfig.IPv4Address must be a string")
    return aliases, ip, refused


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
    aliases, ip, refused = _endpoint_request(body)
    if refused:
        await _refuse(ctx, req, "network connect", f"{ref} {container}", refused)

    def job(e: Any, _: Any) -> None:
        e.network_connect(ref, container, aliases=aliases, ip=ip)

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
