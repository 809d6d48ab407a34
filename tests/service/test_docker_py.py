"""docker-py (the `docker` package) against `lamina serve`, and the service's robustness:
malformed and oversized requests, unknown endpoints, clients that leave mid-stream, 50
clients at once. The service stays up, leaks nothing, and the log loses nothing."""

from __future__ import annotations

import concurrent.futures
import json
import os
import socket
import subprocess
import time

import pytest

from tests.service.conftest import DOCKER, Service

pytestmark = pytest.mark.kernel


def test_docker_py(service: Service) -> None:
    import docker

    client = service.client()
    assert client.ping() and client.version()["ApiVersion"] == "1.51"
    assert client.containers.run("busybox", ["echo", "py"], remove=True) == b"py\n"
    with pytest.raises(docker.errors.ContainerError) as failed:
        client.containers.run("busybox", ["sh", "-c", "exit 2"], remove=True)
    assert failed.value.exit_status == 2
    box = client.containers.run("busybox", ["sleep", "100"], detach=True, name="pybox")
    assert client.containers.get("pybox").status == "running"
    result = box.exec_run(["sh", "-c", "echo ex; exit 3"])
    assert (result.exit_code, result.output) == (3, b"ex\n")
    box.pause()
    box.reload()
    assert box.status == "paused"
    box.unpause()
    box.stop(timeout=0)
    assert box.wait()["StatusCode"] == 137
    image = box.commit("pyimg", "t1")
    assert "pyimg:t1" in image.tags
    assert any("pyimg:t1" in i.tags for i in client.images.list())
    box.remove()
    client.images.remove("pyimg:t1")
    with pytest.raises(docker.errors.NotFound):
        client.containers.get("pybox")
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get("nosuch:1")
    events = list(client.events(since=0, until=int(time.time()) + 1, decode=True))
    assert events[0]["Actor"]["Attributes"]["seq"] == "1"


def _body(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    return status, json.loads(body) if body.startswith(b"{") else {}


def _post(path: str, body: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def _server_fds(service: Service) -> int:
    return len(os.listdir(f"/proc/{service.proc.pid}/fd"))


def _baseline_fds(service: Service) -> int:
    """The service's descriptors once it has run a container: what it opens on its first
    such request and keeps (the log's three files, a pipe) is no leak of a later one (a
    test run first saw them as one)."""
    service.ok("run", "--rm", "busybox", "true")
    return _server_fds(service)


def test_bad_requests_get_docker_errors(service: Service) -> None:
    status, doc = _body(service.raw(_post("/v1.51/containers/create", b"{not json")))
    assert status == 400 and "invalid JSON" in doc["message"]
    status, doc = _body(service.raw(b"GET /v1.51/no/such/thing HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert status == 404 and "page not found" in doc["message"]
    big = b'{"Image": "' + b"x" * (2 << 20) + b'"}'
    status, doc = _body(service.raw(_post("/containers/create", big)))
    assert status == 413 and "too large" in doc["message"]
    status, doc = _body(service.raw(_post("/containers/create", b'{"Image": "nosuch"}')))
    assert status == 404 and doc["message"] == "No such image: nosuch"
    garbage = service.raw(b"NOT HTTP AT ALL\r\n\r\n")
    assert garbage == b"" or garbage.startswith(b"HTTP/1.1 400")
    assert service.alive() and service.ok("version")


def test_client_gone_mid_attach_and_mid_save(service: Service) -> None:
    before = _baseline_fds(service)
    proc = subprocess.Popen([DOCKER, "run", "--name", "left", "busybox", "sh", "-c",
                             "while [ ! -e /go ]; do sleep 0.05; done; echo still here"],
                            env=service.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # the client goes once its container runs (attached), before the container writes
    deadline = time.monotonic() + 30
    while service.docker("inspect", "-f", "{{.State.Running}}", "left").stdout.strip() \
            != "true" and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    service.ok("exec", "left", "touch", "/go")
    assert service.ok("wait", "left").strip() == "0"  # the container ran on to its end
    assert service.ok("logs", "left") == "still here\n"
    service.ok("rm", "left")
    with socket.socket(socket.AF_UNIX) as s:  # a save read for a moment, then dropped
        s.connect(service.socket)
        s.sendall(b"GET /v1.51/images/get?names=busybox HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(1024).startswith(b"HTTP/1.1 200")
    service.ok("run", "-d", "--name", "waited", "busybox", "sleep", "300")
    watchers = [subprocess.Popen([DOCKER, *argv, "waited"], env=service.env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for argv in (["wait"], ["logs", "-f"], ["stats"])]
    time.sleep(0.8)
    for w in watchers:  # clients that give up on long answers
        w.kill()
        w.wait()
    service.ok("rm", "-f", "waited")
    saves = [e for e in service.events() if e["type"] == "ImageSaved"]
    time.sleep(0.5)
    assert [e for e in service.events() if e["type"] == "ImageSaved"] == saves
    assert os.listdir(service.root / "tmp") == []
    assert service.alive() and _server_fds(service) <= before + 2


def test_fifty_clients_at_once(service: Service) -> None:
    before = _baseline_fds(service)
    seq_before = len(service.events())

    def one(i: int) -> str:
        client = service.client()
        try:
            assert client.ping()
            client.api.containers(all=True)  # (list() inspects each: racy by design)
            client.images.list()
            if i % 5 == 0:
                c = client.containers.create("busybox", ["true"], name=f"many{i}")
                c.remove()
            return "ok"
        finally:
            client.close()

    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        results = list(pool.map(one, range(50)))
    assert results == ["ok"] * 50
    events = service.events()[seq_before:]
    created = [e for e in events if e["type"] == "ContainerCreated"]
    removed = [e for e in events if e["type"] == "ContainerRemoved"]
    assert len(created) == len(removed) == 10
    assert [e["seq"] for e in service.events()] == list(range(1, len(service.events()) + 1))
    time.sleep(0.3)
    assert service.alive() and _server_fds(service) <= before + 2
