"""adapters/network/ on a real kernel, in network namespaces these tests make themselves.

The machine's rule: no test touches the host's network. Each test forks a child that first
unshares its network namespace ("the host" W of the scenario: lamina's bridges, veths,
nftables table, forwarding sysctl and DNS responder live there) and brings its loopback up;
"containers" are processes in namespaces of their own (`unshare -n sleep`), reached with
`nsenter --net` only (never `ip netns exec`, which remounts /sys); "the outside" X is one
more such process behind a plain veth from W, standing for the host's uplink. All traffic
goes to addresses inside these namespaces. `host_unchanged` compares the host's links,
addresses, routes, nftables ruleset and forwarding sysctl before and after every test.

Topology (W's view):

    X 10.99.0.2 ── uplink 10.99.0.1 (W) ── lm-aaaaaaaaaaaa 172.18.0.1 ── c1 .2, c2 .3
                                       └── lm-bbbbbbbbbbbb 172.19.0.1 (internal) ── c3 .2
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import require_root

pytestmark = pytest.mark.kernel

NET_A, GW_A, SUBNET_A = "lm-aaaaaaaaaaaa", "172.18.0.1", "172.18.0.0/16"
NET_B, GW_B, SUBNET_B = "lm-bbbbbbbbbbbb", "172.19.0.1", "172.19.0.0/16"
UPLINK, HOST_IP, OUTSIDE_IP = "uplink", "10.99.0.1", "10.99.0.2"


# --- the host stays as it was ----------------------------------------------------------------


def host_network() -> dict[str, str]:
    """What the host's network is: links, addresses, routes, rules, nftables, forwarding."""
    def out(*argv: str) -> str:
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout

    return {
        "links": _carrier_free(out("ip", "-o", "link", "show")),
        "addresses": _carrier_free(out("ip", "-o", "addr", "show")),
        "routes": _carrier_free(out("ip", "route", "show", "table", "all")),
        "nftables": out("nft", "list", "ruleset"),
        "ip_forward": Path("/proc/sys/net/ipv4/ip_forward").read_text(),
    }


def _carrier_free(text: str) -> str:
    """Without the carrier state of links: the test run's own default bridge (lamina0, in
    the run's namespace, tests/conftest.py) loses and gains carrier as other tests'
    containers end, asynchronously (the kernel deletes a veth with its namespace)."""
    for noise in ("NO-CARRIER,", " linkdown", "state DOWN ", "state UP ",
                  "state LOWERLAYERDOWN "):
        text = text.replace(noise, " " if noise.startswith("state") else "")
    return text


@pytest.fixture(autouse=True)
def host_unchanged() -> Iterator[None]:
    require_root()
    before = host_network()
    yield
    assert host_network() == before, "a network test changed the host's network"


# --- namespaces --------------------------------------------------------------------------------


def in_new_netns(scenario: Callable[[], None], timeout: float = 120) -> None:
    """Run `scenario` in a forked child that first unshares its network namespace and
    brings loopback up there; the child's traceback fails the test. Everything the child
    starts dies with it (each process is started with a parent-death signal)."""
    from adapters.kernel import libc
    from adapters.kernel.syscalls import loopback_up

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        code = 1
        try:
            os.close(r)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: never outlive the test
            libc.unshare(libc.CLONE_NEWNET)
            loopback_up()
            scenario()
            code = 0
        except BaseException:
            os.write(w, traceback.format_exc().encode())
        finally:
            os._exit(code)
    os.close(w)
    deadline = time.monotonic() + timeout
    status = None
    while status is None:
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            status = st
        elif time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(r)
            pytest.fail(f"the scenario took longer than {timeout} s")
        else:
            time.sleep(0.05)
    with os.fdopen(r, "rb") as f:
        report = f.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        pytest.fail(f"in the test's network namespace:\n{report}", pytrace=False)


DEATH = ["setpriv", "--pdeathsig", "KILL"]


