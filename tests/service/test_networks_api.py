"""The Docker API's /networks and the network fields of its container documents against
`lamina serve`, run inside a network namespace this module makes (a `unshare -n sleep`
process, entered with `nsenter --net` only), through docker-py, the docker CLI and the
lamina CLI; the host's links and nftables ruleset are compared before and after.

docker-py's own network tests, case for case, are test_docker_py_networks.py (which uses
this module's boxed_service); here is what they don't cover: the bridges in the namespace,
docker's errors and words, the refusals and the audit, the documents of containers on
networks (inspect's NetworkSettings, ps's Ports, a network's Containers), the rules that
follow from members (rm's active endpoints, prune, dangling), and the CLIs' ps, port and
network inspect."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_root
from tests.kernel.runtime_env import LAMINA, Lamina, busybox_tar, leftovers
from tests.kernel.test_network_plumbing import Box, get, host_network
from tests.service.conftest import Service

pytestmark = pytest.mark.kernel


@contextlib.contextmanager
def boxed_service(base: Path, busybox: bool = False) -> Iterator[tuple[Service, Box]]:
    """`lamina serve` on a root under `base`, run inside a network namespace of its own
    (a Box: entered with `nsenter --net` only), with the busybox image if asked. Afterwards
    every container is removed, the host must be clean and the host's network unchanged."""
    require_root()
    before = host_network()
    box = Box()
    box.ok("ip", "link", "set", "lo", "up")  # a host's loopback is up
    root, sock, log_path = base / "root", str(base / "lamina.sock"), base / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(box.argv(LAMINA, "--root", str(root), "--log-format", "json",
                                         "serve", "--socket", sock),
                                stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    svc = Service(root, sock, log_path, proc, time.time())
    ids: list[str] = []
    try:
        deadline = time.monotonic() + 20
        while not os.path.exists(sock):
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "lamina serve did not come up"
            time.sleep(0.05)
        if busybox:
            svc.ok("import", str(busybox_tar(base)), "busybox")
        yield svc, box
    finally:
        if root.exists():
            lamina = Lamina(root)
            ids = lamina.container_ids()
            for cid in ids:
                lamina("rm", "-f", cid)
            lamina("network", "prune", "-f")  # the DNS responder leaves with the last one
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        box.close()
    deadline = time.monotonic() + 10
    while leftovers(root, ids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert leftovers(root, ids) == []
    assert host_network() == before, "a network test changed the host's network"


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, Box]]:
    with boxed_service(tmp_path_factory.mktemp("netsvc"), busybox=True) as served:
        yield served


@pytest.fixture
def service(box: tuple[Service, Box]) -> Service:
    return box[0]


@pytest.fixture
def api(service: Service):
    return service.client().api


@pytest.fixture
def tmp_networks(api) -> Iterator[list[str]]:
    import docker

    ids: list[str] = []
    yield ids
    for nid in ids:
        with contextlib.suppress(docker.errors.APIError):
            api.remove_network(nid)


def random_name() -> str:
    return f"dockerpytest_{uuid.uuid4().hex[:10]}"


def create_network(api, tmp_networks, *args, **kwargs) -> tuple[str, str]:
    net_name = random_name()
    net_id = api.create_network(net_name, *args, **kwargs)["Id"]
    tmp_networks.append(net_id)
    return net_name, net_id


def answer(box: Box, url: str, tries: int = 10) -> str | None:
    """The body at `url` from inside `box`, a few tries given (a server just started)."""
    for _ in range(tries):
        body = get(box, url)
        if body is not None:
            return body
        time.sleep(0.3)
    return None


def bridges(box: Box) -> list[str]:
    links = json.loads(box.ok("ip", "-j", "link"))
    return sorted(link["ifname"] for link in links if link["ifname"].startswith("lm-"))


# --- beyond docker-py: the namespace, errors, refusals, the audit -----------------------------


def test_bridges_come_and_go_in_the_namespace_only(api, box) -> None:
    _, b = box
    nid = api.create_network("front")["Id"]
    assert bridges(b) == [f"lm-{nid[:12]}"]
    api.remove_network("front")
    assert bridges(b) == []


def test_errors_are_dockers(api, tmp_networks) -> None:
    import docker

    create_network(api, tmp_networks, ipam={"Config": [{"Subnet": "10.77.0.0/16"}]})
    with pytest.raises(docker.errors.APIError) as cm:
        api.create_network(random_name(), ipam={"Config": [{"Subnet": "10.77.1.0/24"}]})
    assert cm.value.response.status_code == 409
    assert cm.value.explanation == "Pool overlaps with other one on this address space"
    with pytest.raises(docker.errors.NotFound) as nf:
        api.remove_network("nothing-here")
    assert nf.value.explanation == "network nothing-here not found"
    with pytest.raises(docker.errors.NotFound):
        api.inspect_network("nothing-here")
    with pytest.raises(docker.errors.APIError) as cm:
        api.remove_network("bridge")
    assert "bridge is a pre-defined network and cannot be removed" in cm.value.explanation
    with pytest.raises(docker.errors.APIError) as cm:
        api.create_network(random_name(), ingress=True)
    assert cm.value.explanation == "Ingress is not supported by lamina: it has no swarm mode"


