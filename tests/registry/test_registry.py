"""pull, push, login and logout against a real registry (Debian's docker-registry, CNCF
distribution 2.8, started here on 127.0.0.1), with skopeo as the other client, token and
basic auth, and a small fake registry for what a real one never serves (wrong digests, a
multi-platform index, a stalled download)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.kernel import test_storage_support as support
from tests.kernel.runtime_env import LAMINA
from tests.kernel.test_storage_support import Root, lamina_root, require_tool
from tests.registry.registry_env import PASSWORD, USER, RunningRegistry, start_registry

pytestmark = pytest.mark.kernel
bb_tar = support.bb_tar  # fixture


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    require_tool("docker-registry")
    with start_registry(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


@pytest.fixture
def lam(tmp_path: Path, bb_tar: Path) -> Iterator[Root]:
    with lamina_root(tmp_path / "root", bb_tar) as root:
        yield root


def fresh(tmp_path: Path, name: str = "fresh") -> Root:
    return Root(tmp_path / name)


def image_id(root: Root, ref: str) -> str:
    return root.inspect(ref)[0]["Id"]


def fails(root: Root, *argv: str) -> str:
    out = root(*argv)
    assert out.returncode != 0, out.stdout
    assert out.stderr.startswith("lamina: error: ") and len(out.stderr.splitlines()) == 1
    return out.stderr


# --- the real registry -----------------------------------------------------------------------


def test_push_then_pull_into_a_fresh_root_keeps_the_image_id(
        registry: RunningRegistry, lam: Root, tmp_path: Path) -> None:
    ref = f"{registry.host}/lamina/busybox:v1"
    lam.ok("tag", "busybox", ref)
    out = lam.ok("push", ref)
    assert out.splitlines()[0] == f"The push refers to repository [{registry.host}/lamina/busybox]"
    assert out.splitlines()[-1].startswith("v1: digest: sha256:")
    pushed = lam.events_of("Pushed")[-1]
    assert [la["status"] for la in pushed["layers"]] == ["uploaded"]
    again = lam.ok("push", ref)  # the registry has every blob now
    assert "Layer already exists" in again
    new = fresh(tmp_path)
    out = new.ok("pull", ref)
    assert out.splitlines()[-3:] == [f"Digest: {pushed['manifest_digest']}",
                                    f"Status: Downloaded newer image for {ref}", ref]
    assert image_id(new, ref) == image_id(lam, "busybox")
    assert new.inspect(ref)[0]["RootFS"] == lam.inspect("busybox")[0]["RootFS"]
    types = new.event_types()
    assert types == ["PullStarted", "LayerRegistered", "ImageCreated", "ImageTagged",
                     "ImageLoaded", "LayerFetched", "ImagePulled"]
    pulled = new.events_of("ImagePulled")[0]
    assert pulled["manifest_digest"] == pushed["manifest_digest"]
    assert pulled["id"] == image_id(lam, "busybox")[7:]
    out = new.ok("pull", ref)  # nothing to fetch again
    assert "Already exists" in out and f"Status: Image is up to date for {ref}" in out
    assert [e["cached"] for e in new.events_of("LayerFetched")] == [False, True]
    assert new.ok("run", "--rm", ref, "cat", "/etc/passwd").startswith("root:")
    new.ok("replay")
    assert image_id(new, ref) == image_id(lam, "busybox")
    by_digest = fresh(tmp_path, "by-digest")
    pinned = f"{registry.host}/lamina/busybox@{pushed['manifest_digest']}"
    assert by_digest.ok("pull", "-q", pinned).strip() == pinned
    assert by_digest.inspect(image_id(lam, "busybox"))[0]["RepoTags"] == []  # no tag


def test_a_two_layer_image_round_trips_and_mounts_across_repositories(
        registry: RunningRegistry, lam: Root, tmp_path: Path) -> None:
    lam.ok("run", "--name", "c1", "busybox", "sh", "-c", "echo two > /two; rm /etc/group")
    lam.ok("commit", "c1", f"{registry.host}/lamina/two")
    lam.ok("rm", "c1")
    lam.ok("push", "--chunk-size", "200000", f"{registry.host}/lamina/two")  # chunked
    lam.ok("tag", f"{registry.host}/lamina/two", f"{registry.host}/other/two")
    lam.ok("push", f"{registry.host}/other/two")
    statuses = [la["status"] for la in lam.events_of("Pushed")[-1]["layers"]]
    assert statuses == ["mounted", "mounted"]
    new = fresh(tmp_path)
    new.ok("pull", f"{registry.host}/other/two")
    assert image_id(new, f"{registry.host}/other/two") == \
        image_id(lam, f"{registry.host}/lamina/two")
    assert new.ok("run", "--rm", f"{registry.host}/other/two", "sh", "-c",
                  "cat /two; test -e /etc/group || echo gone") == "two\ngone\n"


def test_pull_what_skopeo_pushed(registry: RunningRegistry, lam: Root, tmp_path: Path) -> None:
    """docker v2 schema 2 with gzip layers (skopeo from a docker-archive), and OCI with
    zstd layers: the diff_id is the digest of the uncompressed tar either way."""
    skopeo = require_tool("skopeo")
    archive = tmp_path / "bb.tar"
    lam.ok("save", "-o", str(archive), "busybox")
    for name, extra in (("gzip", []),
                        ("zstd", ["--format", "oci", "--dest-compress-format", "zstd"])):
        subprocess.run([skopeo, "--insecure-policy", "copy", "-q", "--dest-tls-verify=false",
                        *extra, f"docker-archive:{archive}",
                        f"docker://{registry.host}/skopeo/{name}"],
                       check=True, capture_output=True, timeout=120)
        new = fresh(tmp_path, name)
        new.ok("pull", f"{registry.host}/skopeo/{name}")
        fetched = new.events_of("LayerFetched")[0]
        assert fetched["digest"] != fetched["diff_id"]  # it was compressed
        pulled = new.inspect(f"{registry.host}/skopeo/{name}")[0]
        assert pulled["RootFS"] == lam.inspect("busybox")[0]["RootFS"]
        if name == "gzip":  # a docker-archive round trip keeps the id; OCI re-encodes it
            assert pulled["Id"] == image_id(lam, "busybox")
        assert new.ok("run", "--rm", f"{registry.host}/skopeo/{name}", "echo", "ok") == "ok\n"


def test_missing_tag_is_manifest_unknown(registry: RunningRegistry, tmp_path: Path) -> None:
    new = fresh(tmp_path)
    err = fails(new, "pull", f"{registry.host}/lamina/busybox:nope")
    assert err.strip() == (f"lamina: error: manifest for {registry.host}/lamina/busybox:nope "
                           "not found: manifest unknown: manifest unknown")
    assert new.event_types() == ["PullStarted", "CommandRejected"]
    err = fails(new, "push", f"{registry.host}/nothing/here")
    assert "an image does not exist locally with the tag" in err
    from tests.registry.registry_env import free_port

    err = fails(new, "pull", f"127.0.0.1:{free_port()}/nobody/home")
    assert "cannot reach registry" in err and "refused" in err


# --- auth ---------------------------------------------------------------------------------


def _auth_round(reg: RunningRegistry, lam: Root, tmp_path: Path, config: Path) -> None:
    private = f"{reg.host}/private/bb"
    lam.ok("tag", "busybox", private)
    assert "authentication required" in fails(lam, "push", private)
    assert "unauthorized" in fails(lam, "login", "-u", USER, "-p", "wrong", reg.host)
    assert not config.exists()
    out = lam.ok("login", "-u", USER, "--password-stdin", reg.host, input=PASSWORD + "\n")
    assert out.strip() == "Login Succeeded"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert json.loads(config.read_text())["auths"][reg.host]["auth"]
    lam.ok("push", private)
    lam.ok("rmi", private)
    lam.ok("pull", private)
    assert lam.ok("logout", reg.host).strip() == f"Removing login credentials for {reg.host}"
    assert reg.host not in json.loads(config.read_text())["auths"]
    assert "authentication required" in fails(lam, "pull", private)


def test_token_auth(lam: Root, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_tool("docker-registry")
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    with start_registry(tmp_path / "reg", "token") as reg:
        _auth_round(reg, lam, tmp_path, lam.root / "config.json")
        # anonymous tokens: pull on public/ only
        lam.ok("login", "-u", USER, "-p", PASSWORD, reg.host)
        lam.ok("tag", "busybox", f"{reg.host}/public/bb")
        lam.ok("push", f"{reg.host}/public/bb")
        lam.ok("logout", reg.host)
        new = fresh(tmp_path)
        new.ok("pull", f"{reg.host}/public/bb")
        assert image_id(new, f"{reg.host}/public/bb") == image_id(lam, "busybox")


def test_basic_auth_with_docker_config(lam: Root, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    require_tool("docker-registry")
    require_tool("htpasswd")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "dockercfg"))
    with start_registry(tmp_path / "reg", "basic") as reg:
        _auth_round(reg, lam, tmp_path, tmp_path / "dockercfg" / "config.json")
    assert not (lam.root / "config.json").exists()


# --- a fake registry: what a real one never serves ----------------------------------------


MISSING = (404, "application/json",
           b'{"errors": [{"code": "NOT_FOUND", "message": "not here"}]}')


class FakeRegistry:
    """Serves fixed routes: path -> (status, content type, body); a body may stall."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, str, bytes]] = {}
        self.stall: set[str] = set()
        self.hits: list[str] = []
        self.release = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                fake.hits.append(self.path)
                status, ctype, body = fake.routes.get(self.path, MISSING)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.path in fake.stall:
                    self.wfile.write(body[:len(body) // 2])
                    self.wfile.flush()
                    fake.release.wait(30)
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        self.routes["/v2/"] = (200, "application/json", b"{}")
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def blob(self, repo: str, data: bytes, digest: str | None = None) -> dict[str, Any]:
        digest = digest or "sha256:" + hashlib.sha256(data).hexdigest()
        self.routes[f"/v2/{repo}/blobs/{digest}"] = (200, "application/octet-stream", data)
        return {"digest": digest, "size": len(data)}

    def manifest(self, repo: str, ref: str, doc: dict[str, Any]) -> str:
        body = json.dumps(doc).encode()
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        for r in (ref, digest):
            self.routes[f"/v2/{repo}/manifests/{r}"] = (200, doc["mediaType"], body)
        return digest

    def image(self, repo: str, layer: bytes, *, arch: str = "amd64",
              layer_digest: str | None = None, tag: str = "latest", diff_id: str = "",
              compress: bool = True) -> str:
        config = support.image_config([diff_id or support.sha256(layer)], architecture=arch)
        cfg = self.blob(repo, config)
        blob = self.blob(repo, gzip.compress(layer, mtime=0) if compress else layer,
                         layer_digest)
        return self.manifest(repo, tag, {
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cfg},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar" +
                        ("+gzip" if compress else ""), **blob}]})

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake() -> Iterator[FakeRegistry]:
    server = FakeRegistry()
    yield server
    server.close()


