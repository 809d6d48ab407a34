"""Real-time CPU budgets (`--cpu-rt-period`, `--cpu-rt-runtime`) on the real kernel (cgroup v1
with RT group scheduling: this host). A container with a budget can make a process
SCHED_FIFO, one without cannot (tests/kernel/sched_fifo.c, built static and bound in); the
budget is lent through the cgroups above the container while it runs and given back after;
update changes it live; what the host hasn't free is refused at start, recorded as refused.
A cgroup v2-only host has no RT groups: refused by name there (adapters/kernel/cgroups.py's
CgroupV2._set), which this v1 host can't run. Every budget changed is restored."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_root
from tests.kernel.runtime_env import Lamina, busybox_lamina

pytestmark = pytest.mark.kernel

CPU = Path("/sys/fs/cgroup/cpu")
SOURCE = Path(__file__).with_name("sched_fifo.c")
NET = ("--network", "none")


def _rt(d: Path) -> tuple[int, int]:
    return (int((d / "cpu.rt_period_us").read_text()), int((d / "cpu.rt_runtime_us").read_text()))


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_root()
    if not (CPU / "cpu.rt_runtime_us").exists():
        pytest.fail("this host has no cgroup v1 cpu.rt_runtime_us (RT group scheduling)")
    dest = tmp_path_factory.mktemp("rt") / "sched-fifo"
    cc = shutil.which("cc") or "cc"
    subprocess.run([cc, "-static", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(dest),
                    str(SOURCE)], check=True)
    return dest


@pytest.fixture(scope="module")
def lamina(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lamina]:
    require_root()
    root_budget = _rt(CPU)
    yield from busybox_lamina(tmp_path_factory.mktemp("cpurt"))
    assert _rt(CPU) == root_budget, "the host's own RT budget is lamina's to read only"


@pytest.fixture
def parent() -> Iterator[str]:
    """A --cgroup-parent two levels deep, so no other lamina on this host shares it; its
    cgroups removed afterwards (which frees any budget left on them)."""
    top = f"lamina-test-rt-{uuid.uuid4().hex[:8]}"
    try:
        yield f"{top}/sub"
    finally:
        from adapters.kernel.cgroups import v1_roots

        for root in v1_roots().values():
            for d in (root / top / "sub", root / top):
                with contextlib.suppress(FileNotFoundError):
                    os.rmdir(d)
                assert not d.exists(), f"{d} left behind"


def test_a_budget_lets_a_process_go_sched_fifo_and_none_does_not(lamina: Lamina,
                                                                  probe: Path) -> None:
    bound = ("--cap-add", "SYS_NICE", "-v", f"{probe}:/sched-fifo:ro")
    without = lamina("run", "--rm", *NET, *bound, "busybox", "/sched-fifo")
    assert (without.returncode, without.stdout.strip()) == (1, "EPERM")
    given = lamina("run", "--rm", *NET, *bound, "--cpu-rt-runtime", "20000", "busybox",
                   "/sched-fifo")
    assert (given.returncode, given.stdout.strip()) == (0, "ok"), given.stderr
    created = [e for e in lamina.events() if e["type"] == "ContainerCreated"][-1]
    assert created["data"]["config"]["cpu_rt_runtime"] == 20000
    ours = CPU / "lamina"  # given back: lamina's parent holds what its children hold, if any
    assert not ours.is_dir() or _rt(ours)[1] == sum(
        _rt(d)[1] for d in ours.iterdir() if d.is_dir())


def test_lent_through_the_parents_updated_refused_and_given_back(lamina: Lamina,
                                                                  parent: str) -> None:
    top, sub = CPU / parent.split("/")[0], CPU / parent
    cid = lamina.ok("run", "-d", *NET, "--cgroup-parent", parent, "--cpu-rt-period", "100000",
                    "--cpu-rt-runtime", "40000", "busybox", "sleep", "600").strip()
    try:
        assert _rt(sub / cid) == (100000, 40000)
        assert _rt(sub)[1] == _rt(top)[1] == 400000  # 40 % of a CPU, at their 1 s period
        shown = json.loads(lamina.ok("inspect", cid))[0]["HostConfig"]
        assert (shown["CpuRealtimePeriod"], shown["CpuRealtimeRuntime"]) == (100000, 40000)

        lamina.ok("update", "--cpu-rt-runtime", "20000", cid)
        assert _rt(sub / cid) == (100000, 20000)
        assert _rt(sub)[1] == _rt(top)[1] == 200000  # what it no longer needs, given back

        free = _rt(CPU)[1] - sum(_rt(d)[1] * 1_000_000 // _rt(d)[0]
                                 for d in CPU.iterdir() if d.is_dir())
        too_much = str(free + 1000)
        out = lamina("run", *NET, "--cgroup-parent", parent, "--cpu-rt-runtime", too_much,
                     "busybox", "true")
        assert out.returncode != 0
        line = out.stderr.strip().removeprefix("lamina: error: ")
        assert line.startswith(f"cpu-rt-runtime {too_much} exceeds what lamina's cgroup can "
                               "get ("), line
        assert "\n" not in line
        refused = [e for e in lamina.events() if e["type"] == "CommandRejected"][-1]
        assert refused["data"]["command"] == "start" and refused["data"]["reason"] == line
        assert _rt(sub)[1] == _rt(top)[1] == 200000  # the refusal changed nothing
    finally:
        lamina("rm", "-f", cid)
        for c in lamina.container_ids():
            lamina("rm", "-f", c)
    assert _rt(sub)[1] == _rt(top)[1] == 0


def test_refused_by_name_on_cgroup_v2() -> None:
    """This hybrid host's cgroup2 tree stands in for a v2-only host: no RT groups there."""
    from adapters.kernel.cgroups import Cgroup, CgroupError, Limits, Mode, list_lamina_cgroups

    require_root()
    name = f"rt-v2-{uuid.uuid4().hex[:8]}"
    with pytest.raises(CgroupError, match=r"^--cpu-rt-runtime is not supported on cgroup v2: "
                       r"real-time group budgets \(cpu.rt_runtime_us\) are cgroup v1's$"):
        Cgroup.create(name, Limits(cpu_rt_runtime=1000), mode=Mode.V2)
    assert name not in list_lamina_cgroups(Mode.V2)
