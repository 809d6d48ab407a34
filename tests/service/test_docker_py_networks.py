"""docker-py's own network tests against `lamina serve`, case for case with their names and
assertions (github.com/docker/docker-py, tests/integration/): api_network_test.py's
TestNetworks, models_networks_test.py, api_container_test.py's PortTest and
models_containers_test.py's network and port cases, with TEST_IMG the busybox image.

lamina serve runs inside a network namespace this module makes (test_networks_api's
boxed_service: a `unshare -n sleep` process, entered with `nsenter --net` only); every
address the tests use lives in it, and the host's network is compared before and after.

Where docker-py needs a swarm (an attachable overlay network, ingress, swarm-scoped
networks), the case is restated as lamina's refusal by name (it has no swarm mode): docker's
400, recorded as a CommandRejected. Where lamina can show more than docker-py asserts (the
address inside the container, the name a link answers), the case says so after docker-py's
own assertions."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest

from tests.kernel.test_network_plumbing import Box
from tests.service.conftest import Service
from tests.service.test_networks_api import boxed_service

pytestmark = pytest.mark.kernel

TEST_IMG = "busybox"


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, Box]]:
    with boxed_service(tmp_path_factory.mktemp("dpynet"), busybox=True) as served:
        yield served


@pytest.fixture
def service(box: tuple[Service, Box]) -> Service:
    return box[0]


@pytest.fixture
def docker_client(service: Service):
    client = service.client()
    yield client
    client.close()


@pytest.fixture
def api(docker_client):
    return docker_client.api


@pytest.fixture
def tmp_containers(api) -> Iterator[list]:
    import docker

    found: list = []
    yield found
    for c in found:
        with contextlib.suppress(docker.errors.APIError):
            api.remove_container(c, force=True, v=True)


@pytest.fixture
def tmp_networks(api, tmp_containers) -> Iterator[list[str]]:
    """Removed after the containers: pytest tears this down before tmp_containers (set up
    first), so the containers go here, then the networks they were on."""
    import docker

    ids: list[str] = []
    yield ids
    for c in tmp_containers:
        with contextlib.suppress(docker.errors.APIError):
            api.remove_container(c, force=True, v=True)
    tmp_containers.clear()
    for nid in ids:
        with contextlib.suppress(docker.errors.NotFound):
            api.remove_network(nid)


def random_name() -> str:
    return f"dockerpytest_{uuid.uuid4().hex[:10]}"


class Helpers:
    """docker-py's BaseAPIIntegrationTest helpers, on the fixtures."""

    def __init__(self, api, tmp_containers: list, tmp_networks: list[str]) -> None:
        self.client, self.tmp_containers, self.tmp_networks = api, tmp_containers, tmp_networks

    def create_network(self, *args, **kwargs) -> tuple[str, str]:
        net_name = random_name()
        net_id = self.client.create_network(net_name, *args, **kwargs)["Id"]
        self.tmp_networks.append(net_id)
        return net_name, net_id

    def create_and_start(self, image: str = TEST_IMG, command: str = "top", **kwargs):
        container = self.client.create_container(image=image, command=command, **kwargs)
        self.tmp_containers.append(container)
        self.client.start(container)
        return container


@pytest.fixture
def t(api, tmp_containers, tmp_networks) -> Helpers:
    return Helpers(api, tmp_containers, tmp_networks)


def refused(call, explanation: str) -> None:
    """docker's 400 with lamina's words for what it doesn't do."""
    import docker

    with pytest.raises(docker.errors.APIError) as cm:
        call()
    assert cm.value.response.status_code == 400, cm.value
    assert explanation.lower() in cm.value.explanation.lower()  # containers' capitalized


# --- api_network_test.TestNetworks -----------------------------------------------------------


