"""docker-py's cases for rename, update, wait(condition), stats, prune and df (restated from
its integration tests: api_container_test's RenameContainerTest, WaitTest, PruneTest,
GetContainerStatsTest, ContainerUpdateTest; models_containers_test's test_rename,
test_stats, test_wait; api_image_test's PruneImagesTest; client_test's test_info, test_df),
and the docker CLI's rename, update, wait, stats, container/image/system prune and system
df, against `lamina serve`. Containers run with --network none."""

from __future__ import annotations

import json

import pytest
import requests

from tests.service.conftest import Service

pytestmark = pytest.mark.kernel

def _host(client, **kw):
    return client.api.create_host_config(network_mode="none", **kw)


def test_rename_container(service: Service) -> None:
    client = service.client()
    api = client.api
    res = api.create_container("busybox", "true", host_config=_host(client))
    api.rename(res, "hong_meiling")
    assert api.inspect_container(res["Id"])["Name"] == "/hong_meiling"
    api.remove_container(res)


def test_models_rename(service: Service) -> None:
    client = service.client()
    container = client.containers.run("busybox", "echo hello", name="test1", detach=True,
                                      network_mode="none")
    assert container.name == "test1"
    container.rename("test2")
    container.reload()
    assert container.name == "test2"
    container.remove(force=True)


def test_wait_with_condition(service: Service) -> None:
    client = service.client()
    api = client.api
    ctnr = api.create_container("busybox", "true", host_config=_host(client))
    with pytest.raises(requests.exceptions.ConnectionError):
        api.wait(ctnr, condition="removed", timeout=1)
    api.remove_container(ctnr)
    ctnr = api.create_container("busybox", ["sleep", "3"],
                                host_config=_host(client, auto_remove=True))
    api.start(ctnr)
    assert api.wait(ctnr, condition="removed", timeout=15)["StatusCode"] == 0


def test_models_wait(service: Service) -> None:
    client = service.client()
    for code in (0, 1):
        container = client.containers.run("busybox", f"sh -c 'exit {code}'", detach=True,
                                          network_mode="none")
        assert container.wait()["StatusCode"] == code
        container.remove()


def test_prune_containers(service: Service) -> None:
    client = service.client()
    api = client.api
    container1 = api.create_container("busybox", ["sh", "-c", "echo hello > /data.txt"],
                                      host_config=_host(client))
    container2 = api.create_container("busybox", ["sleep", "9999"], host_config=_host(client))
    api.start(container1)
    api.start(container2)
    api.wait(container1)
    result = api.prune_containers()
    assert container1["Id"] in result["ContainersDeleted"]
    assert result["SpaceReclaimed"] > 0
    assert container2["Id"] not in result["ContainersDeleted"]
    api.remove_container(container2, force=True)


def test_container_stats(service: Service) -> None:
    client = service.client()
    api = client.api
    container = api.create_container("busybox", ["sleep", "60"], host_config=_host(client))
    api.start(container)
    response = api.stats(container, stream=0)
    for key in ["read", "networks", "precpu_stats", "cpu_stats", "memory_stats",
                "blkio_stats"]:
        assert key in response
    stream = api.stats(container, decode=True)
    chunk = next(stream)
    assert isinstance(chunk, dict) and "cpu_stats" in chunk
    model = client.containers.get(container["Id"])
    assert "memory_stats" in model.stats(stream=False)
    api.kill(container)
    api.remove_container(container)


def test_update_container(service: Service) -> None:
    client = service.client()
    api = client.api
    container = api.create_container("busybox", "top",
                                     host_config=_host(client, mem_limit=400 * 1024 * 1024))
    api.start(container)
    result = api.update_container(container, mem_limit=300 * 1024 * 1024)
    assert result == {"Warnings": []}
    assert api.inspect_container(container)["HostConfig"]["Memory"] == 300 * 1024 * 1024
    import docker

    with pytest.raises(docker.errors.APIError, match="BlkioWeight") as refused:
        api.update_container(container, blkio_weight=300)
    assert refused.value.status_code == 400
    api.remove_container(container, force=True)


