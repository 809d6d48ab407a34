"""Links by netlink: a network's bridge, and a container's veth pair onto it.

All through pyroute2's IPRoute (netlink messages, never `ip` and its output). A bridge lives
in the caller's network namespace (the host's); a veth pair is made there with its peer
created directly in the container's namespace under its final name (eth0), so the peer
never exists on the host side, not even for a moment, and no temporary name can collide.
Its address, its default route via the gateway, and its link state are then set from
inside: the calling thread enters the container's namespace (setns) just long enough to
open a netlink socket, which stays bound to that namespace, and comes back before anything
else runs (a socket is made in the namespace of the thread that makes it).

Deletes are idempotent: a link already gone (a container's veth goes with its namespace
when the container's last process exits) is no error, only False.

Importing pyroute2 costs ~150 ms (its package imports every protocol it knows): import this
module only on the way to a bridge network, or preload it in a long-lived process.
"""

from __future__ import annotations

import errno
import os
import re
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from adapters.kernel import libc
from core.networks import (
    BRIDGE_PREFIX,
    DEFAULT_BRIDGE,
    VETH_PREFIX,
    check_bridge_name,
    mac_address,
)

_IFF_UP = 0x1
_OURS = re.compile(rf"{re.escape(BRIDGE_PREFIX)}[0-9a-f]{{12}}"
                   rf"|{re.escape(VETH_PREFIX)}[0-9a-f]{{12}}|{re.escape(DEFAULT_BRIDGE)}")


class LinkError(Exception):
    """The kernel refused a link operation; the message names the link and the reason."""


@dataclass(frozen=True)
class Endpoint:
    """A container's end of a network, as attach made it."""

    host_ifname: str  # the host end, a port of the bridge
    ifname: str  # the container's end, in its namespace
    address: str
    prefixlen: int
    gateway: str
    mac: str


def _fail(what: str, err: NetlinkError) -> LinkError:
    return LinkError(f"{what}: {os.strerror(err.code)}")


