"""docker-py's own cases for init, stop timeout and log config (tests/integration/
api_container_test.py's CreateContainerTest, models_containers_test.py's run with the none
and json-file drivers), their steps as written there, against `lamina serve` (busybox for
their alpine, no network); then the same options where docker-py has no integration case
(ulimits, stop signal, logs of a none container, rotation) and through the docker CLI."""

from __future__ import annotations

import contextlib
import time

import pytest

from tests.service.conftest import Service

pytestmark = pytest.mark.kernel

TEST_IMG = "busybox"


@pytest.fixture
def api(service: Service):
    import docker

    client = docker.APIClient(base_url=f"unix://{service.socket}", timeout=60)
    made: list = []
    client.made = made  # type: ignore[attr-defined]
    yield client
    for c in made:
        with contextlib.suppress(docker.errors.APIError):
            client.remove_container(c, force=True, v=True)
    client.close()


def _host(api, **kw):
    return api.create_host_config(network_mode="none", **kw)


# --- api_container_test.CreateContainerTest ---------------------------------------------------

def test_valid_log_driver_and_log_opt(api) -> None:
    import docker

    log_config = docker.types.LogConfig(type="json-file", config={"max-file": "100"})
    container = api.create_container(TEST_IMG, ["true"],
                                     host_config=_host(api, log_config=log_config))
    api.made.append(container["Id"])
    api.start(container)
    info = api.inspect_container(container)
    container_log_config = info["HostConfig"]["LogConfig"]
    assert container_log_config["Type"] == log_config.type
    assert container_log_config["Config"] == log_config.config


def test_invalid_log_driver_raises_exception(api) -> None:
    import docker

    log_config = docker.types.LogConfig(type="asdf", config={})
    expected_msgs = [
        "logger: no log driver named 'asdf' is registered",
        'error looking up logging plugin asdf: plugin "asdf" not found',
    ]
    with pytest.raises(docker.errors.APIError) as excinfo:
        container = api.create_container(TEST_IMG, ["true"],
                                         host_config=_host(api, log_config=log_config))
        api.made.append(container["Id"])
        api.start(container)
    assert excinfo.value.explanation in expected_msgs


def test_valid_no_log_driver_specified(api) -> None:
    import docker

    log_config = docker.types.LogConfig(type="", config={"max-file": "100"})
    container = api.create_container(TEST_IMG, ["true"],
                                     host_config=_host(api, log_config=log_config))
    api.made.append(container["Id"])
    api.start(container)
    info = api.inspect_container(container)
    container_log_config = info["HostConfig"]["LogConfig"]
    assert container_log_config["Type"] == "json-file"
    assert container_log_config["Config"] == log_config.config


def test_valid_no_config_specified(api) -> None:
    import docker

    log_config = docker.types.LogConfig(type="json-file", config=None)
    container = api.create_container(TEST_IMG, ["true"],
                                     host_config=_host(api, log_config=log_config))
    api.made.append(container["Id"])
    api.start(container)
    info = api.inspect_container(container)
    container_log_config = info["HostConfig"]["LogConfig"]
    assert container_log_config["Type"] == "json-file"
    assert container_log_config["Config"] == {}


def test_create_with_stop_timeout(api) -> None:
    container = api.create_container(TEST_IMG, ["echo", "test"], stop_timeout=25,
                                     host_config=_host(api))
    api.made.append(container["Id"])
    config = api.inspect_container(container)
    assert config["Config"]["StopTimeout"] == 25


def test_create_with_init(api) -> None:
    ctnr = api.create_container(TEST_IMG, "true", host_config=_host(api, init=True))
    api.made.append(ctnr["Id"])
    config = api.inspect_container(ctnr)
    assert config["HostConfig"]["Init"] is True


# --- models_containers_test.ContainerCollectionTest --------------------------------------------

def test_run_with_none_driver(service: Service) -> None:
    client = service.client()
    out = client.containers.run(TEST_IMG, "echo hello", log_config={"type": "none"},
                                network_mode="none", remove=True)
    assert out is None


def test_run_with_json_file_driver(service: Service) -> None:
    client = service.client()
    out = client.containers.run(TEST_IMG, "echo hello", log_config={"type": "json-file"},
                                network_mode="none", remove=True)
    assert out == b"hello\n"


# --- beyond docker-py's integration cases: the same options, honoured ---------------------------

