"""Containers on bridge networks, for real: lamina, its bridges, nftables rules, DNS
responder and containers all inside a network namespace the test makes (a Box), traffic
only to addresses in it. What issue 18 asks to prove: a busybox httpd answers on its
published port; two containers on a user network reach each other by name; an internal
network reaches nothing outside; networks are isolated from each other; connect and
disconnect on a running container; leases in the log; nothing left once the runs end. And
its last slice: dual-stack networks (an IPv6 address on the link, its name's AAAA, a
published port reached over IPv6), IPAM ranges and auxiliary addresses, `--mac-address`
and link-local addresses, driver options that change the bridge (MTU, an interface prefix,
no masquerade), legacy links on the default bridge (/etc/hosts and docker's variables)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_root
from tests.kernel.runtime_env import busybox_tar
from tests.kernel.test_network_plumbing import Box, host_network
from tests.kernel.test_networks_cli import NetLamina

pytestmark = pytest.mark.kernel

HTTPD = ("httpd", "-f", "-p", "80", "-h", "/etc")  # serves /etc/hostname: who answered


@pytest.fixture
def lam(tmp_path: Path) -> Iterator[NetLamina]:
    require_root()
    before = host_network()
    box = Box()
    lam = NetLamina(tmp_path / "root", box)
    box.ok("ip", "link", "set", "lo", "up")
    try:
        lam.ok("import", str(busybox_tar(tmp_path)), "busybox")
        yield lam
    finally:
        ids = [json.loads(line)["id"] for line in
               lam("ps", "-a", "--format", "json").stdout.splitlines()]
        if ids:
            lam("rm", "-f", *ids)
        names = lam("network", "ls", "-q", "--filter", "type=custom").stdout.split()
        if names:  # one command for all: each is a process start and the root's checks
            lam("network", "rm", *names)
        leftovers = (veths_gone(lam), lam.chains())
        box.close()
    assert host_network() == before, "a network test changed the host's network"
    assert leftovers[0] == [], "a veth outlived its container"
    assert not [c for c in leftovers[1] if c.startswith("pub-")], "published ports stayed"


def veths(lam: NetLamina) -> list[str]:
    return [name for name in lam.links() if name.startswith("lv")]


def veths_gone(lam: NetLamina, keep: int = 0, timeout: float = 5) -> list[str]:
    """The veths left once the kernel had time to delete those of ended runs (it deletes a
    pair with its namespace, asynchronously, after the last process in it is gone);
    `keep`: how many may stay (running containers')."""
    deadline = time.monotonic() + timeout
    while len(found := veths(lam)) > keep and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def inspect(lam: NetLamina, name: str) -> dict:
    return json.loads(lam.ok("inspect", name))[0]


def address(lam: NetLamina, name: str, network: str) -> str:
    return inspect(lam, name)["NetworkSettings"]["Networks"][network]["IPAddress"]


def fetch(lam: NetLamina, url: str, timeout: float = 5) -> str:
    """GET from the namespace's own side (the 'host' of this test)."""
    deadline = time.monotonic() + timeout
    code = ("import sys, urllib.request; "
            "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode())")
    while True:
        out = lam.box.run(sys.executable, "-c", code, url)
        if out.returncode == 0 or time.monotonic() > deadline:
            return out.stdout if out.returncode == 0 else f"failed: {out.stderr}"
        time.sleep(0.1)


def served(lam: NetLamina, *argv: str) -> str:
    """Run an httpd container; its id once it answers on its address."""
    cid = lam.ok("run", "-d", *argv, "busybox", *HTTPD).strip()
    return cid


def test_the_default_bridge_publishes_a_port_and_records_the_leases(lam: NetLamina) -> None:
    cid = served(lam, "--name", "web", "-p", "18080:80", "-p", "18081:80/udp",
                 "--add-host", "gw:host-gateway")
    doc = inspect(lam, "web")
    net = doc["NetworkSettings"]["Networks"]["bridge"]
    assert net["IPAddress"] == "172.17.0.2" and net["Gateway"] == "172.17.0.1"
    assert net["MacAddress"] == "02:42:ac:11:00:02"
    assert fetch(lam, "http://127.0.0.1:18080/hostname").strip() == cid[:12], \
        "the host's loopback reaches the published port (kernel DNAT, no proxy)"
    assert fetch(lam, "http://172.17.0.2/hostname").strip() == cid[:12]
    hairpin = lam.ok("run", "--rm", "busybox", "wget", "-q", "-O", "-",
                     "http://172.17.0.1:18080/hostname")
    assert hairpin.strip() == cid[:12], "another container reaches it through the host's port"
    inside = lam.ok("exec", "web", "cat", "/etc/hosts", "/etc/resolv.conf")
    assert f"172.17.0.2\t{cid[:12]}" in inside and "172.17.0.1\tgw" in inside
    started = [json.loads(line) for line in lam.ok("events", "--format", "json",
                                                    "--filter", "container=web").splitlines()]
    data = next(e["data"] for e in started if e["type"] == "ContainerStarted")
    assert data["networks"]["bridge"]["address"] == "172.17.0.2"
    assert sorted((p["host_port"], p["proto"]) for p in data["ports"]) == \
        [(18080, "tcp"), (18081, "udp")]
    table = lam.ok("ps").splitlines()  # the table reads each container's brief
    row = next(line for line in table[1:] if line.split()[-1] == "web")
    assert "0.0.0.0:18080->80/tcp, 0.0.0.0:18081->80/udp" in row, table
    clash = lam("run", "-d", "-p", "18080:80", "busybox", *HTTPD)
    assert clash.returncode != 0
    assert "Bind for 0.0.0.0:18080 failed: port is already allocated" in clash.stderr
    lam.ok("stop", "-t", "1", "web")
    assert veths_gone(lam) == [], "the veth went with the stopped run's namespace"
    assert not [c for c in lam.chains() if c.startswith("pub-")], "and the DNAT rules"
    lam.ok("start", "web")
    assert fetch(lam, "http://127.0.0.1:18080/hostname").strip() == cid[:12], \
        "a restart leases again"


def test_ephemeral_and_publish_all(lam: NetLamina) -> None:
    lam.ok("run", "-d", "--name", "eph", "-p", "80", "--expose", "8080", "-P",
           "busybox", *HTTPD)
    ports = inspect(lam, "eph")["NetworkSettings"]["Ports"]
    host = int(ports["80/tcp"][0]["HostPort"])
    assert 49153 <= host <= 60999
    assert int(ports["8080/tcp"][0]["HostPort"]) not in (host, 0)
    assert fetch(lam, f"http://127.0.0.1:{host}/hostname").strip()


def test_a_user_network_resolves_names_and_isolates(lam: NetLamina) -> None:
    lam.ok("network", "create", "front")
    lam.ok("network", "create", "back")
    web = served(lam, "--name", "web", "--network", "front", "--network-alias", "www")
    got = lam.ok("run", "--rm", "--network", "front", "busybox", "sh", "-c",
                 "wget -q -O - http://web/hostname; wget -q -O - http://www/hostname")
    assert got.split() == [web[:12], web[:12]], "names and aliases resolve on the network"
    web_ip = address(lam, "web", "front")
    other = lam.ok("run", "--rm", "--network", "back", "busybox", "sh", "-c",
                   f"ping -c1 -W1 {web_ip} >/dev/null && echo reached || echo blocked")
    assert other.strip() == "blocked", "another network can't reach it"
    lost = lam("run", "--rm", "--network", "back", "busybox", "nslookup", "web")
    assert web_ip not in lost.stdout, "nor learn its name"


def test_an_internal_network_reaches_nothing_outside(lam: NetLamina) -> None:
    lam.box.ok("ip", "addr", "add", "10.99.0.1/32", "dev", "lo")  # an address outside
    try:
        lam.ok("network", "create", "--internal", "vault")
        db = served(lam, "--name", "db", "--network", "vault")
        out = lam.ok("run", "--rm", "--network", "vault", "busybox", "sh", "-c",
                     "wget -q -O - http://db/hostname; "
                     "ping -c1 -W1 10.99.0.1 >/dev/null && echo reached || echo blocked; "
                     "ip route")
        lines = out.splitlines()
        assert lines[0] == db[:12], "its members reach each other"
        assert lines[1] == "blocked", "an address outside the network is not reachable"
        open_net = lam.ok("run", "--rm", "busybox", "sh", "-c",
                          "ping -c1 -W1 10.99.0.1 >/dev/null && echo reached || echo blocked")
        assert open_net.strip() == "reached", "while the default bridge routes out"
    finally:
        lam.box.run("ip", "addr", "del", "10.99.0.1/32", "dev", "lo")


def test_connect_and_disconnect_a_running_container(lam: NetLamina) -> None:
    lam.ok("network", "create", "front")
    web = served(lam, "--name", "web")
    lam.ok("network", "connect", "--alias", "www", "front", "web")
    links = lam.ok("exec", "web", "ip", "-o", "-4", "addr")
    assert "eth1" in links and "172.18.0.2" in links
    got = lam.ok("run", "--rm", "--network", "front", "busybox", "wget", "-q",
                 "-O", "-", "http://www/hostname")
    assert got.strip() == web[:12]
    lam.ok("network", "disconnect", "front", "web")
    assert "eth1" not in lam.ok("exec", "web", "ip", "-o", "-4", "addr")
    types = [json.loads(line)["type"] for line in
             lam.ok("events", "--format", "json", "--filter", "container=web").splitlines()]
    assert "ContainerConnected" in types and "ContainerDisconnected" in types
    refused = lam("network", "disconnect", "front", "web")
    assert refused.returncode == 1 and "is not connected to network front" in refused.stderr
    published = served(lam, "--name", "pub", "-p", "18090:80")
    assert [c for c in lam.chains() if c.startswith("pub-")] == [f"pub-{published[:12]}"]
    lam.ok("network", "disconnect", "bridge", "pub")
    assert [c for c in lam.chains() if c.startswith("pub-")] == [], \
        "leaving the network its ports are published on releases them"
    assert inspect(lam, "pub")["NetworkSettings"]["Ports"].get("80/tcp") in (None, [])


def test_a_taken_address_is_refused_and_leaves_nothing(lam: NetLamina) -> None:
    lam.ok("network", "create", "--subnet", "10.20.0.0/24", "front")
    lam.ok("run", "-d", "--name", "a", "--network", "front", "--ip", "10.20.0.9",
           "busybox", "sleep", "60")
    lam.ok("create", "--name", "b", "--network", "front", "--ip", "10.20.0.9",
           "busybox", "sleep", "60")
    refused = lam("start", "b")
    assert refused.returncode != 0 and "Address already in use" in refused.stderr
    assert inspect(lam, "b")["State"]["Status"] == "created" or \
        inspect(lam, "b")["State"]["Running"] is False
    assert len(veths_gone(lam, keep=1)) == 1, "only a's veth"
    busy = lam("network", "rm", "front")
    assert busy.returncode == 1 and "has active endpoints" in busy.stderr
    check = lam.ok("system", "check")
    assert "veth" not in check and "published" not in check


def test_a_container_shares_another_containers_network(lam: NetLamina) -> None:
    """--network container:NAME: the sidecar pattern. Its init enters the running
    container's namespace (no veth, no lease of its own); the other's localhost is its."""
    web = served(lam, "--name", "web")
    got = lam.ok("run", "--rm", "--network", "container:web", "busybox", "sh", "-c",
                 "wget -q -O - http://127.0.0.1/hostname; ip -o -4 addr show eth0")
    lines = got.splitlines()
    assert lines[0] == web[:12] and "172.17.0.2/16" in lines[1]
    assert inspect(lam, "web")["State"]["Running"]
    assert len(veths_gone(lam, keep=1)) == 1, "no veth of its own"
    refused = lam("run", "--rm", "--network", "container:web", "-p", "80", "busybox", "true")
    assert "conflicting options: port publishing and the network mode" in refused.stderr
    lam.ok("create", "--name", "side", "--network", "container:web", "busybox", "true")
    lam.ok("run", "-d", "--name", "holder", "--network", "container:web", "busybox",
           "sleep", "60")
    lam.ok("stop", "-t", "1", "web")
    assert veths_gone(lam, timeout=0) == [], \
        "a namespace another container still holds loses the stopped run's veth at once"
    lam.ok("rm", "-f", "holder")
    late = lam("start", "side")
    assert late.returncode != 0 and "cannot join network of a non running container" in \
        late.stderr

# --- issue 18's last slice: dual-stack networks, IPAM ranges and auxiliary addresses, MACs and
# link-local addresses, driver options that change the bridge, legacy links ---------------


def fetch6(lam: NetLamina, host: str, port: int, timeout: float = 5) -> str:
    """GET /hostname over IPv6 from the namespace's own side."""
    code = ("import socket, sys; s = socket.create_connection((sys.argv[1], int(sys.argv[2])),"
            " timeout=2); s.sendall(b'GET /hostname HTTP/1.0\\r\\n\\r\\n');"
            " sys.stdout.write(s.makefile('rb').read().decode().split('\\r\\n\\r\\n')[-1])")
    deadline = time.monotonic() + timeout
    while True:
        out = lam.box.run(sys.executable, "-c", code, host, str(port))
        if out.returncode == 0 or time.monotonic() > deadline:
            return out.stdout if out.returncode == 0 else f"failed: {out.stderr}"
        time.sleep(0.1)


def test_a_dual_stack_network_with_a_range_macs_and_ipv6_ports(lam: NetLamina) -> None:
    lam.ok("network", "create", "--ipv6", "--subnet", "10.77.0.0/24", "--ip-range",
           "10.77.0.128/28", "--aux-address", "printer=10.77.0.128", "--subnet",
           "fd00:77::/64", "-o", "com.docker.network.driver.mtu=1400", "--attachable", "six")
    net = json.loads(lam.ok("network", "inspect", "six"))[0]
    assert net["EnableIPv6"] is True and net["Attachable"] is True
    assert net["IPAM"]["Config"] == [
        {"Subnet": "10.77.0.0/24", "IPRange": "10.77.0.128/28", "Gateway": "10.77.0.1",
         "AuxiliaryAddresses": {"printer": "10.77.0.128"}},
        {"Subnet": "fd00:77::/64", "Gateway": "fd00:77::1"}]
    web = served(lam, "--name", "web", "--network", "six", "--mac-address",
                 "02:42:0a:4d:00:99", "--ip6", "fd00:77::80", "--link-local-ip",
                 "169.254.7.7", "-p", "18090:80")
    ep = inspect(lam, "web")["NetworkSettings"]["Networks"]["six"]
    assert ep["IPAddress"] == "10.77.0.129", "from the range, the auxiliary one skipped"
    assert (ep["GlobalIPv6Address"], ep["IPv6Gateway"]) == ("fd00:77::80", "fd00:77::1")
    link = lam.ok("exec", "web", "sh", "-c", "cat /sys/class/net/eth0/address "
                  "/sys/class/net/eth0/mtu; ip addr show eth0; ip -6 route")
    assert "02:42:0a:4d:00:99" in link and "1400" in link
    assert "inet 10.77.0.129/24" in link and "inet 169.254.7.7/16" in link
    assert "inet6 fd00:77::80/64" in link and "default via fd00:77::1" in link
    # the name's AAAA, and the peer reaches it over IPv6
    got = lam.ok("run", "--rm", "--network", "six", "busybox", "sh", "-c",
                 "nslookup -type=AAAA web; wget -q -O - http://[fd00:77::80]/hostname; "
                 "wget -q -O - http://[fd00:77::1]:18090/hostname")
    assert "fd00:77::80" in got and got.count(web[:12]) == 2, \
        "a peer reaches it by address and through the host's published port (hairpin)"
    assert fetch6(lam, "fd00:77::1", 18090).strip() == web[:12], \
        "a published port answers on the host's IPv6 addresses too (DNAT to the IPv6 one)"
    started = [json.loads(line) for line in lam.ok("events", "--format", "json",
                                                    "--filter", "container=web").splitlines()]
    lease = next(e["data"] for e in started if e["type"] == "ContainerStarted")["networks"]
    assert (lease["six"]["address6"], lease["six"]["mac"]) == ("fd00:77::80",
                                                              "02:42:0a:4d:00:99")
    taken = lam("run", "--rm", "--network", "six", "--ip", "10.77.0.128", "busybox", "true")
    assert taken.returncode != 0 and "Address already in use" in taken.stderr


def test_driver_options_change_the_bridge_or_are_refused(lam: NetLamina) -> None:
    lam.ok("network", "create", "-o", "com.docker.network.container_iface_prefix=net",
           "-o", "com.docker.network.bridge.enable_ip_masquerade=false",
           "-o", "com.docker.network.bridge.name=lmtest0", "plain")
    names = lam.ok("run", "--rm", "--network", "plain", "busybox", "ls", "/sys/class/net")
    assert names.split() == ["lo", "net0"]
    assert "lmtest0" in lam.links()
    refused = lam("network", "create", "-o", "com.docker.network.bridge.enable_icc=false", "x")
    assert refused.returncode != 0
    assert "network option 'com.docker.network.bridge.enable_icc'" in refused.stderr
    # an earlier lamina's IPv4-only table is found and removed by reconcile
    lam.box.ok("nft", "add", "table", "ip", "lamina")
    assert "nftables table ip lamina of an earlier lamina" in lam("system", "check").stdout
    lam.ok("system", "reconcile")
    assert lam.box.run("nft", "list", "table", "ip", "lamina").returncode != 0


def test_legacy_links_on_the_default_bridge(lam: NetLamina) -> None:
    up = served(lam, "--name", "upstream", "-e", "ROLE=db", "--expose", "5432")
    address = inspect(lam, "upstream")["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
    out = lam.ok("run", "--rm", "--link", "upstream:db", "busybox", "sh", "-c",
                 "grep db /etc/hosts; env | sort; wget -q -O - http://db/hostname")
    assert f"{address}\tdb {up[:12]} upstream" in out
    assert f"DB_PORT_5432_TCP=tcp://{address}:5432" in out and "DB_ENV_ROLE=db" in out
    assert out.rstrip().endswith(up[:12])
    lam.ok("stop", "-t", "0", "upstream")
    gone = lam("run", "--rm", "--link", "upstream:db", "busybox", "true")
    assert gone.returncode != 0 and "Cannot link to a non running container" in gone.stderr