class Box:
    """A process in a network namespace of its own: a test's container, or the outside.
    It sleeps until close() (or the test's end: DEATH), not for a fixed time: a module's
    box outlived by its module (test_network_faults' took over 600 s under load) took the
    namespace along, and the next command failed in nsenter."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([*DEATH, "unshare", "-n", "sleep", "infinity"])
        mine = os.stat("/proc/self/ns/net").st_ino
        for _ in range(200):
            try:
                if os.stat(f"/proc/{self.proc.pid}/ns/net").st_ino != mine:
                    break
            except FileNotFoundError:
                pass
            time.sleep(0.01)
        else:
            raise AssertionError("unshare -n did not make its namespace")
        self.servers: list[subprocess.Popen[bytes]] = []

    @property
    def pid(self) -> int:
        return self.proc.pid

    def argv(self, *argv: str) -> list[str]:
        return ["nsenter", f"--net=/proc/{self.pid}/ns/net", *argv]

    def run(self, *argv: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*argv), capture_output=True, text=True, timeout=timeout)

    def ok(self, *argv: str) -> str:
        done = self.run(*argv)
        assert done.returncode == 0, (argv, done.stdout, done.stderr)
        return done.stdout

    def serve(self, root: Path, name: str, port: int = 80) -> None:
        """busybox httpd on `port`: / says `name`, /cgi-bin/whoami the client's address."""
        (root / "cgi-bin").mkdir(parents=True, exist_ok=True)
        (root / "index.html").write_text(name)
        whoami = root / "cgi-bin" / "whoami"
        whoami.write_text('#!/bin/sh\necho "Content-Type: text/plain"\necho\necho "$REMOTE_ADDR"\n')
        whoami.chmod(0o755)
        httpd = ["busybox", "httpd", "-f", "-p", f"0.0.0.0:{port}", "-h", str(root)]
        self.servers.append(subprocess.Popen([*DEATH, *self.argv(*httpd)]))

    def close(self) -> None:
        for p in [*self.servers, self.proc]:
            p.kill()
            p.wait()


def get(box: Box | None, url: str, seconds: int = 2) -> str | None:
    """The body at `url` fetched from inside `box` (None: from W itself), or None when
    nothing answers within `seconds`."""
    # busybox 1.35's wget -T crashes (SIGSEGV): the outer timeout bounds it instead
    argv = ["timeout", str(seconds), "busybox", "wget", "-q", "-O", "-", url]
    done = (box.run(*argv, timeout=seconds + 5) if box is not None else
            subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 5))
    return done.stdout.strip() if done.returncode == 0 else None


def ping(box: Box, address: str) -> None:
    """One echo answered, within ~5 s: a link just made may drop the very first packets
    while its bridge port and neighbour entries settle (seen once under load)."""
    for _ in range(5):
        if box.run("busybox", "ping", "-c", "1", "-W", "1", address).returncode == 0:
            return
    raise AssertionError(f"no answer from {address}")


def wait_get(box: Box | None, url: str) -> str:
    """The body at `url`, once the server there has started (up to ~5 s)."""
    for _ in range(50):
        body = get(box, url, seconds=1)
        if body is not None:
            return body
        time.sleep(0.1)
    raise AssertionError(f"nothing answered {url}")


def outside_link(outside: Box) -> None:
    """A plain veth from W to the outside box (not lamina's: the host's own uplink)."""
    from pyroute2 import IPRoute

    fd = os.open(f"/proc/{outside.pid}/ns/net", os.O_RDONLY)
    try:
        with IPRoute() as ipr:
            ipr.link("add", ifname=UPLINK, kind="veth", peer={"ifname": "eth0", "net_ns_fd": fd})
            index = ipr.link_lookup(ifname=UPLINK)[0]
            ipr.addr("add", index=index, address=HOST_IP, prefixlen=24)
            ipr.link("set", index=index, state="up")
    finally:
        os.close(fd)
    outside.ok("ip", "link", "set", "lo", "up")
    outside.ok("ip", "addr", "add", f"{OUTSIDE_IP}/24", "dev", "eth0")
    outside.ok("ip", "link", "set", "eth0", "up")


class World:
    """W's side of a scenario: network A (c1, c2), internal network B (c3), the outside X."""

    def __init__(self, root: Path, *, internal_network: bool = True) -> None:
        from adapters.network import bridge, nat
        from core.networks import veth_name

        bridge.enable_forwarding()
        self.boxes: dict[str, Box] = {}
        self.outside = self.box("outside")
        outside_link(self.outside)
        bridge.create_bridge(NET_A, GW_A, 16)
        nat.add_network(NET_A, SUBNET_A, GW_A)
        if internal_network:
            bridge.create_bridge(NET_B, GW_B, 16)
            nat.add_network(NET_B, SUBNET_B, GW_B, internal=True)
        members = [("c1", NET_A, "172.18.0.2", GW_A), ("c2", NET_A, "172.18.0.3", GW_A)]
        if internal_network:
            members.append(("c3", NET_B, "172.19.0.2", GW_B))
        self.veths = {}
        for name, net, address, gateway in members:
            box = self.box(name)
            self.veths[name] = veth_name(name, net)
            bridge.attach(net, self.veths[name], address=address, prefixlen=16,
                          gateway=gateway, pid=box.pid)
            box.serve(root / name, name)
        self.outside.serve(root / "outside", "outside")

    def box(self, name: str) -> Box:
        self.boxes[name] = Box()
        return self.boxes[name]

    def __getitem__(self, name: str) -> Box:
        return self.boxes[name]

    def close(self) -> None:
        for box in self.boxes.values():
            box.close()