def test_a_wrong_digest_is_rejected_with_nothing_stored(fake: FakeRegistry, lam: Root) -> None:
    layer = support.small_layer("evil", b"not what the digest says\n")
    fake.image("evil", layer, layer_digest="sha256:" + "0" * 64)
    before = lam.store_state()
    err = fails(lam, "pull", f"{fake.host}/evil")
    assert "digest mismatch" in err or "expected" in err
    assert lam.store_state() == before
    # a config whose bytes are not its digest
    fake.image("evil2", layer)
    path = next(p for p in fake.routes if p.startswith("/v2/evil2/blobs/") and
                fake.routes[p][2].startswith(b"{"))
    status, ctype, body = fake.routes[path]
    fake.routes[path] = (status, ctype, body.replace(b"step 0", b"step 1"))
    assert "digest mismatch" in fails(lam, "pull", f"{fake.host}/evil2")
    assert lam.store_state() == before
    # an uncompressed layer (its digest is its diff_id) with other bytes of the same size
    claimed = support.sha256(support.small_layer("evil", b"what the digest says!!!!!\n"))
    fake.image("evil3", layer, layer_digest=claimed, diff_id=claimed, compress=False)
    assert "does not match" in fails(lam, "pull", f"{fake.host}/evil3")
    assert lam.store_state() == before
    assert lam.event_types()[-2:] == ["PullStarted", "CommandRejected"]


