"""A container on networks: its request judged at create, its leases decided at start.

At create, the network options become what is recorded (docker's words when wrong):
`network` (the mode: none, host, bridge, a user-defined network's name, or
`container:<id>` to share a running container's network namespace; `bridge` when none is
asked, as docker's default), `endpoints` (per network: aliases and a fixed
address), `port_bindings` (each `-p` as a PortSpec), `exposed_ports` and `publish_all`
(`-P` publishes them and the image's EXPOSE), `dns`/`dns_search`/`dns_options`.

At start, the run's leases are decided from the log (core/networks.py judges): an address
on the network (its `--ip`, or the lowest free one), and a host port for each published
port (the asked one, or a free ephemeral one), against the leases of every other running
container. They travel on the Container handed to the runtime (which wires them) and are
recorded in its ContainerStarted; the read model refuses a second holder of an address or
port (the start then judges again), and the run's end releases them.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from typing import Any

from core import networks as ipam
from core.engine.base import EngineBase
from core.engine.networks import check_endpoint, endpoint, find
from core.errors import BadInput, Conflict, NotFound
from core.model import Container, ContainerBrief, Image, ImageBrief, Network

DEFAULT_MODE = ipam.DEFAULT_NETWORK
LIVE = ("running", "paused")


# --- create ------------------------------------------------------------------------------


def judge(e: EngineBase, config: dict[str, Any], remapped: bool = False) -> None:
    """Normalise and check a create's network options in place (BadInput/NotFound).

    A --userns-remap root's containers default to `none` and are refused a bridge: their
    network namespace would be made by the host's user namespace, over which their root
    has no say (it could not mount its /sys), and making it inside theirs is not built."""
    mode = config.get("network") or "default"
    if mode == "default":
        mode = "none" if remapped else DEFAULT_MODE
    if remapped and mode not in ("none", "host"):
        raise BadInput(f"--network {mode}: bridge networks are not supported on a "
                       "--userns-remap root yet (use --network none)")
    if mode.startswith("container:"):
        mode = f"container:{e.container(mode.partition(':')[2]).id}"
        for key, what in (("hostname", "hostname"), ("extra_hosts", "custom host-to-IP "
                          "mapping"), ("dns", "dns"), ("port_bindings", "port publishing"),
                          ("publish_all", "port publishing")):
            if config.get(key):
                raise BadInput(f"conflicting options: {what} and the network mode")
    config["network"] = mode
    shared = mode in ("none", "host") or mode.startswith("container:")
    if shared and any(str(h).endswith(("host-gateway",))
                      for h in config.get("extra_hosts") or ()):
        raise BadInput(f"--add-host NAME:host-gateway needs a bridge network: the "
                       f"container's network is {mode}")
    endpoints = _endpoints(config.get("endpoints"), mode)
    _fold(config, endpoints, mode)
    if shared:
        for key, flag in (("port_bindings", "-p, --publish"), ("publish_all", "-P"),
                          ("endpoints", "--ip, --network-alias, --mac-address, --link"),
                          ("dns", "--dns"), ("dns_search", "--dns-search"),
                          ("dns_options", "--dns-option")):
            if config.get(key) and not (key == "endpoints" and not endpoints):
                raise BadInput(f"{flag} needs a bridge network: the container's network "
                               f"is {mode}")
    else:
        network = find(e, mode)
        if network.driver != ipam.DRIVER:
            raise BadInput(f"network {mode} is not a bridge network")
        for name, ep in endpoints.items():
            if name != mode and find(e, name).id != network.id:
                raise BadInput(f"endpoint settings for network {name}, which the container "
                               f"is not on (--network {mode})")
            check_endpoint(network, ep)
        merged: dict[str, Any] = {}
        for ep in endpoints.values():  # the network named twice (by name and by id)
            merged.update(ep)
        endpoints = {mode: merged} if merged else {}
        if network.name == DEFAULT_MODE:  # legacy links: to containers there are
            for link in merged.get("links") or ():
                target = link.partition(":")[0]
                try:
                    e.container(target)
                except NotFound:
                    raise NotFound(f"could not get container for {target}") from None
    if endpoints:
        config["endpoints"] = endpoints
    else:
        config.pop("endpoints", None)
    if config.get("port_bindings"):
        config["port_bindings"] = [dataclasses.asdict(s) for s in
                                   _port_specs(config["port_bindings"])]
    if config.get("exposed_ports"):
        config["exposed_ports"] = exposed(config["exposed_ports"])
    for server in config.get("dns") or ():
        try:
            ipaddress.ip_address(server)
        except ValueError:
            raise BadInput(f"{server} is not an ip address") from None


# docker's EndpointSettings fields as recorded endpoint settings (core/engine/networks.py)
_ENDPOINT_FIELDS = (("Aliases", "aliases"), ("Links", "links"), ("MacAddress", "mac"),
                    ("DriverOpts", "driver_opts"))
_IPAM_FIELDS = (("IPv4Address", "ip"), ("IPv6Address", "ip6"),
                ("LinkLocalIPs", "link_local_ips"))


def _endpoints(raw: Any, mode: str) -> dict[str, dict[str, Any]]:
    """docker's EndpointsConfig ({NET: {Aliases, Links, MacAddress, DriverOpts,
    IPAMConfig: {IPv4Address, IPv6Address, LinkLocalIPs}}}) as recorded: {NET: {"aliases",
    "links", "mac", "driver_opts", "ip", "ip6", "link_local_ips"}}; settings that ask
    nothing are dropped. A recorded form (lower-case keys) passes through."""
    from core.engine.networks import endpoint_settings

    out: dict[str, dict[str, Any]] = {}
    for name, settings in (raw or {}).items():
        settings = settings or {}
        recorded = not any(k[:1].isupper() for k in settings)
        ep = endpoint_settings(settings) if recorded else endpoint_request(settings)
        if ep:
            out[mode if name in ("default", "") else name] = ep
    return out


def endpoint_request(settings: Mapping[str, Any]) -> dict[str, Any]:
    """One of docker's EndpointSettings (a connect's EndpointConfig) as recorded settings,
    its types checked in one line each."""
    from core.engine.networks import endpoint_settings

    ipam_cfg = settings.get("IPAMConfig") or {}
    flat = {key: settings.get(api) for api, key in _ENDPOINT_FIELDS}
    flat |= {key: ipam_cfg.get(api) for api, key in _IPAM_FIELDS}
    for key, value in flat.items():
        if value is None:
            continue
        kind = {"aliases": list, "links": list, "link_local_ips": list,
                "driver_opts": dict}.get(key, str)
        if not isinstance(value, kind):
            raise BadInput(f"invalid JSON: endpoint setting {key} must be a "
                           f"{'list' if kind is list else 'map' if kind is dict else 'string'}")
    return endpoint_settings(flat)


def _fold(config: dict[str, Any], endpoints: dict[str, dict[str, Any]], mode: str) -> None:
    """Config.MacAddress (`--mac-address`, before API 1.44) and HostConfig.Links (`--link`)
    are settings of the endpoint on the container's network, as docker's daemon takes
    them: folded into it (an endpoint's own MacAddress wins). Recorded once, there."""
    from core import networks as ipam_

    mac = config.pop("mac_address", None)
    links = config.pop("links", None)
    if not mac and not links:
        return
    ep = endpoints.setdefault(mode, {})
    if mac:
        ep.setdefault("mac", ipam_.check_mac(str(mac)))
    if links:
        from core.engine.networks import endpoint_settings

        ep["links"] = [*ep.get("links", ()),
                       *endpoint_settings({"links": list(links)})["links"]]


def _port_specs(raw: Any) -> list[ipam.PortSpec]:
    """`-p` strings (the CLI's) or docker's PortBindings ({"80/tcp": [{HostIp, HostPort}]})
    as PortSpecs; a recorded list of PortSpec dicts passes through."""
    out: list[ipam.PortSpec] = []
    if isinstance(raw, Mapping):
        for port, hosts in raw.items():
            for host in hosts or [{}]:
                host = host or {}
                ip, hp = host.get("HostIp") or "", str(host.get("HostPort") or "")
                text = f"{ip}:{hp}:{port}" if ip else f"{hp}:{port}" if hp else str(port)
                if ip and ":" in ip:
                    text = f"[{ip}]:{hp}:{port}"
                out += ipam.parse_publish(text)
        return out
    for item in raw:
        out += [ipam.PortSpec(**item)] if isinstance(item, Mapping) \
            else ipam.parse_publish(str(item))
    return out


def exposed(raw: Any) -> list[str]:
    """--expose values or docker's ExposedPorts keys as sorted `PORT/PROTO` strings (a
    range expands)."""
    out: set[str] = set()
    for item in raw:
        for s in ipam.parse_publish(str(item)):
            out.add(f"{s.container_port}/{s.proto}")
    return sorted(out, key=lambda p: (int(p.split("/")[0]), p))


# --- start -------------------------------------------------------------------------------


def leased(e: EngineBase, c: Container, image: Image) -> Container:
    """The container with its run's leases decided (see the module's doc): an endpoint on
    every network it is a member of, in order (the first one's gateway is its route out and
    its published ports' address). A member network removed since is docker's `network X
    not found`."""
    mode = c.config.get("network") or "none"
    if mode.startswith("container:"):
        other = e.log.container(mode.partition(":")[2])
        if other is None:
            raise NotFound(f"no such container: {mode.partition(':')[2][:12]} (its "
                           "--network container)")
        if other.state not in LIVE:
            raise Conflict(f"cannot join network of a non running container: {other.id}")
        return c
    if not c.networks:
        return c
    others = [x for x in e.log.containers() if x.state in LIVE and x.id != c.id]
    endpoints: dict[str, dict[str, Any]] = {}
    for slot, (name, wanted) in enumerate(c.networks.items()):
        endpoints[name] = endpoint(c, find(e, name), wanted, others, slot)
    default = endpoints.get(DEFAULT_MODE)
    if default is not None and default.get("links"):
        default.update(_legacy_links(e, c, default["links"], others))
    first = next(iter(endpoints.values()))
    ports = [] if first["internal"] else _bindings(c, image, others,
                                                   find(e, next(iter(endpoints))))
    return dataclasses.replace(c, endpoints=endpoints,
                               ports=tuple(dataclasses.asdict(b) for b in ports))


def _legacy_links(e: EngineBase, c: Container, wanted: list[str],
                  others: list[Container]) -> dict[str, Any]:
    """The /etc/hosts lines and variables of a container's legacy links (core/links.py),
    each to a running container on the default bridge, in docker's words when not."""
    from core import links
    from core.process import merge_env

    hosts, env = [], []
    for link in wanted:
        name, _, alias = link.partition(":")
        try:
            target = e.container(name)
        except NotFound:
            raise NotFound(f"could not get container for {name}") from None
        live = next((x for x in others if x.id == target.id), None)
        if live is None:
            raise Conflict(f"Cannot link to a non running container: /{target.name} AS "
                           f"/{c.name}/{alias}")
        ep = live.endpoints.get(DEFAULT_MODE)
        if ep is None:
            raise BadInput(f"Cannot link to /{target.name}, as it does not belong to the "
                           "default network")
        image = e.log.image(live.image)
        cfg = ((image.config if image else {}).get("config") or {})
        other = links.Linked(
            name=live.name, hostname=live.config.get("hostname") or live.id[:12],
            address=ep["address"],
            ports=exposed_of(live, image) if image is not None else [],
            env=merge_env(cfg.get("Env") or [], live.config.get("env") or []))
        hosts.append(list(links.hosts_line(alias, other)))
        env += links.link_env(c.name, alias, other)
    return {"link_hosts": hosts, "link_env": env}


def _bindings(c: Container, image: Image, others: list[Container],
              network: Network) -> list[ipam.PortBinding]:
    specs = [ipam.PortSpec(**s) for s in c.config.get("port_bindings") or ()]
    default_ip = network.options.get(ipam.HOST_BINDING_OPTION, "")
    if default_ip and default_ip != ipam.ANY:  # the network's host_binding_ipv4
        specs = [dataclasses.replace(s, host_ip=s.host_ip or default_ip) for s in specs]
    if c.config.get("publish_all"):
        asked = {(s.container_port, s.proto) for s in specs}
        for port in exposed_of(c, image):
            number, _, proto = port.partition("/")
            if (int(number), proto) not in asked:
                specs.append(ipam.PortSpec(proto, int(number), default_ip
                                           if default_ip != ipam.ANY else ""))
    if not specs:
        return []
    bound = [ipam.PortBinding(**b) for x in others for b in x.ports]
    return ipam.bind_ports(specs, bound)


def exposed_of(c: Container | ContainerBrief, image: Image | ImageBrief) -> list[str]:
    """The ports a container exposes: its image's EXPOSE, its --expose, its -p's."""
    cfg = image.config.get("config") or {}
    ports = set(exposed(cfg.get("ExposedPorts") or ())) | set(c.config.get("exposed_ports")
                                                               or ())
    ports |= {f"{s['container_port']}/{s['proto']}" for s in c.config.get("port_bindings")
              or ()}
    return sorted(ports, key=lambda p: (int(p.split("/")[0]), p))