def lamina_is_gone() -> None:
    """Nothing of lamina's in W: no bridge or veth, no nftables table; only W's own links."""
    from adapters.network import bridge, nat

    assert bridge.links() == {}
    assert nat.listing() is None
    assert nat.owned() == nat.Owned(frozenset(), frozenset())
    ruleset = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True)
    assert ruleset.stdout.strip() == ""
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    names = [line.split(":")[1].strip().split("@")[0] for line in links.splitlines()]
    # the uplink's peer was in the outside box, closed by now: the kernel deletes the pair
    # with that namespace, asynchronously, so it may or may not still be listed here
    assert [n for n in names if n != UPLINK] == ["lo"], names


def teardown(world: World) -> None:
    """Remove everything as the engine will (publications, veths, rules, bridges), check
    each removal says it removed something and a second says it didn't, then that nothing
    is left."""
    from adapters.network import bridge, nat

    for key in sorted(nat.owned().publications):
        assert nat.unpublish(key) and not nat.unpublish(key)
    for veth in world.veths.values():
        assert bridge.detach(veth) and not bridge.detach(veth)
    for net in (NET_A, NET_B):
        if net in nat.owned().networks:
            assert nat.remove_network(net) and not nat.remove_network(net)
        if net in bridge.links():
            assert bridge.delete_bridge(net) and not bridge.delete_bridge(net)
    world.close()
    lamina_is_gone()


# --- the tests -------------------------------------------------------------------------------


def test_two_containers_on_a_bridge_talk_to_each_other(tmp_path: Path) -> None:
    def scenario() -> None:
        world = World(tmp_path, internal_network=False)
        c1, c2 = world["c1"], world["c2"]
        ping(c1, "172.18.0.3")
        ping(c2, "172.18.0.2")
        ping(c1, GW_A)
        assert wait_get(c2, "http://172.18.0.2/") == "c1"
        assert wait_get(c1, "http://172.18.0.3/") == "c2"
        # on one bridge the address seen is the container's own: no NAT between them
        assert wait_get(c1, "http://172.18.0.3/cgi-bin/whoami") == "172.18.0.2"
        addr = c1.ok("ip", "-o", "-4", "addr", "show", "dev", "eth0")
        assert "172.18.0.2/16" in addr
        assert "default via 172.18.0.1 dev eth0" in c1.ok("ip", "route")
        assert "02:42:ac:12:00:02" in c1.ok("ip", "-o", "link", "show", "eth0")
        teardown(world)

    in_new_netns(scenario)


