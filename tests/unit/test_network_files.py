"""What a container on a network sees in its /etc/hosts and /etc/resolv.conf (pure), and
what create records of its network request (core/engine/attaching.py judge), on the
in-memory ports."""

from __future__ import annotations

import pytest

from core.errors import BadInput, NotFound
from core.process import ProcessSpec, hosts_file, resolv_conf
from tests.model.harness import seeded_engine

HOST = "nameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch example.org\noptions edns0\n"


def _ep(gateway: str, address: str, slot: int = 0, dns: bool = True) -> dict:
    return {"gateway": gateway, "address": address, "slot": slot, "dns": dns}


def test_hosts_name_the_container_at_its_first_address_and_the_host_gateway() -> None:
    spec = ProcessSpec(argv=("true",), env=(), hostname="web1",
                       extra_hosts=(("gw", "host-gateway"), ("db", "10.1.1.1")))
    text = hosts_file(spec, {"b": _ep("172.19.0.1", "172.19.0.5", 1),
                             "a": _ep("172.18.0.1", "172.18.0.2", 0)})
    assert "172.18.0.2\tweb1\n" in text and "172.18.0.1\tgw\n" in text
    assert "10.1.1.1\tdb\n" in text
    alone = hosts_file(spec)
    assert "127.0.1.1\tweb1\n" in alone and "\tgw" not in alone, \
        "no network, no gateway: host-gateway has nothing to name"


def test_resolv_conf_on_a_user_network_the_default_bridge_and_with_dns() -> None:
    spec = ProcessSpec(argv=("true",), env=())
    user = resolv_conf(HOST, spec, {"front": _ep("172.18.0.1", "172.18.0.2")})
    assert user == ("nameserver 172.18.0.1\nsearch example.org\n"
                    "options edns0 ndots:0\n")
    default = resolv_conf(HOST, spec, {"bridge": _ep("172.17.0.1", "172.17.0.2", dns=False)})
    assert default == "nameserver 10.0.0.2\nsearch example.org\noptions edns0\n", \
        "the host's nameservers, not those on its loopback"
    given = ProcessSpec(argv=("true",), env=(), dns=("1.1.1.1",), dns_search=("a.b",),
                        dns_options=("ndots:2",))
    assert resolv_conf(HOST, given, {"front": _ep("172.18.0.1", "172.18.0.2")}) == \
        "nameserver 1.1.1.1\nsearch a.b\noptions ndots:2\n"


@pytest.fixture
def e():
    engine, _ = seeded_engine()
    return engine


def _image(e) -> str:
    return e.log.images()[0].id


def test_create_records_the_network_request_normalised(e) -> None:
    e.network_create("front", subnet="10.5.0.0/24")
    cid = e.create(_image(e), ["true"], config={
        "network": "front", "port_bindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]},
        "exposed_ports": {"53/udp": {}},
        "endpoints": {"front": {"Aliases": ["www"], "IPAMConfig": {"IPv4Address": "10.5.0.9"}}}})
    c = e.log.container(cid)
    assert c.config["network"] == "front" and c.networks == {
        "front": {"aliases": ["www"], "ip": "10.5.0.9"}}
    assert c.config["port_bindings"] == [{"proto": "tcp", "container_port": 80, "host_ip": "",
                                          "host_port": 8080, "host_port_end": 0}]
    assert c.config["exposed_ports"] == ["53/udp"]
    default = e.log.container(e.create(_image(e), ["true"]))
    assert default.config["network"] == "bridge" and list(default.networks) == ["bridge"]


@pytest.mark.parametrize("config,message", [
    ({"network": "nope"}, "network nope not found"),
    ({"network": "none", "port_bindings": ["80"]}, "-p, --publish needs a bridge network"),
    ({"network": "host", "extra_hosts": ["gw:host-gateway"]}, "host-gateway needs a bridge"),
    ({"endpoints": {"bridge": {"Aliases": ["x"]}}}, "only for containers in user defined"),
    ({"endpoints": {"bridge": {"IPAMConfig": {"IPv4Address": "172.17.0.9"}}}},
     "supported on user defined networks only"),
    ({"network": "front", "endpoints": {"front": {"IPAMConfig": {"IPv4Address": "10.9.0.1"}}}},
     "does not belong to any of this network's subnets"),
    ({"network": "container:x"}, "no such container: x"),
    ({"port_bindings": ["99999:80"]}, "invalid hostPort"),
])
def test_create_refuses_what_it_cant_honour(e, config, message) -> None:
    e.network_create("front", subnet="10.5.0.0/24")
    with pytest.raises((BadInput, NotFound), match=message):
        e.create(_image(e), ["true"], config=config)
