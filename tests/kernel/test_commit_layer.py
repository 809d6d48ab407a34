"""commit on disk: the copy of a read-write layer is the layer its diff_id names, its
tar-split rebuilds that very tar, and the container's own layer is left as it was.

commit_rw_layer hashes the read-write layer while `cp -a` copies it (store.py): these hold
the two to the same tree, with everything a layer tar records (owners, modes, sub-second
times, hardlinks, symlinks, fifos, xattrs, whiteouts, opaque directories) and what it must
drop (overlayfs' own xattrs)."""

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


def test_a_committed_layer_is_its_diff_ids_tar_and_leaves_the_container_alone(tmp_path):
    store = LinuxLayerStore(str(tmp_path / "root"))
    rw = store.create_rw_layer(CID, [])
    upper = Path(store.diff_dir(rw))
    _fill(upper)
    before = _tree(upper)
    info = store.commit_rw_layer(rw, None)
    stored = Path(store.diff_dir(info.id))
    assert _tree(upper) == before, "commit changed the container's own layer"
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
