"""save, load and export on real roots, and interop with skopeo and umoci.

save writes docker 25+'s archive: docker-archive (manifest.json) and OCI layout (index.json,
blobs/sha256) in one deterministic tar. load reads docker and OCI archives, keeping the config
bytes (so the image id) and each layer's exact tar (so its diff_id).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.storage.store import INIT_DIRS, INIT_FILES
from tests.kernel import test_storage_support as support
from tests.kernel.runtime_env import LAMINA
from tests.kernel.test_storage_support import (
    Root,
    directory,
    docker_archive,
    image_config,
    member,
    require_tool,
    sha256,
    small_layer,
    snapshot,
    tar_bytes,
    untar,
)

pytestmark = pytest.mark.kernel
bb_tar, lam = support.bb_tar, support.lam  # fixtures


def _members(data: bytes) -> dict[str, bytes | None]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return {m.name: (tf.extractfile(m).read() if m.isreg() else None)  # type: ignore
                for m in tf.getmembers()}


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory, bb_tar: Path) -> Iterator[dict[str, Any]]:
    """busybox, and bb2 committed on top of it (a file added, one deleted, a dir deleted)."""
    with support.lamina_root(tmp_path_factory.mktemp("chain") / "root", bb_tar) as root:
        root.ok("run", "--name", "c1", "busybox", "sh", "-c",
                "rm /etc/group; mkdir -p /x/y; echo a > /x/y/z; rm -rf /home")
        bb2 = root.ok("commit", "-m", "second", "c1", "bb2").strip()[7:]
        root.ok("rm", "c1")
        out = root.root.parent / "both.tar"
        root.ok("save", "-o", str(out), "bb2", "busybox")
        yield {"root": root, "bb2": bb2, "busybox": root.inspect("busybox")[0]["Id"][7:],
               "archive": out}


def test_save_is_deterministic_docker_and_oci(chain: dict[str, Any], tmp_path: Path) -> None:
    root: Root = chain["root"]
    again = tmp_path / "again.tar"
    root.ok("save", "-o", str(again), "bb2", "busybox")
    data = chain["archive"].read_bytes()
    assert again.read_bytes() == data
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        names = tf.getnames()
    assert names == sorted(names) and names[:2] == ["blobs", "blobs/sha256"]
    files = _members(data)
    for name, content in files.items():  # every blob is named by its digest
        if name.startswith("blobs/sha256/") and content is not None:
            assert hashlib.sha256(content).hexdigest() == name.rsplit("/", 1)[1]
    manifest = json.loads(files["manifest.json"])
    assert [m["RepoTags"] for m in manifest] == [["bb2:latest"], ["busybox:latest"]]
    assert manifest[0]["Config"] == f"blobs/sha256/{chain['bb2']}"
    assert manifest[0]["Parent"] == f"sha256:{chain['busybox']}"
    config = json.loads(files[manifest[0]["Config"]])
    assert [f"sha256:{p.rsplit('/', 1)[1]}" for p in manifest[0]["Layers"]] == \
        config["rootfs"]["diff_ids"]
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(files["index.json"])
    names_in_index = [d["annotations"]["io.containerd.image.name"] for d in index["manifests"]]
    assert names_in_index == ["docker.io/library/bb2:latest", "docker.io/library/busybox:latest"]
    oci = json.loads(files[f"blobs/sha256/{index['manifests'][0]['digest'][7:]}"])
    assert oci["config"]["digest"] == f"sha256:{chain['bb2']}"
    assert [la["digest"] for la in oci["layers"]] == config["rootfs"]["diff_ids"]
    assert all(la["mediaType"] == "application/vnd.oci.image.layer.v1.tar"
               for la in oci["layers"])
    repos = json.loads(files["repositories"])
    assert repos["bb2"]["latest"] == config["rootfs"]["diff_ids"][-1][7:]
    saved = [e for e in root.events_of("ImageSaved") if e["file"] == str(again)]
    assert {e["id"] for e in saved} == {chain["bb2"], chain["busybox"]}
    assert all(e["digest"] == sha256(data) and e["size"] == len(data) and
               e["meta"]["user"] == "root" for e in saved)


def test_save_to_stdout_and_by_id(chain: dict[str, Any]) -> None:
    root: Root = chain["root"]
    out = subprocess.run([LAMINA, "--root", str(root.root), "save", chain["bb2"][:12]],
                         capture_output=True, timeout=60, check=True).stdout
    manifest = json.loads(_members(out)["manifest.json"])
    assert manifest[0]["RepoTags"] is None and "Parent" not in manifest[0]
    index = json.loads(_members(out)["index.json"])
    assert "annotations" not in index["manifests"][0]
    assert root.events_of("ImageSaved")[-1]["file"] == "-"


def test_load_round_trip_keeps_ids_parents_and_runs(chain: dict[str, Any], lam: Root) -> None:
    before = len(lam.events_of("LayerRegistered"))
    out = lam.ok("load", "-i", str(chain["archive"]))
    assert out.splitlines() == ["Loaded image: busybox:latest", "Loaded image: bb2:latest"]
    bb2 = lam.inspect("bb2")[0]
    assert bb2["Id"] == f"sha256:{chain['bb2']}"
    assert bb2["Parent"] == f"sha256:{chain['busybox']}"  # busybox was already here: same id
    assert len(lam.events_of("LayerRegistered")) == before + 1  # busybox's layer is reused
    history = [json.loads(line) for line in lam.ok("history", "--format", "json",
                                                   "bb2").splitlines()]
    assert [h["Id"][7:] for h in history] == [chain["bb2"], chain["busybox"]]
    run = lam("run", "--rm", "bb2", "sh", "-c", "cat /x/y/z; ls /home 2>&1; ls /etc/group")
    assert run.stdout.startswith("a\n") and "No such file" in run.stdout + run.stderr
    # loading again adds no layer and no image, only the audit of the load
    types_before = lam.event_types()
    lam.ok("load", "-i", str(chain["archive"]))
    assert lam.event_types()[len(types_before):] == ["ImageLoaded", "ImageLoaded"]
    # removed, then loaded again: the image's stream goes on from its last version
    lam.ok("rmi", "bb2")
    assert lam.ok("load", "-i", str(chain["archive"])).splitlines()[-1] == \
        "Loaded image: bb2:latest"
    assert lam.inspect("bb2")[0]["Id"] == f"sha256:{chain['bb2']}"
    # and saving it again gives the same bytes for it
    again = lam.root.parent / "again.tar"
    lam.ok("save", "-o", str(again), "bb2", "busybox")
    assert again.read_bytes() == chain["archive"].read_bytes()


def test_load_from_stdin_gzip(chain: dict[str, Any], lam: Root) -> None:
    data = gzip.compress(chain["archive"].read_bytes(), compresslevel=1)
    out = subprocess.run([LAMINA, "--root", str(lam.root), "load"], input=data,
                         capture_output=True, timeout=60, check=True)
    assert b"Loaded image: bb2:latest" in out.stdout
    assert lam.events_of("ImageLoaded")[-1]["file"] == "-"
    assert not any((lam.root / "tmp").iterdir())


def test_foreign_archive_keeps_config_bytes_and_layer_tars(lam: Root, tmp_path: Path) -> None:
    """A config that isn't lamina's canonical JSON, a GNU-format layer and a gzip layer:
    the image id stays sha256(config bytes), and save writes back the very same blobs."""
    gnu = tar_bytes([directory("opt"), member("opt/a" * 30, b"long name\n"),
                     member("opt/l", type=tarfile.SYMTYPE, linkname="a")],
                    fmt=tarfile.GNU_FORMAT)
    second = small_layer("second")
    config = image_config([sha256(gnu), sha256(second)], history=[
        {"created": "2024-01-01T00:00:00Z", "created_by": "ADD gnu", "comment": "one"},
        {"created": "2024-01-01T00:00:01Z", "created_by": "ENV A=b", "empty_layer": True},
        {"created": "2024-01-01T00:00:02Z", "created_by": "ADD second"}])
    archive = tmp_path / "foreign.tar"
    archive.write_bytes(docker_archive([gnu, gzip.compress(second)], tags=["foreign:1"],
                                       config=config))
    lam.ok("load", "-i", str(archive))
    doc = lam.inspect("foreign:1")[0]
    assert doc["Id"] == sha256(config)
    assert doc["RootFS"]["Layers"] == [sha256(gnu), sha256(second)]
    assert doc["Config"] == {"Cmd": ["sh"], "Env": ["PATH=/bin"]}
    rows = [json.loads(line) for line in lam.ok("history", "--format", "json",
                                                "foreign:1").splitlines()]
    assert [(r["Id"][:7], r["CreatedBy"], r["Size"] > 0) for r in rows] == [
        ("sha256:", "ADD second", True), ("<missin", "ENV A=b", False),
        ("<missin", "ADD gnu", True)]
    saved = tmp_path / "saved.tar"
    lam.ok("save", "-o", str(saved), "foreign:1")
    files = _members(saved.read_bytes())
    assert files[f"blobs/sha256/{sha256(config)[7:]}"] == config
    assert files[f"blobs/sha256/{sha256(gnu)[7:]}"] == gnu
    assert files[f"blobs/sha256/{sha256(second)[7:]}"] == second
    loaded = lam.events_of("ImageLoaded")[-1]
    assert loaded["config"]["digest"] == sha256(config) and loaded["tags"] == ["foreign:1"]


def test_export_stdout_file_and_audit(lam: Root, tmp_path: Path) -> None:
    cid = lam.ok("create", "--name", "ex", "busybox", "true").strip()
    lam.ok("run", "--name", "w", "busybox", "sh", "-c", "echo hi > /tmp/new; rm /etc/group")
    data = subprocess.run([LAMINA, "--root", str(lam.root), "export", "w"],
                          capture_output=True, timeout=60, check=True).stdout
    files = _members(data)
    assert files["tmp/new"] == b"hi\n" and "etc/group" not in files
    assert files["bin/busybox"] and "etc/passwd" in files
    assert not any(".wh." in name for name in files)
    out = tmp_path / "ex.tar"
    lam.ok("export", "-o", str(out), "ex")
    assert "tmp/new" not in _members(out.read_bytes())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ex.tar", "root"]  # no temp left
    exported = lam.events_of("ContainerExported")
    assert [(e["id"], e["file"]) for e in exported][-1] == (cid, str(out))
    assert exported[-1]["digest"] == sha256(out.read_bytes())
    assert lam.inspect("ex")[0]["State"]["Status"] == "stopped"
    lam.ok("start", "ex")  # the export moved no state: the container still starts
    refused = lam("export", "-o", str(tmp_path / "no" / "such" / "dir.tar"), "ex")
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1
    assert lam.events_of("CommandRejected")[-1]["command"] == "export"


def test_export_of_a_running_container(lam: Root) -> None:
    cid = lam.ok("run", "-d", "busybox", "sh", "-c", "echo up > /tmp/up; sleep 30").strip()
    try:
        for _ in range(100):
            data = subprocess.run([LAMINA, "--root", str(lam.root), "export", cid],
                                  capture_output=True, timeout=60, check=True).stdout
            if _members(data).get("tmp/up") == b"up\n":
                break
        assert _members(data)["tmp/up"] == b"up\n"
        assert lam.inspect(cid)[0]["State"]["Running"] is True
    finally:
        lam.ok("rm", "-f", cid)


# --- interop: skopeo and umoci -------------------------------------------------------------


def _skopeo(*argv: str) -> str:
    out = subprocess.run([require_tool("skopeo"), "--insecure-policy", *argv],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_skopeo_reads_what_save_writes(chain: dict[str, Any], tmp_path: Path) -> None:
    root: Root = chain["root"]
    one = tmp_path / "one.tar"
    root.ok("save", "-o", str(one), "bb2")
    info = json.loads(_skopeo("inspect", f"docker-archive:{one}"))
    assert info["Layers"] == root.inspect("bb2")[0]["RootFS"]["Layers"]
    raw = json.loads(_skopeo("inspect", "--config", "--raw", f"docker-archive:{one}"))
    assert raw["rootfs"]["diff_ids"] == info["Layers"]
    both = json.loads(_skopeo("inspect", f"docker-archive:{chain['archive']}:busybox:latest"))
    assert both["Layers"] == info["Layers"][:1]
    _skopeo("copy", f"docker-archive:{one}", f"oci:{tmp_path / 'oci'}:bb2")
    index = json.loads((tmp_path / "oci" / "index.json").read_text())
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "bb2"


def test_what_skopeo_writes_loads_back(chain: dict[str, Any], lam: Root,
                                       tmp_path: Path) -> None:
    diff_ids = chain["root"].inspect("bb2")[0]["RootFS"]["Layers"]
    src = f"docker-archive:{chain['archive']}:bb2:latest"
    _skopeo("copy", src, f"docker-archive:{tmp_path / 'da.tar'}:skopeo/bb2:da")
    _skopeo("copy", src, f"oci-archive:{tmp_path / 'oa.tar'}:skopeo/bb2:oa")
    assert lam.ok("load", "-i", str(tmp_path / "da.tar")) == "Loaded image: skopeo/bb2:da\n"
    assert lam.ok("load", "-i", str(tmp_path / "oa.tar")) == "Loaded image: skopeo/bb2:oa\n"
    da, oa = lam.inspect("skopeo/bb2:da", "skopeo/bb2:oa")
    assert da["Id"] == f"sha256:{chain['bb2']}"  # the config bytes went through unchanged
    assert da["RootFS"]["Layers"] == oa["RootFS"]["Layers"] == diff_ids
    run = lam("run", "--rm", "skopeo/bb2:oa", "cat", "/x/y/z")
    assert run.stdout == "a\n", run.stderr


def test_umoci_unpacks_the_same_files_export_writes(chain: dict[str, Any],
                                                    tmp_path: Path) -> None:
    umoci = require_tool("umoci")
    root: Root = chain["root"]
    one = tmp_path / "one.tar"
    root.ok("save", "-o", str(one), "bb2")
    layout = untar(one, tmp_path / "layout")
    out = subprocess.run([umoci, "unpack", "--image", f"{layout}:latest",
                          str(tmp_path / "bundle")], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    cid = root.ok("create", "bb2", "true").strip()
    try:
        root.ok("export", "-o", str(tmp_path / "export.tar"), cid)
    finally:
        root.ok("rm", cid)
    exported = untar(tmp_path / "export.tar", tmp_path / "exported")
    # export holds what the container sees: the image's files, plus the mount points and
    # files of the init layer the runtime binds over (docker's export does the same)
    image = root.inspect("bb2")[0]["GraphDriver"]["Data"]
    lowers = [image["UpperDir"], *image.get("LowerDir", "").split(":")]
    init_only = [p for p in (*INIT_DIRS, *INIT_FILES)
                 if not any(Path(d, p).exists() or Path(d, p).is_symlink() for d in lowers)]
    assert snapshot(str(exported), skip=init_only) == snapshot(str(tmp_path / "bundle/rootfs"))
