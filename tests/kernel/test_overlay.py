"""The union view on a real overlayfs: deep stacks, short links, upper writes, unmounting."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from adapters.storage import overlay
from adapters.storage.overlay import (
    OverlayError,
    is_mounted,
    link_name_for,
    mount_overlay,
    mounts_under,
    overlay_view,
    unmount,
)

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("no_leftover_mounts")]



def _layers(root: Path, count: int) -> list[str]:
    """`count` layers named like digests, bottom first; each has its own file and `who`."""
    paths = []
    for i in range(count):
        layer = root / f"{i:03d}{'ab' * 30}1"  # 64 chars, like a sha256 hex
        layer.mkdir(parents=True)
        (layer / "who").write_text(str(i))
        (layer / f"only{i}").write_text("")
        paths.append(str(layer))
    return paths


def _scratch(tmp_path: Path, name: str = "c") -> tuple[str, str, str]:
    dirs = [tmp_path / name / part for part in ("upper", "work", "merged")]
    for d in dirs:
        d.mkdir(parents=True)
    return str(dirs[0]), str(dirs[1]), str(dirs[2])


def test_two_layers_use_absolute_paths(tmp_path: Path) -> None:
    lowers = _layers(tmp_path / "layers", 2)
    upper, work, merged = _scratch(tmp_path)
    with overlay_view(lowers[::-1], upper, work, merged):
        assert is_mounted(merged)
        assert Path(merged, "who").read_text() == "1"
        mountinfo = Path("/proc/self/mountinfo").read_text()
        assert f"lowerdir={lowers[1]}:{lowers[0]}" in mountinfo
    assert not is_mounted(merged)


def test_120_layers_mount_through_short_links(tmp_path: Path) -> None:
    lowers = _layers(tmp_path / "layers", 120)
    assert len(":".join(lowers)) > os.sysconf("SC_PAGE_SIZE")  # absolute paths cannot fit
    upper, work, merged = _scratch(tmp_path)
    cwd = os.getcwd()
    with overlay_view(lowers[::-1], upper, work, merged):
        assert os.getcwd() == cwd
        assert Path(merged, "who").read_text() == "119"
        names = set(os.listdir(merged))
        assert {f"only{i}" for i in range(120)} <= names
    links = tmp_path / "layers" / "l"
    assert len(os.listdir(links)) == 120
    assert all(len(name) == 26 for name in os.listdir(links))


def test_link_name_is_idempotent_and_relative(tmp_path: Path) -> None:
    (layer,) = _layers(tmp_path / "layers", 1)
    name = link_name_for(layer)
    assert link_name_for(layer) == name and len(name) == 26
    link = tmp_path / "layers" / "l" / name
    assert not os.readlink(link).startswith("/")
    assert link.resolve() == Path(layer)
    os.unlink(link)
    os.symlink("../elsewhere", link)  # a stale link is repaired
    assert link_name_for(layer) == name and link.resolve() == Path(layer)
    assert len(os.listdir(tmp_path / "layers" / "l")) == 1


def test_too_many_layers_for_one_page_is_a_clear_error(tmp_path: Path) -> None:
    lowers = [str(tmp_path / "layers" / f"{i:064d}") for i in range(200)]
    for path in lowers:
        os.makedirs(path)
    upper, work, merged = _scratch(tmp_path)
    with pytest.raises(OverlayError) as err:
        mount_overlay(lowers, upper, work, merged)
    assert err.value.errno == errno.E2BIG
    assert not is_mounted(merged)


def test_writes_go_to_upper_and_deletes_become_whiteouts(tmp_path: Path) -> None:
    lowers = _layers(tmp_path / "layers", 2)
    upper, work, merged = _scratch(tmp_path)
    with overlay_view(lowers[::-1], upper, work, merged):
        Path(merged, "new").write_text("fresh")
        Path(merged, "who").write_text("changed")
        os.unlink(Path(merged, "only0"))
    assert Path(upper, "new").read_text() == "fresh"
    assert Path(upper, "who").read_text() == "changed"
    assert Path(lowers[1], "who").read_text() == "1"
    assert Path(lowers[0], "only0").exists()
    whiteout = os.lstat(Path(upper, "only0"))
    assert stat.S_ISCHR(whiteout.st_mode) and whiteout.st_rdev == 0


def test_busy_mount_is_detached_lazily(tmp_path: Path) -> None:
    lowers = _layers(tmp_path / "layers", 1)
    upper, work, merged = _scratch(tmp_path)
    mount_overlay(lowers, upper, work, merged)
    try:
        with open(Path(merged, "who")) as busy:
            unmount(merged)
            assert not is_mounted(merged)
            assert busy.read() == "0"
    finally:
        if is_mounted(merged):
            unmount(merged)


def test_unmount_of_nothing_is_fine_and_spaces_in_mountinfo(tmp_path: Path) -> None:
    lowers = _layers(tmp_path / "layers", 1)
    upper, work, merged = _scratch(tmp_path, "with space")
    unmount(merged)
    with overlay_view(lowers, upper, work, merged):
        assert is_mounted(merged)
        assert mounts_under(str(tmp_path)) == [merged]
    unmount(merged)
    assert not is_mounted(merged)


def test_features_turned_off_only_where_the_host_turns_them_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    params = tmp_path / "params"
    params.mkdir()
    (params / "index").write_text("Y\n")
    (params / "redirect_dir").write_text("N\n")  # metacopy: unknown, so turned off anyway
    monkeypatch.setattr(overlay, "_MODULE_PARAMS", str(params))
    seen: list[str] = []
    real_mount = overlay.libc.mount

    def recording_mount(source: str, target: str, fstype: str, flags: int = 0,
                        data: str | None = None) -> None:
        seen.append(data or "")
        real_mount(source, target, fstype, flags, data)

    monkeypatch.setattr(overlay.libc, "mount", recording_mount)
    lowers = _layers(tmp_path / "layers", 1)
    upper, work, merged = _scratch(tmp_path)
    with overlay_view(lowers, upper, work, merged):  # the kernel takes the options
        assert is_mounted(merged)
    assert seen[0].endswith(",index=off,metacopy=off")
    assert "redirect_dir" not in seen[0]
