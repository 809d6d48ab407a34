"""adapters/storage/netsettings.py: docker's network JSON and texts, pure (no root)."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.storage import netsettings as ns
from core.engine.networks import PREDEFINED
from core.model import Container, Network

NET = Network(id="n" * 64, version=1, created="", name="front", subnet="10.1.0.0/24",
              gateway="10.1.0.1")


def port(private: int, proto: str = "tcp", ip: str = "", public: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {"PrivatePort": private, "Type": proto}
    if ip:
        out.update(IP=ip, PublicPort=public)
    return out


# docker/cli's cli/command/formatter/container_test.go TestDisplayablePorts
@pytest.mark.parametrize("ports, text", [
    ([port(9988)], "9988/tcp"),
    ([port(9988, "udp")], "9988/udp"),
    ([port(9988, ip="4.3.2.1", public=8899)], "4.3.2.1:8899->9988/tcp"),
    ([port(9988, ip="::1", public=8899)], "[::1]:8899->9988/tcp"),
    ([port(9988, ip="4.3.2.1", public=9988)], "4.3.2.1:9988->9988/tcp"),
    ([port(9988, "udp"), port(9988, "udp")], "9988/udp, 9988/udp"),
    ([port(9998, "udp", "1.2.3.4", 9998), port(9999, "udp", "1.2.3.4", 9999)],
     "1.2.3.4:9998-9999->9998-9999/udp"),
    ([port(9998, "udp", "::1", 9998), port(9999, "udp", "::1", 9999)],
     "[::1]:9998-9999->9998-9999/udp"),
    ([port(9998, "udp", "1.2.3.4", 8887), port(9999, "udp", "1.2.3.4", 8888)],
     "1.2.3.4:8887->9998/udp, 1.2.3.4:8888->9999/udp"),
    ([port(9998, "udp"), port(9999, "udp")], "9998-9999/udp"),
    ([port(6677, "tcp", "1.2.3.4", 7766), port(9988, "udp")],
     "9988/udp, 1.2.3.4:7766->6677/tcp"),
    ([port(9988, "udp", "1.2.3.4", 8899), port(9988, "tcp", "1.2.3.4", 8899),
      port(2233, "tcp", "4.3.2.1", 3322), port(2233, "tcp", "::1", 3322)],
     "4.3.2.1:3322->2233/tcp, [::1]:3322->2233/tcp, 1.2.3.4:8899->9988/tcp, "
     "1.2.3.4:8899->9988/udp"),
])
def test_ports_text_is_docker_cli_s(ports: list[dict[str, Any]], text: str) -> None:
    assert ns.ports_text(ports) == text


def container(state: str = "running", **config: Any) -> Container:
    endpoint = {"id": NET.id, "address": "10.1.0.5", "prefixlen": 24, "gateway": "10.1.0.1",
                "mac": "02:42:0a:01:00:05", "dns_names": ["web", "db", "c" * 12]}
    return Container(
        networks={"front": {"aliases": ["db"]}},
        id="c" * 64, name="web", image="i", state=state, version=1, created="",
        pid=42 if state == "running" else 0, started_at="t",
        config={"network": "front", "endpoints": {"front": {"aliases": ["db"]}},
                "port_bindings": [{"proto": "tcp", "container_port": 80, "host_ip": "",
                                   "host_port": 8080, "host_port_end": 0}],
                "exposed_ports": ["90/udp"], **config},
        endpoints={"front": endpoint} if state == "running" else {},
        ports=({"proto": "tcp", "container_port": 80, "host_ip": "0.0.0.0",
                "host_port": 8080},) if state == "running" else ())


def test_a_running_container_s_settings() -> None:
    find = ns.resolver([*PREDEFINED.values(), NET])
    c = container()
    doc = ns.network_settings(c, None, find)
    ep = doc["Networks"]["front"]
    assert (ep["IPAddress"], ep["IPPrefixLen"], ep["Gateway"], ep["NetworkID"]) == (
        "10.1.0.5", 24, "10.1.0.1", NET.id)
    assert ep["Aliases"] == ["db"] and ep["DNSNames"] == ["web", "db", "c" * 12]
    assert doc["IPAddress"] == ""  # the top-level fields are the default bridge's
    assert doc["Ports"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}],
                            "90/udp": None}
    assert ns.networks_of(c, find, "1.41")["front"]["Aliases"] == ["db", "c" * 12]
    assert ns.network_containers(NET, [c])[c.id]["IPv4Address"] == "10.1.0.5/24"
    assert ns.port_lines(c, None) == ["80/tcp -> 0.0.0.0:8080"]
    assert ns.port_lines(c, None, "80") == ["0.0.0.0:8080"]
    with pytest.raises(ValueError, match="no public port '90/udp' published for web"):
        ns.port_lines(c, None, "90/udp")
    assert ns.ports_text(ns.summary_ports(c, None)) == "90/udp, 0.0.0.0:8080->80/tcp"


def test_a_stopped_container_s_settings() -> None:
    c = container("stopped")
    doc = ns.network_settings(c, None, ns.resolver([NET]))
    assert doc["Ports"] == {} and doc["SandboxKey"] == ""
    assert doc["Networks"]["front"]["NetworkID"] == NET.id
    assert doc["Networks"]["front"]["IPAddress"] == "" == doc["Networks"]["front"]["EndpointID"]
    assert ns.summary_ports(c, None) == [] and ns.network_containers(NET, [c]) == {}
    assert ns.host_config(c.config)["PortBindings"] == {
        "80/tcp": [{"HostIp": "", "HostPort": "8080"}]}
    assert ns.exposed_ports(c, None) == {"80/tcp": {}, "90/udp": {}}
    gone = ns.network_settings(c, None, ns.resolver([]))  # its network removed since
    assert gone["Networks"]["front"]["NetworkID"] == ""
