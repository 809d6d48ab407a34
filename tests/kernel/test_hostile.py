"""Hostile input for `import` (a layer tar) and `load` (an image archive).

Every case must be refused with one line on stderr and exit 1, write nothing outside the
store, leave the store (layers, tmp, images, containers) exactly as it was, and append
exactly one event to the log: a CommandRejected naming the command.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.kernel import test_storage_support as support
from tests.kernel.test_storage_support import (
    Root,
    cut,
    directory,
    docker_archive,
    image_config,
    member,
    sha256,
    small_layer,
    tar_bytes,
)

bb_tar = support.bb_tar  # fixture


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, bb_tar: Path) -> Iterator[Root]:
    """One root for all the cases: a refused command leaves it as it was, which each case
    checks, so the next case starts from the same state."""
    with support.lamina_root(tmp_path_factory.mktemp("hostile") / "root", bb_tar) as root:
        yield root


@pytest.fixture
def lam(shared: Root) -> Root:
    return shared

pytestmark = pytest.mark.kernel


# --- hostile layer tars (import, and inside a load) ------------------------------------------


def _layer_cases(outside: Path) -> dict[str, bytes]:
    up = "../" * 12 + str(outside).lstrip("/")
    good = small_layer()
    return {
        "dotdot member": tar_bytes([member(f"{up}/pwned", b"x")]),
        "dotdot inside path": tar_bytes([directory("a"), member("a/../../pwned", b"x")]),
        "absolute member": tar_bytes([member(f"{outside}/pwned", b"x")]),
        "symlink then write through it": tar_bytes([
            member("link", type=tarfile.SYMTYPE, linkname=str(outside)),
            member("link/pwned", b"x")]),
        "relative symlink out then write through it": tar_bytes([
            member("link", type=tarfile.SYMTYPE, linkname=up),
            member("link/pwned", b"x")]),
        "hardlink outside": tar_bytes([
            member("hl", type=tarfile.LNKTYPE, linkname=f"{up}/etc/passwd")]),
        "hardlink absolute": tar_bytes([
            member("hl", type=tarfile.LNKTYPE, linkname="/etc/passwd")]),
        "hardlink to nothing earlier": tar_bytes([
            member("hl", type=tarfile.LNKTYPE, linkname="later"), member("later", b"x")]),
        "char device": tar_bytes([member("dev/null", type=tarfile.CHRTYPE, devmajor=1,
                                         devminor=3)]),
        "block device": tar_bytes([member("sda", type=tarfile.BLKTYPE, devmajor=8,
                                          devminor=0)]),
        "duplicate entry": tar_bytes([member("f", b"one"), member("f", b"two")]),
        "file and its whiteout": tar_bytes([member("f", b"one"), member(".wh.f")]),
        "truncated in data": cut(good, 300),
        "truncated in header": cut(good, 512 + 200),
        "no end-of-archive block": cut(good, 0),
        "overlay xattr": tar_bytes([member("f", b"x", pax_headers={
            "SCHILY.xattr.trusted.overlay.redirect": "/etc"})]),
        "garbage": b"this is not a tar file at all" * 40,
    }


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    path = tmp_path / "outside"
    path.mkdir()
    return path


def _refused(root: Root, argv: list[str], command: str, outside: Path,
             input_bytes: bytes | None = None) -> str:
    """Run a command that must be refused; check all the promises; return the message."""
    import subprocess

    from tests.kernel.runtime_env import LAMINA

    before_state, before_events = root.store_state(), root.event_types()
    out = subprocess.run([LAMINA, "--root", str(root.root), *argv], capture_output=True,
                         input=input_bytes, timeout=60)
    err = out.stderr.decode()
    assert out.returncode == 1, (out.returncode, err)
    assert err.count("\n") == 1 and err.startswith("lamina: error: "), err
    assert "Traceback" not in err
    assert os.listdir(outside) == []
    assert not Path("/pwned").exists() and not (root.root.parent / "pwned").exists()
    assert root.store_state() == before_state
    after = root.event_types()
    assert after[:len(before_events)] == before_events
    assert after[len(before_events):] == ["CommandRejected"]
    rejected = root.events_of("CommandRejected")[-1]
    assert rejected["command"] == command and rejected["reason"] in err
    return err


@pytest.mark.parametrize("case", sorted(_layer_cases(Path("/x"))))
def test_import_refuses(lam: Root, tmp_path: Path, outside: Path, case: str) -> None:
    data = _layer_cases(outside)[case]
    path = tmp_path / "layer.tar"
    path.write_bytes(data)
    _refused(lam, ["import", str(path), "evil"], "import", outside)


def test_import_refuses_hostile_stdin_and_gzip(lam: Root, outside: Path) -> None:
    bad = _layer_cases(outside)["symlink then write through it"]
    _refused(lam, ["import", "-", "evil"], "import", outside, input_bytes=bad)
    _refused(lam, ["import", "-", "evil"], "import", outside, input_bytes=gzip.compress(bad))
    truncated_gz = gzip.compress(small_layer())[:-20]
    _refused(lam, ["import", "-", "evil"], "import", outside, input_bytes=truncated_gz)


# --- hostile image archives (load) -----------------------------------------------------------


def _archive_cases(outside: Path) -> dict[str, Callable[[], bytes]]:
    good = small_layer()
    up = "../" * 12 + str(outside).lstrip("/")

    def with_outer(extra: list) -> bytes:
        return docker_archive([good], extra=extra)

    def renamed_config() -> bytes:
        cfg = image_config([sha256(good)])
        wrong = hashlib.sha256(b"something else").hexdigest()
        manifest = [{"Config": f"blobs/sha256/{wrong}", "RepoTags": ["x:1"],
                     "Layers": ["l.tar"]}]
        return tar_bytes([member(f"blobs/sha256/{wrong}", cfg), member("l.tar", good),
                          member("manifest.json", json.dumps(manifest).encode())])

    def oci(blob_digest_ok: bool) -> bytes:
        cfg = image_config([sha256(good)])
        layer_digest = sha256(good) if blob_digest_ok else sha256(b"not the layer")
        manifest = json.dumps({"schemaVersion": 2, "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(cfg),
            "size": len(cfg)}, "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest,
                "size": len(good)}]}).encode()
        index = json.dumps({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha256(manifest), "size": len(manifest),
            "annotations": {"io.containerd.image.name": "docker.io/library/x:1"}}]}).encode()
        return tar_bytes([member("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
                          member("index.json", index),
                          member(f"blobs/sha256/{sha256(manifest)[7:]}", manifest),
                          member(f"blobs/sha256/{sha256(cfg)[7:]}", cfg),
                          member(f"blobs/sha256/{layer_digest[7:]}", good)])

    def layer(case: str) -> bytes:
        return docker_archive([_layer_cases(outside)[case]])

    return {
        "outer dotdot member": lambda: with_outer([member(f"{up}/pwned", b"x")]),
        "outer absolute member": lambda: with_outer([member(f"{outside}/pwned", b"x")]),
        "outer symlink outside": lambda: with_outer([
            member("escape", type=tarfile.SYMTYPE, linkname=str(outside))]),
        "outer relative symlink outside": lambda: with_outer([
            member("escape", type=tarfile.SYMTYPE, linkname="../../..")]),
        "outer hardlink outside": lambda: with_outer([
            member("hl", type=tarfile.LNKTYPE, linkname="../../etc/passwd")]),
        "outer device node": lambda: with_outer([
            member("null", type=tarfile.CHRTYPE, devmajor=1, devminor=3)]),
        "outer fifo": lambda: with_outer([member("fifo", type=tarfile.FIFOTYPE)]),
        "outer duplicate manifest": lambda: with_outer([member("manifest.json", b"[]")]),
        "outer truncated": lambda: cut(docker_archive([good]), 300),
        "outer without end block": lambda: cut(docker_archive([good]), 0),
        "manifest names a missing layer": lambda: _missing_layer(good),
        "manifest is not JSON": lambda: tar_bytes([member("manifest.json", b"[{nope")]),
        "manifest not a list": lambda: tar_bytes([member("manifest.json", b'{"a": 1}')]),
        "layer digest differs from diff_id": lambda: docker_archive(
            [good], config=image_config([sha256(small_layer("other"))])),
        "layer count differs": lambda: docker_archive(
            [good], config=image_config([sha256(good), sha256(good)])),
        "config not JSON": lambda: docker_archive([good], config=b"{not json at all"),
        "config not an object": lambda: docker_archive([good], config=b"[1, 2]"),
        "config without rootfs": lambda: docker_archive([good], config=b'{"os": "linux"}'),
        "config named by another digest": renamed_config,
        "config with lone surrogate": lambda: docker_archive([good], config=image_config(
            [sha256(good)], author="\\ud800").replace(b'"\\\\ud800"', b'"\\ud800"')),
        "manifest symlink loop": lambda: tar_bytes([
            member("a", type=tarfile.SYMTYPE, linkname="b"),
            member("b", type=tarfile.SYMTYPE, linkname="a"),
            member("manifest.json", json.dumps([{"Config": "a", "RepoTags": [],
                                                 "Layers": []}]).encode())]),
        "oci blob digest mismatch": lambda: oci(False),
        "no manifest at all": lambda: tar_bytes([member("hello", b"x")]),
        "empty file": lambda: b"",
        "gzip of garbage": lambda: gzip.compress(b"garbage" * 100),
        "truncated gzip archive": lambda: gzip.compress(docker_archive([good]))[:-40],
        "layer with dotdot member": lambda: layer("dotdot member"),
        "layer writing through a symlink": lambda: layer("symlink then write through it"),
        "layer hardlink outside": lambda: layer("hardlink outside"),
        "layer device node": lambda: layer("char device"),
        "layer duplicate entry": lambda: layer("duplicate entry"),
        "layer truncated": lambda: layer("truncated in data"),
        "gzip layer that is corrupt": lambda: docker_archive(
            [gzip.compress(good)[:-30]], config=image_config([sha256(good)])),
    }


def _missing_layer(good: bytes) -> bytes:
    cfg = image_config([sha256(good)])
    name = f"{hashlib.sha256(cfg).hexdigest()}.json"
    manifest = [{"Config": name, "RepoTags": ["x:1"], "Layers": ["nowhere/layer.tar"]}]
    return tar_bytes([member(name, cfg), member("manifest.json", json.dumps(manifest).encode())])


@pytest.mark.parametrize("case", sorted(_archive_cases(Path("/x"))))
def test_load_refuses(lam: Root, tmp_path: Path, outside: Path, case: str) -> None:
    data = _archive_cases(outside)[case]()
    path = tmp_path / "archive.tar"
    path.write_bytes(data)
    _refused(lam, ["load", "-i", str(path)], "load", outside)


def test_load_refuses_hostile_stdin(lam: Root, outside: Path) -> None:
    data = _archive_cases(outside)["outer symlink outside"]()
    _refused(lam, ["load"], "load", outside, input_bytes=data)
    _refused(lam, ["load"], "load", outside, input_bytes=gzip.compress(data))


def test_refused_load_keeps_layers_a_good_image_shares(lam: Root, tmp_path: Path,
                                                       outside: Path) -> None:
    """An archive whose first layer is fine and second is not: nothing of it stays, and a
    layer the store already had is untouched."""
    good, other = small_layer(), small_layer("other")
    ok = tmp_path / "ok.tar"
    ok.write_bytes(docker_archive([good], tags=["ok:1"]))
    lam.ok("load", "-i", str(ok))
    bad = tmp_path / "bad.tar"
    bad.write_bytes(docker_archive([good, other, small_layer("third")], config=image_config(
        [sha256(good), sha256(other), sha256(b"no such layer")])))
    _refused(lam, ["load", "-i", str(bad)], "load", outside)
    assert lam.inspect("ok:1")[0]["RootFS"]["Layers"] == [sha256(good)]