def test_a_published_port_is_reached_from_outside_the_host_its_loopback_and_a_neighbour(
        tmp_path: Path) -> None:
    def scenario() -> None:
        from adapters.network import nat
        from core.networks import bind_ports, parse_publish

        world = World(tmp_path, internal_network=False)
        c1, c2, outside = world["c1"], world["c2"], world.outside
        assert wait_get(c1, "http://127.0.0.1/") == "c1"
        bindings = bind_ports(parse_publish("8080:80") + parse_publish("127.0.0.1:8081:80"), [])
        nat.publish("c1", "172.18.0.2", bindings)
        # from outside, on the host's address (prerouting DNAT, then forwarded)
        assert wait_get(outside, f"http://{HOST_IP}:8080/") == "c1"
        assert get(outside, f"http://{HOST_IP}:8080/cgi-bin/whoami") == OUTSIDE_IP
        # from the host itself, on its own address and on 127.0.0.1 (output DNAT; loopback
        # through route_localnet, masqueraded to the gateway so c1 can answer)
        assert get(None, f"http://{HOST_IP}:8080/") == "c1"
        assert get(None, "http://127.0.0.1:8080/") == "c1"
        assert get(None, "http://127.0.0.1:8080/cgi-bin/whoami") == GW_A
        assert get(None, "http://127.0.0.1:8081/") == "c1"
        # a neighbour through the host's address: hairpin NAT
        assert get(c2, f"http://{HOST_IP}:8080/") == "c1"
        assert get(c2, f"http://{HOST_IP}:8080/cgi-bin/whoami") == GW_A
        # a binding on 127.0.0.1 only is not on the host's other addresses
        assert get(outside, f"http://{HOST_IP}:8081/", seconds=1) is None
        # route_localnet's hole is closed: a container that routes 127.0.0.1 to the bridge
        # (its own sysctl and routes: a hostile root inside could) doesn't reach the host's
        # loopback services; without the guard chain its datagrams would
        c1.ok("sysctl", "-w", "net.ipv4.conf.eth0.route_localnet=1")
        c1.ok("ip", "route", "del", "local", "127.0.0.1", "table", "local")
        c1.ok("ip", "route", "del", "local", "127.0.0.0/8", "table", "local")
        c1.ok("ip", "route", "add", "127.0.0.1/32", "via", GW_A, "dev", "eth0")
        assert "dev eth0" in c1.ok("ip", "route", "get", "127.0.0.1")

        def reaches_host_loopback() -> bool:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
                listener.bind(("127.0.0.1", 7001))
                listener.settimeout(1)
                c1.ok("python3", "-c", "import socket; socket.socket(socket.AF_INET, "
                      "socket.SOCK_DGRAM).sendto(b'hole\\n', ('127.0.0.1', 7001))")
                try:
                    return listener.recv(64) == b"hole\n"
                except TimeoutError:
                    return False

        assert not reaches_host_loopback()
        nat.run([{"flush": {"chain": {"family": nat.FAMILY, "table": "lamina",
                                      "name": f"guard-{NET_A}"}}}])
        assert reaches_host_loopback()  # the control: the guard is what stops it
        nat.add_network(NET_A, SUBNET_A, GW_A)  # idempotent: puts the guard back
        assert not reaches_host_loopback()
        # UDP too: a datagram to the host's port reaches c1, and c1's answer comes back
        echo = ("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                "s.bind(('0.0.0.0', 53)); data, peer = s.recvfrom(64); "
                "s.sendto(data + peer[0].encode(), peer)")
        server = subprocess.Popen([*DEATH, *c1.argv("python3", "-c", echo)])
        nat.publish("c1-udp", "172.18.0.2", bind_ports(parse_publish("5353:53/udp"), bindings))
        ask = ("import socket, sys; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
               "s.settimeout(1)\nfor _ in range(20):\n    s.sendto(b'ping from ', "
               f"('{HOST_IP}', 5353))\n    try:\n        print(s.recv(64).decode()); break\n"
               "    except TimeoutError:\n        pass")
        assert outside.ok("python3", "-c", ask).strip() == f"ping from {OUTSIDE_IP}"
        server.wait(timeout=5)
        assert nat.unpublish("c1-udp")
        # re-publishing replaces, unpublishing removes exactly one container's ports
        nat.publish("c2", "172.18.0.3", bind_ports(parse_publish("9090:80"), bindings))
        assert get(outside, f"http://{HOST_IP}:9090/") == "c2"
        nat.publish("c1", "172.18.0.2", bind_ports(parse_publish("8082:80"), []))
        assert get(outside, f"http://{HOST_IP}:8080/", seconds=1) is None
        assert get(outside, f"http://{HOST_IP}:8082/") == "c1"
        assert nat.unpublish("c1")
        assert get(outside, f"http://{HOST_IP}:8082/", seconds=1) is None
        assert get(outside, f"http://{HOST_IP}:9090/") == "c2"
        assert nat.owned().publications == frozenset({"c2"})
        teardown(world)

    in_new_netns(scenario)


