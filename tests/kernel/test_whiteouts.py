"""Whiteouts round trip: union -> upper dir -> layer tar -> extracted layer -> same union.

Each step mutates a union view, "commits" its upper dir through write_layer_tar and
extract_layer_tar into a new read-only layer, mounts the new stack and compares the views.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import shutil
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from adapters.storage.layertar import extract_layer_tar, write_flat_tar, write_layer_tar
from adapters.storage.overlay import overlay_view

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("no_leftover_mounts")]

_ids = itertools.count()



def snapshot(root: str) -> dict[str, tuple[object, ...]]:
    """Everything a container could see below root (the root itself excluded)."""
    view: dict[str, tuple[object, ...]] = {}
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(top, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                content: object = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(path)
            else:
                content = None
            xattrs = {x: os.getxattr(path, x, follow_symlinks=False)
                      for x in os.listxattr(path, follow_symlinks=False)}
            view[os.path.relpath(path, root)] = (
                stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                int(st.st_mtime), content, sorted(xattrs.items()))
    return view


def _fresh(tmp_path: Path) -> tuple[str, str, str]:
    base = tmp_path / f"c{next(_ids)}"
    dirs = [base / "upper", base / "work", base / "merged"]
    for d in dirs:
        d.mkdir(parents=True)
    return str(dirs[0]), str(dirs[1]), str(dirs[2])


def view_of(tmp_path: Path, lowers: list[str]) -> dict[str, tuple[object, ...]]:
    upper, work, merged = _fresh(tmp_path)
    with overlay_view(lowers, upper, work, merged):
        return snapshot(merged)


def commit(tmp_path: Path, lowers: list[str], mutate: Callable[[Path], None]
           ) -> tuple[list[str], list[str]]:
    """Mutate a view, turn its upper dir into a layer; return (new lowers, tar member names)."""
    upper, work, merged = _fresh(tmp_path)
    with overlay_view(lowers, upper, work, merged):
        mutate(Path(merged))
        before = snapshot(merged)
    tar = io.BytesIO()
    diff_id, size = write_layer_tar(upper, tar)
    layer = str(tmp_path / "layers" / diff_id.split(":")[1])
    assert extract_layer_tar(io.BytesIO(tar.getvalue()), layer) == (diff_id, size)
    again = io.BytesIO()
    write_layer_tar(layer, again)
    assert again.getvalue() == tar.getvalue()  # the layer is the upper dir, byte for byte
    new_lowers = [layer, *lowers]
    assert view_of(tmp_path, new_lowers) == before
    with tarfile.open(fileobj=io.BytesIO(tar.getvalue())) as archive:
        return new_lowers, archive.getnames()


def _base(tmp_path: Path) -> str:
    base = tmp_path / "layers" / "base"
    for rel in ("keep", "del_file", "dir_del/a", "dir_del/sub/b", "dir_re/old1",
                "dir_re/sub/old2", "nest/deep/gone", "nest/deep/stay"):
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_text(rel)
    (base / "link").symlink_to("keep")
    os.setxattr(base / "keep", "user.origin", b"base")
    return str(base)


def _step_one(merged: Path) -> None:
    (merged / "del_file").unlink()
    shutil.rmtree(merged / "dir_del")
    shutil.rmtree(merged / "dir_re")
    (merged / "dir_re").mkdir(mode=0o750)
    (merged / "dir_re" / "new").write_text("new")
    (merged / "nest" / "deep" / "gone").unlink()
    (merged / "keep").write_text("changed")
    (merged / "keep").chmod(0o600)


def _step_two(merged: Path) -> None:
    shutil.rmtree(merged / "dir_re")  # delete the opaque dir, and re-create it once more
    (merged / "dir_re").mkdir()
    (merged / "dir_re" / "newer").write_text("newer")
    (merged / "dir_del").mkdir()  # a directory over a whiteout
    (merged / "dir_del" / "back").write_text("back")
    (merged / "del_file").mkdir()  # a directory where a file was deleted
    os.setxattr(merged / "dir_del" / "back", "user.note", b"\x00\xff")


def test_whiteouts_and_opaque_dirs_round_trip(tmp_path: Path) -> None:
    lowers = [_base(tmp_path)]
    lowers, names = commit(tmp_path, lowers, _step_one)
    assert {".wh.del_file", ".wh.dir_del", "dir_re/.wh..wh..opq", "nest/deep/.wh.gone"
            } <= set(names)
    assert os.getxattr(Path(lowers[0], "dir_re"), "trusted.overlay.opaque") == b"y"
    lowers, names = commit(tmp_path, lowers, _step_two)
    assert {"dir_re/.wh..wh..opq", "dir_del", "del_file"} <= set(names)
    # over a lower whiteout the new directory needs no opaque marker: the whiteout still hides
    assert "dir_del/.wh..wh..opq" not in names
    view = view_of(tmp_path, lowers)
    assert {p for p in view if p.startswith("dir_re")} == {"dir_re", "dir_re/newer"}
    assert {p for p in view if p.startswith("dir_del")} == {"dir_del", "dir_del/back"}
    assert "nest/deep/gone" not in view and "nest/deep/stay" in view
    assert view["keep"][1] == 0o600


def test_flat_export_of_a_union_reimports_to_the_same_view(tmp_path: Path) -> None:
    lowers, _ = commit(tmp_path, [_base(tmp_path)], _step_one)
    upper, work, merged = _fresh(tmp_path)
    flat = io.BytesIO()
    with overlay_view(lowers, upper, work, merged):
        view = snapshot(merged)
        digest, _ = write_flat_tar(merged, flat)
    with tarfile.open(fileobj=io.BytesIO(flat.getvalue())) as archive:
        assert not [n for n in archive.getnames() if ".wh." in n]
    imported = str(tmp_path / "imported")
    assert extract_layer_tar(io.BytesIO(flat.getvalue()), imported)[0] == digest
    assert snapshot(imported) == view
    assert view_of(tmp_path, [imported]) == view
