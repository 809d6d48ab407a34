"""The NetworkHost contract (core/ports.py), run against the in-memory and the Linux host.

What every host must do: `create` makes the network's bridge with its gateway's address and
lamina's chains for it, and making it again changes nothing; `remove` takes exactly that
network's bridge and chains (another network's stay) and a network that is not there is no
error; `discard` does the same by bridge name; `names` lists the bridges lamina owns, sorted.

The Linux host runs each scenario in a forked child that first unshares its own network
namespace (never the host's: tests/kernel/test_network_plumbing.py's in_new_netns), and the
host's links and nftables ruleset are compared before and after each test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from ipaddress import IPv4Network
from typing import Any

import pytest

from core import networks as ipam
from core.memory import MemoryNetworkHost

A = ipam.new_network("a", "a" * 64, subnet="172.18.0.0/16")
B = ipam.new_network("b", "b" * 64, subnet="10.7.0.0/24", gateway="10.7.0.254", internal=True)
NAMED = ipam.new_network("n", "c" * 64, subnet="172.20.0.0/16",
                         options={ipam.BRIDGE_NAME_OPTION: "br-named"})


class NetworkHostContract:
    def make_host(self) -> Any:
        raise NotImplementedError

    def run(self, scenario: Callable[[], None]) -> None:
        """Run `scenario` where the host may change the network (a namespace of its own)."""
        scenario()

    def addresses(self, host: Any, bridge: str) -> list[str]:
        """The bridge's addresses, CIDR form (empty when it is not there)."""
        raise NotImplementedError

    def chains(self, host: Any) -> set[str]:
        """The bridges lamina's nftables table has chains for."""
        raise NotImplementedError

    def test_nothing_is_there_at_first(self) -> None:
        def scenario() -> None:
            host = self.make_host()
            assert host.names() == [] and self.chains(host) == set()
            host.remove(A)
            host.discard("lm-000000000000")  # what is not there is no error
            assert host.names() == []

        self.run(scenario)

    def test_create_makes_the_bridge_with_its_gateway_and_its_chains(self) -> None:
        def scenario() -> None:
            host = self.make_host()
            host.create(A)
            host.create(B)
            assert host.names() == sorted([A.bridge, B.bridge])
            assert self.addresses(host, A.bridge) == ["172.18.0.1/16"]
            assert self.addresses(host, B.bridge) == ["10.7.0.254/24"]
            assert self.chains(host) == {A.bridge, B.bridge}
            host.create(A)  # again: nothing changes
            assert host.names() == sorted([A.bridge, B.bridge])
            assert self.addresses(host, A.bridge) == ["172.18.0.1/16"]

        self.run(scenario)

    def test_remove_is_exact_and_idempotent(self) -> None:
        def scenario() -> None:
            host = self.make_host()
            host.create(A)
            host.create(B)
            host.remove(A)
            assert host.names() == [B.bridge] and self.chains(host) == {B.bridge}
            assert self.addresses(host, A.bridge) == []
            host.remove(A)
            assert host.names() == [B.bridge]
            host.remove(B)
            assert host.names() == [] and self.chains(host) == set()

        self.run(scenario)

    def test_discard_removes_by_name_and_a_named_bridge_is_listed(self) -> None:
        def scenario() -> None:
            host = self.make_host()
            host.create(NAMED)
            host.create(A)
            assert host.names() == sorted(["br-named", A.bridge])
            host.discard("br-named")
            assert host.names() == [A.bridge] and self.chains(host) == {A.bridge}
            host.discard(A.bridge)
            host.discard(A.bridge)
            assert host.names() == []

        self.run(scenario)


class TestMemoryNetworkHost(NetworkHostContract):
    def make_host(self) -> Any:
        return MemoryNetworkHost()

    def addresses(self, host: Any, bridge: str) -> list[str]:
        b = host.bridges.get(bridge)
        if b is None:
            return []
        return [f"{b.gateway}/{IPv4Network(b.subnet).prefixlen}"]

    def chains(self, host: Any) -> set[str]:
        return set(host.bridges)


@pytest.mark.kernel
class TestLinuxNetworkHost(NetworkHostContract):
    @pytest.fixture(autouse=True)
    def host_unchanged(self) -> Iterator[None]:
        from tests.conftest import require_root
        from tests.kernel.test_network_plumbing import host_network

        require_root()
        before = host_network()
        yield
        assert host_network() == before, "a network test changed the host's network"

    def make_host(self) -> Any:
        from adapters.network.host import LinuxNetworkHost

        return LinuxNetworkHost()

    def run(self, scenario: Callable[[], None]) -> None:
        from tests.kernel.test_network_plumbing import in_new_netns

        in_new_netns(scenario)

    def addresses(self, host: Any, bridge: str) -> list[str]:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            found = ipr.link_lookup(ifname=bridge)
            if not found:
                return []
            return [f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
                    for a in ipr.get_addr(index=found[0], family=2)]

    def chains(self, host: Any) -> set[str]:
        from adapters.network import nat

        return set(nat.owned().networks)
