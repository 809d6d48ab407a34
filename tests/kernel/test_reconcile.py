"""Reconciliation: the log and the host after a monitor was killed, and after a reboot."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tests.conftest import require_root
from tests.kernel.runtime_env import Lamina, busybox_tar, leftovers, parent_of


@pytest.fixture
def lamina(tmp_path) -> Lamina:
    require_root()
    lam = Lamina(tmp_path / "root")
    lam.ok("import", str(busybox_tar(tmp_path)), "busybox")
    yield lam
    ids = lam.remove_all()
    deadline = time.monotonic() + 5  # a monitor may still be finishing its last record
    while leftovers(lam.root, ids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert leftovers(lam.root, ids) == []


def _doc(lamina: Lamina, name: str) -> dict:
    return next(json.loads(line) for line in lamina.ok("ps", "-a", "--format", "json")
                .splitlines() if json.loads(line)["name"] == name)


def _gone(pid: int, timeout: float = 5) -> None:
    """Until `pid` has ended: gone, or a zombie, as lamina takes it (adapters/kernel/proc
    .is_same). A killed monitor's orphans are reaped by the machine's init, which here does
    so only every ~2 s: waiting for /proc/PID to go cost ~2 s a process."""
    from adapters.kernel.proc import stat_fields

    deadline = time.monotonic() + timeout
    while (fields := stat_fields(pid)) and fields[0] not in ("Z", "X") \
            and time.monotonic() < deadline:
        time.sleep(0.02)


def test_a_lost_process_is_found_and_recorded(lamina: Lamina) -> None:
    lamina.ok("run", "-d", "--name", "lost", "busybox", "sleep", "600")
    doc = _doc(lamina, "lost")
    monitor = parent_of(doc["pid"])
    os.kill(monitor, signal.SIGKILL)  # nobody watches any more...
    _gone(monitor)
    os.kill(doc["pid"], signal.SIGKILL)  # ...when the container's process dies
    _gone(doc["pid"])
    before = lamina.events()
    check = lamina("system", "check")
    assert check.returncode == 1
    assert f"container {doc['id'][:12]} (lost) is running in the log but its process is gone" \
        in check.stdout
    after = lamina.events()
    assert [e["type"] for e in after[len(before):]] == ["HostChecked"]
    assert _doc(lamina, "lost")["state"] == "running"  # check changes nothing

    lamina.ok("system", "reconcile")
    now = _doc(lamina, "lost")
    assert (now["state"], now["exit_code"]) == ("stopped", 255)
    assert "no monitor watched" in now["exit_reason"]
    assert leftovers(lamina.root, [doc["id"]]) == []
    assert lamina("system", "check").returncode == 0
    assert lamina.ok("audit", "verify").startswith("hash chain intact")


def test_a_reboot_converges_and_start_brings_containers_back(lamina: Lamina) -> None:
    from adapters.kernel.cgroups import Cgroup
    from adapters.storage.overlay import mounts_under, unmount

    lamina.ok("run", "-d", "--name", "up", "-v", "kept:/data", "-v", "/anon", "busybox", "sh",
              "-c", "[ -f /data/f ] || date +%s%N > /data/f; [ -f /anon/f ] || "
              "date +%s%N > /anon/f; exec sleep 600")
    lamina.ok("run", "-d", "--name", "frozen", "busybox", "sleep", "600")
    lamina.ok("pause", "frozen")
    written = lamina.ok("exec", "up", "sh", "-c", "while [ ! -s /anon/f ]; do sleep 0.05; "
                        "done; cat /data/f /anon/f").split()
    docs = [_doc(lamina, "up"), _doc(lamina, "frozen")]
    for doc in docs:  # the reboot: every process and monitor, every mount and cgroup gone
        monitor = parent_of(doc["pid"])
        os.kill(monitor, signal.SIGKILL)
        _gone(monitor)
        cgroup = Cgroup.open(doc["id"])
        cgroup.kill(signal.SIGKILL)
        if cgroup.is_frozen():
            cgroup.thaw()
        _gone(doc["pid"])
        cgroup.remove()
    for m in reversed(mounts_under(str(lamina.root))):
        unmount(m)

    lamina.ok("start", "up")  # its start-up check records what the reboot did, first
    for name in ("up", "frozen"):
        ended = [e for e in lamina.events(f"container={name}")
                 if e["type"] == "ContainerExited"]
        assert len(ended) == 1 and "no monitor watched" in ended[0]["data"]["reason"]
    assert _doc(lamina, "frozen")["state"] == "stopped"
    assert _doc(lamina, "up")["state"] == "running"
    assert lamina("system", "check").returncode == 0
    assert lamina.ok("exec", "up", "echo", "back").strip() == "back"
    lamina.ok("system", "reconcile")  # the volumes' data outlives the reboot and the repair
    assert lamina.ok("exec", "up", "cat", "/data/f", "/anon/f").split() == written


def test_leftover_mounts_and_staging_are_cleaned(lamina: Lamina) -> None:
    lamina.ok("create", "--name", "idle", "busybox", "true")
    doc = _doc(lamina, "idle")
    from adapters.bootstrap import build_engine

    engine = build_engine(str(lamina.root))
    image = engine.log.image(doc["image"])
    merged = engine.layers.mount(doc["rw_layer"], image.layers)  # as a crash would leave it
    stale = lamina.root / "tmp" / "half-written"
    stale.mkdir(parents=True)
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    check = lamina("system", "check")
    assert check.returncode == 1
    assert f"{merged} is mounted" in check.stdout and "staging leftover" in check.stdout
    lamina.ok("system", "reconcile")
    assert not os.path.ismount(merged) and not stale.exists()
    assert lamina("system", "check").returncode == 0


def test_the_process_is_known_by_pid_and_start_time(tmp_path) -> None:
    """A pid that now names another process (a reused pid) is not the container's."""
    from adapters.kernel import proc
    from adapters.runtime.linux import LinuxRuntime
    from core.model import Container

    me, started = os.getpid(), proc.start_time(os.getpid())
    runtime = LinuxRuntime(str(tmp_path), None, None)

    def c(start_time: int) -> Container:
        return Container(id="x" * 64, name="x", image="", state="running", version=1,
                         created="", pid=me, start_time=start_time)

    assert runtime.alive(c(started))
    assert not runtime.alive(c(started + 1))  # same pid, another process
    assert not proc.stamp_alive(f"{me}.{started + 1}") and proc.stamp_alive(proc.stamp())


