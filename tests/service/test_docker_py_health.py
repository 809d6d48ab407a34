"""docker-py's own HealthcheckTest (tests/integration/api_healthcheck_test.py), case for case
as written there, against `lamina serve`: busybox stands in for TEST_IMG (it has `top`), each
container on no network (`network_mode="none"`, nothing in them needs one). Then what the
docker CLI shows of it: ps's `(healthy)`, `--filter health=`, and the `health_status`
events."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from tests.service.conftest import Service

pytestmark = pytest.mark.kernel

TEST_IMG = "busybox"
SECOND = 1000000000


def wait_on_condition(condition: Callable[[], bool], delay: float = 0.1,
                      timeout: float = 40) -> None:
    """docker-py's tests/helpers.py wait_on_condition."""
    start_time = time.time()
    while not condition():
        if time.time() - start_time > timeout:
            raise AssertionError(f"Timeout: {condition}")
        time.sleep(delay)


def wait_on_health_status(client, container, status: str) -> None:
    def condition() -> bool:
        res = client.inspect_container(container)
        return res["State"]["Health"]["Status"] == status
    return wait_on_condition(condition)


@pytest.fixture
def api(service: Service) -> Iterator:
    """docker-py's APIClient, and BaseAPIIntegrationTest's tmp_containers removed after."""
    import docker

    client = docker.APIClient(base_url=f"unix://{service.socket}", timeout=60)
    client.tmp_containers = []
    yield client
    for c in client.tmp_containers:
        client.remove_container(c, force=True)
    client.close()


def no_network(client):
    return client.create_host_config(network_mode="none")


def test_healthcheck_shell_command(api) -> None:
    container = api.create_container(
        TEST_IMG, "top", healthcheck={"test": 'echo "hello world"'},
        host_config=no_network(api))
    api.tmp_containers.append(container)

    res = api.inspect_container(container)
    assert res["Config"]["Healthcheck"]["Test"] == ["CMD-SHELL", 'echo "hello world"']


def test_healthcheck_passes(api) -> None:
    container = api.create_container(
        TEST_IMG, "top", healthcheck={
            "test": "true",
            "interval": 1 * SECOND,
            "timeout": 1 * SECOND,
            "retries": 1,
        }, host_config=no_network(api))
    api.tmp_containers.append(container)
    api.start(container)
    wait_on_health_status(api, container, "healthy")


def test_healthcheck_fails(api) -> None:
    container = api.create_container(
        TEST_IMG, "top", healthcheck={
            "test": "false",
            "interval": 1 * SECOND,
            "timeout": 1 * SECOND,
            "retries": 1,
        }, host_config=no_network(api))
    api.tmp_containers.append(container)
    api.start(container)
    wait_on_health_status(api, container, "unhealthy")


def test_healthcheck_start_period(api) -> None:
    container = api.create_container(
        TEST_IMG, "top", healthcheck={
            "test": "echo 'x' >> /counter.txt && "
                    "test `cat /counter.txt | wc -l` -ge 3",
            "interval": 1 * SECOND,
            "timeout": 1 * SECOND,
            "retries": 1,
            "start_period": 3 * SECOND,
        }, host_config=no_network(api))

    api.tmp_containers.append(container)
    api.start(container)
    wait_on_health_status(api, container, "healthy")


# --- beyond docker-py's file: the docker CLI's view of it ---------------------------------------


def test_the_docker_cli_sees_health(service: Service) -> None:
    cid = service.ok("run", "-d", "--network", "none", "--health-cmd", "test -f /ok",
                     "--health-interval", "200ms", "--health-retries", "1", "busybox",
                     "sleep", "60").strip()
    try:
        wait_on_condition(lambda: "(unhealthy)" in service.ok(
            "ps", "--filter", f"id={cid}", "--format", "{{.Status}}"), timeout=15)
        assert service.ok("ps", "-q", "--no-trunc", "--filter", "health=unhealthy").split() \
            == [cid]
        service.ok("exec", cid, "touch", "/ok")
        wait_on_condition(lambda: service.ok(
            "inspect", "-f", "{{.State.Health.Status}}", cid).strip() == "healthy", timeout=15)
        assert service.ok("ps", "-q", "--no-trunc", "--filter", "health=healthy").split() \
            == [cid]
        assert service.ok("inspect", "-f", "{{json .Config.Healthcheck.Test}}", cid).strip() \
            == '["CMD-SHELL","test -f /ok"]'
        events = service.ok("events", "--since", "0", "--until", str(int(time.time()) + 1),
                            "--filter", f"container={cid}", "--filter", "event=health_status",
                            "--format", "{{.Action}}").split("\n")
        assert [e for e in events if e] == ["health_status: unhealthy",
                                            "health_status: healthy"]
    finally:
        service.ok("rm", "-f", cid)


def test_no_healthcheck_and_bad_values(service: Service) -> None:
    out = service.docker("create", "--health-interval", "10us", "busybox", "true")
    assert out.returncode != 0
    assert "Interval in Healthcheck cannot be less than 1ms" in out.stderr
    cid = service.ok("create", "--no-healthcheck", "busybox", "true").strip()
    try:
        assert service.ok("inspect", "-f", "{{json .Config.Healthcheck}}", cid).strip() == \
            '{"Test":["NONE"]}'
    finally:
        service.ok("rm", cid)
