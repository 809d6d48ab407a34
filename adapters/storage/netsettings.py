"""docker's network JSON for containers and networks, built in one place: the CLI's `lamina
inspect`, `ps`, `port` and `network inspect` and the Docker API's container inspect, ps
and network inspect all read it from here. Pure: aggregates in, docker's shapes out
(moby's api/swagger.yaml, v1.51: NetworkSettings, EndpointSettings, PortMap, Port,
NetworkContainer).

What a container is on comes from its record (the network mode and endpoint settings create
recorded); what it holds comes from its run (the leases ContainerStarted recorded: address,
gateway, MAC, names, published ports), present only while it runs, as docker's are. A
network's members are core/engine/networks.py's `members`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from core.model import Container, ContainerBrief, Image, ImageBrief, Network

LIVE = ("running", "paused")
DEFAULT = "bridge"  # the default bridge network: the deprecated top-level fields mirror it
PREDEFINED = ("bridge", "host", "none")
SHORT_ID_ALIASES_UNTIL = (1, 45)  # before API 1.45 Aliases held a container's short id

Resolve = Callable[[str], Network | None]


def _hex(*parts: str) -> str:
    return hashlib.sha256(" ".join(("lamina", *parts)).encode()).hexdigest()


def endpoint_id(c: Container, network_id: str) -> str:
    """The id of a container's endpoint on a network for its current run (docker makes one
    per connect): derived, so inspect and the network's Containers agree, and a new run has
    a new one."""
    return _hex("endpoint", network_id, c.id, c.started_at)


def resolver(networks: Iterable[Network]) -> Resolve:
    """A network by id, name or unique id prefix (docker's order) among `networks`; None
    when none (a network removed since the container was created)."""
    from core.engine.networks import matching

    nets = list(networks)

    def find(ref: str) -> Network | None:
        found = matching(nets, ref)
        return found[0] if len(found) == 1 else None

    return find


def _old_api(api_version: str | None) -> bool:
    if not api_version:
        return False
    try:
        major, minor = (int(p) for p in api_version.split("."))
    except ValueError:
        return False
    return (major, minor) < SHORT_ID_ALIASES_UNTIL


def attached(c: Container) -> dict[str, dict[str, Any]]:
    """The networks a container is on, as recorded: {network as named: its endpoint
    settings as asked ({"aliases", "ip"})}: none or host, else its bridge networks (its
    membership: its --network, changed by `network connect`/`disconnect`)."""
    mode = c.config.get("network") or "none"
    if mode in ("none", "host"):
        return {mode: {}}
    if mode.startswith("container:"):
        return {}
    return {name: dict(asked or {}) for name, asked in c.networks.items()}


def live_endpoint(c: Container, network: Network) -> dict[str, Any] | None:
    """The container's lease on `network` in its current run; None when it holds none."""
    if not running(c):
        return None
    return next((ep for ep in c.endpoints.values() if ep.get("id") == network.id), None)


def running(c: Container | ContainerBrief) -> bool:
    return c.state in LIVE


# --- a container's endpoints -------------------------------------------------------------


def endpoint_settings(c: Container, asked: Mapping[str, Any], network: Network | None,
                      api_version: str | None = None) -> dict[str, Any]:
    """docker's EndpointSettings of a container on one network: what was asked (Aliases,
    IPAMConfig) always, what it holds (address, gateway, MAC, DNS names) while it runs."""
    live = live_endpoint(c, network) if network is not None else None
    user_defined = network is not None and network.name not in PREDEFINED
    aliases = [str(a) for a in asked.get("aliases") or ()]
    if user_defined and _old_api(api_version) and c.id[:12] not in aliases:
        aliases.append(c.id[:12])
    ipam = {api: asked[key] for api, key in (("IPv4Address", "ip"), ("IPv6Address", "ip6"),
                                             ("LinkLocalIPs", "link_local_ips"))
            if asked.get(key)} or None
    holds = network is not None and running(c) and (live is not None
                                                   or network.name in ("host", "none"))
    return {
        "IPAMConfig": ipam, "Links": list(asked.get("links") or ()) or None,
        "Aliases": aliases or None,
        "MacAddress": live["mac"] if live else asked.get("mac") or "",
        "DriverOpts": dict(asked.get("driver_opts") or {}) or None, "GwPriority": 0,
        "NetworkID": network.id if network is not None else "",
        "EndpointID": endpoint_id(c, network.id) if holds and network else "",
        "Gateway": live["gateway"] if live else "",
        "IPAddress": live["address"] if live else "",
        "IPPrefixLen": live["prefixlen"] if live else 0,
        "IPv6Gateway": live.get("gateway6", "") if live else "",
        "GlobalIPv6Address": live.get("address6", "") if live else "",
        "GlobalIPv6PrefixLen": live.get("prefixlen6", 0) if live else 0,
        "DNSNames": list(live.get("dns_names") or ()) or None if live else None,
    }


def networks_of(c: Container, resolve: Resolve, api_version: str | None = None
                ) -> dict[str, dict[str, Any]]:
    """NetworkSettings.Networks: one EndpointSettings per network, by the network's name."""
    out: dict[str, dict[str, Any]] = {}
    for ref, asked in attached(c).items():
        network = resolve(ref)
        out[network.name if network is not None else ref] = endpoint_settings(
            c, asked, network, api_version)
    return out


def network_settings(c: Container, image: Image | None, resolve: Resolve,
                     api_version: str | None = None) -> dict[str, Any]:
    """docker inspect's NetworkSettings (v1.51, its deprecated top-level fields filled from
    the default bridge's endpoint, as docker fills them)."""
    networks = networks_of(c, resolve, api_version)
    default = networks.get(DEFAULT) or {}
    live = running(c)
    return {
        "Bridge": "", "SandboxID": _hex("sandbox", c.id, c.started_at) if live else "",
        "SandboxKey": f"/proc/{c.pid}/ns/net" if live and c.pid else "",
        "HairpinMode": False, "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
        "Ports": port_map(c, image),
        "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None,
        "EndpointID": default.get("EndpointID", ""), "Gateway": default.get("Gateway", ""),
        "GlobalIPv6Address": default.get("GlobalIPv6Address", ""),
        "GlobalIPv6PrefixLen": default.get("GlobalIPv6PrefixLen", 0),
        "IPAddress": default.get("IPAddress", ""),
        "IPPrefixLen": default.get("IPPrefixLen", 0),
        "IPv6Gateway": default.get("IPv6Gateway", ""),
        "MacAddress": default.get("MacAddress", ""),
        "Networks": networks,
    }


# --- ports ---------------------------------------------------------------------------------


def exposed(c: Container | ContainerBrief, image: Image | ImageBrief | None) -> list[str]:
    """The ports a container exposes (`80/tcp`): its image's EXPOSE, --expose, -p's."""
    from core.engine.attaching import exposed_of

    return exposed_of(c, image if image is not None else _NO_IMAGE)


_NO_IMAGE = Image(id="", parent=None, layers=(), version=0, created="")


def _bridged(c: Container | ContainerBrief) -> bool:
    return (c.config.get("network") or "none") not in ("none", "host") and \
        not (c.config.get("network") or "").startswith("container:")


def port_map(c: Container | ContainerBrief, image: Image | ImageBrief | None
             ) -> dict[str, Any]:
    """NetworkSettings.Ports while the container runs on a bridge: every exposed port, with
    its bindings or null when it is not published; {} otherwise (docker's)."""
    if not running(c) or not _bridged(c):
        return {}
    out: dict[str, Any] = {port: None for port in exposed(c, image)}
    for b in sorted(c.ports, key=lambda b: (b["container_port"], b["proto"], b["host_ip"],
                                            b["host_port"])):
        key = f"{b['container_port']}/{b['proto']}"
        out[key] = [*(out.get(key) or ()), {"HostIp": b["host_ip"],
                                            "HostPort": str(b["host_port"])}]
    return dict(sorted(out.items()))  # Go marshals a map's keys in order


def summary_ports(c: Container | ContainerBrief, image: Image | ImageBrief | None
                  ) -> list[dict[str, Any]]:
    """GET /containers/json's Ports: each binding {IP, PrivatePort, PublicPort, Type}, each
    exposed port not published {PrivatePort, Type}; none while it does not run."""
    out: list[dict[str, Any]] = []
    for key, bindings in port_map(c, image).items():
        number, _, proto = key.partition("/")
        if not bindings:
            out.append({"PrivatePort": int(number), "Type": proto})
        for b in bindings or ():
            out.append({"IP": b["HostIp"], "PrivatePort": int(number),
                        "PublicPort": int(b["HostPort"]), "Type": proto})
    return sorted(out, key=_port_order)


def _port_order(p: Mapping[str, Any]) -> tuple[int, tuple[int, int], int, str]:
    """docker's order of summary ports: private port, address (none first, IPv4 before
    IPv6, numerically), public port, proto."""
    import ipaddress

    ip = p.get("IP") or ""
    addr = (0, 0) if not ip else (ipaddress.ip_address(ip).version,
                                  int(ipaddress.ip_address(ip)))
    return p["PrivatePort"], addr, p.get("PublicPort", 0), p["Type"]


def _join(ip: str, port: Any) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def ports_text(ports: Sequence[Mapping[str, Any]]) -> str:
    """ps's PORTS column from summary Ports, as docker's CLI writes it (its formatter's
    DisplayablePorts): `0.0.0.0:8080->80/tcp`, runs of equal host and container ports
    grouped (`0.0.0.0:8000-8001->8000-8001/tcp`), `80/tcp` for an exposed port."""
    groups: dict[str, list[int]] = {}
    order: list[str] = []
    result: list[str] = []
    mappings: list[str] = []
    for p in sorted(ports, key=_port_order):
        current, key = p["PrivatePort"], p["Type"]
        if p.get("IP"):
            if p.get("PublicPort") != current:
                mappings.append(f"{_join(p['IP'], p.get('PublicPort'))}->{current}/{p['Type']}")
                continue
            key = f"{p['IP']}/{p['Type']}"
        group = groups.get(key)
        if group is None:
            groups[key] = [current, current]
            order.append(key)
            continue
        if current == group[1] + 1:
            group[1] = current
            continue
        result.append(_group(key, *group))
        groups[key] = [current, current]
    result += [_group(key, *groups[key]) for key in order]
    return ", ".join(result + mappings)


def _group(key: str, first: int, last: int) -> str:
    ip, _, proto = key.rpartition("/")
    text = str(first) if first == last else f"{first}-{last}"
    if ip:
        text = f"{_join(ip, text)}->{text}"
    return f"{text}/{proto}"


def port_lines(c: Container, image: Image | None, port: str | None = None) -> list[str]:
    """`docker port`'s lines: every `80/tcp -> 0.0.0.0:8080`, or for one PORT[/PROTO] (tcp
    when no proto is given) its `0.0.0.0:8080`s; naturally sorted. A port not published is
    docker's error (ValueError with its words)."""
    mapped = port_map(c, image)
    if port is not None:
        key = port if "/" in port else f"{port}/tcp"
        number, _, proto = key.partition("/")
        if not number.isdigit() or not proto:
            raise ValueError(f"invalid port: {port}")
        bindings = mapped.get(f"{int(number)}/{proto.lower()}")
        if not bindings:
            raise ValueError(f"no public port '{port}' published for {c.name}")
        out = [_join(b["HostIp"], b["HostPort"]) for b in bindings]
    else:
        out = [f"{key} -> {_join(b['HostIp'], b['HostPort'])}"
               for key, bindings in mapped.items() for b in bindings or ()]
    return sorted(out, key=_natural)


def _natural(text: str) -> list[Any]:
    import re

    return [(0, int(part), "") if part.isdigit() else (1, 0, part)
            for part in re.split(r"(\d+)", text) if part]


# --- a container's configuration ---------------------------------------------------------


def port_bindings(opts: Mapping[str, Any]) -> dict[str, list[dict[str, str]]]:
    """HostConfig.PortBindings as docker echoes them, from the recorded PortSpecs."""
    out: dict[str, list[dict[str, str]]] = {}
    for s in opts.get("port_bindings") or ():
        host = str(s["host_port"]) if s.get("host_port") else ""
        if s.get("host_port_end"):
            host = f"{s['host_port']}-{s['host_port_end']}"
        out.setdefault(f"{s['container_port']}/{s['proto']}", []).append(
            {"HostIp": s.get("host_ip") or "", "HostPort": host})
    return out


def host_config(opts: Mapping[str, Any]) -> dict[str, Any]:
    """HostConfig's network fields from the recorded options."""
    return {"NetworkMode": opts.get("network") or "none",
            "PortBindings": port_bindings(opts),
            "PublishAllPorts": bool(opts.get("publish_all")),
            "Dns": list(opts.get("dns") or ()),
            "DnsOptions": list(opts.get("dns_options") or ()),
            "DnsSearch": list(opts.get("dns_search") or ())}


def host_links(c: Container) -> list[str] | None:
    """HostConfig.Links as docker shows them (`/NAME:/CONTAINER/ALIAS`): the links of the
    container's network, as recorded (rm --link takes one off); null when none."""
    mode = c.config.get("network") or "none"
    links = (c.networks.get(mode) or {}).get("links") or ()
    return [f"/{name}:/{c.name}/{alias}" for name, _, alias in
            (str(link).partition(":") for link in links)] or None


def exposed_ports(c: Container, image: Image | None) -> dict[str, Any] | None:
    """Config.ExposedPorts ({"80/tcp": {}}), absent when none (docker's omitempty)."""
    return {port: {} for port in exposed(c, image)} or None


# --- a network's containers --------------------------------------------------------------


def network_containers(n: Network, members: Iterable[Container]) -> dict[str, Any]:
    """A network's inspect Containers: each member's endpoint by container id."""
    out: dict[str, Any] = {}
    for c in members:
        ep = live_endpoint(c, n)
        if ep is None:
            continue
        out[c.id] = {"Name": c.name, "EndpointID": endpoint_id(c, n.id),
                     "MacAddress": ep["mac"],
                     "IPv4Address": f"{ep['address']}/{ep['prefixlen']}",
                     "IPv6Address": f"{ep['address6']}/{ep['prefixlen6']}"
                     if ep.get("address6") else ""}
    return out


def network_doc(n: Network, members: Iterable[Container]) -> dict[str, Any]:
    """docker's network inspect: core's document with its Containers filled."""
    from core.engine.networks import doc

    out = doc(n)
    out["Containers"] = network_containers(n, members)
    return out
