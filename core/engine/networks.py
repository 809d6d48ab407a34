"""The network aggregate: `network create`, `network rm`, `network prune`, and the queries
(a network by name or id, the list with docker's filters).

A user-defined network is a stream `network:<id>` (64 hex); its bridge and nftables chains
are the NetworkHost's. Order of writes, as for volumes: the bridge is made before the log
says the network exists (and removed again if the append fails while the log still doesn't
say so); NetworkRemoved is recorded before the bridge goes.

The predefined networks, `bridge` (lamina0, 172.17.0.0/16), `host` and `none`, are not
events: they are constants (PREDEFINED below, ids derived from their names so every
listing shows the same ones), listed and inspected as docker shows them and never
removable. The default bridge's subnet counts as in use when a subnet is chosen. A
network's members are the containers with an endpoint on it (running or paused: `members`);
rm refuses a network that has any (`check_unused`) and prune skips it.

docker's rules (moby daemon/network.go, libnetwork), kept:
- a name is unique: `network with name X already exists` (409); a predefined name is
  `operation is not permitted on predefined X network`;
- only the `bridge` driver (`host`, `null`, `overlay`... are refused by name);
- `--subnet` overlapping another network's is `Pool overlaps with other one on this address
  space`; without one, the first free subnet of docker's default pools;
- rm of a missing network is `network X not found` (404); of a predefined one
  `X is a pre-defined network and cannot be removed`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from core import lifecycle, prune
from core import networks as ipam
from core.command import Command
from core.engine.base import EngineBase
from core.errors import Ambiguous, BadInput, Conflict, IllegalMove, NotFound
from core.filters import labels_hold, matches
from core.model import Container, Network
from events import types as ev

Filters = Mapping[str, Sequence[str]]

DEFAULT_SUBNET = "172.17.0.0/16"  # docker0's, lamina0's
DEFAULT_GATEWAY = "172.17.0.1"
# The driver options (-o) a bridge network takes, each applied: its bridge's name, the MTU of
# its bridge and veths, masquerade off (no route out but to the subnet), the name its
# containers' links get (eth0, eth1: a prefix), the address published ports bind by
# default. docker's others (icc, inhibit_ipv4, gateway modes...) are refused by name.
MTU_OPTION, MASQUERADE_OPTION = ipam.MTU_OPTION, ipam.MASQUERADE_OPTION
IFACE_PREFIX_OPTION, HOST_BINDING_OPTION = ipam.IFACE_PREFIX_OPTION, ipam.HOST_BINDING_OPTION
OPTIONS = (ipam.BRIDGE_NAME_OPTION, MTU_OPTION, MASQUERADE_OPTION, IFACE_PREFIX_OPTION,
           HOST_BINDING_OPTION)
# network create's IPAM and flags beyond subnet and gateway (Engine.network_create's **ipam)
IPAM_KEYS = frozenset({"ip_range", "aux_addresses", "attachable", "ipv6", "subnet6",
                       "gateway6", "ip_range6"})
LIST_KEYS = frozenset({"driver", "id", "label", "name", "scope", "type", "dangling"})
PRUNE_KEYS = frozenset({"label", "label!", "until"})


def _predefined() -> dict[str, Network]:
    epoch = "1970-01-01T00:00:00Z"
    bridge_opts = {ipam.BRIDGE_NAME_OPTION: ipam.DEFAULT_BRIDGE,
                   "com.docker.network.bridge.default_bridge": "true"}
    return {
        "bridge": Network(id=ipam.predefined_id("bridge"), version=0, created=epoch,
                          name="bridge", subnet=DEFAULT_SUBNET, gateway=DEFAULT_GATEWAY,
                          driver="bridge", options=bridge_opts),
        "host": Network(id=ipam.predefined_id("host"), version=0, created=epoch, name="host",
                        subnet="", gateway="", driver="host"),
        "none": Network(id=ipam.predefined_id("none"), version=0, created=epoch, name="none",
                        subnet="", gateway="", driver="null"),
    }


PREDEFINED = _predefined()


def is_predefined(n: Network) -> bool:
    return PREDEFINED.get(n.name) == n


def spec(n: Network) -> ipam.Network:
    """What the host is asked to carry for a recorded network."""
    return ipam.Network(name=n.name, id=n.id, subnet=n.subnet, gateway=n.gateway,
                        driver=n.driver, internal=n.internal, labels=n.labels,
                        options=n.options, ip_range=n.ip_range,
                        aux_addresses=n.aux_addresses, attachable=n.attachable,
                        subnet6=n.subnet6, gateway6=n.gateway6, ip_range6=n.ip_range6)


def bridge_of(n: Network) -> str:
    return ipam.bridge_name(spec(n))


# --- commands ------------------------------------------------------------------------------


def network_create(e: EngineBase, name: str, subnet: str | None = None,
                   gateway: str | None = None, internal: bool = False,
                   labels: Mapping[str, str] | None = None,
                   options: Mapping[str, str] | None = None, driver: str = "bridge",
                   **more: Any) -> str:
    """A new user-defined bridge network: its id. `more`: IPAM_KEYS."""
    with e.command("network create", name or "(no name)") as cmd:
        check_name(name)
        check_driver(driver)
        check_options(options or {})
        unknown = set(more) - IPAM_KEYS
        if unknown:
            raise BadInput(f"network create: unknown settings {sorted(unknown)}")
        nid = e.ids.new_id()
        return cmd.retrying(lambda: _create(e, cmd, nid, name, subnet, gateway, internal,
                                            dict(labels or {}), dict(options or {}), more))


def _create(e: EngineBase, cmd: Command, nid: str, name: str, subnet: str | None,
            gateway: str | None, internal: bool, labels: dict[str, str],
            options: dict[str, str], more: dict[str, Any]) -> str:
    if e.log.network_named(name) is not None:
        raise Conflict(f"network with name {name} already exists")
    live = e.log.networks()
    in_use = [DEFAULT_SUBNET, *(n.subnet for n in live), *(n.subnet6 for n in live)]
    want = ipam.new_network(name, nid, subnet=subnet, gateway=gateway, internal=internal,
                            labels=labels, options=options, in_use=in_use, **more)
    if want.bridge == ipam.DEFAULT_BRIDGE or want.bridge in {bridge_of(n) for n in live}:
        raise Conflict(f"bridge name {want.bridge} is already in use by another network")
    stream = f"network:{nid}"
    version = cmd.stream_version(stream)
    e.networks.create(want)  # before the log says it exists
    try:
        cmd.append([ev.NetworkCreated(id=nid, name=name, subnet=want.subnet,
                                      gateway=want.gateway, driver=ipam.DRIVER,
                                      internal=internal, labels=labels, options=options,
                                      ip_range=want.ip_range,
                                      aux_addresses=dict(want.aux_addresses),
                                      attachable=want.attachable, subnet6=want.subnet6,
                                      gateway6=want.gateway6, ip_range6=want.ip_range6)],
                   {stream: version})
    except BaseException:
        if e.log.network(nid) is None:  # the log never said it existed
            e.networks.remove(want)
        raise
    return nid


def network_rm(e: EngineBase, ref: str) -> str:
    """Remove one user-defined network: its id."""
    with e.command("network rm", ref) as cmd:
        return cmd.retrying(lambda: _rm(e, cmd, ref))


def _rm(e: EngineBase, cmd: Command, ref: str) -> str:
    n = find(e, ref)
    if is_predefined(n):
        raise BadInput(f"{n.name} is a pre-defined network and cannot be removed")
    check_unused(e, n)
    cmd.append([ev.NetworkRemoved(id=n.id)], {f"network:{n.id}": n.version})
    e.networks.remove(spec(n))  # after the log says it is gone
    return n.id


def network_prune(e: EngineBase, filters: Filters | None = None) -> list[str]:
    """Remove the user-defined networks the filters select and no container is on, in one
    append: their names, sorted."""
    filters = dict(filters or {})
    with e.command("network prune", "networks") as cmd:
        _check_keys(filters, PRUNE_KEYS)
        until = prune.cutoff(filters, e.clock())
        return cmd.retrying(lambda: _prune(e, cmd, filters, until))


def _prune(e: EngineBase, cmd: Command, filters: Filters, until: datetime | None
           ) -> list[str]:
    doomed = sorted((n for n in e.log.networks()
                     if _labels_hold(n, filters) and prune.created_before(n.created, until)
                     and not members(e, n)), key=lambda n: n.name)
    if not doomed:
        return []
    cmd.append([ev.NetworkRemoved(id=n.id) for n in doomed],
               {f"network:{n.id}": n.version for n in doomed})
    for n in doomed:  # after the log says they are gone
        e.networks.remove(spec(n))
    return [n.name for n in doomed]


# --- queries ------------------------------------------------------------------------------


def every(e: EngineBase) -> list[Network]:
    """The predefined networks, then the user-defined ones as recorded."""
    return [*PREDEFINED.values(), *e.log.networks()]


def matching(networks: Iterable[Network], ref: str) -> list[Network]:
    """The networks `ref` names, in docker's order: the one with that full id, else the one
    with that name, else every one whose id starts with it (one: found; more: ambiguous)."""
    nets = list(networks)
    for key in (lambda n: n.id == ref, lambda n: n.name == ref):
        exact = [n for n in nets if key(n)]
        if exact:
            return exact[:1]
    return [n for n in nets if ref and n.id.startswith(ref)]


def find(e: EngineBase, ref: str) -> Network:
    """A network by full id, name, or unique id prefix (docker's order); else docker's
    `network X not found`."""
    found = matching(every(e), ref)
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise Ambiguous(f"network {ref} is ambiguous ({len(found)} matches found on name)")
    raise NotFound(f"network {ref} not found")


def listed(e: EngineBase, filters: Filters | None = None) -> list[Network]:
    """The networks docker's list filters select (driver, id, label, name, scope, type,
    dangling), by name."""
    filters = dict(filters or {})
    _check_keys(filters, LIST_KEYS)
    out = []
    for n in every(e):
        predefined = is_predefined(n)
        if "driver" in filters and n.driver not in filters["driver"]:
            continue
        if "id" in filters and not any(n.id.startswith(v) for v in filters["id"]):
            continue
        if "name" in filters and not matches(n.name, filters["name"]):
            continue
        if "scope" in filters and "local" not in filters["scope"]:
            continue
        if "type" in filters:
            types = set(filters["type"])
            if types - {"custom", "builtin"}:
                raise BadInput(f"invalid filter: 'type'='{','.join(sorted(types))}'")
            if ("builtin" if predefined else "custom") not in types:
                continue
        if "dangling" in filters:  # docker's: user-defined with no container on it
            wanted = filters["dangling"][0].lower() in ("1", "true")
            if (predefined or bool(members(e, n))) == wanted:
                continue
        if not _labels_hold(n, filters):
            continue
        out.append(n)
    return sorted(out, key=lambda n: n.name)


def doc(n: Network) -> dict[str, Any]:
    """docker's inspect JSON of a network (moby's api/types/network.Inspect), Containers
    empty as docker's list shows it (adapters/storage/netsettings.py fills them for
    inspect)."""
    return {
        "Name": n.name, "Id": n.id, "Created": n.created, "Scope": "local",
        "Driver": n.driver, "EnableIPv6": bool(n.subnet6),
        "IPAM": {"Driver": "default", "Options": None, "Config": ipam_config(n)},
        "Internal": n.internal, "Attachable": n.attachable, "Ingress": False,
        "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
        "Containers": {}, "Options": dict(n.options), "Labels": dict(n.labels),
    }


def ipam_config(n: Network) -> list[dict[str, Any]]:
    """IPAM.Config: one entry per subnet (IPv4, then IPv6), docker's empty fields left
    out, each with the auxiliary addresses of its family."""
    out = []
    for subnet, gateway, ip_range in ((n.subnet, n.gateway, n.ip_range),
                                      (n.subnet6, n.gateway6, n.ip_range6)):
        if not subnet:
            continue
        entry: dict[str, Any] = {"Subnet": subnet}
        if ip_range:
            entry["IPRange"] = ip_range
        entry["Gateway"] = gateway
        net = ipaddress.ip_network(subnet)
        aux = {k: v for k, v in n.aux_addresses.items() if ipaddress.ip_address(v) in net}
        if aux:
            entry["AuxiliaryAddresses"] = aux
        out.append(entry)
    return out


# --- judging a request --------------------------------------------------------------------


def check_name(name: str) -> None:
    if not name:
        raise BadInput("network name is required")
    if name in PREDEFINED:
        raise BadInput(f"operation is not permitted on predefined {name} network")


def check_driver(driver: str | None) -> None:
    if driver and driver != ipam.DRIVER:
        raise BadInput(f"network driver {driver!r} is not supported by lamina yet "
                       f"(only {ipam.DRIVER!r})")


def check_options(options: Mapping[str, str]) -> None:
    """The driver options, each one lamina applies (OPTIONS) with a value it can, in
    docker's words when wrong; any other refused by name."""
    for key, value in options.items():
        if key not in OPTIONS:
            raise BadInput(f"network option {key!r} (-o {key}=...) is not supported by "
                           "lamina yet")
        if key == MTU_OPTION and not (value.isdigit() and 68 <= int(value) <= 65535):
            raise BadInput(f"invalid MTU number: {value} (68 to 65535)")
        if key == MASQUERADE_OPTION and value.lower() not in ("true", "false", "1", "0"):
            raise BadInput(f"{key}: {value!r} is not a boolean")
        if key == IFACE_PREFIX_OPTION and not (value and len(value) <= 12
                                               and value.replace("_", "").isalnum()):
            raise BadInput(f"{key}: {value!r}: letters, digits and _, at most 12")
        if key == HOST_BINDING_OPTION:
            ipam.parse_publish(f"{value}:1:1")  # an IPv4 address