def test_list_networks(t: Helpers) -> None:
    networks = t.client.networks()
    net_name, net_id = t.create_network()
    networks = t.client.networks()
    assert net_id in [n["Id"] for n in networks]
    networks_by_name = t.client.networks(names=[net_name])
    assert [n["Id"] for n in networks_by_name] == [net_id]
    networks_by_partial_id = t.client.networks(ids=[net_id[:8]])
    assert [n["Id"] for n in networks_by_partial_id] == [net_id]


def test_inspect_network(t: Helpers) -> None:
    net_name, net_id = t.create_network()
    net = t.client.inspect_network(net_id)
    assert net["Id"] == net_id
    assert net["Name"] == net_name
    assert net["Driver"] == "bridge"
    assert net["Scope"] == "local"
    assert net["IPAM"]["Driver"] == "default"


def test_create_network_with_ipam_config(t: Helpers) -> None:
    from docker.types import IPAMConfig, IPAMPool

    _, net_id = t.create_network(ipam=IPAMConfig(driver="default", pool_configs=[
        IPAMPool(subnet="172.28.0.0/16", iprange="172.28.5.0/24", gateway="172.28.5.254",
                 aux_addresses={"a": "172.28.1.5", "b": "172.28.1.6", "c": "172.28.1.7"})]))
    net = t.client.inspect_network(net_id)
    ipam = net["IPAM"]
    assert ipam.pop("Options", None) is None
    assert ipam["Driver"] == "default"
    assert ipam["Config"] == [{
        "Subnet": "172.28.0.0/16", "IPRange": "172.28.5.0/24", "Gateway": "172.28.5.254",
        "AuxiliaryAddresses": {"a": "172.28.1.5", "b": "172.28.1.6", "c": "172.28.1.7"}}]


def test_create_network_with_ipam_config_subnet_and_gateway(t: Helpers) -> None:
    from docker.types import IPAMConfig, IPAMPool

    _, net_id = t.create_network(ipam=IPAMConfig(driver="default", pool_configs=[
        IPAMPool(subnet="172.28.0.0/16", gateway="172.28.5.254")]))
    ipam = t.client.inspect_network(net_id)["IPAM"]
    assert ipam.pop("Options", None) is None
    assert ipam["Driver"] == "default"
    assert ipam["Config"] == [{"Subnet": "172.28.0.0/16", "Gateway": "172.28.5.254"}]


def test_create_network_with_host_driver_fails(t: Helpers) -> None:
    import docker

    with pytest.raises(docker.errors.APIError):
        t.client.create_network(random_name(), driver="host")


def test_remove_network(t: Helpers) -> None:
    net_name, net_id = t.create_network()
    assert net_name in [n["Name"] for n in t.client.networks()]
    t.client.remove_network(net_id)
    assert net_name not in [n["Name"] for n in t.client.networks()]


def test_create_with_aliases(t: Helpers) -> None:
    net_name, net_id = t.create_network()
    container = t.client.create_container(
        image=TEST_IMG, command="top",
        host_config=t.client.create_host_config(network_mode=net_name),
        networking_config=t.client.create_networking_config({
            net_name: t.client.create_endpoint_config(aliases=["foo", "bar"])}))
    t.tmp_containers.append(container)
    t.client.start(container)
    container_data = t.client.inspect_container(container)
    aliases = container_data["NetworkSettings"]["Networks"][net_name]["Aliases"]
    assert "foo" in aliases
    assert "bar" in aliases


def test_create_with_ipv4_address(t: Helpers) -> None:
    from docker.types import IPAMConfig, IPAMPool

    net_name, net_id = t.create_network(ipam=IPAMConfig(
        driver="default", pool_configs=[IPAMPool(subnet="132.124.0.0/16")]))
    container = t.client.create_container(
        image=TEST_IMG, command="top",
        host_config=t.client.create_host_config(network_mode=net_name),
        networking_config=t.client.create_networking_config({
            net_name: t.client.create_endpoint_config(ipv4_address="132.124.0.23")}))
    t.tmp_containers.append(container)
    t.client.start(container)
    net_settings = t.client.inspect_container(container)["NetworkSettings"]
    assert net_settings["Networks"][net_name]["IPAMConfig"]["IPv4Address"] == "132.124.0.23"
    assert net_settings["Networks"][net_name]["IPAddress"] == "132.124.0.23"  # lamina's