def test_prune_images(service: Service) -> None:
    """api_image_test's PruneImagesTest, with a stand-in hello-world made here."""
    client = service.client()
    api = client.api
    ctnr = api.create_container("busybox", ["sleep", "9999"], host_config=_host(client))
    maker = api.create_container("busybox", ["sh", "-c", "echo hi > /hello"],
                                 host_config=_host(client))
    api.start(maker)
    api.wait(maker)
    api.commit(maker, "hello-world", "latest")
    api.remove_container(maker)
    img_id = api.inspect_image("hello-world")["Id"]
    result = api.prune_images()
    assert img_id not in [img.get("Deleted") for img in result.get("ImagesDeleted") or []]
    result = api.prune_images({"dangling": False})
    assert result["SpaceReclaimed"] > 0
    assert "hello-world:latest" in [img.get("Untagged") for img in result["ImagesDeleted"]]
    assert img_id in [img.get("Deleted") for img in result["ImagesDeleted"]]
    assert any("busybox:latest" in i.tags for i in client.images.list())  # in use: kept
    api.remove_container(ctnr, force=True)


def test_info_and_df(service: Service) -> None:
    client = service.client()
    info = client.info()
    assert "ID" in info and "Name" in info and "Containers" in info and "Debug" in info
    box = client.containers.run("busybox", ["sleep", "60"], detach=True, network_mode="none")
    data = client.df()
    for key in ("LayersSize", "Containers", "Volumes", "Images"):
        assert key in data
    [mine] = [c for c in data["Containers"] if c["Id"] == box.id]
    assert mine["SizeRw"] == 0 and mine["SizeRootFs"] > 0
    assert data["LayersSize"] > 0 and data["Images"][0]["Containers"] >= 1
    box.remove(force=True)


def test_docker_cli(service: Service) -> None:
    docker = service.ok
    cid = docker("run", "-d", "--network", "none", "--name", "cli1", "-m", "64m", "busybox",
                 "sleep", "60").strip()
    assert docker("rename", "cli1", "cli2") == ""
    assert json.loads(docker("inspect", "cli2"))[0]["Id"] == cid
    out = service.docker("rename", "cli2", "cli2")
    assert out.returncode != 0 and "same name as its current name" in out.stderr
    assert docker("update", "--memory", "32m", "--pids-limit", "40", "cli2") == "cli2\n"
    host = json.loads(docker("inspect", "cli2"))[0]["HostConfig"]
    assert (host["Memory"], host["PidsLimit"]) == (32 << 20, 40)
    out = service.docker("update", "--blkio-weight", "500", "cli2")
    assert out.returncode != 0 and "BlkioWeight" in out.stderr
    stats = docker("stats", "--no-stream", "cli2").splitlines()
    assert stats[0].split()[:3] == ["CONTAINER", "ID", "NAME"] and "cli2" in stats[1]
    docker("kill", "cli2")
    assert docker("wait", "cli2") == "137\n"
    docker("run", "--network", "none", "--name", "cli3", "busybox", "true")
    out = docker("container", "prune", "-f")
    assert out.startswith("Deleted Containers:\n") and "Total reclaimed space" in out
    assert docker("ps", "-aq") == ""
    df = docker("system", "df").splitlines()
    assert df[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    out = docker("system", "prune", "-f")
    assert "Total reclaimed space" in out
    events = service.events()
    assert any(e["type"] == "ContainerRenamed" for e in events)
    assert any(e["type"] == "ContainerUpdated" and e["data"]["applied"] for e in events)


def test_restart_policy_update(service: Service) -> None:
    """api_container_test's ContainerUpdateTest.test_restart_policy_update (the policy is
    core/restart.py's, judged there; update records it)."""
    client = service.client()
    api = client.api
    container = api.create_container(
        "busybox", ["sleep", "60"],
        host_config=_host(client, restart_policy={"MaximumRetryCount": 0, "Name": "always"}))
    api.start(container)
    new = {"MaximumRetryCount": 42, "Name": "on-failure"}
    api.update_container(container, restart_policy=new)
    policy = api.inspect_container(container)["HostConfig"]["RestartPolicy"]
    assert (policy["MaximumRetryCount"], policy["Name"]) == (42, "on-failure")
    api.remove_container(container, force=True)