def test_the_next_command_records_a_lost_process_by_itself(lamina: Lamina) -> None:
    lamina.ok("run", "-d", "--name", "lost", "busybox", "sleep", "600")
    doc = _doc(lamina, "lost")
    assert doc["start_time"] > 0
    monitor = parent_of(doc["pid"])
    os.kill(monitor, signal.SIGKILL)
    _gone(monitor)
    os.kill(doc["pid"], signal.SIGKILL)
    _gone(doc["pid"])
    lamina.ok("create", "busybox", "true")  # any state-changing command checks first
    now = _doc(lamina, "lost")
    assert now["state"] == "stopped" and "no monitor watched" in now["exit_reason"]
    recovered = lamina.events("type=HostChecked")[-1]
    assert recovered["meta"]["command"] == "system recover"
    assert lamina("system", "check").returncode == 0


def test_the_freezer_is_set_back_to_what_the_log_says(lamina: Lamina) -> None:
    from adapters.kernel.cgroups import Cgroup

    lamina.ok("run", "-d", "--name", "up", "busybox", "sleep", "600")
    cid = _doc(lamina, "up")["id"]
    Cgroup.open(cid).freeze()  # as a pause or commit killed after freezing leaves it
    check = lamina("system", "check")
    assert check.returncode == 1 and "running in the log but frozen" in check.stdout
    lamina.ok("system", "reconcile")
    assert not Cgroup.open(cid).is_frozen()
    assert lamina("system", "check").returncode == 0


