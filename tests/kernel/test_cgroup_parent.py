"""`--cgroup-parent` on the real kernel: a container's cgroups under the parent named, in every
hierarchy, with limits, pause, stats, kill and cleanup working there; recorded at create,
shown by inspect; stray cgroups under the parent found by `system check` and removed by
`system reconcile`; `..` refused by name and recorded as refused. Every parent cgroup a
test makes is removed afterwards."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.kernel.cgroups import Cgroup, Limits, Mode, detect, v1_roots
from tests.conftest import require_root
from tests.kernel.runtime_env import Lamina, busybox_lamina

pytestmark = pytest.mark.kernel

ROOT = Path("/sys/fs/cgroup")


def _roots() -> list[Path]:
    return list(v1_roots().values()) if detect() is Mode.V1 else [ROOT]  # v1's has unified


def _remove_parent(top: str) -> None:
    """rmdir a test's parent tree (deepest first) in every hierarchy."""
    for root in _roots():
        d = root / top
        if d.is_dir():
            for sub in sorted((p for p, _, _ in os.walk(d)), key=len, reverse=True):
                with contextlib.suppress(FileNotFoundError):
                    os.rmdir(sub)
        assert not d.exists(), f"{d} left behind"


@pytest.fixture
def parent_top() -> Iterator[str]:
    require_root()
    top = f"lamina-test-parent-{uuid.uuid4().hex[:8]}"
    try:
        yield top
    finally:
        _remove_parent(top)


@pytest.fixture(scope="module")
def lamina(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lamina]:
    require_root()
    yield from busybox_lamina(tmp_path_factory.mktemp("cgparent"))


@pytest.mark.parametrize("mode", [Mode.V1, Mode.V2])
def test_adapter_makes_limits_freezes_and_removes_under_a_parent(parent_top: str,
                                                                 mode: Mode) -> None:
    """V2 is this hybrid host's cgroup2 tree, which holds no controller to limit with: the
    layout, the freezer and the cleanup are checked there, the limits on v1."""
    parent = f"{parent_top}/inner"
    limits = Limits(memory=64 << 20, pids=32) if mode is Mode.V1 else Limits()
    cg = Cgroup.create(f"t-{uuid.uuid4().hex[:10]}", limits, mode=mode, parent=parent)
    try:
        assert cg.path == f"{parent}/{cg.id}"
        assert all(str(d).endswith(f"/{parent}/{cg.id}") and d.is_dir() for d in cg.dirs())
        assert Cgroup.open(cg.id, mode=mode, parent=parent).dirs() == cg.dirs()
        assert cg.pids() == []
        if mode is Mode.V1:
            assert cg.stats().memory_limit == 64 << 20
        cg.freeze()
        assert Cgroup.open(cg.id, mode=mode, parent=parent).is_frozen()
        cg.thaw()
    finally:
        cg.remove()
    assert not any(d.exists() for d in cg.dirs())
    assert all(d.parent.is_dir() for d in cg.dirs()), "a --cgroup-parent stays, as docker's"


def test_a_parent_outside_the_hierarchy_is_refused(parent_top: str) -> None:
    from core.cgroupparent import relative
    from core.errors import BadInput

    with pytest.raises(BadInput, match=r"'\.\.' would leave the cgroup hierarchy"):
        relative(f"{parent_top}/../../etc")
    assert relative(f"/{parent_top}/./x/") == f"{parent_top}/x"


def _proc_cgroups(lamina: Lamina, ref: str) -> dict[str, str]:
    """The container's init's /proc/PID/cgroup, hierarchy -> path, read on the host."""
    pid = json.loads(lamina.ok("inspect", ref))[0]["State"]["Pid"]
    with open(f"/proc/{pid}/cgroup") as f:
        rows = [line.rstrip("\n").split(":", 2) for line in f]
    return {controllers: path for _, controllers, path in rows}


