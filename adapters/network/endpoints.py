"""A container's network, wired before its init runs and unwired when its run ends.

The engine decides a run's leases (core/engine/attaching.py: an address on each network,
its published ports) and hands them to the runtime on the Container it starts. Here they
become real, in the caller's network namespace (the host's, or a test's):

1. the network's bridge and nftables chains are there (made if missing: the default
   bridge `lamina0` on its first use, a user network's after a reboot);
2. a new network namespace is made (this thread unshares one, keeps an fd to it, and goes
   back to its own before anything else runs);
3. a veth pair joins it to each bridge (bridge.attach: eth0, eth1... inside, with the
   address, the default route through the first network's gateway);
4. the published ports' DNAT rules (nat.publish, one chain per container, keyed by its id).

The namespace's fd goes to init (through the monitor, which stays in the caller's
namespace, where the run's end is unwired), and init enters it before anything else: the
container's first instruction already has its address and routes. The namespace lives as
long as a process is in it; `unwire` deletes the veths and the rules explicitly (the
kernel would delete a veth with its namespace, but only once the last process is gone,
and asynchronously). Every step undoes what it made when a later one fails.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from typing import Any

from adapters.kernel import libc
from core import networks as ipam


class WiringError(Exception):
    """The container's network could not be made; nothing of it is left behind."""


def publication_key(container_id: str) -> str:
    """The nftables chain of a container's published ports: pub-<its 12 hex>."""
    return container_id[:12]


def new_netns() -> int:
    """A new, empty network namespace, as an fd (O_CLOEXEC), its loopback up. Made by this
    thread, which goes back to its own namespace at once (setns is per thread)."""
    from adapters.kernel.syscalls import loopback_up

    mine = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        libc.unshare(libc.CLONE_NEWNET)
        try:
            fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            loopback_up()
        finally:
            libc.setns(mine, libc.CLONE_NEWNET)  # raises: this thread must not stay there
    finally:
        os.close(mine)
    return fd


def _has_link(name: str) -> bool:
    """A link of this name in the calling thread's network namespace (/sys/class/net shows
    the namespace /sys was mounted in, not necessarily ours)."""
    import socket

    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True


def ensure_network(ep: Mapping[str, Any]) -> None:
    """The bridge and chains of an endpoint's network, made when the bridge is missing
    (idempotent both: a racing start makes them too)."""
    from adapters.network import bridge, nat

    name = ep["bridge"]
    if _has_link(name) and nat.has_network(name):
        return
    subnet = str(ipam.IPv4Network(f"{ep['gateway']}/{ep['prefixlen']}", strict=False))
    bridge.enable_forwarding(ipv6=bool(ep.get("gateway6")))
    bridge.create_bridge(name, ep["gateway"], int(ep["prefixlen"]), mtu=ep.get("mtu"),
                         address6=(ep["gateway6"], int(ep["prefixlen6"]))
                         if ep.get("gateway6") else None)
    nat.add_network(name, subnet, ep["gateway"], internal=bool(ep.get("internal")),
                    masquerade=ep.get("masquerade", True), subnet6=subnet6_of(ep),
                    gateway6=ep.get("gateway6") or "")


def subnet6_of(ep: Mapping[str, Any]) -> str:
    if not ep.get("gateway6"):
        return ""
    return str(ipaddress.ip_network(f"{ep['gateway6']}/{ep['prefixlen6']}", strict=False))


def attach(ep: Mapping[str, Any], netns_fd: int, index: int, *, route: bool) -> None:
    """One endpoint's veth into the namespace `netns_fd`: its addresses (IPv4, IPv6 on a
    dual-stack network, link-local ones), MAC and MTU, named by its network's prefix and
    `index` (eth0, eth1...), the default routes when it is the first (`route`)."""
    from adapters.network import bridge

    more = [(ep["address6"], int(ep["prefixlen6"]))] if ep.get("address6") else []
    more += [(a, ipam.link_local_prefix(a)) for a in ep.get("link_local") or ()]
    bridge.attach(ep["bridge"], ep["veth"], address=ep["address"],
                  prefixlen=int(ep["prefixlen"]), gateway=ep["gateway"], netns_fd=netns_fd,
                  ifname=f"{ep.get('ifprefix') or 'eth'}{index}", mac=ep["mac"],
                  route=route, loopback=False, addresses=more, mtu=ep.get("mtu"),
                  gateway6=ep.get("gateway6") if route else None)


def wire(container_id: str, endpoints: Mapping[str, Mapping[str, Any]],
         ports: list[Mapping[str, Any]]) -> int:
    """Everything of a run's network (see the module's doc); returns the namespace's fd,
    the caller's to close once the monitor has it."""
    from adapters import faults
    from adapters.network import bridge, nat

    fd = new_netns()
    made: list[str] = []
    try:
        for index, ep in enumerate(sorted(endpoints.values(), key=lambda e: e["slot"])):
            ensure_network(ep)
            attach(ep, fd, index, route=index == 0)
            made.append(ep["veth"])
            faults.point("endpoints.wired")  # a veth on the bridge, more to come
        if ports:
            first = min(endpoints.values(), key=lambda e: e["slot"])
            nat.publish(publication_key(container_id), first["address"],
                        [ipam.PortBinding(**b) for b in ports],
                        address6=first.get("address6") or "")
            faults.point("endpoints.published")  # the DNAT rules in, nothing recorded
    except BaseException as err:
        os.close(fd)
        for veth in made:
            bridge.detach(veth)
        if isinstance(err, (bridge.LinkError, nat.NftablesError, OSError)):
            raise WiringError(f"cannot connect the container to its network: {err}") \
                from None
        raise
    return fd


def unwire(container_id: str, endpoints: Mapping[str, Mapping[str, Any]],
           ports: list[Mapping[str, Any]], links: bool = True) -> None:
    """Remove a run's published ports and (with `links`) its veths; idempotent (reconcile
    finishes a crash). Without `links` the caller knows the namespace is going with its
    last process, and the kernel deletes each veth pair with it."""
    from adapters import faults
    from adapters.network import bridge, nat

    if ports:
        nat.unpublish(publication_key(container_id))
        faults.point("endpoints.unpublished")  # the veths still there
    for ep in endpoints.values() if links else ():
        bridge.detach(ep["veth"])
        faults.point("endpoints.detached")
