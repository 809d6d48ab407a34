"""Registry decisions that need no registry: references, platforms, missing layers,
credentials files, challenges."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from adapters.registry import auth
from adapters.registry.reference import is_local, parse, registry_host
from core.distribution import choose_platform, missing_layers, mount_source
from core.errors import BadInput
from core.images import chain_id


@pytest.mark.parametrize("text,registry,repository,tag,digest,local", [
    ("busybox", "docker.io", "library/busybox", "latest", None, "busybox:latest"),
    ("busybox:1.36", "docker.io", "library/busybox", "1.36", None, "busybox:1.36"),
    ("user/app", "docker.io", "user/app", "latest", None, "user/app:latest"),
    ("docker.io/library/busybox", "docker.io", "library/busybox", "latest", None,
     "busybox:latest"),
    ("localhost:5000/x", "localhost:5000", "x", "latest", None, "localhost:5000/x:latest"),
    ("localhost/x:v1", "localhost", "x", "v1", None, "localhost/x:v1"),
    ("127.0.0.1:5000/a/b:t", "127.0.0.1:5000", "a/b", "t", None, "127.0.0.1:5000/a/b:t"),
    ("ghcr.io/o/x", "ghcr.io", "o/x", "latest", None, "ghcr.io/o/x:latest"),
    ("busybox@sha256:" + "a" * 64, "docker.io", "library/busybox", None, "sha256:" + "a" * 64,
     None),
])
def test_references_follow_dockers_rules(text: str, registry: str, repository: str,
                                         tag: str | None, digest: str | None,
                                         local: str | None) -> None:
    ref = parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag,
                                                                   digest)
    assert ref.local_tag == local
    assert ref.api_host == ("registry-1.docker.io" if registry == "docker.io" else registry)


@pytest.mark.parametrize("text", ["Busybox", "x@sha256:abc", "a//b", "x:", "-x", "x@md5:" +
                                  "a" * 32])
def test_bad_references_are_refused(text: str) -> None:
    with pytest.raises(BadInput):
        parse(text)


def test_hosts_and_plain_http() -> None:
    assert registry_host("https://index.docker.io/v1/") == "docker.io"
    assert registry_host("localhost:5000") == "localhost:5000"
    assert is_local("127.0.0.1:5000") and is_local("localhost") and is_local("[::1]:5000")
    assert not is_local("registry.example:5000") and not is_local("10.0.0.1:5000")
    with pytest.raises(BadInput):
        registry_host("a b")


INDEX = [
    {"digest": "sha256:arm7", "platform": {"os": "linux", "architecture": "arm",
                                           "variant": "v7"}},
    {"digest": "sha256:arm64", "platform": {"os": "linux", "architecture": "arm64",
                                            "variant": "v8"}},
    {"digest": "sha256:amd64", "platform": {"os": "linux", "architecture": "amd64"}},
    {"digest": "sha256:win", "platform": {"os": "windows", "architecture": "amd64"}},
]


def test_platform_choice() -> None:
    assert choose_platform(INDEX, "linux/amd64")["digest"] == "sha256:amd64"
    assert choose_platform(INDEX, "linux/arm64")["digest"] == "sha256:arm64"
    assert choose_platform(INDEX, "linux/arm/v7")["digest"] == "sha256:arm7"
    assert choose_platform(INDEX, "windows/amd64")["digest"] == "sha256:win"
    assert choose_platform(INDEX, "linux/s390x") is None
    with pytest.raises(BadInput):
        choose_platform(INDEX, "a/b/c/d")


def test_only_missing_chains_are_fetched() -> None:
    ids = ["sha256:" + c * 64 for c in "abc"]
    first = chain_id(None, ids[0])
    assert missing_layers(ids, []) == [0, 1, 2]
    assert missing_layers(ids, [first]) == [1, 2]
    assert missing_layers(ids, [ids[1]]) == [0, 1, 2]  # a diff_id alone is not a chain


def test_mount_source_is_another_repo_of_the_same_registry() -> None:
    history = [{"registry": "r:5000", "repository": "a"},
               {"registry": "other", "repository": "b"},
               {"registry": "r:5000", "repository": "c", "uncompressed": False}]
    assert mount_source(history, "r:5000", "x") == "a"
    assert mount_source(history, "r:5000", "a") is None


def test_credentials_in_docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    path = auth.config_path(str(tmp_path))
    assert path == str(tmp_path / "config.json")
    (tmp_path / "config.json").write_text(json.dumps({"credHelpers": {"x": "y"}}))
    auth.store(path, "localhost:5000", auth.Credentials("u", "p:w"))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    doc = json.loads(Path(path).read_text())
    assert doc["credHelpers"] == {"x": "y"}  # kept
    assert doc["auths"]["localhost:5000"]["auth"] == "dTpwOnc="  # base64("u:p:w")
    assert auth.load(path, "localhost:5000") == auth.Credentials("u", "p:w")
    assert auth.erase(path, "localhost:5000") and not auth.erase(path, "localhost:5000")
    assert auth.load(path, "localhost:5000") is None
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "d"))
    assert auth.config_path("/elsewhere") == str(tmp_path / "d" / "config.json")


def test_challenges() -> None:
    c = auth.parse_challenge('Bearer realm="https://auth.example/token",'
                             'service="registry.example",scope="repository:a/b:pull,push"')
    assert c is not None and c.scheme == "bearer"
    assert c.params == {"realm": "https://auth.example/token", "service": "registry.example",
                        "scope": "repository:a/b:pull,push"}
    basic = auth.parse_challenge('Basic realm="x"')
    assert basic is not None and basic.scheme == "basic"


def test_plain_http_only_for_this_machine_or_when_asked() -> None:
    from adapters.registry.client import Client

    assert Client("127.0.0.1:5000", "x").scheme == "http"
    assert Client("localhost", "x").scheme == "http"
    assert Client("registry.example:5000", "x").scheme == "https"
    assert Client("registry.example:5000", "x", insecure=True).scheme == "http"
    assert Client("r.example", "a/b", actions=("pull", "push")).scopes == \
        ["repository:a/b:pull,push"]
