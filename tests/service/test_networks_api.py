"""The Docker API's /networks against `lamina serve`, run inside a network namespace this
module makes (a `unshare -n sleep` process, entered with `nsenter --net` only), through
docker-py and the docker CLI; the host's links and nftables ruleset are compared before and
after.

The first part is docker-py's own network tests (tests/integration/api_network_test.py of
github.com/docker/docker-py) that need no container, case for case with their names and
assertions, restated against the service (as test_volumes_api.py does for volumes). Left
out: the connect/disconnect and container cases (containers join no network yet), IPv6,
swarm's (attachable, ingress, scope=swarm), and test_create_network_with_ipam_config, whose
IPRange and AuxiliaryAddresses lamina refuses by name (restated below as that refusal)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import require_root
from tests.kernel.runtime_env import LAMINA, Lamina
from tests.kernel.test_network_plumbing import Box, host_network
from tests.service.conftest import Service

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, Box]]:
    require_root()
    before = host_network()
    box = Box()
    base = tmp_path_factory.mktemp("netsvc")
    root, sock, log_path = base / "root", str(base / "lamina.sock"), base / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(box.argv(LAMINA, "--root", str(root), "--log-format", "json",
                                         "serve", "--socket", sock),
                                stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    svc = Service(root, sock, log_path, proc, time.time())
    try:
        deadline = time.monotonic() + 20
        while not os.path.exists(sock):
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "lamina serve did not come up"
            time.sleep(0.05)
        yield svc, box
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        box.close()
    assert host_network() == before, "a network test changed the host's network"


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


def bridges(box: Box) -> list[str]:
    links = json.loads(box.ok("ip", "-j", "link"))
    return sorted(link["ifname"] for link in links if link["ifname"].startswith("lm-"))


# --- docker-py: api_network_test.TestNetworks ------------------------------------------------


def test_list_networks(api, tmp_networks) -> None:
    networks = api.networks()
    net_name, net_id = create_network(api, tmp_networks)
    networks = api.networks()
    assert net_id in [n["Id"] for n in networks]
    networks_by_name = api.networks(names=[net_name])
    assert [n["Id"] for n in networks_by_name] == [net_id]
    networks_by_partial_id = api.networks(ids=[net_id[:8]])
    assert [n["Id"] for n in networks_by_partial_id] == [net_id]


def test_inspect_network(api, tmp_networks) -> None:
    net_name, net_id = create_network(api, tmp_networks)
    net = api.inspect_network(net_id)
    assert net["Id"] == net_id
    assert net["Name"] == net_name
    assert net["Driver"] == "bridge"
    assert net["Scope"] == "local"
    assert net["IPAM"]["Driver"] == "default"


def test_create_network_with_ipam_config_subnet_and_gateway(api, tmp_networks) -> None:
    """docker-py's case without its IPRange and AuxiliaryAddresses (refused: below)."""
    from docker.types import IPAMConfig, IPAMPool

    _, net_id = create_network(api, tmp_networks, ipam=IPAMConfig(
        driver="default", pool_configs=[IPAMPool(subnet="172.28.0.0/16",
                                                 gateway="172.28.5.254")]))
    ipam = api.inspect_network(net_id)["IPAM"]
    assert ipam.pop("Options", None) is None
    assert ipam["Driver"] == "default"
    assert ipam["Config"] == [{"Subnet": "172.28.0.0/16", "Gateway": "172.28.5.254"}]


def test_create_network_with_ipam_ranges_is_refused_by_name(api, service) -> None:
    import docker
    from docker.types import IPAMConfig, IPAMPool

    with pytest.raises(docker.errors.APIError) as cm:
        api.create_network(random_name(), ipam=IPAMConfig(pool_configs=[IPAMPool(
            subnet="172.29.0.0/16", iprange="172.29.5.0/24", gateway="172.29.5.254")]))
    assert cm.value.response.status_code == 400
    assert cm.value.explanation == "IPAM Config IPRange is not supported by lamina yet"


def test_create_network_with_host_driver_fails(api) -> None:
    import docker

    with pytest.raises(docker.errors.APIError):
        api.create_network(random_name(), driver="host")


def test_remove_network(api, tmp_networks) -> None:
    net_name, net_id = create_network(api, tmp_networks)
    assert net_name in [n["Name"] for n in api.networks()]
    api.remove_network(net_id)
    assert net_name not in [n["Name"] for n in api.networks()]


def test_create_check_duplicate(api, tmp_networks) -> None:
    import docker

    net_name, net_id = create_network(api, tmp_networks)
    with pytest.raises(docker.errors.APIError):
        api.create_network(net_name, check_duplicate=True)


def test_create_internal_networks(api, tmp_networks) -> None:
    _, net_id = create_network(api, tmp_networks, internal=True)
    net = api.inspect_network(net_id)
    assert net["Internal"] is True


def test_create_network_with_labels(api, tmp_networks) -> None:
    _, net_id = create_network(api, tmp_networks, labels={"com.docker.py.test": "label"})
    net = api.inspect_network(net_id)
    assert "Labels" in net
    assert len(net["Labels"]) == 1
    assert net["Labels"] == {"com.docker.py.test": "label"}


def test_create_network_with_labels_wrong_type(api, tmp_networks) -> None:
    with pytest.raises(TypeError):
        create_network(api, tmp_networks, labels=["com.docker.py.test=label"])


def test_prune_networks(api, tmp_networks) -> None:
    net_name, _ = create_network(api, tmp_networks)
    result = api.prune_networks()
    assert net_name in result["NetworksDeleted"]


def test_create_inspect_network_with_scope_local(api, tmp_networks) -> None:
    import docker

    net_name_loc, _ = create_network(api, tmp_networks, scope="local")
    assert api.inspect_network(net_name_loc)
    assert api.inspect_network(net_name_loc, scope="local")
    with pytest.raises(docker.errors.NotFound):
        api.inspect_network(net_name_loc, scope="global")


def test_create_remove_network_with_space_in_name(api, tmp_networks) -> None:
    net_id = api.create_network("test 01")
    tmp_networks.append(net_id)
    assert api.inspect_network("test 01")
    assert api.remove_network("test 01") is None  # does not raise


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
        api.create_network(random_name(), enable_ipv6=True)
    assert cm.value.explanation == "EnableIPv6 is not supported by lamina yet"


def test_the_predefined_networks_are_listed_as_docker_lists_them(api) -> None:
    found = {n["Name"]: n for n in api.networks()}
    assert {"bridge", "host", "none"} <= set(found)
    assert (found["host"]["Driver"], found["none"]["Driver"]) == ("host", "null")
    assert found["bridge"]["IPAM"]["Config"] == [{"Subnet": "172.17.0.0/16",
                                                  "Gateway": "172.17.0.1"}]
    assert [n["Name"] for n in api.networks(filters={"type": "builtin"})] == \
        ["bridge", "host", "none"]


def test_connect_and_disconnect_are_refused_and_recorded(api, service) -> None:
    import docker

    for call in (api.connect_container_to_network, api.disconnect_container_from_network):
        with pytest.raises(docker.errors.APIError) as cm:
            call("some-container", "bridge")
        assert cm.value.response.status_code == 400
        assert "is not supported by lamina yet" in cm.value.explanation
    rejected = [e for e in Lamina(service.root).events("type=CommandRejected")
                if e["data"].get("command", "").startswith("network ")]
    assert {e["data"]["command"] for e in rejected} >= {"network connect",
                                                        "network disconnect"}


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