def _check_keys(filters: Filters, accepted: frozenset[str]) -> None:
    for key in filters:
        if key not in accepted:
            raise BadInput(f"invalid filter '{key}'")


def _labels_hold(n: Network, filters: Filters) -> bool:
    return labels_hold(n.labels, filters)


# --- members: the containers on a network ---------------------------------------------------

MEMBER_STATES = ("running", "paused")


class ActiveEndpoints(Conflict):
    """A network with containers on it can't be removed (docker's 403, libnetwork's
    ActiveEndpointsError)."""


def members(e: EngineBase, n: Network) -> list[Container]:
    """The containers with an endpoint on `n` now (running or paused: docker's active
    endpoints), oldest first. A stopped container holds no endpoint: it neither shows in
    the network's inspect nor keeps the network from being removed."""
    return [c for c in e.log.containers(MEMBER_STATES)
            if any(ep.get("id") == n.id for ep in c.endpoints.values())]


def check_unused(e: EngineBase, n: Network) -> None:
    """rm's guard, in docker's words: no container may be on the network."""
    if members(e, n):
        raise ActiveEndpoints(f"error while removing network: network {n.name} id {n.id} "
                              "has active endpoints")


# --- membership: network connect / disconnect ---------------------------------------------


# An endpoint's settings as recorded (create's `endpoints`, ContainerConnected, c.networks):
# aliases, ip (IPv4), ip6, mac, links ["name:alias"], link_local_ips, driver_opts.
ENDPOINT_KEYS = ("aliases", "ip", "ip6", "mac", "links", "link_local_ips", "driver_opts")
# Endpoint driver options docker's bridge driver would act on and lamina doesn't: refused by
# name. Any other key means nothing to the driver, docker's nor lamina's: recorded and shown.
_DOCKER_OPTS = "com.docker.network."


