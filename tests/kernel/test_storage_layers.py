"""The layer store on the real kernel: deep images, whiteouts through commit, exact layer
tars, damaged layers, and no mount left behind."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from tests.kernel import test_storage_support as support
from tests.kernel.test_storage_support import (
    Root,
    directory,
    docker_archive,
    image_config,
    member,
    sha256,
    tar_bytes,
)

pytestmark = pytest.mark.kernel
bb_tar, lam = support.bb_tar, support.lam  # fixtures


def _mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(str(path))]


def _deep_archive(base: bytes, n: int) -> bytes:
    """busybox plus n-1 tiny layers: layer i adds /layers/<i>; one deletes /layers/10 and one
    makes /opq opaque (its old file hidden, a new one added)."""
    layers = [base]
    for i in range(1, n):
        members = [directory("layers"), member(f"layers/{i}", f"{i}\n".encode())]
        if i == 1:
            members += [directory("opq"), member("opq/old", b"old\n")]
        if i == 60:
            members.append(member("layers/.wh.10"))
        if i == 70:
            members += [directory("opq"), member("opq/.wh..wh..opq"), member("opq/new", b"n\n")]
        layers.append(tar_bytes(members))
    return docker_archive(layers, tags=["deep:latest"])


def test_a_120_layer_image_creates_mounts_runs_and_commits(lam: Root, bb_tar: Path) -> None:
    archive = lam.root.parent / "deep.tar"
    archive.write_bytes(_deep_archive(bb_tar.read_bytes(), 120))
    lam.ok("load", "-i", str(archive))
    assert len(lam.inspect("deep")[0]["RootFS"]["Layers"]) == 120
    out = lam.ok("run", "--name", "deep", "deep", "sh", "-c",
                 "ls /layers | wc -l; cat /layers/119; ls /opq; echo top > /top")
    assert out.split() == ["118", "119", "new"]  # 119 added, /layers/10 deleted
    lam.ok("commit", "deep", "deeper")
    assert len(lam.inspect("deeper")[0]["RootFS"]["Layers"]) == 121
    cid = lam.ok("create", "deeper", "true").strip()
    exported = lam.root.parent / "deeper.tar"
    lam.ok("export", "-o", str(exported), cid)
    with tarfile.open(exported) as tf:
        names = set(tf.getnames())
    assert {"top", "layers/119", "opq/new", "bin/busybox"} <= names
    assert not {"layers/10", "opq/old"} & names
    lam.ok("rm", cid)
    lam.ok("rm", "deep")
    assert _mounts_under(lam.root) == []


def test_whiteouts_go_through_commit(lam: Root, tmp_path: Path) -> None:
    lam.ok("run", "--name", "w", "busybox", "sh", "-c",
           "rm /etc/group; rm -rf /home; rm -rf /root; mkdir /root; echo r > /root/r")
    lam.ok("commit", "w", "slim")
    # the child image's layer holds the deletions as OCI whiteouts
    saved = tmp_path / "slim.tar"
    lam.ok("save", "-o", str(saved), "slim")
    top = lam.inspect("slim")[0]["RootFS"]["Layers"][-1]
    with tarfile.open(saved) as outer:
        blob = outer.extractfile(f"blobs/sha256/{top[7:]}").read()  # type: ignore[union-attr]
    with tarfile.open(fileobj=io.BytesIO(blob)) as layer:
        names = layer.getnames()
    assert {"etc/.wh.group", ".wh.home", "root/.wh..wh..opq", "root/r"} <= set(names)
    # a container of the child sees the deletions, and has no changes of its own
    out = lam("run", "--name", "child", "slim", "sh", "-c",
              "ls /etc/group /home 2>&1; ls -A /root; cat /etc/passwd >/dev/null && echo ok")
    assert "No such file" in out.stdout and out.stdout.split()[-2:] == ["r", "ok"], out
    assert lam.ok("diff", "child") == ""
    exported = tmp_path / "child.tar"
    lam.ok("export", "-o", str(exported), "child")
    with tarfile.open(exported) as tf:
        names = set(tf.getnames())
    assert "etc/passwd" in names and "root/r" in names
    assert not {"etc/group", "home"} & names
    assert not [n for n in names if ".wh." in n]
    # and deleting what the child's own layer added, in a grandchild, works the same way
    lam.ok("run", "--name", "g", "slim", "rm", "/root/r")
    assert lam.ok("diff", "g").splitlines() == ["C /root", "D /root/r"]


def test_a_container_committed_stopped_runs_on_with_its_files(lam: Root,
                                                              tmp_path: Path) -> None:
    """A stopped container is committed by rename (store.py): afterwards it starts and
    sees its own files, its diff and export are what they were, a second commit holds
    both commits' changes, and rm leaves the image's layer whole."""
    lam.ok("run", "--name", "w", "busybox", "sh", "-c", "echo one > /one; rm -f /etc/group")
    before = lam.ok("diff", "w")
    lam.ok("commit", "w", "first")
    assert lam.ok("diff", "w") == before
    out = lam.ok("start", "-a", "w")  # the same command again: it writes over its file
    assert out == "" and lam.ok("diff", "w") == before
    lam.ok("run", "--name", "w2", "busybox", "true")
    assert lam("start", "-a", "w").returncode == 0
    lam.ok("commit", "--change", "CMD cat /one /two", "w", "second")
    lam.ok("rm", "w", "w2")
    lam.ok("run", "--name", "more", "first", "sh", "-c", "echo two > /two; cat /one")
    exported = tmp_path / "more.tar"
    lam.ok("export", "-o", str(exported), "more")
    with tarfile.open(exported) as tf:
        assert {"one", "two"} <= set(tf.getnames()) and "etc/group" not in tf.getnames()
    lam.ok("commit", "more", "third")
    assert lam.ok("run", "--rm", "third", "cat", "/one", "/two") == "one\ntwo\n"
    second = lam.ok("run", "--rm", "second", "sh", "-c", "cat /one; ls /etc/group 2>&1; true")
    assert second.startswith("one\n") and "No such file" in second
    lam.ok("rm", "more")
    assert lam.ok("run", "--rm", "first", "cat", "/one") == "one\n"
    saved = tmp_path / "third.tar"
    lam.ok("save", "-o", str(saved), "third")  # its layers' tars match their diff_ids


def test_no_mount_is_left_after_rm(lam: Root) -> None:
    cid = lam.ok("run", "-d", "busybox", "sleep", "30").strip()
    merged = lam.inspect(cid)[0]["GraphDriver"]["Data"]["MergedDir"]
    assert merged in _mounts_under(lam.root)
    stopped = lam.ok("create", "busybox", "true").strip()
    lam.ok("export", "-o", str(lam.root.parent / "x.tar"), stopped)  # mounts, then unmounts
    assert _mounts_under(lam.root) == [merged]
    lam.ok("rm", "-f", cid, stopped)
    assert _mounts_under(lam.root) == []
    assert not any(p.name.startswith("rw-") for p in (lam.root / "layers").iterdir())


def test_imported_layer_tars_come_back_byte_for_byte(lam: Root, tmp_path: Path) -> None:
    """A GNU tar with long names, owners' names and a hardlink, and a PAX tar with an xattr
    and a sub-second mtime: save writes the same bytes, so the same diff_id."""
    gnu = tar_bytes([directory("d"), member("d/" + "n" * 150, b"long\n", uname="someone",
                                            gname="group", uid=1000, gid=1000),
                     member("d/hard", type=tarfile.LNKTYPE, linkname="d/" + "n" * 150),
                     member("d/fifo", type=tarfile.FIFOTYPE)], fmt=tarfile.GNU_FORMAT)
    pax = tar_bytes([member("x", b"x" * 5000, pax_headers={"SCHILY.xattr.user.k": "v"},
                            mtime=1_700_000_000.25)])
    for name, data in (("gnu", gnu), ("pax", pax)):
        path = tmp_path / f"{name}.tar"
        path.write_bytes(data + b"\0" * 4096)  # trailing padding is part of the digest too
        lam.ok("import", str(path), name)
        (doc,) = lam.inspect(name)
        assert doc["RootFS"]["Layers"] == [sha256(path.read_bytes())]
        saved = tmp_path / f"{name}-saved.tar"
        lam.ok("save", "-o", str(saved), name)
        with tarfile.open(saved) as outer:
            blob = outer.extractfile(  # type: ignore[union-attr]
                f"blobs/sha256/{hashlib.sha256(path.read_bytes()).hexdigest()}").read()
        assert blob == path.read_bytes()
    out = lam("run", "--rm", "--entrypoint", "", "busybox", "true")  # runtime still fine
    assert out.returncode == 0, out.stderr


def test_a_layer_changed_on_disk_is_not_saved(lam: Root, tmp_path: Path) -> None:
    upper = Path(lam.inspect("busybox")[0]["GraphDriver"]["Data"]["UpperDir"])
    (upper / "etc" / "passwd").write_text("tampered\n")
    before = lam.event_types()
    out = lam("save", "-o", str(tmp_path / "x.tar"), "busybox")
    assert out.returncode == 1 and out.stderr.count("\n") == 1
    assert "changed on disk" in out.stderr
    assert os.listdir(tmp_path) == ["root"]  # no archive, no temp file
    assert lam.event_types()[len(before):] == ["CommandRejected"]


def test_loaded_image_without_history_or_parent(lam: Root, tmp_path: Path) -> None:
    layers = [tar_bytes([member(f"f{i}", b"x")]) for i in range(3)]
    config = image_config([sha256(b) for b in layers], history=None)
    archive = tmp_path / "nohist.tar"
    archive.write_bytes(docker_archive(layers, tags=["nohist:1"], config=config))
    lam.ok("load", "-i", str(archive))
    rows = [json.loads(line) for line in lam.ok("history", "--format", "json",
                                                "nohist:1").splitlines()]
    assert [r["Id"][:7] for r in rows] == ["sha256:", "<missin", "<missin"]
    assert lam.inspect("nohist:1")[0]["Parent"] == ""


def test_the_containers_of_one_stack_share_its_init_layer(lam: Root) -> None:
    """The init layer (the mount points and bound files the image lacks) is made once per
    stack of layers, in its top layer's directory, and every container of that stack has
    it below its own layer; a container's removal leaves it, the image's takes it."""
    first = lam.ok("create", "busybox", "true").strip()
    second = lam.ok("create", "busybox", "true").strip()
    rws = [lam.root / "layers" / f"rw-{cid}" for cid in (first, second)]
    assert all((rw / "init").is_symlink() for rw in rws)
    shared = {(rw / "init").resolve() for rw in rws}
    assert len(shared) == 1
    init = shared.pop()
    top = lam.inspect("busybox")[0]
    assert init.parent.parent == lam.root / "layers" and init.name.startswith("init-")
    assert sorted(p.name for p in init.iterdir()) == ["dev", "etc"]  # busybox has the rest
    assert sorted(p.name for p in (init / "etc").iterdir()) == [
        "hostname", "hosts", "resolv.conf"]
    assert len(lam.ok("run", "--rm", "busybox", "cat", "/etc/hostname").strip()) == 12
    assert lam.ok("diff", first) == ""  # what the init layer holds is no change of its own
    lam.ok("rm", first, second)
    assert init.is_dir()
    lam.ok("rmi", top["Id"])
    assert not init.exists() and not init.parent.exists()


def test_two_creates_making_one_shared_init_layer_both_use_the_one_that_won(
        lam: Root, monkeypatch: pytest.MonkeyPatch) -> None:
    """A create that finds no init layer makes one and renames it in; one made meanwhile by
    another create (the rename then fails: not empty) is the one both use."""
    from adapters.storage.store import LinuxLayerStore

    made = lam.ok("create", "busybox", "true").strip()
    init = (lam.root / "layers" / f"rw-{made}" / "init").resolve()
    store = LinuxLayerStore(str(lam.root))
    layers = (lam.root / "layers" / f"rw-{made}" / "lower").read_text().split()
    real_isdir, looks = os.path.isdir, []

    def isdir(path: str) -> bool:  # the first look misses it: made "meanwhile"
        looks.append(path)
        return real_isdir(path) and not (path == str(init) and len(looks) == 1)

    monkeypatch.setattr(os.path, "isdir", isdir)
    rw = store.create_rw_layer("f" * 64, layers)
    monkeypatch.undo()
    try:
        assert (Path(store.layer_dir(rw)) / "init").resolve() == init and init.is_dir()
        assert not os.listdir(store.tmp_dir)  # the copy that lost went with its staging
    finally:
        store.remove_rw_layer(rw)
