"""docker-compose 1.29 (Debian's `docker-compose`, on docker-py) drives `lamina serve`: a
project of two services and a named volume, brought up, listed, logged, reached and
brought down, every step in lamina's audit log.

`web` is busybox httpd serving a file it writes into the named volume, its port 80
published on 18080; `client` fetches http://web/index.html by the service's name (the
user-defined network's DNS) until it answers, then sleeps. lamina serve, its bridges, rules
and containers live in a network namespace this module makes (test_networks_api's
boxed_service); the published port is fetched on 127.0.0.1 from inside it.

Twice: with COMPOSE_API_VERSION=1.41 and at the version compose negotiates. docker-compose
1.x reads a container's short id in its network Aliases (docker put it there before API
1.45) and, when it is missing, disconnects the container and connects it again before
starting it: at 1.41 lamina answers as docker did then, at 1.51 compose goes through
`network disconnect`/`connect`."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kernel.runtime_env import Lamina
from tests.kernel.test_network_plumbing import Box
from tests.service.conftest import Service
from tests.service.test_networks_api import answer, boxed_service

pytestmark = pytest.mark.kernel

COMPOSE = shutil.which("docker-compose") or "/usr/bin/docker-compose"
PROJECT = "lamtest"
PORT = 18080
COMPOSE_FILE = f"""\
version: "3.8"
services:
  web:
    image: busybox
    command: ["sh", "-c", "echo hello-from-web > /www/index.html && exec httpd -f -p 80 -h /www"]
    ports: ["{PORT}:80"]
    volumes: ["site:/www"]
  client:
    image: busybox
    command:
      - sh
      - -c
      - until wget -q -O - http://web/index.html; do sleep 0.5; done; exec sleep 300
    depends_on: [web]
volumes:
  site:
"""


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, Box]]:
    if not Path(COMPOSE).exists():
        pytest.fail("no docker-compose: make test installs Debian's")
    with boxed_service(tmp_path_factory.mktemp("compose"), busybox=True) as served:
        yield served


def compose(service: Service, project: Path, *argv: str, timeout: float = 120
            ) -> subprocess.CompletedProcess[str]:
    env = {**service.env}
    version = (project / "api-version").read_text()
    if version:
        env["COMPOSE_API_VERSION"] = version
    return subprocess.run([COMPOSE, "-H", f"unix://{service.socket}", "-p", PROJECT, *argv],
                          cwd=project, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def ok(service: Service, project: Path, *argv: str) -> str:
    done = compose(service, project, *argv)
    assert done.returncode == 0, (argv, done.stdout, done.stderr)
    return done.stdout


@pytest.mark.parametrize("api_version", ["1.41", ""], ids=["api-1.41", "api-negotiated"])
def test_a_project_up_reached_and_down(box: tuple[Service, Box], tmp_path: Path,
                                       api_version: str) -> None:
    """At 1.41 compose finds its container's short id among its aliases and starts it; at
    the version it negotiates (lamina's 1.51) it doesn't, so it disconnects the container
    from the project's network and connects it again first, as it does with docker's."""
    service, b = box
    project = tmp_path / "project"
    project.mkdir()
    (project / "docker-compose.yml").write_text(COMPOSE_FILE)
    (project / "api-version").write_text(api_version)
    seq = int(Lamina(service.root).events()[-1]["seq"])
    try:
        ok(service, project, "up", "-d")
        rows = {line.split()[0]: line for line in ok(service, project, "ps").splitlines()[2:]}
        assert set(rows) == {f"{PROJECT}_web_1", f"{PROJECT}_client_1"}
        assert all(" Up " in row for row in rows.values()), rows
        assert f"0.0.0.0:{PORT}->80/tcp" in rows[f"{PROJECT}_web_1"]

        # the published port answers on the host's loopback (inside the namespace)
        assert answer(b, f"http://127.0.0.1:{PORT}/index.html") == "hello-from-web"
        # and client reached web by its service's name
        deadline = time.monotonic() + 30
        while "hello-from-web" not in (logs := ok(service, project, "logs", "client")):
            assert time.monotonic() < deadline, logs
            time.sleep(0.5)

        api = service.client().api
        [web] = api.containers(filters={"label": "com.docker.compose.service=web"})
        network = f"{PROJECT}_default"
        assert list(web["NetworkSettings"]["Networks"]) == [network]
        members = api.inspect_network(network)["Containers"]
        assert sorted(m["Name"] for m in members.values()) == [f"{PROJECT}_client_1",
                                                                f"{PROJECT}_web_1"]
        assert api.inspect_volume(f"{PROJECT}_site")["Name"] == f"{PROJECT}_site"
        api.close()
    finally:
        down = compose(service, project, "down", "-v", "--timeout", "1")
    assert down.returncode == 0, (down.stdout, down.stderr)

    api = service.client().api
    assert api.containers(all=True, filters={"label": f"com.docker.compose.project={PROJECT}"}) \
        == []
    assert f"{PROJECT}_default" not in [n["Name"] for n in api.networks()]
    assert f"{PROJECT}_site" not in [v["Name"] for v in api.volumes()["Volumes"] or []]
    api.close()

    # every step that changed something is in the audit log, as asked through the API
    done = [e for e in Lamina(service.root).events() if int(e["seq"]) > seq]
    types = [e["type"] for e in done]
    for kind, count in (("NetworkCreated", 1), ("VolumeCreated", 1), ("ContainerCreated", 2),
                        ("ContainerStarted", 2), ("ContainerRemoved", 2),
                        ("VolumeRemoved", 1), ("NetworkRemoved", 1)):
        assert types.count(kind) == count, (kind, types)
    assert types.count("ContainerStopped") + types.count("ContainerKilled") == 2, types
    assert "CommandRejected" not in types
    commands = {e["meta"].get("command") for e in done}
    assert {"network create", "volume create", "create", "start", "stop", "rm",
            "network rm", "volume rm"} <= commands, commands
    if not api_version:
        assert types.count("ContainerDisconnected") == types.count("ContainerConnected") == 2
    assert {e["meta"].get("via") for e in done} == {"docker-api"}
