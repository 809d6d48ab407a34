"""The busybox rootfs: builds from busybox-static, imports as a layer, runs in a union view."""

from __future__ import annotations

import io
import os
import stat
import subprocess
from pathlib import Path

import pytest

from adapters.storage.busybox import (
    applets,
    build_busybox_rootfs,
    find_busybox,
    write_busybox_rootfs_tar,
)
from adapters.storage.layertar import extract_layer_tar
from adapters.storage.overlay import overlay_view

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("no_leftover_mounts")]



def test_rootfs_layout(tmp_path: Path) -> None:
    root = Path(build_busybox_rootfs(str(tmp_path / "rootfs")))
    names = applets(find_busybox())
    assert "sh" in names and "ls" in names and len(names) > 100
    assert all(os.readlink(root / "bin" / a) == "busybox" for a in names)
    assert os.stat(root / "bin/busybox").st_mode & 0o755 == 0o755
    assert stat.S_IMODE(os.stat(root / "tmp").st_mode) == 0o1777
    for d in ("proc", "sys", "dev", "root", "home", "tmp"):
        assert (root / d).is_dir() and not os.listdir(root / d)
    passwd = (root / "etc/passwd").read_text().splitlines()
    assert [line.split(":")[0] for line in passwd] == ["root", "nobody"]
    assert (root / "etc/group").read_text().startswith("root:x:0:")


def test_rootfs_tar_is_deterministic_imports_and_runs(tmp_path: Path) -> None:
    first, second = io.BytesIO(), io.BytesIO()
    diff_id, size = write_busybox_rootfs_tar(first)
    assert write_busybox_rootfs_tar(second) == (diff_id, size)
    assert first.getvalue() == second.getvalue()
    layer = str(tmp_path / "layers" / diff_id.split(":")[1])
    assert extract_layer_tar(io.BytesIO(first.getvalue()), layer) == (diff_id, size)
    dirs = [tmp_path / "c" / d for d in ("upper", "work", "merged")]
    for d in dirs:
        d.mkdir(parents=True)
    upper, work, merged = (str(d) for d in dirs)
    with overlay_view([layer], upper, work, merged):
        out = subprocess.run(
            ["chroot", merged, "/bin/sh", "-c", "echo hi > /tmp/x && id -un && cat /tmp/x"],
            capture_output=True, text=True, timeout=10, check=True)
    assert out.stdout.split() == ["root", "hi"]
    assert Path(upper, "tmp", "x").read_text() == "hi\n"