def _index(ipr: Any, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def _kind(link: Any) -> str | None:
    info = link.get_attr("IFLA_LINKINFO")
    return info.get_attr("IFLA_INFO_KIND") if info is not None else None


def _write_sysctl(path: str, value: str) -> None:
    """A sysctl under /proc/sys/net of the calling thread's network namespace."""
    with open(path, "w") as f:
        f.write(value)


def enable_forwarding(ipv6: bool = False) -> None:
    """net.ipv4.ip_forward=1 in the caller's network namespace (and IPv6 forwarding for a
    dual-stack network): traffic between the bridges and the other links is routed
    (masquerade, published ports). Per namespace: the engine sets the host's, as docker
    does; a test sets only that of the namespace it made."""
    _write_sysctl("/proc/sys/net/ipv4/ip_forward", "1")
    if ipv6:
        _write_sysctl("/proc/sys/net/ipv6/conf/all/forwarding", "1")


_IFA_F_NODAD = 0x02  # an IPv6 address usable at once, without duplicate detection's wait


def _add_address(ipr: Any, index: int, address: str, prefixlen: int, what: str) -> None:
    """An address on a link, IPv6 ones without duplicate address detection (the addresses
    are the log's leases, unique by construction; DAD would leave them tentative, unusable,
    for a second or more); one already there is no error."""
    extra = {"flags": _IFA_F_NODAD} if ":" in address else {}
    try:
        ipr.addr("add", index=index, address=address, prefixlen=prefixlen, **extra)
    except NetlinkError as err:
        if err.code != errno.EEXIST:
            raise _fail(f"address {address}/{prefixlen} on {what}", err) from None


def create_bridge(name: str, address: str, prefixlen: int, *, mtu: int | None = None,
                  route_localnet: bool = True,
                  address6: tuple[str, int] | None = None) -> int:
    """The bridge `name` with the gateway's `address`/`prefixlen`, up; its index.

    Idempotent: an existing bridge keeps its index and gets the address and state it lacks
    (a link of that name that is no bridge is refused). The MAC is fixed (from the address)
    rather than the lowest of its ports', which would change as containers come and go and
    leave their ARP caches stale. route_localnet=1 on this bridge alone lets the host's
    127.0.0.1 reach a published port through the kernel (see nat.py)."""
    check_bridge_name(name)
    with IPRoute() as ipr:
        index = _index(ipr, name)
        existed = index is not None
        if index is None:
            spec: dict[str, Any] = {"ifname": name, "kind": "bridge",
                                    "address": mac_address(address)}
            if mtu is not None:
                spec["mtu"] = mtu
            try:
                ipr.link("add", **spec)
            except NetlinkError as err:
                if err.code != errno.EEXIST:
                    raise _fail(f"create bridge {name}", err) from None
            index = _index(ipr, name)
            if index is None:
                raise LinkError(f"create bridge {name}: it vanished")
        try:
            kind = _kind(ipr.link("get", index=index)[0]) if existed else "bridge"
            if kind != "bridge":
                raise LinkError(f"create bridge {name}: a {kind or 'link'} has that name")
            _add_address(ipr, index, address, prefixlen, name)
            if address6 is not None:
                _add_address(ipr, index, *address6, name)
            ipr.link("set", index=index, state="up")
        except NetlinkError as err:  # deleted meanwhile (a racing network rm, reconcile)
            raise _fail(f"create bridge {name}", err) from None
    if route_localnet:
        _write_sysctl(f"/proc/sys/net/ipv4/conf/{name}/route_localnet", "1")
    return int(index)


def delete_link(name: str) -> bool:
    """Delete the link `name` (a bridge, or a veth with its peer); False when it is gone."""
    with IPRoute() as ipr:
        index = _index(ipr, name)
        return index is not None and _delete(ipr, index, name)


def _delete(ipr: Any, index: int, name: str) -> bool:
    """Delete the link at `index` (found as `name`); False when it went in between: a veth
    whose peer's namespace just died is deleted by the kernel, in the background, at any
    moment after its last process exits (ENODEV is then the kernel having done it)."""
    try:
        ipr.link("del", index=index)
    except NetlinkError as err:
        if err.code == errno.ENODEV:
            return False
        raise _fail(f"delete {name}", err) from None
    return True


def delete_bridge(name: str) -> bool:
    """Delete a network's bridge (its remaining ports are released, not deleted); False
    when it is gone."""
    return delete_link(name)


def detach(host_ifname: str) -> bool:
    """Delete a container's veth pair by its host end; False when it is gone (with the
    container's namespace, say)."""
    return delete_link(host_ifname)


@contextmanager
def _netns_fd(pid: int | None, netns_fd: int | None) -> Iterator[int]:
    if (pid is None) == (netns_fd is None):
        raise ValueError("give exactly one of pid and netns_fd")
    if netns_fd is not None:
        yield netns_fd
        return
    try:
        fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as err:
        raise LinkError(f"the network namespace of process {pid}: {err.strerror}") from None
    try:
        yield fd
    finally:
        os.close(fd)


def _ifindex(name: str) -> int | None:
    """A link's index in the calling thread's namespace, by ioctl (SIOCGIFINDEX): no netlink
    dump of every link, which pyroute2's link_lookup makes (~0.5 ms each, more with many
    containers)."""
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return None


def _iproute_in(netns_fd: int, ifname: str) -> tuple[Any, int | None]:
    """An IPRoute whose socket is in the namespace `netns_fd`, and the index of `ifname`
    there: made by this thread while it sits there, then the thread goes back to its own
    namespace before anything else."""
    mine = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        libc.setns(netns_fd, libc.CLONE_NEWNET)
        try:
            return IPRoute(), _ifindex(ifname)
        finally:
            libc.setns(mine, libc.CLONE_NEWNET)
    finally:
        os.close(mine)


def attach(bridge: str, host_ifname: str, *, address: str, prefixlen: int, gateway: str,
           pid: int | None = None, netns_fd: int | None = None, ifname: str = "eth0",
           mtu: int | None = None, mac: str | None = None, route: bool = True,
           loopback: bool = True, addresses: Sequence[tuple[str, int]] = (),
           gateway6: str | None = None) -> Endpoint:
    """Connect the network namespace of process `pid` (or the open namespace `netns_fd`) to
    `bridge`: a veth pair, `host_ifname` on the bridge and up, `ifname` in the namespace with
    `address`/`prefixlen`, up, and (with `route`: a container's first network) a default
    route via `gateway` (and `gateway6` for IPv6); `addresses`: more of them (IPv6,
    link-local) on `ifname`; loopback up there too (unless `loopback` is False: a namespace
    made with it up already, adapters/network/endpoints.py).

    A leftover `host_ifname` is replaced: a crash's between two steps, or the last run's,
    whose namespace the kernel may be deleting with it right then (gone before our delete
    is as good as deleted). On failure, what this call made is deleted before the error is
    raised."""
    mac = mac or mac_address(address)
    with _netns_fd(pid, netns_fd) as fd, IPRoute() as ipr:
        master = _ifindex(bridge)
        if master is None:
            raise LinkError(f"attach {host_ifname}: no bridge {bridge}")
        old = _ifindex(host_ifname)
        if old is not None:  # a leftover: the last run's, its namespace perhaps dying now
            _delete(ipr, old, host_ifname)
        # one message makes both ends: the host's on the bridge and up, the container's in
        # its namespace under its name (each netlink round trip costs ~0.5 ms in pyroute2)
        peer: dict[str, Any] = {"ifname": ifname, "net_ns_fd": fd, "address": mac}
        link: dict[str, Any] = {"ifname": host_ifname, "kind": "veth", "peer": peer,
                                "master": master, "state": "up"}
        if mtu is not None:
            link["mtu"] = peer["mtu"] = mtu
        try:
            ipr.link("add", **link)
        except NetlinkError as err:
            raise _fail(f"create veth {host_ifname} ({ifname} inside)", err) from None
        try:
            inner, inner_index = _iproute_in(fd, ifname)
            with inner:
                if inner_index is None:
                    raise LinkError(f"attach {host_ifname}: no {ifname} in the namespace")
                inner.addr("add", index=inner_index, address=address, prefixlen=prefixlen)
                for more, length in addresses:
                    _add_address(inner, inner_index, more, length, ifname)
                inner.link("set", index=inner_index, state="up")
                if loopback:
                    lo = _index(inner, "lo")
                    if lo is not None and \
                            not inner.link("get", index=lo)[0]["flags"] & _IFF_UP:
                        inner.link("set", index=lo, state="up")
                if route:
                    inner.route("add", dst="0.0.0.0/0", gateway=gateway, oif=inner_index)
                    if gateway6:
                        inner.route("add", dst="::/0", gateway=gateway6, oif=inner_index,
                                    family=socket.AF_INET6)
        except NetlinkError as err:
            _undo(ipr, host_ifname)
            raise _fail(f"configure {ifname} of {host_ifname}", err) from None
        except BaseException:
            _undo(ipr, host_ifname)
            raise
    return Endpoint(host_ifname, ifname, address, prefixlen, gateway, mac)


def _undo(ipr: Any, host_ifname: str) -> None:
    index = _index(ipr, host_ifname)
    if index is not None:
        with suppress(NetlinkError):
            ipr.link("del", index=index)


def links() -> dict[str, str]:
    """lamina's links in the caller's namespace, name -> kind: the default bridge, the
    bridges lm-<12 hex>, the veths lv<12 hex> (for reconcile, against the names the log
    implies; a bridge named by option is known by the log alone)."""
    with IPRoute() as ipr:
        found = {}
        for link in ipr.get_links():
            name = link.get_attr("IFLA_IFNAME")
            if _OURS.fullmatch(name):
                found[name] = _kind(link) or ""
        return found