def test_an_index_gives_the_hosts_platform_or_the_asked_one(fake: FakeRegistry,
                                                           tmp_path: Path) -> None:
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
    other = "arm64" if arch != "arm64" else "amd64"
    entries = []
    for a in (other, arch):
        digest = fake.image("multi", support.small_layer(a, a.encode()), arch=a, tag=a)
        size = len(fake.routes[f"/v2/multi/manifests/{digest}"][2])
        entries.append({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": digest, "size": size,
                        "platform": {"os": "linux", "architecture": a}})
    fake.manifest("multi", "latest", {"schemaVersion": 2,
                                      "mediaType": "application/vnd.oci.image.index.v1+json",
                                      "manifests": entries})
    new = fresh(tmp_path)
    new.ok("pull", f"{fake.host}/multi")
    assert new.inspect(f"{fake.host}/multi")[0]["Architecture"] == arch
    new.ok("pull", "--platform", f"linux/{other}", f"{fake.host}/multi")
    assert new.inspect(f"{fake.host}/multi")[0]["Architecture"] == other
    assert "no matching manifest for linux/s390x" in \
        fails(new, "pull", "--platform", "linux/s390x", f"{fake.host}/multi")


def test_an_interrupted_pull_leaves_nothing_and_the_next_one_works(
        fake: FakeRegistry, lam: Root) -> None:
    big = support.tar_bytes([support.member("big", os.urandom(1 << 20))])
    fake.image("slow", big)
    blob = next(p for p in fake.routes if "/slow/blobs/" in p and
                fake.routes[p][1] == "application/octet-stream" and
                not fake.routes[p][2].startswith(b"{"))
    fake.stall.add(blob)
    before = lam.store_state()
    proc = subprocess.Popen([LAMINA, "--root", str(lam.root), "pull", f"{fake.host}/slow"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while blob not in fake.hits and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(15) == 130
    assert lam.store_state() == before  # no layer, no image, nothing left in tmp
    fake.stall.clear()
    lam.ok("pull", f"{fake.host}/slow")
    assert lam.inspect(f"{fake.host}/slow")[0]["RootFS"]["Layers"] == [support.sha256(big)]