def test_layer_directories_no_event_knows_are_removed_unless_in_flight(lamina: Lamina
                                                                       ) -> None:
    from adapters.kernel import proc

    layers = lamina.root / "layers"
    dead, alive = layers / ("d" * 64), layers / ("a" * 64)
    for path, owner in ((dead, "1.1"), (alive, proc.stamp())):
        (path / "diff").mkdir(parents=True)
        (path / "layer.json").write_text(json.dumps({"id": path.name, "owner": owner}))
    check = lamina("system", "check")
    assert check.returncode == 1
    assert f"layer {'d' * 12} on disk is in no image" in check.stdout
    assert "a" * 12 not in check.stdout  # its writer (this test) may still register it
    lamina.ok("system", "reconcile")
    assert not dead.exists() and alive.exists()
    import shutil

    shutil.rmtree(alive)
    assert lamina("system", "check").returncode == 0


def _freeze(root, cid: str) -> None:
    from adapters.kernel.cgroups import Cgroup

    Cgroup.open(cid).freeze()  # as a pause in flight has, before it records


def _unmount_view(root, cid: str) -> None:
    from adapters.storage.overlay import unmount

    unmount(str(root / "layers" / f"rw-{cid}" / "merged"))


def _half_rebase(root, cid: str) -> None:
    from adapters.storage.store import NEXT_UPPER

    (root / "layers" / f"rw-{cid}" / NEXT_UPPER).mkdir()  # as a commit in flight makes it


@pytest.mark.parametrize("make, says", [
    (_freeze, "is running in the log but frozen on the host"),
    (_unmount_view, "is running but its union view"),
    (_half_rebase, "was left between two steps of a commit"),
])
def test_what_a_command_in_flight_has_set_is_not_listed(lamina: Lamina, make, says) -> None:
    """A container whose lock is held (a pause, start or commit on it, between its change on
    the host and its record) is not judged: listed once the lock is free, if still so."""
    from adapters.bootstrap import build_engine

    cid = lamina.ok("run", "-d", "--network", "none", "busybox", "sleep", "600").strip()
    engine = build_engine(str(lamina.root))
    with engine.runtime.ending(engine.log.container(cid)):  # as the engine's commands hold it
        make(lamina.root, cid)
        check = lamina("system", "check")
        assert check.returncode == 0 and cid[:12] not in check.stdout, check.stdout
        lamina.ok("system", "reconcile")  # and nothing repaired under it
    check = lamina("system", "check")
    assert check.returncode == 1 and says in check.stdout and cid[:12] in check.stdout
    lamina.ok("system", "reconcile")
    assert lamina("system", "check").returncode == 0


def test_a_repair_judges_again_under_the_lock(lamina: Lamina) -> None:
    """The freezer's and the view's repairs read the log again once they hold the
    container's lock: a pause recorded since the check is not thawed, and the view of a
    container stopped since is not mounted again."""
    from adapters.bootstrap import build_engine
    from adapters.kernel.cgroups import Cgroup
    from adapters.runtime import hostcheck

    cid = lamina.ok("run", "-d", "--network", "none", "busybox", "sleep", "600").strip()
    merged = lamina.root / "layers" / f"rw-{cid}" / "merged"
    _freeze(lamina.root, cid)
    _unmount_view(lamina.root, cid)
    engine = build_engine(str(lamina.root), recover=False)
    try:
        known = {c.id: c for c in engine.log.containers()}
        found = {f.text: f for f in hostcheck.findings(engine.runtime, known)}
        freezer, = (f for text, f in found.items() if "running in the log but frozen" in text)
        view, = (f for text, f in found.items() if "union view" in text)
        lamina.ok("pause", cid)  # between the check and its repair
        freezer.repair()
        assert Cgroup.open(cid).is_frozen()
        lamina.ok("stop", "-t", "1", cid)
        view.repair()
        assert not os.path.ismount(merged)
    finally:
        engine.log.suspend()
    assert lamina("system", "check").returncode == 0
