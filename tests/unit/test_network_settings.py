"""What issue 18's last slice adds to the pure network model: IPAM ranges and auxiliary
addresses, dual-stack networks, MACs and link-local addresses, links (legacy and DNS), the
AAAA answers, and docker's `network connect|disconnect` events at a run's start and end."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.dockerapi.shapes import docker_events
from adapters.eventstore.sqlite_log import EVENT_COLUMNS, recorded
from adapters.network import dns
from core import links
from core.errors import BadInput, Conflict
from core.networks import (
    check_link_local,
    check_mac,
    dns_records,
    lease,
    link_records,
    new_network,
)
from events import types as ev
from tests.unit import netlog

NID = "e" * 64


def ranged(**more: object):
    return new_network("r", NID, subnet="172.28.0.0/16", gateway="172.28.5.254",
                       ip_range="172.28.5.0/24",
                       aux_addresses={"a": "172.28.5.1", "b": "172.28.1.6"}, **more)


# --- IPAM: ranges and auxiliary addresses ---------------------------------------------------


def test_dynamic_addresses_come_from_the_range_skipping_aux_and_gateway() -> None:
    n = ranged()
    assert lease(n, []) == "172.28.5.0"  # docker's: the range's first address is a host's
    assert lease(n, ["172.28.5.0"]) == "172.28.5.2"  # .1 is auxiliary
    full = [f"172.28.5.{i}" for i in range(256) if i not in (1, 254)]
    with pytest.raises(Conflict, match="no available IPv4 addresses"):
        lease(n, full)


def test_a_fixed_address_may_be_anywhere_in_the_subnet_but_not_a_held_one() -> None:
    n = ranged()
    assert lease(n, [], requested="172.28.9.9") == "172.28.9.9"  # outside the range
    for held in ("172.28.5.1", "172.28.1.6", "172.28.5.254"):
        with pytest.raises(Conflict, match="Address already in use"):
            lease(n, [], requested=held)


@given(st.lists(st.integers(0, 7), unique=True))
def test_no_lease_is_auxiliary_or_outside_the_range(taken: list[int]) -> None:
    n = new_network("s", NID, subnet="10.9.0.0/28", ip_range="10.9.0.8/29",
                    aux_addresses={"x": "10.9.0.9"})
    leased = [str(IPv4Address("10.9.0.8") + i) for i in taken]
    try:
        got = IPv4Address(lease(n, leased))
    except Conflict:
        assert {str(IPv4Address("10.9.0.8") + i) for i in range(8)} - set(leased) <= \
            {"10.9.0.9", "10.9.0.15"}
        return
    assert got in IPv4Network("10.9.0.8/29") and str(got) not in leased
    assert str(got) not in ("10.9.0.9", "10.9.0.15")  # auxiliary, broadcast


@pytest.mark.parametrize("kwargs,message", [
    ({"subnet": "10.1.0.0/24", "ip_range": "10.2.0.0/25"}, "no matching subnet for range"),
    ({"subnet": "10.1.0.0/24", "ip_range": "10.1.0.5/25"}, "it should be 10.1.0.0/25"),
    ({"subnet": "10.1.0.0/24", "aux_addresses": {"a": "10.2.0.1"}},
     "no matching subnet for aux-address 10.2.0.1"),
    ({"ip_range": "10.1.0.0/25"}, "must have a corresponding subnet"),
    ({"subnet6": "fd00:1::/64"}, "needs an IPv6 network"),
    ({"ipv6": True, "subnet6": "10.1.0.0/24"}, "an IPv6 subnet was expected"),
])
def test_ipam_requests_docker_refuses_are_refused_in_its_words(kwargs, message) -> None:
    with pytest.raises(BadInput, match=message):
        new_network("x", NID, **kwargs)


# --- dual-stack -----------------------------------------------------------------------------


def test_an_ipv6_network_leases_both_families() -> None:
    n = new_network("six", NID, ipv6=True, subnet6="2001:389::/64", gateway6="2001:389::ffff",
                    ip_range6="2001:389::/96")
    assert n.ipv6 and n.gateway6 == "2001:389::ffff"
    assert lease(n, [], version=6) == "2001:389::1"
    assert lease(n, ["2001:389::1"], version=6) == "2001:389::2"
    assert lease(n, [], requested="2001:389::f00d", version=6) == "2001:389::f00d"
    with pytest.raises(BadInput, match="does not belong"):
        lease(n, [], requested="2001:1::1", version=6)


def test_ipv6_without_a_subnet_is_a_unique_local_64_apart_from_those_in_use() -> None:
    n = new_network("six", NID, ipv6=True)
    net = IPv6Network(n.subnet6)
    assert net.prefixlen == 64 and net.subnet_of(IPv6Network("fd00::/8"))
    assert n.gateway6 == str(net.network_address + 1)
    again = new_network("six", NID, ipv6=True, in_use=[n.subnet6])
    assert again.subnet6 != n.subnet6


# --- an endpoint's settings -----------------------------------------------------------------


def test_macs_and_link_local_addresses_in_dockers_words() -> None:
    assert check_mac("02-42-AC-11-00-02") == "02:42:ac:11:00:02"
    for bad in ("02:42:ac:11:00", "zz:42:ac:11:00:02", "01:00:5e:00:00:01"):
        with pytest.raises(BadInput, match="invalid MAC address"):
            check_mac(bad)
    assert check_link_local(["169.254.8.8", "fe80::8"]) == ["169.254.8.8", "fe80::8"]
    with pytest.raises(BadInput, match="invalid link-local IP address: 10.0.0.1"):
        check_link_local(["10.0.0.1"])


def test_legacy_links_are_dockers_hosts_line_and_variables() -> None:
    db = links.Linked(name="upstream", hostname="3a2c9b0d1e2f", address="172.17.0.3",
                      ports=["5432/tcp", "80/tcp", "81/tcp", "53/udp"],
                      env=["PATH=/bin", "POSTGRES_USER=me", "HOME=/root"])
    assert links.hosts_line("db", db) == ("172.17.0.3", "db 3a2c9b0d1e2f upstream")
    assert links.hosts_line("upstream", db) == ("172.17.0.3", "upstream 3a2c9b0d1e2f")
    env = links.link_env("app", "my-db", db)
    assert env[0] == "MY_DB_PORT=udp://172.17.0.3:53"
    assert "MY_DB_PORT_80_TCP_START=tcp://172.17.0.3:80" in env
    assert "MY_DB_PORT_80_TCP_END=tcp://172.17.0.3:81" in env
    assert "MY_DB_PORT_5432_TCP=tcp://172.17.0.3:5432" in env
    assert "MY_DB_PORT_5432_TCP_ADDR=172.17.0.3" in env
    assert "MY_DB_NAME=/app/my-db" in env
    assert [v for v in env if "_ENV_" in v] == ["MY_DB_ENV_POSTGRES_USER=me"]


def test_a_link_on_a_user_network_answers_its_alias_to_the_linking_member_alone() -> None:
    records = dns_records([(["upstream", "u"], "10.0.0.3"), (["upstream"], "fd00::3"),
                           (["app"], "10.0.0.2")])
    got = link_records([("10.0.0.2", ["upstream:bar", "missing:gone"])], records)
    assert got == {"10.0.0.2": {"bar": ("10.0.0.3", "fd00::3")}}


def test_the_dns_answers_a_and_aaaa_each_with_its_family() -> None:
    addresses = ("10.0.0.3", "fd00::3")
    for qtype, expected in ((dns.TYPE_A, 1), (dns.TYPE_AAAA, 1), (dns.TYPE_ANY, 2)):
        reply = dns.answer(dns.query("up", qtype=qtype), lambda name: addresses)
        assert reply is not None
        assert int.from_bytes(reply[6:8], "big") == expected  # ANCOUNT


# --- docker's network events at a run's start and end --------------------------------------


def test_a_run_connects_before_start_and_disconnects_after_die(tmp_path) -> None:
    n = netlog.write(str(tmp_path))
    ep = netlog.endpoint(netlog.FRONT, "172.18.0.3", "lm-ffffffff0000", "172.18.0.1", [],
                         "api", netlog.API, slot=1)
    n.append("api again", ev.ContainerStarted(id=netlog.API, pid=300,
                                              networks={"bridge": netlog.API_EP}))
    n.append("joined", ev.ContainerConnected(id=netlog.API, network="front",
                                             network_id=netlog.FRONT, endpoint=ep))
    n.append("connected stopped", ev.ContainerConnected(id=netlog.WEB, network="bridge",
                                                        network_id=netlog.BRIDGE))
    n.append("api killed", ev.ContainerKilled(id=netlog.API, signal=9, exit_code=137))
    con = n.log.con
    rows = con.execute(f"SELECT {EVENT_COLUMNS} FROM events WHERE seq >= ? ORDER BY seq",
                       (n.seqs["api again"],))
    got = [(m["Type"], m["Action"], m["Actor"]["Attributes"].get("name"))
           for rec in map(recorded, rows) for m in docker_events(rec, {}, con)]
    assert got == [
        ("network", "connect", "bridge"), ("container", "start", ""),
        ("network", "connect", "front"),  # joined while running
        # a stopped container's connect is no endpoint yet: docker says nothing
        ("container", "kill", ""), ("container", "die", ""),
        ("network", "disconnect", "bridge"), ("network", "disconnect", "front"),
    ]


def test_an_ipv6_address_held_twice_is_a_clash_as_an_ipv4_one_is() -> None:
    from types import SimpleNamespace

    from core.networks import lease_clash

    def member(cid: str, v4: str, v6: str) -> SimpleNamespace:
        return SimpleNamespace(id=cid, ports=(), endpoints={"six": {
            "id": NID, "address": v4, "address6": v6}})

    assert lease_clash([member("a" * 64, "10.0.0.2", "fd00::2"),
                        member("b" * 64, "10.0.0.3", "fd00::3")]) is None
    clash = lease_clash([member("a" * 64, "10.0.0.2", "fd00::2"),
                         member("b" * 64, "10.0.0.3", "fd00::2")])
    assert clash is not None and "address fd00::2" in clash


# --- on the engine (in-memory ports): what create records, link removal -------------------


def test_create_records_mac_links_and_driver_options_and_unlink_takes_one_off() -> None:
    from core.memory import memory_engine
    from core.model import World

    e = memory_engine(user="t")
    e.import_image({"bin/sh": "x"}, "busybox")
    e.create("busybox", ["sh"], name="upstream")
    with pytest.raises(Exception, match="could not get container for missing"):
        e.create("busybox", ["sh"], name="x", config={"links": ["missing:m"]})
    cid = e.create("busybox", ["sh"], name="app", config={
        "mac_address": "02:42:AC:11:00:0A", "links": ["/upstream:db"],
        "endpoints": {"bridge": {"DriverOpts": {"k": "v"},
                                 "IPAMConfig": {"LinkLocalIPs": ["169.254.1.1"]}}}})
    asked = e.log.container(cid).networks["bridge"]
    assert asked == {"mac": "02:42:ac:11:00:0a", "links": ["upstream:db"],
                     "driver_opts": {"k": "v"}, "link_local_ips": ["169.254.1.1"]}
    with pytest.raises(Exception, match="Could not find a link named nope"):
        e.unlink("app/nope")
    assert e.unlink("/app/db") == cid
    assert "links" not in e.log.container(cid).networks["bridge"]
    world = World()
    for rec in e.log.records:
        world.apply(rec)
    assert world.containers[cid].networks == e.log.container(cid).networks
    assert [r.type for r in e.log.records][-1] == "ContainerUnlinked"