def test_the_predefined_networks_are_listed_as_docker_lists_them(api) -> None:
    found = {n["Name"]: n for n in api.networks()}
    assert {"bridge", "host", "none"} <= set(found)
    assert (found["host"]["Driver"], found["none"]["Driver"]) == ("host", "null")
    assert found["bridge"]["IPAM"]["Config"] == [{"Subnet": "172.17.0.0/16",
                                                  "Gateway": "172.17.0.1"}]
    assert [n["Name"] for n in api.networks(filters={"type": "builtin"})] == \
        ["bridge", "host", "none"]


def test_connect_and_disconnect_with_the_docker_cli(service, box) -> None:
    """docker network connect/disconnect on a running container: it joins at once (an
    address on the network, answered from the namespace), leaves at once; both recorded,
    and what lamina can't honour refused by name and recorded as refused."""
    _, b = box
    service.ok("network", "create", "--subnet", "10.67.0.0/24", "side")
    cid = service.ok("run", "-d", "--name", "joiner", "busybox", "httpd", "-f", "-p", "80",
                     "-h", "/etc").strip()
    try:
        service.ok("network", "connect", "--alias", "j2", "--ip", "10.67.0.7", "side",
                   "joiner")
        [doc] = json.loads(service.ok("inspect", cid))
        assert sorted(doc["NetworkSettings"]["Networks"]) == ["bridge", "side"]
        ep = doc["NetworkSettings"]["Networks"]["side"]
        assert (ep["IPAddress"], ep["Aliases"], ep["IPAMConfig"]) == (
            "10.67.0.7", ["j2"], {"IPv4Address": "10.67.0.7"})
        [net] = json.loads(service.ok("network", "inspect", "side"))
        assert net["Containers"][cid]["IPv4Address"] == "10.67.0.7/24"
        assert answer(b, "http://10.67.0.7/hostname") == cid[:12]
        refused = service.docker("network", "connect", "--driver-opt",
                                 "com.docker.network.endpoint.sysctls=x=1", "side", "joiner")
        assert refused.returncode != 0
        service.ok("network", "disconnect", "side", "joiner")
        [doc] = json.loads(service.ok("inspect", cid))
        assert sorted(doc["NetworkSettings"]["Networks"]) == ["bridge"]
        assert json.loads(service.ok("network", "inspect", "side"))[0]["Containers"] == {}
        assert get(b, "http://10.67.0.7/hostname") is None
        types = [e["type"] for e in Lamina(service.root).events(f"container={cid}")]
        assert types.count("ContainerConnected") == types.count("ContainerDisconnected") == 1
        rejected = [e for e in Lamina(service.root).events("type=CommandRejected")
                    if e["data"].get("command") == "network connect"]
        assert "is not supported by lamina yet" in rejected[-1]["data"]["reason"]
    finally:
        service.ok("rm", "-f", cid)
        service.ok("network", "rm", "side")


def test_the_docker_cli_creates_lists_and_removes(service, box) -> None:
    _, b = box
    nid = service.ok("network", "create", "--subnet", "10.88.0.0/24", "--label", "k=v",
                     "cli-net").strip()
    assert service.ok("network", "ls", "-q", "--filter", "label=k=v").strip() == nid[:12]
    [doc] = json.loads(service.ok("network", "inspect", "cli-net"))
    assert doc["IPAM"]["Config"] == [{"Subnet": "10.88.0.0/24", "Gateway": "10.88.0.1"}]
    assert f"lm-{nid[:12]}" in bridges(b)
    assert service.ok("network", "rm", "cli-net").strip() == "cli-net"
    assert f"lm-{nid[:12]}" not in bridges(b)


# --- containers on networks: docker's documents ----------------------------------------------


def _id(box_ok: str) -> str:
    return box_ok.strip().splitlines()[-1]