def test_create_with_ipv6_address(t: Helpers) -> None:
    from docker.types import IPAMConfig, IPAMPool

    net_name, net_id = t.create_network(enable_ipv6=True, ipam=IPAMConfig(
        driver="default", pool_configs=[IPAMPool(subnet="2001:389::/64")]))
    container = t.client.create_container(
        image=TEST_IMG, command="top",
        host_config=t.client.create_host_config(network_mode=net_name),
        networking_config=t.client.create_networking_config({
            net_name: t.client.create_endpoint_config(ipv6_address="2001:389::f00d")}))
    t.tmp_containers.append(container)
    t.client.start(container)
    net_settings = t.client.inspect_container(container)["NetworkSettings"]
    assert net_settings["Networks"][net_name]["IPAMConfig"]["IPv6Address"] == "2001:389::f00d"
    # lamina's: the address is the link's, beside an IPv4 one (dual-stack)
    assert net_settings["Networks"][net_name]["GlobalIPv6Address"] == "2001:389::f00d"
    assert b"inet6 2001:389::f00d/64" in execute(t, container, ["ip", "addr", "show", "eth0"])


def test_create_with_linklocal_ips(t: Helpers) -> None:
    container = t.client.create_container(
        TEST_IMG, "top",
        networking_config=t.client.create_networking_config({
            "bridge": t.client.create_endpoint_config(link_local_ips=["169.254.8.8"])}),
        host_config=t.client.create_host_config(network_mode="bridge"))
    t.tmp_containers.append(container)
    t.client.start(container)
    container_data = t.client.inspect_container(container)
    net_cfg = container_data["NetworkSettings"]["Networks"]["bridge"]
    assert "IPAMConfig" in net_cfg
    assert "LinkLocalIPs" in net_cfg["IPAMConfig"]
    assert net_cfg["IPAMConfig"]["LinkLocalIPs"] == ["169.254.8.8"]
    assert b"inet 169.254.8.8/16" in execute(t, container, ["ip", "addr", "show", "eth0"])


def test_create_with_driveropt(t: Helpers) -> None:
    container = t.client.create_container(
        TEST_IMG, "top",
        networking_config=t.client.create_networking_config({
            "bridge": t.client.create_endpoint_config(
                driver_opt={"com.docker-py.setting": "on"})}),
        host_config=t.client.create_host_config(network_mode="bridge"))
    t.tmp_containers.append(container)
    t.client.start(container)
    container_data = t.client.inspect_container(container)
    net_cfg = container_data["NetworkSettings"]["Networks"]["bridge"]
    assert "DriverOpts" in net_cfg
    assert "com.docker-py.setting" in net_cfg["DriverOpts"]
    assert net_cfg["DriverOpts"]["com.docker-py.setting"] == "on"
    # lamina's: an option docker's own driver would act on, and lamina doesn't, is refused
    refused(lambda: t.client.create_container(
        TEST_IMG, "top", networking_config=t.client.create_networking_config({
            "bridge": t.client.create_endpoint_config(
                driver_opt={"com.docker.network.endpoint.sysctls": "x=1"})}),
        host_config=t.client.create_host_config(network_mode="bridge")),
        "endpoint driver option 'com.docker.network.endpoint.sysctls' is not supported")


