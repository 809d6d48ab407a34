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


def _table(monkeypatch: pytest.MonkeyPatch, mounts: list[tuple[str, str]]) -> None:
    """`mounts` as this process's fresh read of its mount table (the key _mounts checks)."""
    import os
    import time

    key = (os.getpid(), os.stat("/proc/self/ns/mnt").st_ino)
    monkeypatch.setattr(cgroups, "_mounts_seen", (key, time.monotonic(), mounts))
    monkeypatch.setattr(cgroups, "_layout", {})


def test_the_spare_makes_the_v1_layout_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    """read_mounts_ahead (the fork server's spare) makes the mode and the hierarchies'
    roots from the table while no client waits: the command's Cgroup.open reuses them.
    The table is changed in place after it (still the same read): the layout made
    ahead is what the command sees, not one made again from the table."""
    root = Path("/sys/fs/cgroup")
    mounts = [(str(root), "tmpfs"), (f"{root}/freezer", "cgroup"),
              (f"{root}/memory", "cgroup"), (f"{root}/unified", "cgroup2")]
    _table(monkeypatch, mounts)
    cgroups.read_mounts_ahead()
    mounts[:] = [(str(root), "cgroup2")]
    assert cgroups.detect() is cgroups.Mode.V1
    assert cgroups.v1_roots() == {name: root / name for name in ("freezer", "memory",
                                                                  "unified")}
    assert cgroups.CgroupV1("c1").dirs() == [root / name / "lamina" / "c1" for name in
                                             ("freezer", "memory", "unified")]
    assert cgroups.CgroupV1("c2", parent="x/y").dirs() == [
        root / name / "x/y/c2" for name in ("freezer", "memory", "unified")]


def test_the_spare_makes_the_v2_layout_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    root = Path("/sys/fs/cgroup")
    mounts = [(str(root), "cgroup2")]
    _table(monkeypatch, mounts)
    cgroups.read_mounts_ahead()
    mounts[:] = [(str(root), "tmpfs")]
    assert cgroups.detect() is cgroups.Mode.V2
    assert cgroups.v2_root() == root


def test_a_new_read_of_the_table_makes_the_layout_again(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    """What was made ahead goes with the read it was made from."""
    root = Path("/sys/fs/cgroup")
    _table(monkeypatch, [(str(root), "cgroup2")])
    cgroups.read_mounts_ahead()
    _table(monkeypatch, [(str(root), "tmpfs"), (f"{root}/unified", "cgroup2")])
    assert cgroups.detect() is cgroups.Mode.V1
    assert cgroups.v2_root() == root / "unified"


def test_the_freezers_wait_gives_its_cpu_away_while_it_spins(monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    """A task still FREEZING must run to freeze: each look of the spin is followed by a
    sched_yield, so that a task queued on the waiter's CPU gets it; the predicate's
    answer is what ends the wait."""
    import os

    yields = []
    monkeypatch.setattr(os, "sched_yield", lambda: yields.append(1))
    monkeypatch.setattr(cgroups, "SPIN", 60.0)  # every look in the spin, however slow
    answers = iter([False, False, False, True])
    assert cgroups._wait(lambda: next(answers), timeout=1.0)
    assert len(yields) == 3
    assert not cgroups._wait(lambda: False, timeout=0.002)