def test_masquerade_isolation_and_an_internal_network(tmp_path: Path) -> None:
    def scenario() -> None:
        from adapters.network import bridge, nat
        from core.networks import bind_ports, parse_publish

        world = World(tmp_path)
        c1, c3, outside = world["c1"], world["c3"], world.outside
        # out through the host: the outside sees the host's address, not the container's
        assert wait_get(c1, f"http://{OUTSIDE_IP}/cgi-bin/whoami") == HOST_IP
        # the outside can't reach a container's unpublished port even with a route to it
        outside.ok("ip", "route", "add", SUBNET_A, "via", HOST_IP)
        outside.ok("ip", "route", "add", SUBNET_B, "via", HOST_IP)
        assert get(outside, "http://172.18.0.2/", seconds=1) is None
        nat.publish("c1", "172.18.0.2", bind_ports(parse_publish("8080:80"), []))
        assert wait_get(outside, f"http://{HOST_IP}:8080/") == "c1"
        assert get(outside, "http://172.18.0.2:80/", seconds=1) is None  # only via the port
        # the internal network reaches its own gateway, nothing beyond it
        assert wait_get(c3, "http://127.0.0.1/") == "c3"
        ping(c3, GW_B)
        assert get(c3, f"http://{OUTSIDE_IP}/", seconds=1) is None
        assert get(c3, "http://172.18.0.2/", seconds=1) is None
        assert get(outside, "http://172.19.0.2/", seconds=1) is None
        # of the host's own addresses, an internal network reaches its gateway alone
        (tmp_path / "host").mkdir()
        (tmp_path / "host" / "index.html").write_text("host")
        host = subprocess.Popen([*DEATH, "busybox", "httpd", "-f", "-p", "0.0.0.0:7002", "-h",
                                 str(tmp_path / "host")])
        assert wait_get(c3, f"http://{GW_B}:7002/") == "host"
        assert get(c3, f"http://{HOST_IP}:7002/", seconds=1) is None
        assert get(c3, f"http://{GW_A}:7002/", seconds=1) is None
        assert get(c1, f"http://{HOST_IP}:7002/") == "host"  # not internal: it may
        host.kill()
        host.wait()
        # networks are isolated from each other, both ways
        assert get(c1, "http://172.19.0.2/", seconds=1) is None
        assert wait_get(c1, f"http://{OUTSIDE_IP}/") == "outside"  # ... while the way out works
        # removing one network leaves the other's rules whole
        assert bridge.detach(world.veths.pop("c3"))
        assert nat.remove_network(NET_B)
        assert nat.owned().networks == frozenset({NET_A})
        assert get(outside, f"http://{HOST_IP}:8080/") == "c1"
        assert get(outside, "http://172.18.0.2/", seconds=1) is None
        teardown(world)

    in_new_netns(scenario)


def test_dns_answers_container_names_on_the_gateway(tmp_path: Path) -> None:
    def scenario() -> None:
        from adapters.network.dns import RecordsFile, Responder, write_records
        from core.networks import dns_records

        world = World(tmp_path)
        c1, c2, c3 = world["c1"], world["c2"], world["c3"]
        records = dns_records([(["c1", "web"], "172.18.0.2"), (["c2"], "172.18.0.3")])
        path = str(tmp_path / "b.json")
        write_records(path, dns_records([(["c3"], "172.19.0.2")]))
        with Responder(GW_A, records, clients=SUBNET_A) as a, \
                Responder(GW_B, RecordsFile(path), clients=SUBNET_B) as b:
            a.start()
            b.start()

            def lookup(box: Box, name: str, server: str) -> str:
                done = box.run("busybox", "nslookup", name, server)
                return done.stdout + done.stderr

            assert "Address: 172.18.0.2" in lookup(c2, "c1", GW_A)
            assert "Address: 172.18.0.2" in lookup(c2, "WEB", GW_A)
            assert "Address: 172.18.0.3" in lookup(c1, "c2", GW_A)
            assert "NXDOMAIN" in lookup(c1, "nope", GW_A)
            assert "NXDOMAIN" in lookup(c1, "example.com", GW_A)  # nothing forwarded
            # kept current as containers come and go
            a.update(dns_records([(["c1"], "172.18.0.2")]))
            assert "NXDOMAIN" in lookup(c1, "c2", GW_A)
            # an internal network's containers reach their gateway's responder
            assert "Address: 172.19.0.2" in lookup(c3, "c3", GW_B)
            assert "NXDOMAIN" in lookup(c3, "c4", GW_B)
            write_records(path, dns_records([(["c3"], "172.19.0.2"), (["c4"], "172.19.0.9")]))
            assert "Address: 172.19.0.9" in lookup(c3, "c4", GW_B)
            # and nothing else: not the other network's names
            assert "NXDOMAIN" in lookup(c3, "c1", GW_B)
            assert "172.18.0.2" not in lookup(c3, "c1", GW_A)  # internal: dropped
            assert "REFUSED" in lookup(c1, "c3", GW_B)  # not its network: refused
        teardown(world)

    in_new_netns(scenario)