def check_endpoint(network: Network, ep: Mapping[str, Any]) -> None:
    """An endpoint's settings on `network`, in docker's words when wrong (aliases, fixed
    addresses and links only on a user-defined network, addresses in its subnets, IPv6 only
    on an IPv6 network)."""
    user_defined = not is_predefined(network)
    if ep.get("aliases") and not user_defined:
        raise BadInput("network-scoped alias is supported only for containers in user "
                       "defined networks")
    if (ep.get("ip") or ep.get("ip6")) and not user_defined:
        raise BadInput("user specified IP address is supported on user defined "
                       "networks only")
    if ep.get("ip"):
        ipam.lease(spec(network), (), requested=ep["ip"])  # in its subnet, not reserved
    if ep.get("ip6"):
        if not network.subnet6:
            raise BadInput(f"invalid address {ep['ip6']}: network {network.name} has no "
                           "IPv6 subnet (--ipv6)")
        ipam.lease(spec(network), (), requested=ep["ip6"], version=6)
    if ep.get("mac"):
        ipam.check_mac(ep["mac"])
    ipam.check_link_local(ep.get("link_local_ips") or ())
    for link in ep.get("links") or ():
        name, _, alias = str(link).partition(":")
        if not name.strip("/") or not alias:
            raise BadInput(f"invalid link {link!r}: it should be NAME:ALIAS")
    for key in ep.get("driver_opts") or {}:
        if key.startswith(_DOCKER_OPTS):
            raise BadInput(f"endpoint driver option {key!r} is not supported by lamina yet")


