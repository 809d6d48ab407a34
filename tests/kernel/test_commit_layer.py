"""commit on disk: the layer made of a read-write layer is the layer its diff_id names, its
tar-split rebuilds that very tar, and the container sees what it saw.

A stopped container is committed by rename (its files linked into the layer, its upper
made a lower of its own); a running one is copied while commit_rw_layer hashes it
(store.py): these hold the layer to the container's tree, with everything a layer tar
records (owners, modes, sub-second times, hardlinks, symlinks, fifos, xattrs, whiteouts,
opaque directories) and what it must drop (overlayfs' own xattrs)."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest

from adapters.storage import layertar
from adapters.storage.store import LinuxLayerStore

pytestmark = pytest.mark.kernel

CID = "c" * 64


def _tree(root: Path) -> dict[str, tuple]:
    """Every entry below root with what a layer records of it, overlayfs' xattrs apart."""
    out = {}
    for path in sorted(root.rglob("*")):
        st = os.lstat(path)
        xattrs = {n: os.getxattr(path, n, follow_symlinks=False)
                  for n in os.listxattr(path, follow_symlinks=False)
                  if not n.startswith(layertar.PRIVATE_XATTRS) or n == layertar.OVERLAY_OPAQUE}
        body = (path.read_bytes() if stat.S_ISREG(st.st_mode) else
                os.readlink(path) if stat.S_ISLNK(st.st_mode) else None)
        out[str(path.relative_to(root))] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns,
                                            st.st_rdev, st.st_nlink, body, xattrs)
    return out


def _fill(upper: Path) -> None:
    (upper / "etc").mkdir()
    (upper / "etc" / "conf").write_bytes(b"x" * 70_000)
    os.link(upper / "etc" / "conf", upper / "etc" / "conf.hard")
    (upper / "bin").mkdir()
    (upper / "bin" / "tool").write_bytes(b"\x7fELF" + bytes(1000))
    os.chmod(upper / "bin" / "tool", 0o4755)
    os.chown(upper / "bin" / "tool", 1000, 1001)
    os.setxattr(upper / "bin" / "tool", "user.note", b"kept")
    os.setxattr(upper / "bin" / "tool", "trusted.overlay.origin", b"dropped")
    os.symlink("../etc/conf", upper / "bin" / "link")
    os.mkfifo(upper / "fifo")
    os.mknod(upper / "gone", stat.S_IFCHR | 0o600, os.makedev(0, 0))  # a whiteout
    (upper / "opaque").mkdir()
    os.setxattr(upper / "opaque", layertar.OVERLAY_OPAQUE, b"y")
    (upper / "opaque" / "new").write_text("new\n")
    (upper / "empty").write_bytes(b"")
    for i, path in enumerate(sorted(upper.rglob("*"), reverse=True)):
        os.utime(path, ns=(1_700_000_000_123_456_789 + i, 1_700_000_000_987_654_321 + i),
                 follow_symlinks=False)


def _recorded(tree: dict[str, tuple]) -> dict[str, tuple]:
    """What a layer keeps of a tree: overlayfs' xattrs dropped, link counts aside (a layer
    made by rename shares its files' inodes with the container's own lower)."""
    return {k: v[:5] + v[6:7] + ({n: x for n, x in v[-1].items()
                                  if n == layertar.OVERLAY_OPAQUE or
                                  not n.startswith(layertar.PRIVATE_XATTRS)},)
            for k, v in tree.items()}


def _is_its_diff_ids_tar(store: LinuxLayerStore, layer_id: str, diff_id: str) -> bytes:
    again = io.BytesIO()
    assert layertar.write_layer_tar(store.diff_dir(layer_id), again)[0] == diff_id
    assert os.path.exists(os.path.join(store.layer_dir(layer_id), "tar-split.gz"))
    rebuilt = io.BytesIO()
    assert store.layer_tar(layer_id, rebuilt)[0] == diff_id
    assert rebuilt.getvalue() == again.getvalue()
    return again.getvalue()


def test_a_stopped_container_is_committed_by_rename_and_sees_what_it_saw(tmp_path):
    """No copy: the layer is hard links to the container's files, and the container's
    upper becomes a lower of its own under a fresh upper. Its view, its diff, the layer's
    tar are what they were; a write through the view copies up, leaving the layer alone."""
    store = LinuxLayerStore(str(tmp_path / "root"))
    rw = store.create_rw_layer(CID, [])
    upper = Path(store.diff_dir(rw))
    _fill(upper)
    before, diff = _tree(upper), store.changes(rw, [])
    info = store.commit_rw_layer(rw, None)
    stored = Path(store.diff_dir(info.id))
    assert list(upper.iterdir()) == [], "the container did not get a fresh upper"
    assert store.bases(rw) == [store.layer_dir(rw) + "/base-1"]
    assert _recorded(_tree(stored)) == _recorded(before)
    assert os.lstat(stored / "etc" / "conf").st_ino == \
        os.lstat(Path(store.bases(rw)[0]) / "etc" / "conf").st_ino, "copied, not linked"
    assert "trusted.overlay.origin" not in os.listxattr(stored / "bin" / "tool")
    tar = _is_its_diff_ids_tar(store, info.id, info.diff_id)
    assert store.changes(rw, []) == diff
    layer = _tree(stored)
    merged = store.mount(rw, [])
    try:
        assert Path(merged, "etc", "conf").read_bytes() == b"x" * 70_000
        assert not os.path.lexists(os.path.join(merged, "gone"))
        with open(os.path.join(merged, "etc", "conf"), "r+b") as f:
            f.write(b"changed")
        Path(merged, "later").write_text("later\n")
        os.unlink(os.path.join(merged, "empty"))
    finally:
        store.unmount(rw)
    assert _tree(stored) == layer and store.layer_tar(info.id, io.BytesIO())[0] == info.diff_id
    assert _is_its_diff_ids_tar(store, info.id, info.diff_id) == tar
    assert ("A", "/later") in store.changes(rw, []) and \
        not any(p == "/empty" for _, p in store.changes(rw, []))
    # committed again: one layer of everything since the image, its upper and base-1 stacked
    again = store.commit_rw_layer(rw, info.id)
    second = Path(store.diff_dir(again.id))
    assert (second / "etc" / "conf").read_bytes().startswith(b"changed")
    assert (second / "later").read_text() == "later\n" and (second / "bin" / "link").is_symlink()
    gone = os.lstat(second / "empty")  # added, committed, then deleted: a whiteout
    assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == 0
    assert os.getxattr(second / "opaque", layertar.OVERLAY_OPAQUE) == b"y"
    assert len(store.bases(rw)) == 2
    _is_its_diff_ids_tar(store, again.id, again.diff_id)