def test_create_with_links(t: Helpers) -> None:
    net_name, net_id = t.create_network()
    container = t.create_and_start(
        host_config=t.client.create_host_config(network_mode=net_name),
        networking_config=t.client.create_networking_config({
            net_name: t.client.create_endpoint_config(
                links=[("docker-py-test-upstream", "bar")])}))
    net_settings = t.client.inspect_container(container)["NetworkSettings"]
    assert net_settings["Networks"][net_name]["Links"] == ["docker-py-test-upstream:bar"]
    upstream = t.create_and_start(
        name="docker-py-test-upstream",
        host_config=t.client.create_host_config(network_mode=net_name))
    execute(t, container, ["nslookup", "bar"])
    # lamina's: bar is upstream's address, for the linking container alone
    address = t.client.inspect_container(upstream)["NetworkSettings"]["Networks"][
        net_name]["IPAddress"]
    assert address.encode() in execute(t, container, ["nslookup", "bar"])
    execute(t, upstream, ["nslookup", "bar"], exit_code=1)



def execute(t: Helpers, container, cmd: list[str], exit_code: int = 0) -> bytes:
    """docker-py's BaseAPIIntegrationTest.execute: the exec's exit code asserted."""
    exc = t.client.exec_create(container, cmd)
    output = t.client.exec_start(exc)
    actual = t.client.exec_inspect(exc)["ExitCode"]
    assert actual == exit_code, f"{' '.join(cmd)} exited {actual}: {output!r}"
    return output


def test_create_check_duplicate(t: Helpers) -> None:
    import docker

    net_name, net_id = t.create_network()
    with pytest.raises(docker.errors.APIError):
        t.client.create_network(net_name, check_duplicate=True)


def test_create_internal_networks(t: Helpers) -> None:
    _, net_id = t.create_network(internal=True)
    net = t.client.inspect_network(net_id)
    assert net["Internal"] is True


def test_create_network_with_labels(t: Helpers) -> None:
    _, net_id = t.create_network(labels={"com.docker.py.test": "label"})
    net = t.client.inspect_network(net_id)
    assert "Labels" in net
    assert len(net["Labels"]) == 1
    assert net["Labels"] == {"com.docker.py.test": "label"}


def test_create_network_with_labels_wrong_type(t: Helpers) -> None:
    with pytest.raises(TypeError):
        t.create_network(labels=["com.docker.py.test=label"])


def test_create_network_ipv6_enabled(t: Helpers) -> None:
    from docker.types import IPAMConfig, IPAMPool

    _, net_id = t.create_network(enable_ipv6=True, ipam=IPAMConfig(
        driver="default", pool_configs=[IPAMPool(
            subnet="2001:389::/64", iprange="2001:389::0/96", gateway="2001:389::ffff")]))
    net = t.client.inspect_network(net_id)
    assert net["EnableIPv6"] is True


def test_create_network_attachable(t: Helpers) -> None:
    """docker-py's makes a swarm and an overlay network on it: lamina has no swarm mode,
    and says so by name (swarm init, the overlay driver). Attachable on a local bridge
    network is recorded and shown, as docker's."""
    import docker

    with pytest.raises(docker.errors.APIError) as cm:
        t.client.init_swarm()
    assert "swarm mode is not supported by lamina" in cm.value.explanation
    refused(lambda: t.create_network(driver="overlay", attachable=True),
            "network driver 'overlay' is not supported by lamina: it has no swarm mode")
    _, net_id = t.create_network(attachable=True)
    net = t.client.inspect_network(net_id)
    assert net["Attachable"] is True
    assert net["Driver"] == "bridge"


def test_create_network_ingress(t: Helpers) -> None:
    """As test_create_network_attachable: no swarm, ingress networks refused by name."""
    refused(lambda: t.create_network(driver="overlay", ingress=True),
            "Ingress is not supported by lamina: it has no swarm mode")


def test_prune_networks(t: Helpers) -> None:
    net_name, _ = t.create_network()
    result = t.client.prune_networks()
    assert net_name in result["NetworksDeleted"]


def test_create_inspect_network_with_scope(t: Helpers) -> None:
    """The local half as docker-py's; the swarm half is refused (no swarm)."""
    import docker

    net_name_loc, net_id_loc = t.create_network(scope="local")
    assert t.client.inspect_network(net_name_loc)
    assert t.client.inspect_network(net_name_loc, scope="local")
    with pytest.raises(docker.errors.NotFound):
        t.client.inspect_network(net_name_loc, scope="global")
    refused(lambda: t.create_network(driver="overlay", scope="swarm"),
            "Scope 'swarm' is not supported by lamina: its networks are local")


