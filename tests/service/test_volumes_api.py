"""The Docker API's /volumes against `lamina serve`, through docker-py and the docker CLI.

The first part is docker-py's own volume tests (tests/integration/api_volume_test.py and
models_volumes_test.py of github.com/docker/docker-py), case for case with their names and
assertions; this suite has no mechanism to run docker-py's files themselves (their base
classes want a daemon of their own), so they are restated here against the service. Then
what they leave out: filters, errors in docker's words and codes, events, the audit."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import pytest

from tests.service.conftest import Service

pytestmark = pytest.mark.kernel


@pytest.fixture
def tmp_volumes(service: Service) -> Iterator[list[str]]:
    """Names to remove afterwards (docker-py's BaseAPIIntegrationTest.tmp_volumes): gone
    already is fine (docker-py's remove_volume never sends its `force`)."""
    import docker

    names: list[str] = []
    yield names
    client = service.client().api
    for name in names:
        with contextlib.suppress(docker.errors.APIError):
            client.remove_volume(name)


@pytest.fixture
def api(service: Service):
    return service.client().api


# --- docker-py: api_volume_test.TestVolumes --------------------------------------------------


def test_create_volume(api, tmp_volumes) -> None:
    name = "perfectcherryblossom"
    tmp_volumes.append(name)
    result = api.create_volume(name)
    assert "Name" in result
    assert result["Name"] == name
    assert "Driver" in result
    assert result["Driver"] == "local"


def test_create_volume_invalid_driver(api) -> None:
    import docker

    driver_name = "this-plugin-does-not-exist"
    with pytest.raises(docker.errors.APIError) as cm:
        api.create_volume("perfectcherryblossom", driver_name)
    assert cm.value.response.status_code in (404, 400)


def test_list_volumes(api, tmp_volumes) -> None:
    name = "imperishablenight"
    tmp_volumes.append(name)
    volume_info = api.create_volume(name)
    result = api.volumes()
    assert "Volumes" in result
    volumes = result["Volumes"]
    assert volume_info in volumes


def test_inspect_volume(api, tmp_volumes) -> None:
    name = "embodimentofscarletdevil"
    tmp_volumes.append(name)
    volume_info = api.create_volume(name)
    result = api.inspect_volume(name)
    assert volume_info == result


def test_inspect_nonexistent_volume(api) -> None:
    import docker

    name = "embodimentofscarletdevil"
    with pytest.raises(docker.errors.NotFound):
        api.inspect_volume(name)


def test_remove_volume(api, tmp_volumes) -> None:
    name = "shootthebullet"
    tmp_volumes.append(name)
    api.create_volume(name)
    api.remove_volume(name)


def test_force_remove_volume(api, tmp_volumes) -> None:
    name = "shootthebullet"
    tmp_volumes.append(name)
    api.create_volume(name)
    api.remove_volume(name, force=True)


def test_prune_volumes(api, tmp_volumes) -> None:
    v = api.create_volume()
    tmp_volumes.append(v["Name"])
    result = api.prune_volumes()
    assert v["Name"] in result["VolumesDeleted"]


def test_remove_nonexistent_volume(api) -> None:
    import docker

    name = "shootthebullet"
    with pytest.raises(docker.errors.NotFound):
        api.remove_volume(name)


# --- docker-py: models_volumes_test.VolumesTest ------------------------------------------------


def test_create_get(service: Service, tmp_volumes) -> None:
    client = service.client()
    volume = client.volumes.create("dockerpytest_1", driver="local",
                                   labels={"labelkey": "labelvalue"})
    tmp_volumes.append(volume.id)
    assert volume.id
    assert volume.name == "dockerpytest_1"
    assert volume.attrs["Labels"] == {"labelkey": "labelvalue"}
    volume = client.volumes.get(volume.id)
    assert volume.name == "dockerpytest_1"


def test_list_remove(service: Service, tmp_volumes) -> None:
    client = service.client()
    volume = client.volumes.create("dockerpytest_1")
    tmp_volumes.append(volume.id)
    assert volume in client.volumes.list()
    assert volume in client.volumes.list(filters={"name": "dockerpytest_"})
    assert volume not in client.volumes.list(filters={"name": "foobar"})
    volume.remove()
    assert volume not in client.volumes.list()


# --- beyond docker-py's --------------------------------------------------------------------


def test_shapes_filters_and_errors_are_dockers(service: Service, api, tmp_volumes) -> None:
    import docker

    tmp_volumes += ["keep-a", "keep-b"]
    a = api.create_volume("keep-a", labels={"app": "web"})
    assert set(a) == {"CreatedAt", "Driver", "Labels", "Mountpoint", "Name", "Options",
                      "Scope"}
    assert a["Mountpoint"] == str(service.root / "volumes" / "keep-a" / "_data")
    assert (a["Scope"], a["Options"]) == ("local", {})
    assert api.create_volume("keep-a", labels={"other": "x"}) == a  # docker: as it is
    api.create_volume("keep-b")
    assert [v["Name"] for v in api.volumes(filters={"label": "app=web"})["Volumes"]] == \
        ["keep-a"]
    assert api.volumes(filters={"dangling": True})["Warnings"] == []
    with pytest.raises(docker.errors.APIError) as err:
        api.volumes(filters={"colour": "red"})
    assert (err.value.status_code, err.value.explanation) == (400, "invalid filter 'colour'")
    with pytest.raises(docker.errors.NotFound) as err:
        api.inspect_volume("nosuch")
    assert err.value.explanation == "get nosuch: no such volume"
    for bad, message in (({"Name": "a/b"}, 'create a/b: "a/b" includes invalid characters'),
                         ({"Name": "x1", "DriverOpts": {"type": "tmpfs"}},
                          "volume option 'type'"),
                         ({"Name": "x1", "ClusterVolumeSpec": {"Group": "g"}},
                          "ClusterVolumeSpec is not supported by lamina yet")):
        status, doc = _post(service, "/volumes/create", bad)
        assert status == 400 and doc["message"].startswith(message), doc
    # force: a missing one is no error (by hand: docker-py's remove_volume drops `force`)
    deleted = service.raw(b"DELETE /v1.51/volumes/nosuch?force=1 HTTP/1.1\r\nHost: x\r\n\r\n",
                          read=12)
    assert deleted.startswith(b"HTTP/1.1 204")
    deleted = service.raw(b"DELETE /v1.51/volumes/nosuch HTTP/1.1\r\nHost: x\r\n\r\n",
                          read=12)
    assert deleted.startswith(b"HTTP/1.1 404")


def test_prune_filters_and_what_it_reclaims(service: Service, api) -> None:
    anon = api.create_volume(labels={"batch": "1"})["Name"]
    named = api.create_volume("prunable", labels={"batch": "1"})["Name"]
    with open(service.root / "volumes" / anon / "_data" / "f", "w") as f:
        f.write("x" * 4096)
    assert api.prune_volumes(filters={"label": "batch=2"}) == {"VolumesDeleted": [],
                                                               "SpaceReclaimed": 0}
    assert api.prune_volumes(filters={"label": "batch=1"}) == {"VolumesDeleted": [anon],
                                                               "SpaceReclaimed": 4096}
    assert api.prune_volumes(filters={"all": "true", "label": "batch"}) == \
        {"VolumesDeleted": [named], "SpaceReclaimed": 0}


def test_the_docker_cli_on_volumes(service: Service) -> None:
    assert service.ok("volume", "create", "--label", "by=cli", "clivol").strip() == "clivol"
    assert "clivol" in service.ok("volume", "ls", "-q").split()
    [doc] = json.loads(service.ok("volume", "inspect", "clivol"))
    assert (doc["Name"], doc["Labels"], doc["Driver"]) == ("clivol", {"by": "cli"}, "local")
    out = service.docker("volume", "rm", "nosuch")
    assert out.returncode == 1 and "get nosuch: no such volume" in out.stderr
    assert service.ok("volume", "rm", "clivol").strip() == "clivol"
    anon = service.ok("volume", "create").strip()
    out = service.ok("volume", "prune", "-f")
    assert anon in out and "Total reclaimed space: 0B" in out


def test_volume_commands_are_recorded_as_the_callers_and_seen_in_events(service: Service,
                                                                       api) -> None:
    import time

    start = int(time.time()) - 1
    api.create_volume("evvol")
    api.remove_volume("evvol")
    recorded = [e for e in service.events() if e["type"].startswith("Volume")
                and e["stream"] == "volume:evvol"]
    assert [e["type"] for e in recorded] == ["VolumeCreated", "VolumeRemoved"]
    assert {e["meta"]["via"] for e in recorded} == {"docker-api"}
    assert [e["meta"]["command"] for e in recorded] == ["volume create", "volume rm"]
    seen = [m for m in api.events(since=start, until=int(time.time()) + 1, decode=True,
                                  filters={"type": "volume"})
            if m["Actor"]["ID"] == "evvol"]
    assert [m["Action"] for m in seen] == ["create", "destroy"]
    assert seen[0]["Actor"]["Attributes"]["driver"] == "local"


def _post(service: Service, path: str, body: dict) -> tuple[int, dict]:
    data = json.dumps(body).encode()
    raw = service.raw((f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       f"Content-Length: {len(data)}\r\n\r\n").encode() + data)
    head, _, rest = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(rest) if rest.startswith(b"{") else {}
