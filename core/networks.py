"""Networks: docker's bridge networks, their addresses and published ports, judged purely.

What the engine will record about networks is decided here from what the log holds, with no
I/O: a new network's subnet (docker's default address pools, skipping those in use) and
gateway, each container's address on it (its lease), and each published port (`-p`, parsed
in docker's words, an ephemeral host port chosen when none is asked for). The plumbing that
makes them real (a bridge, veths, nftables, the DNS responder) is adapters/network/; the
names it gives the kernel's objects are derived here from the ids, so `system reconcile`
can tell lamina's links and rules from leftovers by the log alone.

A network is IPv4, and dual-stack with `--ipv6` and an IPv6 subnet (docker's
EnableIPv6): each member then leases an address of each family. An IPAM `--ip-range`
narrows where dynamic addresses come from (a fixed `--ip` may be anywhere in the subnet),
and `--aux-address` entries are held by the network and never leased, as docker's IPAM
holds them.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any

from core.errors import BadInput, Conflict

DRIVER = "bridge"
DEFAULT_NETWORK = "bridge"  # docker's name of the default bridge network
DEFAULT_BRIDGE = "lamina0"  # its interface: docker's docker0
PREDEFINED = ("bridge", "host", "none")
# docker's default-address-pools (libnetwork's ipamutils): each base split into subnets of
# `size` bits, taken in order; 172.17.0.0/16 is the first, the default bridge's.
DEFAULT_POOLS: tuple[tuple[str, int], ...] = (
    ("172.17.0.0/16", 16), ("172.18.0.0/16", 16), ("172.19.0.0/16", 16),
    ("172.20.0.0/14", 16), ("172.24.0.0/14", 16), ("172.28.0.0/14", 16),
    ("192.168.0.0/16", 20),
)
EPHEMERAL_PORTS = (49153, 60999)  # docker's range for `-p CTR_PORT`
PROTOCOLS = ("tcp", "udp", "sctp")
ANY = "0.0.0.0"  # a binding's host address when none was asked for: every local address
IFNAMSIZ = 15  # the longest interface name the kernel takes
BRIDGE_PREFIX = "lm-"  # a user-defined network's bridge: lm-<12 hex of its id> (docker: br-)
VETH_PREFIX = "lv"  # a container's host-side veth: lv<12 hex>
BRIDGE_NAME_OPTION = "com.docker.network.bridge.name"
MTU_OPTION = "com.docker.network.driver.mtu"
MASQUERADE_OPTION = "com.docker.network.bridge.enable_ip_masquerade"
IFACE_PREFIX_OPTION = "com.docker.network.container_iface_prefix"
HOST_BINDING_OPTION = "com.docker.network.bridge.host_binding_ipv4"
_PORTS = re.compile(r"([0-9]+)(?:-([0-9]+))?")


def predefined_id(name: str) -> str:
    """The id of a predefined network (bridge, host, none): derived from its name, the same
    in every root (they are constants, never recorded)."""
    return hashlib.sha256(f"lamina predefined network {name}".encode()).hexdigest()


DEFAULT_NETWORK_ID = predefined_id(DEFAULT_NETWORK)

NO_POOL = ("could not find an available, non-overlapping IPv4 address pool among the "
           "defaults to assign to the network")
POOL_OVERLAP = "Pool overlaps with other one on this address space"
ADDRESS_IN_USE = "Address already in use"
ALL_PORTS_ALLOCATED = "all ports are allocated"


@dataclass(frozen=True)
class Network:
    """A bridge network as recorded: `subnet` in CIDR form, `gateway` the bridge's own
    address in it. `internal`: no route out (no masquerade, traffic leaving the subnet
    dropped) and nothing published."""

    name: str
    id: str
    subnet: str
    gateway: str
    driver: str = DRIVER
    internal: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, str] = field(default_factory=dict)
    ip_range: str = ""  # dynamic addresses come from here ("": the whole subnet)
    aux_addresses: Mapping[str, str] = field(default_factory=dict)  # held, never leased
    attachable: bool = False
    subnet6: str = ""  # set: dual-stack (docker's EnableIPv6)
    gateway6: str = ""
    ip_range6: str = ""

    @property
    def prefixlen(self) -> int:
        return IPv4Network(self.subnet).prefixlen

    @property
    def ipv6(self) -> bool:
        return bool(self.subnet6)

    @property
    def mtu(self) -> int | None:
        value = self.options.get(MTU_OPTION)
        return int(value) if value else None

    @property
    def masquerade(self) -> bool:
        """Traffic leaving the subnet is masqueraded (docker's default; not on an internal
        network, nor with enable_ip_masquerade=false)."""
        return not self.internal and \
            self.options.get(MASQUERADE_OPTION, "true").lower() not in ("false", "0")

    @property
    def iface_prefix(self) -> str:
        return self.options.get(IFACE_PREFIX_OPTION) or "eth"

    @property
    def bridge(self) -> str:
        return bridge_name(self)


# --- names the kernel sees -----------------------------------------------------------------


def bridge_name(network: Network) -> str:
    """The bridge's interface name: docker's bridge option when given, `lamina0` for the
    default network, else lm-<12 hex of the id> (docker's br-<12>)."""
    if network.options.get(BRIDGE_NAME_OPTION):
        return network.options[BRIDGE_NAME_OPTION]
    if network.name == DEFAULT_NETWORK:
        return DEFAULT_BRIDGE
    return BRIDGE_PREFIX + network.id[:12]


def veth_name(container_id: str, network_id: str) -> str:
    """The host end of a container's veth on a network: one per (container, network), from
    the ids alone, so the log says which links should exist."""
    digest = hashlib.sha256(f"{network_id}/{container_id}".encode()).hexdigest()
    return VETH_PREFIX + digest[:12]


def mac_address(address: str) -> str:
    """A link's MAC from its IPv4 address, as docker long made them (02:42 and the four
    bytes): locally administered, unique on a network as its addresses are, and the same on
    every replay, so a restarted container answers ARP as before."""
    return "02:42:" + ":".join(f"{b:02x}" for b in IPv4Address(address).packed)


def check_mac(text: str) -> str:
    """`--mac-address` as docker takes it (Go's net.ParseMAC, 48 bits): lower case, colons.
    A multicast address (the first octet's low bit) can't be a link's own, as the kernel
    refuses it."""
    parts = re.split(r"[:-]", text.strip()) if re.fullmatch(
        r"[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}", text.strip()) else []
    if not parts:
        raise BadInput(f"invalid MAC address: {text}")
    mac = ":".join(p.lower() for p in parts)
    if int(parts[0], 16) & 1:
        raise BadInput(f"invalid MAC address: {text}: a multicast address")
    return mac


LINK_LOCAL = (IPv4Network("169.254.0.0/16"), IPv6Network("fe80::/64"))


def check_link_local(texts: Iterable[str]) -> list[str]:
    """`--link-local-ip` addresses: each of 169.254.0.0/16 or fe80::/64, given to the
    container's link as well as its leased one (docker's LinkLocalIPs)."""
    out = []
    for text in texts:
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            raise BadInput(f"invalid link-local IP address: {text}") from None
        if not any(addr in n for n in LINK_LOCAL):
            raise BadInput(f"invalid link-local IP address: {text}: not in "
                           f"{' or '.join(map(str, LINK_LOCAL))}")
        out.append(str(addr))
    return out


def link_local_prefix(address: str) -> int:
    return 16 if ipaddress.ip_address(address).version == 4 else 64


def check_bridge_name(name: str) -> str:
    if not name or len(name) > IFNAMSIZ or "/" in name or name in (".", "..") \
            or any(c.isspace() for c in name):
        raise BadInput(f"invalid bridge name {name!r}: at most {IFNAMSIZ} characters, "
                       "no spaces or slashes")
    return name


# --- subnets -------------------------------------------------------------------------------


def pools(defaults: Iterable[tuple[str, int]] = DEFAULT_POOLS) -> Iterator[IPv4Network]:
    """The candidate subnets of the default pools, in the order docker tries them."""
    for base, size in defaults:
        yield from IPv4Network(base).subnets(new_prefix=size)


def parse_subnet(text: str, version: int = 4) -> IPv4Network | IPv6Network:
    """`--subnet` as docker takes it: CIDR, host bits clear, of the family asked (4, or 6
    for a dual-stack network's second subnet); room for a gateway and a container."""
    try:
        if "/" not in text:
            raise ValueError(text)
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise BadInput(f"invalid subnet {text}: invalid CIDR address: {text}") from None
    if net.version != version:
        raise BadInput(f"invalid subnet {text}: an IPv{version} subnet was expected")
    if str(net) != text:
        raise BadInput(f"invalid subnet {text}: it should be {net}")
    if net.prefixlen > net.max_prefixlen - 2:
        raise BadInput(f"invalid subnet {text}: too small for a gateway and a container")
    return net


def _networks(in_use: Iterable[str], version: int = 4) -> list[IPv4Network | IPv6Network]:
    nets = [ipaddress.ip_network(s, strict=False) for s in in_use if s]
    return [n for n in nets if n.version == version]


def choose_subnet(in_use: Iterable[str],
                  defaults: Iterable[tuple[str, int]] = DEFAULT_POOLS) -> str:
    """The first subnet of the default pools that overlaps none in use (the other networks'
    subnets, and any route of the host the engine wants avoided)."""
    used = _networks(in_use)
    for candidate in pools(defaults):
        if not any(candidate.overlaps(u) for u in used):
            return str(candidate)
    raise Conflict(NO_POOL)


def choose_subnet6(network_id: str, in_use: Iterable[str]) -> str:
    """An IPv6 subnet for `--ipv6` without one: a unique local /64 (fd00::/8, RFC 4193),
    its 40-bit global id taken from the network's id, as docker's default pool gives each
    network a random ULA /64; the next one when that overlaps one in use."""
    used = _networks(in_use, 6)
    seed = int(hashlib.sha256(f"lamina ipv6 {network_id}".encode()).hexdigest()[:10], 16)
    for n in range(256):
        base = (0xFD << 120) | (((seed + n) % (1 << 40)) << 80)
        candidate = IPv6Network((base, 64))
        if not any(candidate.overlaps(u) for u in used):
            return str(candidate)
    raise Conflict("could not find an available, non-overlapping IPv6 address pool")


def check_subnet(subnet: str, in_use: Iterable[str], version: int = 4) -> str:
    """A `--subnet` that is valid and overlaps no subnet in use."""
    net = parse_subnet(subnet, version)
    if any(net.overlaps(u) for u in _networks(in_use, version)):
        raise Conflict(POOL_OVERLAP)
    return str(net)


def _address(text: str, what: str, version: int = 4) -> IPv4Address | IPv6Address:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise BadInput(f"invalid {what}: {text}") from None
    if addr.version != version:
        raise BadInput(f"invalid {what}: {text}: an IPv{version} address was expected")
    return addr


def check_gateway(gateway: str, subnet: str) -> str:
    """A `--gateway` inside its subnet, neither the subnet's network nor broadcast address."""
    net = ipaddress.ip_network(subnet)
    addr = _address(gateway, "gateway address", net.version)
    if addr not in net:
        raise BadInput(f"no matching subnet for gateway {gateway}")
    if addr == net.network_address or (net.version == 4 and addr == net.broadcast_address):
        raise BadInput(f"invalid gateway {gateway}: the subnet's network or broadcast address")
    return str(addr)


def check_ip_range(ip_range: str, subnet: str) -> str:
    """`--ip-range`: a CIDR inside its subnet (docker's `no matching subnet for range`)."""
    net = ipaddress.ip_network(subnet)
    try:
        wanted = ipaddress.ip_network(ip_range, strict=False)
    except ValueError:
        raise BadInput(f"invalid ip-range {ip_range}: invalid CIDR address") from None
    if wanted.network_address != ipaddress.ip_address(ip_range.partition("/")[0]):
        raise BadInput(f"invalid ip-range {ip_range}: it should be {wanted}")
    if wanted.version != net.version or not wanted.subnet_of(net):  # type: ignore[arg-type]
        raise BadInput(f"no matching subnet for range {ip_range}")
    return str(wanted)


def check_aux_addresses(aux: Mapping[str, str], subnets: Iterable[str]) -> dict[str, str]:
    """`--aux-address NAME=IP`: each address in one of the network's subnets (docker's `no
    matching subnet for aux-address`); held by the network, never leased."""
    nets = [ipaddress.ip_network(s) for s in subnets if s]
    out: dict[str, str] = {}
    for name, text in aux.items():
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            raise BadInput(f"invalid aux-address {name}={text}") from None
        if not any(addr in n for n in nets):
            raise BadInput(f"no matching subnet for aux-address {text}")
        out[name] = str(addr)
    return out


def new_network(name: str, network_id: str, *, subnet: str | None = None,
                gateway: str | None = None, internal: bool = False,
                labels: Mapping[str, str] | None = None,
                options: Mapping[str, str] | None = None,
                in_use: Iterable[str] = (), ip_range: str | None = None,
                aux_addresses: Mapping[str, str] | None = None, attachable: bool = False,
                ipv6: bool = False, subnet6: str | None = None, gateway6: str | None = None,
                ip_range6: str | None = None) -> Network:
    """A network as `network create` asks for it, checked against the subnets `in_use`
    (both families): the given subnet (refused if it overlaps one) or the first free
    default pool, the given gateway or the subnet's first address, an ip-range inside it,
    auxiliary addresses inside a subnet; with `ipv6`, the same of the IPv6 subnet (a unique
    local /64 when none is given)."""
    used = list(in_use)
    if subnet is None:
        if gateway is not None or ip_range is not None:
            raise BadInput("every ip-range or gateway must have a corresponding subnet")
        chosen = choose_subnet(used)
    else:
        chosen = check_subnet(subnet, used)
    net = IPv4Network(chosen)
    gw = check_gateway(gateway, chosen) if gateway is not None else str(net.network_address + 1)
    chosen6 = gw6 = range6 = ""
    if (subnet6 is not None or gateway6 is not None or ip_range6 is not None) and not ipv6:
        raise BadInput("an IPv6 subnet, gateway or ip-range needs an IPv6 network "
                       "(--ipv6, EnableIPv6)")
    if ipv6:
        if subnet6 is None and (gateway6 is not None or ip_range6 is not None):
            raise BadInput("every ip-range or gateway must have a corresponding subnet")
        chosen6 = check_subnet(subnet6, used, 6) if subnet6 is not None \
            else choose_subnet6(network_id, used)
        gw6 = check_gateway(gateway6, chosen6) if gateway6 is not None \
            else str(IPv6Network(chosen6).network_address + 1)
        range6 = check_ip_range(ip_range6, chosen6) if ip_range6 else ""
    network = Network(name=name, id=network_id, subnet=chosen, gateway=gw, internal=internal,
                      labels=dict(labels or {}), options=dict(options or {}),
                      ip_range=check_ip_range(ip_range, chosen) if ip_range else "",
                      aux_addresses=check_aux_addresses(aux_addresses or {}, (chosen, chosen6)),
                      attachable=attachable, subnet6=chosen6, gateway6=gw6, ip_range6=range6)
    check_bridge_name(network.bridge)
    return network


# --- addresses -----------------------------------------------------------------------------


def reserved(network: Network, version: int = 4) -> frozenset[Any]:
    """What no container gets: the subnet's network (and, IPv4, broadcast) address, the
    gateway, and the auxiliary addresses (docker's IPAM holds them all from the start)."""
    subnet, gateway = (network.subnet, network.gateway) if version == 4 else \
        (network.subnet6, network.gateway6)
    net = ipaddress.ip_network(subnet)
    held = {net.network_address, ipaddress.ip_address(gateway)}
    if version == 4:
        held.add(net.broadcast_address)
    held |= {a for a in map(ipaddress.ip_address, network.aux_addresses.values())
             if a.version == version}
    return frozenset(held)


def lease(network: Network, leased: Collection[str], *, requested: str | None = None,
          after: str | None = None, version: int = 4) -> str:
    """An address of family `version` for a container on `network`, given those `leased`
    to others.

    `requested` (`--ip`, `--ip6`) is checked and given as is: anywhere in the subnet but a
    held address. Otherwise the lowest free address of the ip-range (the subnet without
    one), or, with `after` (the last one handed out), the next free one after it, wrapping
    round as docker's serial allocator does so that a released address is not reused at
    once."""
    subnet, pool = (network.subnet, network.ip_range) if version == 4 else \
        (network.subnet6, network.ip_range6)
    net = ipaddress.ip_network(subnet)
    taken = {ipaddress.ip_address(a) for a in leased} | reserved(network, version)
    if requested is not None:
        addr = _address(requested, f"IPv{version} address", version)
        if addr not in net:
            raise BadInput(f"invalid address {requested}: It does not belong to any of this "
                           "network's subnets")
        if addr in taken:
            raise Conflict(ADDRESS_IN_USE)
        return str(addr)
    span = ipaddress.ip_network(pool) if pool else net
    first, last = int(span.network_address), int(span.broadcast_address)
    first, last = max(first, int(net.network_address) + 1), \
        min(last, int(net.broadcast_address) - (1 if version == 4 else 0))
    start = first
    if after is not None:
        previous = int(ipaddress.ip_address(after))
        if first <= previous < last:
            start = previous + 1
    make = IPv4Address if version == 4 else IPv6Address
    for n in _wrapping(start, first, last):  # ends within len(taken) + 1 steps when free
        candidate = make(n)
        if candidate not in taken:
            return str(candidate)
    raise Conflict(f"no available IPv{version} addresses on this network's address pools: "
                   f"{network.name} ({network.id})")


def _wrapping(start: int, first: int, last: int) -> Iterator[int]:
    """first..last, beginning at start and wrapping round to first."""
    yield from range(start, last + 1)
    yield from range(first, start)


# --- published ports -----------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class PortSpec:
    """One `-p` mapping as asked: `host_ip` "" for every address, `host_port` 0 for an
    ephemeral port, and `host_port_end` set when a host range was given for one container
    port (docker then picks one free port of host_port..host_port_end)."""

    proto: str
    container_port: int
    host_ip: str = ""
    host_port: int = 0
    host_port_end: int = 0


@dataclass(frozen=True, order=True)
class PortBinding:
    """A published port as bound: `host_ip` ANY for every local address."""

    proto: str
    container_port: int
    host_ip: str
    host_port: int

    def __str__(self) -> str:
        return f"{self.host_ip}:{self.host_port}->{self.container_port}/{self.proto}"


def _split_parts(raw: str) -> tuple[str, str, str]:
    """docker's split of [HOST_IP:][HOST_PORT:]CTR_PORT: an IPv6 host keeps its colons."""
    parts = raw.split(":")
    if len(parts) == 1:
        return "", "", parts[0]
    if len(parts) == 2:
        return "", parts[0], parts[1]
    return ":".join(parts[:-2]), parts[-2], parts[-1]


def _port_range(text: str, *, allow_zero: bool) -> tuple[int, int]:
    m = _PORTS.fullmatch(text)
    if not m:
        raise ValueError(text)
    start = int(m[1])
    end = int(m[2]) if m[2] is not None else start
    if end > 65535 or end < start or (start == 0 and (end or not allow_zero)):
        raise ValueError(text)
    return start, end


def parse_publish(raw: str) -> list[PortSpec]:
    """`-p [HOST_IP:][HOST_PORT:]CTR_PORT[/PROTO]` into one PortSpec per container port, in
    docker's words when it is wrong. Ranges map one to one (`8000-8001:80-81`); a single
    container port with a host range takes one free port of the range; no host port (or 0)
    means an ephemeral one. An image's EXPOSE entries (`80/tcp`) parse as `-P` wants them."""
    host_ip, host_port, container = _split_parts(raw)
    container, _, proto = container.partition("/")
    if container == "":
        raise BadInput(f"no port specified: {raw}<empty>")
    proto = (proto or "tcp").lower()
    if proto not in PROTOCOLS:
        raise BadInput(f"invalid proto: {proto}")
    if host_ip.startswith("[") and host_ip.endswith("]"):
        host_ip = host_ip[1:-1]
    if host_ip:
        try:
            addr = ipaddress.ip_address(host_ip)
        except ValueError:
            raise BadInput(f"invalid IP address: {host_ip}") from None
        if not isinstance(addr, IPv4Address):
            raise BadInput(f"invalid IP address: {host_ip}: lamina publishes on IPv4 only")
        host_ip = "" if addr == IPv4Address(ANY) else str(addr)
    try:
        start, end = _port_range(container, allow_zero=False)
    except ValueError:
        raise BadInput(f"invalid containerPort: {container}") from None
    host_start = host_end = 0
    if host_port:
        try:
            host_start, host_end = _port_range(host_port, allow_zero=True)
        except ValueError:
            raise BadInput(f"invalid hostPort: {host_port}") from None
        if end - start != host_end - host_start and end != start:
            raise BadInput(f"invalid ranges specified for container and host Ports: "
                           f"{container} and {host_port}")
    if start == end and host_start != host_end:
        return [PortSpec(proto, start, host_ip, host_start, host_end)]
    return [PortSpec(proto, start + i, host_ip, host_start + i if host_start else 0)
            for i in range(end - start + 1)]


def clashes(a_ip: str, b_ip: str) -> bool:
    """Two bindings of one proto and port clash when they share an address, and ANY shares
    every address."""
    return a_ip == b_ip or ANY in (a_ip, b_ip)


def _free(proto: str, host_ip: str, port: int, bound: Iterable[PortBinding]) -> bool:
    return not any(b.proto == proto and b.host_port == port and clashes(b.host_ip, host_ip)
                   for b in bound)


def choose_host_port(proto: str, host_ip: str, bound: Collection[PortBinding], *,
                     low: int = EPHEMERAL_PORTS[0], high: int = EPHEMERAL_PORTS[1],
                     after: int | None = None) -> int:
    """A port of low..high no binding in `bound` clashes with, for `proto` on `host_ip`
    (ANY for every address): the lowest, or with `after` (the last one handed out) the next
    one after it, wrapping round as docker's port allocator does."""
    start = after + 1 if after is not None and low <= after < high else low
    taken = {b.host_port for b in bound if b.proto == proto and clashes(b.host_ip, host_ip)}
    for port in _wrapping(start, low, high):
        if port not in taken:
            return port
    raise Conflict(ALL_PORTS_ALLOCATED)


def bind_ports(specs: Iterable[PortSpec], bound: Iterable[PortBinding], *,
               ephemeral: tuple[int, int] = EPHEMERAL_PORTS,
               after: int | None = None) -> list[PortBinding]:
    """The bindings for `specs`, given those already `bound` (by other containers, and any
    port of the host the engine knows is listening): an asked port that clashes is refused
    in docker's words, an ephemeral one is chosen from `ephemeral` (or the spec's host
    range). Each binding counts against the next, so one request never binds a port twice."""
    taken = list(bound)
    out: list[PortBinding] = []
    for spec in specs:
        ip = spec.host_ip or ANY
        if spec.host_port and not spec.host_port_end:
            if not _free(spec.proto, ip, spec.host_port, taken):
                raise Conflict(f"Bind for {ip}:{spec.host_port} failed: port is already "
                               "allocated")
            port = spec.host_port
        elif spec.host_port_end:
            try:
                port = choose_host_port(spec.proto, ip, taken, low=spec.host_port,
                                        high=spec.host_port_end)
            except Conflict:
                raise Conflict(f"Bind for {ip}:{spec.host_port}-{spec.host_port_end} failed: "
                               "port is already allocated") from None
        else:
            port = choose_host_port(spec.proto, ip, taken, low=ephemeral[0], high=ephemeral[1],
                                    after=after)
            after = port
        binding = PortBinding(spec.proto, spec.container_port, ip, port)
        taken.append(binding)
        out.append(binding)
    return out


# --- names a network's DNS answers ---------------------------------------------------------


def dns_records(members: Iterable[tuple[Iterable[str], str]]) -> dict[str, tuple[str, ...]]:
    """What the embedded DNS responder of one network answers: each member's names (its
    name, its aliases; the engine picks them) to its address on the network. Names are
    matched without case and without a trailing dot, as DNS does; a name two members share
    (an alias, say) answers with both addresses, as docker's does."""
    out: dict[str, set[str]] = {}
    for names, address in members:
        for name in names:
            key = name.rstrip(".").lower()
            if key:
                out.setdefault(key, set()).add(address)
    return {k: tuple(sorted(v, key=_address_order)) for k, v in sorted(out.items())}


def _address_order(text: str) -> tuple[int, int]:
    a = ipaddress.ip_address(text)
    return a.version, int(a)


def link_records(linking: Iterable[tuple[str, Iterable[str]]],
                 records: Mapping[str, tuple[str, ...]]
                 ) -> dict[str, dict[str, tuple[str, ...]]]:
    """The names each linking member alone resolves on a network (docker's links on a
    user-defined network: NAME:ALIAS makes ALIAS answer what NAME answers there, for the
    container that asked for the link): by its address, each alias to NAME's addresses
    in `records` (dns_records'). A link whose NAME is not on the network answers
    nothing, as docker's (the name may come later: the answer follows)."""
    out: dict[str, dict[str, tuple[str, ...]]] = {}
    for address, links in linking:
        for link in links:
            name, _, alias = str(link).partition(":")
            found = records.get(name.strip("/").lower())
            if found and alias:
                out.setdefault(address, {})[alias.lower()] = found
    return out


# --- leases held at once ---------------------------------------------------------------------


def lease_clash(live: Iterable[Any], network_ids: Collection[str] | None = None) -> str | None:
    """What the read model refuses, judged on the containers that run (each with `id`,
    `endpoints` {name: {"id", "address", ...}} and `ports` [{"proto", "host_ip",
    "host_port", ...}], as core.model.Container has them): an address two of them hold on
    one network, a host port two of them bind (same proto and port, same address or either
    ANY), or, given the ids of the networks there are (`network_ids`, the predefined ones
    among them), an address on a network that is gone. The first such, in words; None
    when there is none."""
    addresses: dict[tuple[str, str], str] = {}
    bound: list[tuple[str, PortBinding]] = []
    for c in live:
        for ep in c.endpoints.values():
            for address in filter(None, (ep["address"], ep.get("address6"))):
                key = (ep["id"], address)
                if key in addresses and addresses[key] != c.id:
                    return (f"address {address} on network {ep['id'][:12]} is held by "
                            f"{addresses[key][:12]} and {c.id[:12]}")
                addresses[key] = c.id
            if network_ids is not None and ep["id"] not in network_ids:
                return f"{c.id[:12]} holds an address on network {ep['id'][:12]}, which is gone"
        for raw in c.ports:
            b = PortBinding(raw["proto"], int(raw["container_port"]), raw["host_ip"],
                            int(raw["host_port"]))
            for holder, other in bound:
                if other.proto == b.proto and \
                        other.host_port == b.host_port and clashes(other.host_ip, b.host_ip):
                    return (f"{b.host_ip}:{b.host_port}/{b.proto} is bound by {holder[:12]} "
                            f"and {c.id[:12]}")
            bound.append((c.id, b))
    return None
