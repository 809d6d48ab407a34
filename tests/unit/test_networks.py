"""core/networks.py: subnets from docker's pools, leases, `-p` in docker's words, host ports.

The property tests hold the two promises the model checker will lean on: no address and no
host port is handed out twice, and nothing reserved (gateway, network, broadcast) is ever
leased.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import BadInput, Conflict
from core.networks import (
    ANY,
    DEFAULT_BRIDGE,
    Network,
    PortBinding,
    PortSpec,
    bind_ports,
    bridge_name,
    check_gateway,
    choose_host_port,
    choose_subnet,
    clashes,
    dns_records,
    lease,
    mac_address,
    new_network,
    parse_publish,
    parse_subnet,
    pools,
    reserved,
    veth_name,
)

NET_ID = "f" * 64


def net(subnet: str = "10.0.0.0/29", gateway: str = "10.0.0.1", name: str = "web") -> Network:
    return Network(name=name, id=NET_ID, subnet=subnet, gateway=gateway)


# --- subnets -------------------------------------------------------------------------------


def test_the_pools_are_dockers_in_dockers_order() -> None:
    candidates = [str(n) for n in pools()]
    assert candidates[:4] == ["172.17.0.0/16", "172.18.0.0/16", "172.19.0.0/16",
                              "172.20.0.0/16"]
    assert candidates[14] == "172.31.0.0/16"
    assert candidates[15:17] == ["192.168.0.0/20", "192.168.16.0/20"]
    assert len(candidates) == 31


def test_the_default_bridge_gets_172_17_and_the_next_network_172_18() -> None:
    bridge = new_network("bridge", NET_ID)
    assert (bridge.subnet, bridge.gateway, bridge.bridge) == ("172.17.0.0/16", "172.17.0.1",
                                                              DEFAULT_BRIDGE)
    second = new_network("web", "ab" * 32, in_use=[bridge.subnet])
    assert (second.subnet, second.gateway) == ("172.18.0.0/16", "172.18.0.1")
    assert second.bridge == "lm-abababababab"


def test_a_subnet_overlapping_one_in_use_is_skipped() -> None:
    assert choose_subnet(["172.17.0.0/16", "172.18.5.0/24"]) == "172.19.0.0/16"
    assert choose_subnet(["172.16.0.0/12"]) == "192.168.0.0/20"


def test_when_every_pool_is_taken_docker_says_so() -> None:
    with pytest.raises(Conflict, match="non-overlapping IPv4 address pool"):
        choose_subnet(["172.16.0.0/12", "192.168.0.0/16"])


@pytest.mark.parametrize("text,message", [
    ("garbage", "invalid subnet garbage: invalid CIDR address: garbage"),
    ("10.0.0.0", "invalid subnet 10.0.0.0: invalid CIDR address"),
    ("10.0.0.0/33", "invalid CIDR address"),
    ("10.0.0.5/24", "invalid subnet 10.0.0.5/24: it should be 10.0.0.0/24"),
    ("fd00::/64", "an IPv4 subnet was expected"),
    ("10.0.0.0/31", "too small"),
])
def test_bad_subnets_are_refused_in_one_line(text: str, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        parse_subnet(text)


def test_a_given_subnet_must_not_overlap_another_network() -> None:
    with pytest.raises(Conflict, match="Pool overlaps with other one on this address space"):
        new_network("b", NET_ID, subnet="172.18.1.0/24", in_use=["172.18.0.0/16"])
    made = new_network("b", NET_ID, subnet="10.9.0.0/24", gateway="10.9.0.254", internal=True,
                       labels={"a": "1"}, in_use=["172.18.0.0/16"])
    assert (made.subnet, made.gateway, made.internal, made.labels) == (
        "10.9.0.0/24", "10.9.0.254", True, {"a": "1"})


@pytest.mark.parametrize("gateway,message", [
    ("10.1.0.1", "no matching subnet for gateway 10.1.0.1"),
    ("nonsense", "invalid gateway address: nonsense"),
    ("10.0.0.0", "network or broadcast"),
    ("10.0.0.255", "network or broadcast"),
])
def test_bad_gateways(gateway: str, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        check_gateway(gateway, "10.0.0.0/24")


def test_a_gateway_needs_a_subnet() -> None:
    with pytest.raises(BadInput, match="corresponding subnet"):
        new_network("b", NET_ID, gateway="172.18.0.1")


def test_the_bridge_name_option_is_honoured_and_checked() -> None:
    named = new_network("b", NET_ID, options={"com.docker.network.bridge.name": "mybr"})
    assert named.bridge == "mybr"
    with pytest.raises(BadInput, match="invalid bridge name"):
        new_network("b", NET_ID, options={"com.docker.network.bridge.name": "x" * 16})


def test_link_names_fit_the_kernel_and_differ_by_container_and_network() -> None:
    a, b, c = veth_name("c1", "n1"), veth_name("c2", "n1"), veth_name("c1", "n2")
    assert len({a, b, c}) == 3
    assert all(len(n) <= 15 and n.startswith("lv") for n in (a, b, c))
    assert veth_name("c1", "n1") == a  # from the ids alone: reconcile recomputes it
    assert len(bridge_name(net())) <= 15
    assert mac_address("172.17.0.2") == "02:42:ac:11:00:02"


# --- leases --------------------------------------------------------------------------------


def test_leases_start_after_the_gateway_and_skip_what_is_taken() -> None:
    n = net()
    assert lease(n, []) == "10.0.0.2"
    assert lease(n, ["10.0.0.2", "10.0.0.3"]) == "10.0.0.4"
    assert lease(n, ["10.0.0.2"], after="10.0.0.5") == "10.0.0.6"
    assert lease(n, ["10.0.0.2"], after="10.0.0.6") == "10.0.0.3"  # wraps, skipping .7 (bcast)


def test_a_gateway_in_the_middle_is_never_leased() -> None:
    n = net(gateway="10.0.0.4")
    got: list[str] = []
    for _ in range(5):
        got.append(lease(n, got))
    assert got == ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.5", "10.0.0.6"]
    with pytest.raises(Conflict, match=r"no available IPv4 addresses on this network's address "
                                       rf"pools: web \({NET_ID}\)"):
        lease(n, got)


@pytest.mark.parametrize("requested,error,message", [
    ("10.0.0.1", Conflict, "Address already in use"),  # the gateway
    ("10.0.0.0", Conflict, "Address already in use"),  # the network address
    ("10.0.0.7", Conflict, "Address already in use"),  # broadcast
    ("10.0.0.3", Conflict, "Address already in use"),  # leased
    ("10.0.1.3", BadInput, "does not belong to any of this network's subnets"),
    ("ten", BadInput, "invalid IPv4 address: ten"),
])
def test_a_requested_address_is_judged(requested: str, error: type[Exception],
                                       message: str) -> None:
    with pytest.raises(error, match=message):
        lease(net(), ["10.0.0.3"], requested=requested)


def test_a_free_requested_address_is_given_as_asked() -> None:
    assert lease(net(), ["10.0.0.2"], requested="10.0.0.6") == "10.0.0.6"


@settings(max_examples=150)
@given(prefix=st.integers(24, 30), gateway_offset=st.integers(1, 2),
       ops=st.lists(st.tuples(st.sampled_from(["lease", "serial", "release", "ask"]),
                              st.integers(0, 300)), max_size=80))
def test_no_address_is_ever_leased_twice(prefix: int, gateway_offset: int,
                                         ops: list[tuple[str, int]]) -> None:
    subnet = IPv4Network(f"10.20.30.0/{prefix}")
    n = Network("p", NET_ID, str(subnet), str(subnet.network_address + gateway_offset))
    usable = subnet.num_addresses - 3
    held: list[str] = []
    last: str | None = None
    for op, k in ops:
        if op == "release" and held:
            held.pop(k % len(held))
            continue
        try:
            if op == "ask":
                got = lease(n, held, requested=str(subnet.network_address + k % 256))
            else:
                got = lease(n, held, after=last if op == "serial" else None)
        except Conflict:
            assert op == "ask" or len(held) == usable
            continue
        except BadInput:
            assert op == "ask"
            continue
        assert got not in held
        assert IPv4Address(got) in subnet and IPv4Address(got) not in reserved(n)
        held.append(got)
        last = got
    assert len(set(held)) == len(held)


# --- -p --------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw,specs", [
    ("80", [PortSpec("tcp", 80)]),
    ("8080:80", [PortSpec("tcp", 80, "", 8080)]),
    ("127.0.0.1:8080:80/udp", [PortSpec("udp", 80, "127.0.0.1", 8080)]),
    ("127.0.0.1::80", [PortSpec("tcp", 80, "127.0.0.1", 0)]),
    ("0.0.0.0:8080:80", [PortSpec("tcp", 80, "", 8080)]),
    ("8000-8001:80-81", [PortSpec("tcp", 80, "", 8000), PortSpec("tcp", 81, "", 8001)]),
    ("80-81", [PortSpec("tcp", 80), PortSpec("tcp", 81)]),
    ("8000-8010:80", [PortSpec("tcp", 80, "", 8000, 8010)]),
    ("80/TCP", [PortSpec("tcp", 80)]),
    ("53/sctp", [PortSpec("sctp", 53)]),
    ("0:80", [PortSpec("tcp", 80)]),
])
def test_publish_forms(raw: str, specs: list[PortSpec]) -> None:
    assert parse_publish(raw) == specs


@pytest.mark.parametrize("raw,message", [
    ("", "no port specified: <empty>"),
    ("8080:", "no port specified: 8080:<empty>"),
    ("80/icmp", "invalid proto: icmp"),
    ("1.2.3:80:80", "invalid IP address: 1.2.3"),
    ("[::1]:80:80", "invalid IP address: ::1: lamina publishes on IPv4 only"),
    ("http", "invalid containerPort: http"),
    ("0", "invalid containerPort: 0"),
    ("70000", "invalid containerPort: 70000"),
    ("81-80", "invalid containerPort: 81-80"),
    ("+80", "invalid containerPort: +80"),
    ("x:80", "invalid hostPort: x"),
    ("0-10:80", "invalid hostPort: 0-10"),
    ("8000:80-81", "invalid ranges specified for container and host Ports: 80-81 and 8000"),
    ("8000-8002:80-81", "invalid ranges specified for container and host Ports: 80-81 and "
                        "8000-8002"),
])
def test_publish_errors_in_dockers_words(raw: str, message: str) -> None:
    with pytest.raises(BadInput, match="^" + re.escape(message) + "$"):
        parse_publish(raw)


@given(ip=st.sampled_from(["", "127.0.0.1", "10.1.2.3"]),
       proto=st.sampled_from(["tcp", "udp", "sctp"]),
       cport=st.integers(1, 65535), hport=st.integers(1, 65535))
def test_publish_round_trips(ip: str, proto: str, cport: int, hport: int) -> None:
    raw = f"{ip + ':' if ip else ''}{hport}:{cport}/{proto}"
    assert parse_publish(raw) == [PortSpec(proto, cport, ip, hport)]


# --- host ports ------------------------------------------------------------------------------


def test_any_clashes_with_every_address() -> None:
    assert clashes(ANY, "127.0.0.1") and clashes("127.0.0.1", ANY)
    assert clashes("127.0.0.1", "127.0.0.1") and not clashes("127.0.0.1", "10.0.0.1")


def test_explicit_ports_are_refused_when_bound() -> None:
    bound = [PortBinding("tcp", 80, ANY, 8080)]
    with pytest.raises(Conflict, match=r"^Bind for 127.0.0.1:8080 failed: port is already "
                                       "allocated$"):
        bind_ports(parse_publish("127.0.0.1:8080:80"), bound)
    # another proto, or another address than one bound specifically, is free
    assert bind_ports(parse_publish("8080:80/udp"), bound) == [PortBinding("udp", 80, ANY, 8080)]
    specific = [PortBinding("tcp", 80, "127.0.0.1", 8080)]
    assert bind_ports(parse_publish("10.0.0.1:8080:80"), specific) == [
        PortBinding("tcp", 80, "10.0.0.1", 8080)]
    with pytest.raises(Conflict):
        bind_ports(parse_publish("8080:80"), specific)


def test_one_request_never_binds_a_port_twice() -> None:
    with pytest.raises(Conflict, match="0.0.0.0:8080 failed"):
        bind_ports(parse_publish("8080:80") + parse_publish("8080:81"), [])


def test_ephemeral_ports_come_from_dockers_range_in_turn() -> None:
    got = bind_ports(parse_publish("80-82"), [PortBinding("tcp", 1, ANY, 49154)])
    assert [b.host_port for b in got] == [49153, 49155, 49156]
    assert str(got[0]) == "0.0.0.0:49153->80/tcp"
    assert choose_host_port("tcp", ANY, [], after=49200) == 49201
    assert choose_host_port("tcp", ANY, [], after=60999) == 49153
    with pytest.raises(Conflict, match="all ports are allocated"):
        choose_host_port("tcp", ANY, [PortBinding("tcp", 1, ANY, 5)], low=5, high=5)


def test_a_host_range_takes_one_free_port_of_it() -> None:
    bound = [PortBinding("tcp", 1, ANY, 8000)]
    assert bind_ports(parse_publish("8000-8001:80"), bound) == [PortBinding("tcp", 80, ANY, 8001)]
    with pytest.raises(Conflict, match="Bind for 0.0.0.0:8000-8000 failed"):
        bind_ports([PortSpec("tcp", 80, "", 8000, 8000)], bound)


spec_strategy = st.builds(
    PortSpec, proto=st.sampled_from(["tcp", "udp"]), container_port=st.integers(1, 5),
    host_ip=st.sampled_from(["", "127.0.0.1", "10.0.0.1"]),
    host_port=st.sampled_from([0, 0, 20, 21, 22]), host_port_end=st.sampled_from([0, 0, 23]))


@settings(max_examples=200)
@given(requests=st.lists(st.lists(spec_strategy, max_size=4), max_size=12))
def test_no_host_port_is_ever_bound_twice(requests: list[list[PortSpec]]) -> None:
    bound: list[PortBinding] = []
    last: int | None = None
    for specs in requests:
        specs = [s if not s.host_port_end or s.host_port else PortSpec(
            s.proto, s.container_port, s.host_ip) for s in specs]
        try:
            got = bind_ports(specs, bound, ephemeral=(20, 26), after=last)
        except Conflict:
            continue
        for spec, binding in zip(specs, got, strict=True):
            if spec.host_port and not spec.host_port_end:
                assert binding.host_port == spec.host_port
            assert binding.host_ip == (spec.host_ip or ANY)
        bound.extend(got)
        ephemeral = [b.host_port for s, b in zip(specs, got, strict=True) if not s.host_port]
        last = ephemeral[-1] if ephemeral else last
    for i, a in enumerate(bound):
        for b in bound[i + 1:]:
            assert not (a.proto == b.proto and a.host_port == b.host_port
                        and clashes(a.host_ip, b.host_ip)), (a, b)


# --- DNS records ---------------------------------------------------------------------------


def test_dns_records_fold_names_and_aliases() -> None:
    records = dns_records([(["Web", "www."], "172.18.0.2"), (["db", "www"], "172.18.0.10"),
                           (["cache"], "172.18.0.3")])
    assert records == {"cache": ("172.18.0.3",), "db": ("172.18.0.10",),
                       "web": ("172.18.0.2",), "www": ("172.18.0.2", "172.18.0.10")}