def test_links_go_with_their_namespace_and_attach_cleans_up(tmp_path: Path) -> None:
    def scenario() -> None:
        from adapters.network import bridge, nat
        from adapters.network.bridge import LinkError

        bridge.create_bridge(NET_A, GW_A, 16)
        assert bridge.create_bridge(NET_A, GW_A, 16) == bridge.create_bridge(NET_A, GW_A, 16)
        nat.add_network(NET_A, SUBNET_A, GW_A)
        nat.add_network(NET_A, SUBNET_A, GW_A)  # idempotent: one set of jumps
        listing = nat.listing() or []
        jumps = [o for o in listing if "rule" in o and any(
            e.get("jump", {}).get("target") == f"in-{NET_A}" for e in o["rule"]["expr"])]
        assert len(jumps) == 1
        box = Box()
        # a leftover host end (a crash between two steps) is replaced
        bridge.attach(NET_A, "lv000000000001", address="172.18.0.2", prefixlen=16,
                      gateway=GW_A, pid=box.pid, ifname="eth1")
        other = Box()
        bridge.attach(NET_A, "lv000000000001", address="172.18.0.3", prefixlen=16,
                      gateway=GW_A, pid=other.pid)
        assert "eth1" not in box.ok("ip", "-o", "link")  # its veth went with the host end
        ping(other, GW_A)
        # a failed attach leaves nothing
        with pytest.raises(LinkError, match="no bridge"):
            bridge.attach("lm-cccccccccccc", "lv000000000002", address="172.18.0.4",
                          prefixlen=16, gateway=GW_A, pid=box.pid)
        with pytest.raises(LinkError):
            bridge.attach(NET_A, "lv000000000002", address="172.18.0.4", prefixlen=16,
                          gateway="10.0.0.1", pid=box.pid)  # no route to that gateway
        assert set(bridge.links()) == {NET_A, "lv000000000001"}
        assert "eth0" not in box.ok("ip", "-o", "link")
        # a container whose last process exits takes its veth along
        other.close()
        for _ in range(500):  # the kernel tears a namespace down in the background
            if "lv000000000001" not in bridge.links():
                break
            time.sleep(0.02)
        assert not bridge.detach("lv000000000001")
        box.close()
        assert nat.remove_network(NET_A)
        assert bridge.delete_bridge(NET_A)
        with pytest.raises(LinkError, match="a veth has that name"):
            from pyroute2 import IPRoute

            with IPRoute() as ipr:
                ipr.link("add", ifname=NET_B, kind="veth", peer="lv000000000009")
            try:
                bridge.create_bridge(NET_B, GW_B, 16)
            finally:
                bridge.delete_link(NET_B)
        assert bridge.links() == {} and nat.listing() is None

    in_new_netns(scenario)


def test_a_leftover_veth_the_kernel_deletes_meanwhile_is_replaced(tmp_path: Path) -> None:
    """A restart's veth has the last run's name, and the last run's may still be there: the
    kernel deletes a veth pair with the namespace of its peer, in the background, some time
    after the container's last process exits. attach finds it and deletes it; here the
    kernel's deletion lands between the two (as it did under load, a restart failing with
    pyroute2's ENODEV), and the new veth is made all the same."""
    def scenario() -> None:
        from adapters.network import bridge

        bridge.create_bridge(NET_A, GW_A, 16)
        last, now = Box(), Box()
        bridge.attach(NET_A, "lv000000000003", address="172.18.0.2", prefixlen=16,
                      gateway=GW_A, pid=last.pid)
        looked_up = bridge._ifindex

        def then_the_kernel_deletes_it(name: str) -> int | None:
            index = looked_up(name)
            if name == "lv000000000003" and index is not None:
                assert bridge.delete_link(name)  # the old namespace's teardown, right now
            return index

        bridge._ifindex = then_the_kernel_deletes_it  # type: ignore[assignment]
        try:
            bridge.attach(NET_A, "lv000000000003", address="172.18.0.2", prefixlen=16,
                          gateway=GW_A, pid=now.pid)
        finally:
            bridge._ifindex = looked_up  # type: ignore[assignment]
        ping(now, GW_A)
        assert "eth0" not in last.ok("ip", "-o", "link")
        for box in (last, now):
            box.close()
        bridge.delete_link("lv000000000003")
        assert bridge.delete_bridge(NET_A)
        assert bridge.links() == {}

    in_new_netns(scenario)