def test_a_crash_inside_the_rebase_is_settled_by_the_next_use(tmp_path):
    """Killed between the two renames of the rebase (store.rebased): no upper, a fresh one
    beside it. The next mount, diff or commit puts it in place; the view is whole."""
    store = LinuxLayerStore(str(tmp_path / "root"))
    rw = store.create_rw_layer(CID, [])
    _fill(Path(store.diff_dir(rw)))
    diff = store.changes(rw, [])

    def crash(name: str) -> None:
        if name == "store.rebased":
            raise KeyboardInterrupt(name)

    store.fault = crash
    with pytest.raises(KeyboardInterrupt):
        store.commit_rw_layer(rw, None)
    assert store.unsettled(rw) and not os.path.exists(store.diff_dir(rw))
    assert os.listdir(store.tmp_dir) == [] and rw in os.listdir(store.layers_dir)
    assert all(n in (rw, "empty") for n in os.listdir(store.layers_dir)), "a layer installed"
    assert store.changes(rw, []) == diff
    assert not store.unsettled(rw) and os.listdir(store.diff_dir(rw)) == []
    merged = store.mount(rw, [])
    try:
        assert Path(merged, "etc", "conf").read_bytes() == b"x" * 70_000
    finally:
        store.unmount(rw)


def test_a_running_container_is_copied_and_its_layer_left_alone(tmp_path):
    store = LinuxLayerStore(str(tmp_path / "root"))
    rw = store.create_rw_layer(CID, [])
    upper = Path(store.diff_dir(rw))
    _fill(upper)
    before = _tree(upper)
    merged = store.mount(rw, [])  # what a running (frozen) container has
    try:
        info = store.commit_rw_layer(rw, None)
    finally:
        store.unmount(rw)
    stored = Path(store.diff_dir(info.id))
    assert _tree(upper) == before, "commit changed the container's own layer"
    assert store.bases(rw) == [] and merged
    copied = _tree(stored)
    assert copied == {k: v[:-1] + ({n: x for n, x in v[-1].items()
                                    if n == layertar.OVERLAY_OPAQUE or
                                    not n.startswith(layertar.PRIVATE_XATTRS)},)
                      for k, v in before.items()}
    assert "trusted.overlay.origin" not in os.listxattr(stored / "bin" / "tool")
    # the copy archived again is the diff_id's tar, and so is what its tar-split rebuilds
    again = io.BytesIO()
    assert layertar.write_layer_tar(str(stored), again)[0] == info.diff_id
    assert os.path.exists(os.path.join(store.layer_dir(info.id), "tar-split.gz"))
    rebuilt = io.BytesIO()
    assert store.layer_tar(info.id, rebuilt)[0] == info.diff_id
    assert rebuilt.getvalue() == again.getvalue()
    # the container writes on in its own layer: the committed one doesn't change
    with open(upper / "etc" / "conf", "r+b") as f:
        f.write(b"changed")
    (upper / "later").write_text("later\n")
    assert _tree(stored) == copied
    assert store.layer_tar(info.id, io.BytesIO())[0] == info.diff_id


def test_a_running_container_committed_before_by_rename_is_copied_over_its_bases(tmp_path):
    """Running after a commit by rename: its changes are its upper and base-1 stacked. The
    new layer holds both; the upper's files are copied (it writes them in place), the
    base's linked (read-only)."""
    store = LinuxLayerStore(str(tmp_path / "root"))
    rw = store.create_rw_layer(CID, [])
    _fill(Path(store.diff_dir(rw)))
    store.commit_rw_layer(rw, None)
    merged = store.mount(rw, [])
    try:
        Path(merged, "later").write_text("later\n")
        os.symlink("later", os.path.join(merged, "later.link"))
        info = store.commit_rw_layer(rw, None)
    finally:
        store.unmount(rw)
    stored, upper = Path(store.diff_dir(info.id)), Path(store.diff_dir(rw))
    assert store.bases(rw) == [store.layer_dir(rw) + "/base-1"], "rebased while mounted"
    assert (stored / "later").read_text() == "later\n"
    assert os.lstat(stored / "later").st_ino != os.lstat(upper / "later").st_ino
    assert os.readlink(stored / "later.link") == "later"
    assert os.lstat(stored / "later.link").st_ino != os.lstat(upper / "later.link").st_ino
    assert os.lstat(stored / "etc" / "conf").st_ino == \
        os.lstat(Path(store.bases(rw)[0]) / "etc" / "conf").st_ino
    _is_its_diff_ids_tar(store, info.id, info.diff_id)