def test_create_remove_network_with_space_in_name(t: Helpers) -> None:
    net_id = t.client.create_network("test 01")
    t.tmp_networks.append(net_id["Id"])
    assert t.client.inspect_network("test 01")
    assert t.client.remove_network("test 01") is None  # does not raise


# --- api_container_test.PortTest -------------------------------------------------------------


def test_port(t: Helpers) -> None:
    port_bindings = {
        "1111": ("127.0.0.1", "4567"),
        "2222": ("127.0.0.1", "4568"),
        "3333/udp": ("127.0.0.1", "4569"),
    }
    ports = [1111, 2222, (3333, "udp")]
    container = t.client.create_container(
        TEST_IMG, ["sleep", "60"], ports=ports,
        host_config=t.client.create_host_config(port_bindings=port_bindings,
                                                network_mode="bridge"))
    t.tmp_containers.append(container)
    id = container["Id"]
    t.client.start(container)
    for port in port_bindings:
        port, _, protocol = port.partition("/")
        actual_bindings = t.client.port(container, port)
        port_binding = actual_bindings.pop()
        ip, host_port = port_binding["HostIp"], port_binding["HostPort"]
        port_binding = port if not protocol else f"{port}/{protocol}"
        assert ip == port_bindings[port_binding][0]
        assert host_port == port_bindings[port_binding][1]
    t.client.kill(id)


# --- models_networks_test --------------------------------------------------------------------


def test_create(docker_client, tmp_networks) -> None:
    name = random_name()
    network = docker_client.networks.create(name, labels={"foo": "bar"})
    tmp_networks.append(network.id)
    assert network.name == name
    assert network.attrs["Labels"]["foo"] == "bar"


def test_get(docker_client, tmp_networks) -> None:
    name = random_name()
    network_id = docker_client.networks.create(name).id
    tmp_networks.append(network_id)
    network = docker_client.networks.get(network_id)
    assert network.name == name


def test_list_remove(docker_client, tmp_networks) -> None:
    client = docker_client
    name = random_name()
    network = client.networks.create(name)
    tmp_networks.append(network.id)
    assert network.id in [n.id for n in client.networks.list()]
    assert network.id not in [n.id for n in client.networks.list(ids=["fdhjklfdfdshjkfds"])]
    assert network.id in [n.id for n in client.networks.list(ids=[network.id])]
    assert network.id not in [n.id for n in client.networks.list(names=["fdshjklfdsjhkl"])]
    assert network.id in [n.id for n in client.networks.list(names=[name])]
    network.remove()
    assert network.id not in [n.id for n in client.networks.list()]


# --- models_containers_test: networks and ports ----------------------------------------------


def test_run_with_network(docker_client, tmp_networks, tmp_containers) -> None:
    client = docker_client
    net_name = random_name()
    client.networks.create(net_name)
    tmp_networks.append(net_name)
    container = client.containers.run(TEST_IMG, "echo hello world", network=net_name,
                                      detach=True)
    tmp_containers.append(container.id)
    attrs = container.attrs
    assert "NetworkSettings" in attrs
    assert "Networks" in attrs["NetworkSettings"]
    assert list(attrs["NetworkSettings"]["Networks"].keys()) == [net_name]


