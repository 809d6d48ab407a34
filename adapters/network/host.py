"""The NetworkHost port on Linux: a network's bridge by netlink (bridge.py) and its chains
in lamina's nftables table (nat.py), in the caller's network namespace.

`create` makes the bridge first, then the chains; if the chains fail, the bridge it made
goes again, so a failed create leaves nothing. `remove` takes the chains first, then the
bridge; each step is idempotent,
so a remove interrupted halfway is finished by the next one or by reconcile. `names` is
what reconcile compares with the log: the bridges of lamina's names (lamina0, lm-<12 hex>)
and every bridge lamina's table has chains for (a bridge named by option is known there).
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # every command builds this host: it imports nothing until used
    from core import networks as ipam


class LinuxNetworkHost:
    def create(self, network: ipam.Network) -> None:
        from adapters.network import bridge, nat

        existed = network.bridge in bridge.links()
        six = ipaddress.ip_network(network.subnet6) if network.subnet6 else None
        if six is not None:
            bridge.enable_forwarding(ipv6=True)
        bridge.create_bridge(network.bridge, network.gateway, network.prefixlen,
                             mtu=network.mtu, address6=(network.gateway6, six.prefixlen)
                             if six is not None else None)
        try:
            nat.add_network(network.bridge, network.subnet, network.gateway,
                            internal=network.internal, masquerade=network.masquerade,
                            subnet6=network.subnet6, gateway6=network.gateway6)
        except BaseException:
            if not existed:
                bridge.delete_bridge(network.bridge)
            raise

    def remove(self, network: ipam.Network) -> None:
        self.discard(network.bridge)

    def discard(self, bridge_name: str) -> None:
        from adapters.network import bridge, nat

        if _nftables():
            nat.remove_network(bridge_name)
        bridge.delete_bridge(bridge_name)

    def names(self) -> list[str]:
        from adapters.network import bridge, nat

        found = {name for name, kind in bridge.links().items() if kind == "bridge"}
        if _nftables():
            found |= set(nat.owned().networks)
        return sorted(found)


def _nftables() -> bool:
    """Whether libnftables is there. Without it no network of lamina's has chains (create
    fails first), and reconcile (which every `system check` runs) must still work."""
    from adapters.network import nat

    try:
        nat._library()
    except nat.NftablesError:
        return False
    return True