def test_run_under_a_parent_limits_pauses_stats_and_cleans_up(lamina: Lamina,
                                                              parent_top: str) -> None:
    parent = f"/{parent_top}/ctrs"
    cid = lamina.ok("run", "-d", "--network", "none", "--cgroup-parent", parent,
                    "--memory", "48m", "--pids-limit", "40", "--cpus", "0.5",
                    "busybox", "sh", "-c", "sleep 600 & sleep 600").strip()
    try:
        paths = _proc_cgroups(lamina, cid)
        for hierarchy in ("memory", "pids", "freezer"):
            assert paths[hierarchy] == f"{parent}/{cid}", paths
        where = ROOT / "memory" / parent_top / "ctrs" / cid
        assert (where / "memory.limit_in_bytes").read_text().strip() == str(48 << 20)
        assert (ROOT / "pids" / parent_top / "ctrs" / cid / "pids.max").read_text().strip() \
            == "40"
        assert (ROOT / "cpu" / parent_top / "ctrs" / cid / "cpu.cfs_quota_us"
                ).read_text().strip() == "50000"
        doc = json.loads(lamina.ok("inspect", cid))[0]
        assert doc["HostConfig"]["CgroupParent"] == parent
        created = [e for e in lamina.events(f"container={cid}")
                   if e["type"] == "ContainerCreated"]
        assert created[0]["data"]["config"]["cgroup_parent"] == parent

        lamina.ok("pause", cid)
        freezer = ROOT / "freezer" / parent_top / "ctrs" / cid / "freezer.state"
        assert freezer.read_text().strip() == "FROZEN"
        lamina.ok("unpause", cid)
        assert freezer.read_text().strip() == "THAWED"
        stats = json.loads(lamina.ok("stats", "--no-stream", "--format", "json", cid))
        # two sleeps: sh execs the last one
        assert (stats["pids"], stats["memory_limit"]) == (2, 48 << 20), stats
        assert stats["cpu_ns"] > 0 and stats["memory"] > 0, stats
        # an exec joins the container's cgroups: inside its cgroup namespace each is "/"
        inside = lamina.ok("exec", cid, "cat", "/proc/self/cgroup").splitlines()
        assert inside and all(line.endswith(":/") for line in inside), inside
        top = lamina.ok("top", cid)
        assert top.count("sleep 600") == 2, top
        lamina.ok("kill", cid)  # kill-all: its forked sleep dies with it
        assert not (ROOT / "memory" / parent_top / "ctrs" / cid).exists()
    finally:
        lamina("rm", "-f", cid)
    assert (ROOT / "memory" / parent_top / "ctrs").is_dir()


def test_check_finds_and_reconcile_removes_a_stray_under_a_parent(lamina: Lamina,
                                                                   parent_top: str) -> None:
    cid = lamina.ok("create", "--network", "none", "--cgroup-parent", parent_top,
                    "busybox", "true").strip()
    try:  # a cgroup left by a run that died unrecorded
        stray = Cgroup.create(cid, parent=parent_top)
        out = lamina("system", "check")
        assert out.returncode != 0
        assert f"cgroup {parent_top}/{cid[:12]} belongs to no running container" in out.stdout
        lamina.ok("system", "reconcile")
        assert not any(d.exists() for d in stray.dirs())
        assert lamina("system", "check").returncode == 0
    finally:
        lamina("rm", "-f", cid)


def test_a_parent_climbing_out_is_refused_and_recorded(lamina: Lamina) -> None:
    out = lamina("run", "--network", "none", "--cgroup-parent", "a/../../x", "busybox", "true")
    assert out.returncode != 0
    line = out.stderr.strip().removeprefix("lamina: error: ")
    assert line == "invalid cgroup parent 'a/../../x': '..' would leave the cgroup hierarchy"
    rejected = [e for e in lamina.events() if e["type"] == "CommandRejected"]
    assert rejected and "would leave the cgroup hierarchy" in json.dumps(rejected[-1])