def test_run_with_networking_config(docker_client, tmp_networks, tmp_containers) -> None:
    client = docker_client
    net_name = random_name()
    client.networks.create(net_name)
    tmp_networks.append(net_name)
    test_alias = "hello"
    test_driver_opt = {"key1": "a"}
    networking_config = {net_name: client.api.create_endpoint_config(
        aliases=[test_alias], driver_opt=test_driver_opt)}
    container = client.containers.run(TEST_IMG, "echo hello world", network=net_name,
                                      networking_config=networking_config, detach=True)
    tmp_containers.append(container.id)
    attrs = container.attrs
    assert "NetworkSettings" in attrs
    assert "Networks" in attrs["NetworkSettings"]
    assert list(attrs["NetworkSettings"]["Networks"].keys()) == [net_name]
    # Aliases no longer include the container's short-id in API v1.45.
    assert attrs["NetworkSettings"]["Networks"][net_name]["Aliases"] == [test_alias]
    assert attrs["NetworkSettings"]["Networks"][net_name]["DriverOpts"] == test_driver_opt


def test_run_with_networking_config_with_undeclared_network(docker_client, tmp_networks,
                                                             tmp_containers) -> None:
    import docker

    client = docker_client
    net_name = random_name()
    client.networks.create(net_name)
    tmp_networks.append(net_name)
    networking_config = {
        net_name: client.api.create_endpoint_config(aliases=["hello"],
                                                    driver_opt={"key1": "a"}),
        "bar": client.api.create_endpoint_config(aliases=["test"], driver_opt={"key2": "b"}),
    }
    with pytest.raises(docker.errors.APIError):
        container = client.containers.run(TEST_IMG, "echo hello world", network=net_name,
                                          networking_config=networking_config, detach=True)
        tmp_containers.append(container.id)


def test_run_with_networking_config_only_undeclared_network(docker_client, tmp_networks,
                                                            tmp_containers) -> None:
    client = docker_client
    net_name = random_name()
    client.networks.create(net_name)
    tmp_networks.append(net_name)
    networking_config = {
        "bar": client.api.create_endpoint_config(aliases=["hello"], driver_opt={"key1": "a"}),
    }
    container = client.containers.run(TEST_IMG, "echo hello world", network=net_name,
                                      networking_config=networking_config, detach=True)
    tmp_containers.append(container.id)
    attrs = container.attrs
    assert "NetworkSettings" in attrs
    assert "Networks" in attrs["NetworkSettings"]
    assert list(attrs["NetworkSettings"]["Networks"].keys()) == [net_name]
    # Aliases no longer include the container's short-id in API v1.45.
    assert attrs["NetworkSettings"]["Networks"][net_name]["Aliases"] is None
    assert attrs["NetworkSettings"]["Networks"][net_name]["DriverOpts"] is None


@pytest.mark.parametrize("ports", [None, ("127.0.0.1", 1111), [1234, 4567]],
                         ids=["test_ports_target_none", "test_ports_target_tuple",
                              "test_ports_target_list"])
def test_ports_target(docker_client, tmp_containers, ports) -> None:
    client = docker_client
    target_ports = {"2222/tcp": ports}
    container = client.containers.run(TEST_IMG, "sleep 100", detach=True, ports=target_ports)
    tmp_containers.append(container.id)
    container.reload()  # required to get auto-assigned ports
    actual_ports = container.ports
    assert sorted(target_ports.keys()) == sorted(actual_ports.keys())
    for target_client, target_host in target_ports.items():
        for actual_port in actual_ports[target_client]:
            actual_keys = sorted(actual_port.keys())
            assert sorted(["HostIp", "HostPort"]) == actual_keys
            assert target_host == ports
            assert int(actual_port["HostPort"]) > 0
    if isinstance(ports, list):  # lamina's: both host ports bound
        assert sorted(int(p["HostPort"]) for p in actual_ports["2222/tcp"]) == ports


# --- network connect / disconnect (api_network_test, models_networks_test) -------------------


def test_connect_and_disconnect_container(t: Helpers) -> None:
    import docker

    net_name, net_id = t.create_network()
    container = t.client.create_container(TEST_IMG, "top")
    t.tmp_containers.append(container)
    t.client.start(container)
    network_data = t.client.inspect_network(net_id)
    assert not network_data.get("Containers")
    t.client.connect_container_to_network(container, net_id)
    network_data = t.client.inspect_network(net_id)
    assert list(network_data["Containers"].keys()) == [container["Id"]]
    with pytest.raises(docker.errors.APIError):
        t.client.connect_container_to_network(container, net_id)
    t.client.disconnect_container_from_network(container, net_id)
    network_data = t.client.inspect_network(net_id)
    assert not network_data.get("Containers")
    with pytest.raises(docker.errors.APIError):
        t.client.disconnect_container_from_network(container, net_id)


