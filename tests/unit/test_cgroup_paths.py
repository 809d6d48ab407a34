"""adapters/kernel/cgroups.py's path checks without a cgroup filesystem: a container's
cgroup may not leave its hierarchy by a symlink, and what was resolved is forgotten with
the mount table it was resolved with."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.kernel import cgroups


@pytest.fixture
def hierarchy(tmp_path: Path) -> Path:
    root = tmp_path / "memory"
    (root / "lamina").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (root / "evil").symlink_to(tmp_path / "elsewhere")
    return root


def test_a_parent_that_is_a_symlink_out_of_the_hierarchy_is_refused(hierarchy: Path) -> None:
    assert cgroups._inside(hierarchy, hierarchy / "lamina" / "c1") == hierarchy / "lamina" / "c1"
    with pytest.raises(cgroups.CgroupError, match="outside the hierarchy"):
        cgroups._inside(hierarchy, hierarchy / "evil" / "c1")
    with pytest.raises(cgroups.CgroupError, match="outside the hierarchy"):
        cgroups._inside(hierarchy, hierarchy / "evil" / "deeper" / "c1")


def test_what_was_resolved_goes_with_the_mount_table(hierarchy: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A parent turned into a symlink out is seen once the table is read again (at most
    _MOUNTS_FRESH later, or at once in another process or mount namespace)."""
    assert cgroups._inside(hierarchy, hierarchy / "lamina" / "c1")
    (hierarchy / "lamina").rmdir()
    (hierarchy / "lamina").symlink_to(hierarchy.parent / "elsewhere")
    monkeypatch.setattr(cgroups, "_mounts_seen", None)  # as a fresh read would find it
    with pytest.raises(cgroups.CgroupError, match="outside the hierarchy"):
        cgroups._inside(hierarchy, hierarchy / "lamina" / "c1")