def endpoint_settings(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Recorded settings with the empty ones left out, a MAC normalized, links as
    `name:alias` (docker's form, a leading / dropped)."""
    out: dict[str, Any] = {}
    for key in ENDPOINT_KEYS:
        value = raw.get(key)
        if not value:
            continue
        if key == "mac":
            value = ipam.check_mac(str(value))
        elif key == "links":
            value = [_link(str(v)) for v in value]
        elif key in ("aliases", "link_local_ips"):
            value = [str(v) for v in value]
        elif key == "driver_opts":
            value = {str(k): str(v) for k, v in dict(value).items()}
        else:
            value = str(value)
        out[key] = value
    return out


def _link(text: str) -> str:
    name, sep, alias = text.partition(":")
    name = name.lstrip("/")
    return f"{name}:{alias or name}" if sep or name else text


def endpoint(c: Container, network: Network, wanted: Mapping[str, Any],
             others: list[Container], slot: int) -> dict[str, Any]:
    """A container's lease on one network, given the other running containers' (an address
    of its `--ip`, or the lowest free one; on an IPv6 network an IPv6 one too), with the
    names its DNS answers for it on a user-defined network (its name, aliases and short id,
    as docker's)."""
    net = spec(network)
    held = [ep for x in others for ep in x.endpoints.values() if ep["id"] == network.id]
    address = ipam.lease(net, [ep["address"] for ep in held], requested=wanted.get("ip") or None)
    user_defined = not is_predefined(network)
    aliases = list(wanted.get("aliases") or ())
    lease = {"id": network.id, "address": address, "prefixlen": net.prefixlen,
             "gateway": net.gateway, "mac": wanted.get("mac") or ipam.mac_address(address),
             "bridge": net.bridge, "veth": ipam.veth_name(c.id, network.id),
             "internal": net.internal, "aliases": aliases, "dns": user_defined,
             "slot": slot, "dns_names": [c.name, *aliases, c.id[:12]] if user_defined else []}
    if net.subnet6:
        lease.update(address6=ipam.lease(net, [ep["address6"] for ep in held
                                              if ep.get("address6")],
                                         requested=wanted.get("ip6") or None, version=6),
                     prefixlen6=ipaddress.ip_network(net.subnet6).prefixlen,
                     gateway6=net.gateway6)
    extra = {"link_local": list(wanted.get("link_local_ips") or ()), "mtu": net.mtu,
             "links": list(wanted.get("links") or ()),
             "ifprefix": net.iface_prefix if net.iface_prefix != "eth" else None}
    lease.update({k: v for k, v in extra.items() if v})
    if not net.masquerade and not net.internal:
        lease["masquerade"] = False
    return lease


def network_connect(e: EngineBase, net_ref: str, ref: str, aliases: Sequence[str] = (),
                    ip: str | None = None, **settings: Any) -> None:
    """Make a container a member of one more network (docker's `network connect`): a
    running one is joined at once (its lease made on the host, then recorded), a stopped
    one at its next start. `settings`: the endpoint's other ENDPOINT_KEYS."""
    with e.command("network connect", f"{net_ref} {ref}") as cmd:
        unknown = set(settings) - set(ENDPOINT_KEYS)
        if unknown:
            raise BadInput(f"network connect: unknown endpoint settings {sorted(unknown)}")
        wanted = endpoint_settings({**settings, "aliases": list(aliases), "ip": ip})
        cmd.retrying(lambda: _connect(e, cmd, net_ref, ref, wanted))


def _connect(e: EngineBase, cmd: Command, net_ref: str, ref: str,
             wanted: dict[str, Any]) -> None:
    network = find(e, net_ref)
    c = e.container(ref)
    mode = c.config.get("network") or "none"
    if network.driver != ipam.DRIVER or mode == "host":
        raise BadInput("container sharing network namespace with another container or host "
                       "cannot be connected to any other network")
    if mode == "none":
        raise BadInput("container cannot be connected to multiple networks with one of the "
                       "networks in private (none) mode")
    check_endpoint(network, wanted)
    with e.runtime.ending(c):
        now = e.log.container(c.id)
        if now is None:
            raise NotFound(f"no such container: {ref}")
        if network.name in now.networks:
            raise Conflict(f"endpoint with name {now.name} already exists in network "
                           f"{network.name}")
        _judge(now, "connect")
        fields: dict[str, Any] = {
                  "id": now.id, "network": network.name, "network_id": network.id,
                  "aliases": wanted.get("aliases") or [], "ip": wanted.get("ip") or "",
                  "settings": {k: v for k, v in wanted.items() if k not in ("aliases", "ip")}}
        if now.state != "running":
            cmd.append([ev.ContainerConnected(**fields)], {f"container:{now.id}": now.version})
            return
        others = [x for x in e.log.containers(("running", "paused")) if x.id != now.id]
        slot = max((ep["slot"] for ep in now.endpoints.values()), default=-1) + 1
        lease = endpoint(now, network, wanted, others, slot)
        e.runtime.connect(now, lease)  # before the log says it is joined
        try:
            cmd.append([ev.ContainerConnected(**fields, endpoint=lease)],
                       {f"container:{now.id}": now.version})
        except BaseException:
            e.runtime.disconnect(now, lease)
            raise


def network_disconnect(e: EngineBase, net_ref: str, ref: str, force: bool = False) -> None:
    """Take a container off a network (docker's `network disconnect`); a running one's link
    goes once that is recorded."""
    with e.command("network disconnect", f"{net_ref} {ref}") as cmd:
        cmd.retrying(lambda: _disconnect(e, cmd, net_ref, ref, force))


def _disconnect(e: EngineBase, cmd: Command, net_ref: str, ref: str, force: bool) -> None:
    network = find(e, net_ref)
    c = e.container(ref)
    with e.runtime.ending(c):
        now = e.log.container(c.id)
        if now is None:
            raise NotFound(f"no such container: {ref}")
        if network.name not in now.networks:
            raise BadInput(f"container {now.id} is not connected to network {network.name}")
        _judge(now, "disconnect")
        cmd.append([ev.ContainerDisconnected(id=now.id, network=network.name,
                                             network_id=network.id, force=force)],
                   {f"container:{now.id}": now.version})
        lease = now.endpoints.get(network.name)
        if lease is not None:
            e.runtime.disconnect(now, lease)  # after the log says it left


def unlink(e: EngineBase, ref: str) -> str:
    """docker's `rm --link PARENT/ALIAS`: the parent's link of that alias removed (on
    whichever of its networks has it); the container that was linked to stays."""
    with e.command("rm --link", ref) as cmd:
        parent, sep, alias = ref.strip("/").rpartition("/")
        if not sep or not parent or not alias:
            raise BadInput(f"Conflict, cannot remove the default link name of the container "
                           f"({ref}): give PARENT/ALIAS")
        return cmd.retrying(lambda: _unlink(e, cmd, parent, alias, ref))


def _unlink(e: EngineBase, cmd: Command, parent: str, alias: str, ref: str) -> str:
    c = e.container(parent)
    for network, settings in c.networks.items():
        for link in settings.get("links") or ():
            if link.partition(":")[2] == alias:
                cmd.append([ev.ContainerUnlinked(id=c.id, network=network, link=link)],
                           {f"container:{c.id}": c.version})
                return c.id
    raise NotFound(f"Could not find a link named {alias} on container {c.name} ({ref})")


def _judge(c: Container, trigger: str) -> None:
    if not lifecycle.judge(c.state, trigger):
        raise IllegalMove(f"cannot {trigger} container {c.id[:12]}: it is {c.state}")