def test_connect_and_force_disconnect_container(t: Helpers) -> None:
    import docker

    net_name, net_id = t.create_network()
    container = t.client.create_container(TEST_IMG, "top")
    t.tmp_containers.append(container)
    t.client.start(container)
    network_data = t.client.inspect_network(net_id)
    assert not network_data.get("Containers")
    t.client.connect_container_to_network(container, net_id)
    network_data = t.client.inspect_network(net_id)
    assert list(network_data["Containers"].keys()) == [container["Id"]]
    t.client.disconnect_container_from_network(container, net_id, True)
    network_data = t.client.inspect_network(net_id)
    assert not network_data.get("Containers")
    with pytest.raises(docker.errors.APIError):
        t.client.disconnect_container_from_network(container, net_id, force=True)


def test_connect_with_aliases(t: Helpers) -> None:
    net_name, net_id = t.create_network()
    container = t.client.create_container(TEST_IMG, "top")
    t.tmp_containers.append(container)
    t.client.start(container)
    t.client.connect_container_to_network(container, net_id, aliases=["foo", "bar"])
    container_data = t.client.inspect_container(container)
    aliases = container_data["NetworkSettings"]["Networks"][net_name]["Aliases"]
    assert "foo" in aliases
    assert "bar" in aliases


def test_connect_on_container_create(t: Helpers) -> None:
    net_name, net_id = t.create_network()
    container = t.client.create_container(
        image=TEST_IMG, command="top",
        host_config=t.client.create_host_config(network_mode=net_name))
    t.tmp_containers.append(container)
    t.client.start(container)
    network_data = t.client.inspect_network(net_id)
    assert list(network_data["Containers"].keys()) == [container["Id"]]
    t.client.disconnect_container_from_network(container, net_id)
    network_data = t.client.inspect_network(net_id)
    assert not network_data.get("Containers")


def test_connect_with_links(t: Helpers) -> None:
    net_name, net_id = t.create_network()
    container = t.create_and_start(
        host_config=t.client.create_host_config(network_mode=net_name))
    t.client.disconnect_container_from_network(container, net_name)
    t.client.connect_container_to_network(
        container, net_name, links=[("docker-py-test-upstream", "bar")])
    net_settings = t.client.inspect_container(container)["NetworkSettings"]
    assert net_settings["Networks"][net_name]["Links"] == ["docker-py-test-upstream:bar"]
    t.create_and_start(
        name="docker-py-test-upstream",
        host_config=t.client.create_host_config(network_mode=net_name))
    execute(t, container, ["nslookup", "bar"])


def test_connect_with_ipv4_address(t: Helpers) -> None:
    from docker.types import IPAMConfig, IPAMPool

    net_name, net_id = t.create_network(ipam=IPAMConfig(driver="default", pool_configs=[
        IPAMPool(subnet="172.28.0.0/16", iprange="172.28.5.0/24", gateway="172.28.5.254")]))
    container = t.create_and_start(
        host_config=t.client.create_host_config(network_mode=net_name))
    # lamina's: a dynamic address comes from the range, the gateway excepted
    first = t.client.inspect_container(container)["NetworkSettings"]["Networks"][net_name]
    assert first["IPAddress"] == "172.28.5.0"
    t.client.disconnect_container_from_network(container, net_name)
    t.client.connect_container_to_network(container, net_name, ipv4_address="172.28.5.24")
    container_data = t.client.inspect_container(container)
    net_data = container_data["NetworkSettings"]["Networks"][net_name]
    assert net_data["IPAMConfig"]["IPv4Address"] == "172.28.5.24"
    assert net_data["IPAddress"] == "172.28.5.24"  # lamina's: joined at once


