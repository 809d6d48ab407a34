"""The NetworkHost port in memory: a bridge is a name with its subnet, gateway and mode."""

from __future__ import annotations

from dataclasses import dataclass, field

from core import networks as ipam


@dataclass(frozen=True)
class MemoryBridge:
    subnet: str
    gateway: str
    internal: bool = False


@dataclass
class MemoryNetworkHost:
    """Bridges (and their chains, which come and go with them here) by interface name."""

    bridges: dict[str, MemoryBridge] = field(default_factory=dict)

    def create(self, network: ipam.Network) -> None:
        self.bridges.setdefault(network.bridge, MemoryBridge(network.subnet, network.gateway,
                                                             network.internal))

    def remove(self, network: ipam.Network) -> None:
        self.discard(network.bridge)

    def discard(self, bridge: str) -> None:
        self.bridges.pop(bridge, None)

    def names(self) -> list[str]:
        return sorted(self.bridges)