def test_ulimits_reach_the_process(api) -> None:
    import docker

    ulimits = [docker.types.Ulimit(name="nofile", soft=64, hard=128)]
    c = api.create_container(TEST_IMG, ["sh", "-c", "ulimit -n; ulimit -Hn"],
                             host_config=_host(api, ulimits=ulimits))
    api.made.append(c["Id"])
    api.start(c)
    assert api.wait(c)["StatusCode"] == 0
    assert api.logs(c) == b"64\n128\n"
    assert api.inspect_container(c)["HostConfig"]["Ulimits"] == [
        {"Name": "nofile", "Soft": 64, "Hard": 128}]
    with pytest.raises(docker.errors.APIError) as err:
        api.create_container(TEST_IMG, ["true"], host_config=_host(
            api, ulimits=[docker.types.Ulimit(name="nofiles", soft=1, hard=1)]))
    assert err.value.status_code == 400 and "invalid ulimit type: nofiles" in \
        err.value.explanation.lower()


def test_stop_signal_is_what_stop_sends(api) -> None:
    script = 'trap "echo got USR1; exit 3" USR1; echo ready; while true; do sleep 0.05; done'
    c = api.create_container(TEST_IMG, ["sh", "-c", script], stop_signal="SIGUSR1",
                             host_config=_host(api))
    api.made.append(c["Id"])
    api.start(c)
    deadline = time.monotonic() + 10
    while b"ready" not in api.logs(c):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    api.stop(c, timeout=5)
    info = api.inspect_container(c)
    assert info["State"]["ExitCode"] == 3 and info["Config"]["StopSignal"] == "SIGUSR1"
    assert b"got USR1" in api.logs(c)


def test_stop_timeout_is_stops_default(api) -> None:
    c = api.create_container(TEST_IMG, ["sh", "-c", 'trap "" TERM; echo ready; '
                                        "while true; do sleep 0.05; done"],
                             stop_timeout=1, host_config=_host(api))
    api.made.append(c["Id"])
    api.start(c)
    deadline = time.monotonic() + 10
    while b"ready" not in api.logs(c):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    started = time.monotonic()
    api.stop(c)  # no t: the container's StopTimeout
    assert 0.9 < time.monotonic() - started < 4
    assert api.inspect_container(c)["State"]["ExitCode"] == 137


def test_init_reaps_and_stops(api) -> None:
    c = api.create_container(TEST_IMG, ["sh", "-c", "(sleep 0.1 &); exec sleep 30"],
                             host_config=_host(api, init=True))
    api.made.append(c["Id"])
    api.start(c)
    time.sleep(0.6)
    top = api.top(c)
    assert top["Processes"][0][-1].startswith("/sbin/docker-init"), top
    exec_id = api.exec_create(c, ["ps", "-o", "stat"])["Id"]
    assert b"Z" not in api.exec_start(exec_id)
    api.stop(c, timeout=5)
    assert api.inspect_container(c)["State"]["ExitCode"] == 143


def test_logs_of_a_none_container_are_501(api) -> None:
    import docker

    c = api.create_container(TEST_IMG, ["echo", "hi"], host_config=_host(
        api, log_config=docker.types.LogConfig(type="none")))
    api.made.append(c["Id"])
    api.start(c)
    api.wait(c)
    with pytest.raises(docker.errors.APIError) as err:
        api.logs(c)
    assert err.value.status_code == 501
    assert err.value.explanation == "configured logging driver does not support reading"


def test_rotated_logs_read_in_order(api) -> None:
    import docker

    script = 'i=0; while [ $i -lt 200 ]; do echo "line $i"; i=$((i+1)); done'
    c = api.create_container(TEST_IMG, ["sh", "-c", script], host_config=_host(
        api, log_config=docker.types.LogConfig(type="json-file", config={
            "max-size": "1k", "max-file": "3"})))
    api.made.append(c["Id"])
    api.start(c)
    api.wait(c)
    numbers = [int(line.split()[1]) for line in api.logs(c).decode().splitlines()]
    assert numbers == list(range(numbers[0], 200)) and numbers[0] > 0


def test_docker_cli_flags(service: Service, tmp_path) -> None:
    env = tmp_path / "env"
    env.write_text("# comment\nFROM_FILE=1\n")
    out = service.ok("run", "--rm", "--network", "none", "--init", "--ulimit",
                     "nofile=70:80", "--env-file", str(env), "--stop-signal", "USR2",
                     "--stop-timeout", "3", "busybox", "sh", "-c",
                     "cat /proc/1/cmdline | tr '\\0' ' '; echo; ulimit -n; echo $FROM_FILE")
    assert out.splitlines() == ["/sbin/docker-init -- sh -c cat /proc/1/cmdline | tr '\\0' "
                                "' '; echo; ulimit -n; echo $FROM_FILE ", "70", "1"]
    name = "quiet-cli"
    service.ok("run", "--name", name, "--network", "none", "--log-driver", "none",
               "busybox", "true")
    out = service.docker("logs", name)
    assert out.returncode != 0 and \
        "configured logging driver does not support reading" in out.stderr
    service.ok("rm", name)