def test_connect_with_ipv6_address(t: Helpers) -> None:
    from docker.types import IPAMConfig, IPAMPool

    net_name, net_id = t.create_network(enable_ipv6=True, ipam=IPAMConfig(
        driver="default", pool_configs=[IPAMPool(
            subnet="2001:389::/64", iprange="2001:389::0/96", gateway="2001:389::ffff")]))
    container = t.create_and_start(
        host_config=t.client.create_host_config(network_mode=net_name))
    t.client.disconnect_container_from_network(container, net_name)
    t.client.connect_container_to_network(container, net_name, ipv6_address="2001:389::f00d")
    container_data = t.client.inspect_container(container)
    net_data = container_data["NetworkSettings"]["Networks"][net_name]
    assert net_data["IPAMConfig"]["IPv6Address"] == "2001:389::f00d"


def test_connect_with_mac_address(t: Helpers) -> None:
    net_name, net_id = t.create_network()
    container = t.client.create_container(TEST_IMG, "top")
    t.tmp_containers.append(container)
    t.client.connect_container_to_network(container, net_name,
                                          mac_address="02:42:ac:11:00:02")
    container_data = t.client.inspect_container(container)
    net_data = container_data["NetworkSettings"]["Networks"][net_name]
    assert net_data["MacAddress"] == "02:42:ac:11:00:02"
    # lamina's: the link inside has it once it runs
    t.client.start(container)
    assert b"02:42:ac:11:00:02" in execute(t, container, ["cat", "/sys/class/net/eth1/address"])


def test_connect_disconnect(docker_client, tmp_networks, tmp_containers) -> None:
    """models_networks_test.NetworkTest."""
    client = docker_client
    network = client.networks.create(random_name())
    tmp_networks.append(network.id)
    container = client.containers.create(TEST_IMG, "sleep 300")
    tmp_containers.append(container.id)
    assert network.containers == []
    network.connect(container)
    container.start()
    assert client.networks.get(network.id).containers == [container]
    network_containers = [c for net in client.networks.list(ids=[network.id], greedy=True)
                          for c in net.containers]
    assert network_containers == [container]
    network.disconnect(container)
    assert network.containers == []
    assert client.networks.get(network.id).containers == []


# --- api_container_test.LinkTest ---------------------------------------------------------------


def test_remove_link(t: Helpers) -> None:
    container1 = t.client.create_container(TEST_IMG, "cat", detach=True, stdin_open=True)
    container1_id = container1["Id"]
    t.tmp_containers.append(container1_id)
    t.client.start(container1_id)
    link_path = t.client.inspect_container(container1_id)["Name"][1:]
    link_alias = "mylink"
    container2 = t.client.create_container(
        TEST_IMG, "cat", host_config=t.client.create_host_config(links={link_path: link_alias}))
    container2_id = container2["Id"]
    t.tmp_containers.append(container2_id)
    t.client.start(container2_id)
    linked_name = t.client.inspect_container(container2_id)["Name"][1:]
    link_name = f"{linked_name}/{link_alias}"
    assert t.client.inspect_container(container2_id)["HostConfig"]["Links"] == \
        [f"/{link_path}:/{linked_name}/{link_alias}"]  # lamina's: docker's form
    t.client.remove_container(link_name, link=True)
    containers = t.client.containers(all=True)
    retrieved = [x for x in containers if link_name in x["Names"]]
    assert len(retrieved) == 0
    retrieved = [x for x in containers
                 if x["Id"].startswith(container1_id) or x["Id"].startswith(container2_id)]
    assert len(retrieved) == 2
    # lamina's: the link is off the record (its next start makes none), recorded
    doc = t.client.inspect_container(container2_id)
    assert doc["NetworkSettings"]["Networks"]["bridge"]["Links"] is None
    assert doc["HostConfig"]["Links"] is None
