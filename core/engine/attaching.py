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
from core.model import Container, Image

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
    if shared:
        for key, flag in (("port_bindings", "-p, --publish"), ("publish_all", "-P"),
                          ("endpoints", "--ip, --network-alias"),
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
        endpoints = {mode: next(iter(endpoints.values()))} if endpoints else {}
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


def _endpoints(raw: Any, mode: str) -> dict[str, dict[str, Any]]:
    """docker's EndpointsConfig ({NET: {Aliases, IPAMConfig: {IPv4Address}}}) as recorded:
    {NET: {"aliases": [...], "ip": "..."}}; settings that ask nothing are dropped."""
    out: dict[str, dict[str, Any]] = {}
    for name, settings in (raw or {}).items():
        settings = settings or {}
        ipam_cfg = settings.get("IPAMConfig") or {}
        for key in ("IPv6Address", "LinkLocalIPs"):
            if ipam_cfg.get(key):
                raise BadInput(f"{key} (--ip6, --link-local-ip) is not supported by lamina: "
                               "its networks are IPv4 only")
        for key in ("Links", "MacAddress", "DriverOpts"):
            if settings.get(key):
                raise BadInput(f"endpoint setting {key} is not supported by lamina yet")
        ep: dict[str, Any] = {}
        if settings.get("Aliases"):
            ep["aliases"] = [str(a) for a in settings["Aliases"]]
        if ipam_cfg.get("IPv4Address"):
            ep["ip"] = str(ipam_cfg["IPv4Address"])
        if ep:
            out[mode if name in ("default", "") else name] = ep
    return out


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
    first = next(iter(endpoints.values()))
    ports = [] if first["internal"] else _bindings(c, image, others)
    return dataclasses.replace(c, endpoints=endpoints,
                               ports=tuple(dataclasses.asdict(b) for b in ports))


def _bindings(c: Container, image: Image, others: list[Container]) -> list[ipam.PortBinding]:
    specs = [ipam.PortSpec(**s) for s in c.config.get("port_bindings") or ()]
    if c.config.get("publish_all"):
        asked = {(s.container_port, s.proto) for s in specs}
        for port in exposed_of(c, image):
            number, _, proto = port.partition("/")
            if (int(number), proto) not in asked:
                specs.append(ipam.PortSpec(proto, int(number)))
    if not specs:
        return []
    bound = [ipam.PortBinding(**b) for x in others for b in x.ports]
    return ipam.bind_ports(specs, bound)


def exposed_of(c: Container, image: Image) -> list[str]:
    """The ports a container exposes: its image's EXPOSE, its --expose, its -p's."""
    cfg = image.config.get("config") or {}
    ports = set(exposed(cfg.get("ExposedPorts") or ())) | set(c.config.get("exposed_ports")
                                                               or ())
    ports |= {f"{s['container_port']}/{s['proto']}" for s in c.config.get("port_bindings")
              or ()}
    return sorted(ports, key=lambda p: (int(p.split("/")[0]), p))