def test_a_container_on_the_default_bridge_as_docker_shows_it(api, service, box) -> None:
    import docker

    _, b = box
    c = api.create_container(
        "busybox", ["httpd", "-f", "-p", "80", "-h", "/etc"],
        ports=[80, (53, "udp"), 7000], name="shown",
        host_config=api.create_host_config(
            port_bindings={80: 8080, "53/udp": ("127.0.0.1",)}, dns=["10.0.0.53"],
            dns_search=["example.test"], dns_opt=["ndots:2"]))
    try:
        bridge_id = api.inspect_network("bridge")["Id"]
        created = api.inspect_container(c)
        settings = created["NetworkSettings"]
        assert settings["Ports"] == {} and settings["IPAddress"] == ""
        assert list(settings["Networks"]) == ["bridge"]
        assert settings["Networks"]["bridge"]["NetworkID"] == bridge_id
        assert settings["Networks"]["bridge"]["IPAddress"] == ""
        host = created["HostConfig"]
        assert host["NetworkMode"] == "bridge"
        assert host["PortBindings"] == {"80/tcp": [{"HostIp": "", "HostPort": "8080"}],
                                        "53/udp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}
        assert (host["PublishAllPorts"], host["Dns"], host["DnsSearch"], host["DnsOptions"]) \
            == (False, ["10.0.0.53"], ["example.test"], ["ndots:2"])
        assert created["Config"]["ExposedPorts"] == {"53/udp": {}, "80/tcp": {}, "7000/tcp": {}}

        api.start(c)
        doc = api.inspect_container(c)
        settings = doc["NetworkSettings"]
        ep = settings["Networks"]["bridge"]
        assert ep["IPAddress"].startswith("172.17.") and ep["IPPrefixLen"] == 16
        assert ep["Gateway"] == "172.17.0.1" and ep["NetworkID"] == bridge_id
        assert ep["MacAddress"] == "02:42:" + ":".join(
            f"{int(x):02x}" for x in ep["IPAddress"].split("."))
        assert ep["Aliases"] is None and ep["DNSNames"] is None and ep["IPAMConfig"] is None
        assert len(ep["EndpointID"]) == 64
        for key in ("IPAddress", "IPPrefixLen", "Gateway", "MacAddress", "EndpointID"):
            assert settings[key] == ep[key], key  # the default bridge's, at the top too
        ephemeral = settings["Ports"]["53/udp"][0]["HostPort"]
        assert settings["Ports"] == {
            "53/udp": [{"HostIp": "127.0.0.1", "HostPort": ephemeral}],
            "7000/tcp": None, "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}
        assert 49153 <= int(ephemeral) <= 60999
        assert api.port(c, 80) == [{"HostIp": "0.0.0.0", "HostPort": "8080"}]

        [listed] = api.containers(filters={"name": "shown"})
        assert listed["Ports"] == [
            {"IP": "127.0.0.1", "PrivatePort": 53, "PublicPort": int(ephemeral), "Type": "udp"},
            {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
            {"PrivatePort": 7000, "Type": "tcp"}]
        assert listed["NetworkSettings"]["Networks"]["bridge"]["IPAddress"] == ep["IPAddress"]

        # the docker CLI and lamina's say it as docker's does
        text = f"7000/tcp, 127.0.0.1:{ephemeral}->53/udp, 0.0.0.0:8080->80/tcp"
        assert service.ok("ps", "--filter", "name=shown", "--format", "{{.Ports}}").strip() \
            == text
        lamina = Lamina(service.root)
        [row] = [line for line in lamina.ok("ps").splitlines() if line.endswith(" shown")]
        assert f"   {text}   " in row
        assert service.ok("port", "shown").splitlines() == lamina.ok(
            "port", "shown").splitlines() == [f"53/udp -> 127.0.0.1:{ephemeral}",
                                              "80/tcp -> 0.0.0.0:8080"]
        assert service.ok("port", "shown", "80").strip() == "0.0.0.0:8080"
        assert lamina.ok("port", "shown", "80/tcp").strip() == "0.0.0.0:8080"
        missing = lamina("port", "shown", "81")
        assert missing.returncode == 1 and "no public port '81' published for shown" in \
            missing.stderr
        [cli_doc] = json.loads(lamina.ok("inspect", "shown"))
        assert cli_doc["NetworkSettings"]["Networks"] == settings["Networks"]
        assert cli_doc["NetworkSettings"]["Ports"] == settings["Ports"]

        # the published port answers, on 127.0.0.1 too, from inside the namespace
        assert answer(b, "http://127.0.0.1:8080/hostname") == doc["Config"]["Hostname"]

        api.stop(c, timeout=1)
        stopped = api.inspect_container(c)["NetworkSettings"]
        assert stopped["Ports"] == {} and stopped["IPAddress"] == ""
        assert stopped["Networks"]["bridge"]["NetworkID"] == bridge_id
        assert stopped["Networks"]["bridge"]["EndpointID"] == ""
        assert api.containers(all=True, filters={"name": "shown"})[0]["Ports"] == []
    finally:
        with contextlib.suppress(docker.errors.APIError):
            api.remove_container(c, force=True)


def test_publish_all_publishes_what_is_exposed(service) -> None:
    cid = service.ok("run", "-d", "-P", "--expose", "80", "--expose", "90-91/udp",
                     "busybox", "sleep", "60").strip()
    try:
        [doc] = json.loads(service.ok("inspect", cid))
        assert doc["HostConfig"]["PublishAllPorts"] is True
        ports = doc["NetworkSettings"]["Ports"]
        assert sorted(ports) == ["80/tcp", "90/udp", "91/udp"]
        for bindings in ports.values():
            [b] = bindings
            assert b["HostIp"] == "0.0.0.0" and 49153 <= int(b["HostPort"]) <= 60999
    finally:
        service.ok("rm", "-f", cid)


def test_a_network_with_members(api, service, tmp_networks) -> None:
    import docker

    name, nid = create_network(api, tmp_networks, ipam={"Config": [{"Subnet": "10.66.0.0/24"}]})
    c = api.create_container(
        "busybox", ["sleep", "60"], name="member",
        host_config=api.create_host_config(network_mode=name),
        networking_config=api.create_networking_config(
            {name: api.create_endpoint_config(aliases=["db"], ipv4_address="10.66.0.9")}))
    try:
        assert api.inspect_network(nid)["Containers"] == {}
        assert name in [n["Name"] for n in api.networks(filters={"dangling": ["true"]})]
        api.start(c)
        cid = c["Id"]
        ep = api.inspect_container(c)["NetworkSettings"]["Networks"][name]
        assert (ep["IPAddress"], ep["IPPrefixLen"], ep["Gateway"]) == ("10.66.0.9", 24,
                                                                        "10.66.0.1")
        assert ep["IPAMConfig"] == {"IPv4Address": "10.66.0.9"}
        assert ep["Aliases"] == ["db"]  # API 1.45 and later: no short id
        assert ep["DNSNames"] == ["member", "db", cid[:12]]
        old = docker.APIClient(base_url=f"unix://{service.socket}", version="1.41")
        assert old.inspect_container(c)["NetworkSettings"]["Networks"][name]["Aliases"] == \
            ["db", cid[:12]]  # before 1.45 docker added it (docker-compose 1.x needs it)
        old.close()
        assert service.ok("network", "inspect", name)  # the docker CLI reads it
        members = {cid: {"Name": "member", "EndpointID": ep["EndpointID"],
                         "MacAddress": ep["MacAddress"], "IPv4Address": "10.66.0.9/24",
                         "IPv6Address": ""}}
        assert api.inspect_network(nid)["Containers"] == members
        [cli_doc] = json.loads(Lamina(service.root).ok("network", "inspect", name))
        assert cli_doc["Containers"] == members
        assert api.networks(names=[name])[0]["Containers"] == {}  # docker's list: none

        with pytest.raises(docker.errors.APIError) as cm:
            api.remove_network(name)
        assert cm.value.response.status_code == 403
        assert cm.value.explanation == (f"error while removing network: network {name} id "
                                        f"{nid} has active endpoints")
        assert name not in api.prune_networks()["NetworksDeleted"]
        assert name not in [n["Name"] for n in api.networks(filters={"dangling": ["true"]})]
        assert name in [n["Name"] for n in api.networks(filters={"dangling": ["false"]})]
        rejected = [e for e in Lamina(service.root).events("type=CommandRejected")
                    if e["data"].get("command") == "network rm"]
        assert "has active endpoints" in rejected[-1]["data"]["reason"]

        api.stop(c, timeout=1)  # a stopped container holds no endpoint
        assert api.inspect_network(nid)["Containers"] == {}
        api.remove_network(nid)
        with pytest.raises(docker.errors.APIError) as cm:
            api.start(c)
        assert f"network {name} not found" in cm.value.explanation.lower()
    finally:
        with contextlib.suppress(docker.errors.APIError):
            api.remove_container(c, force=True)



def test_a_node_outside_a_swarm(api, service) -> None:
    """docker's answers on a node that is not part of a swarm (docker-py's network tests
    leave the swarm in every tearDown); making or joining one is refused and recorded."""
    import docker

    assert api.leave_swarm(force=True) is True
    with pytest.raises(docker.errors.APIError) as cm:
        api.inspect_swarm()
    assert (cm.value.response.status_code, cm.value.explanation) == (
        503, "This node is not part of a swarm")
    with pytest.raises(docker.errors.APIError) as cm:
        api.init_swarm("127.0.0.1")
    assert (cm.value.response.status_code, cm.value.explanation) == (
        400, "swarm mode is not supported by lamina")
    rejected = Lamina(service.root).events("type=CommandRejected")
    assert rejected[-1]["data"]["command"] == "swarm init"
