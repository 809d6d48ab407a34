"""The cgroup a fork server keeps ready for its commands' starts
(adapters/kernel/readycgroup.py), on the real kernel: what a start takes by renaming, what
it leaves, races between takers, and that none outlives its server."""

from __future__ import annotations

import contextlib
import glob
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from adapters.kernel import readycgroup
from adapters.kernel.cgroups import Cgroup, CgroupError, Limits, list_lamina_cgroups
from tests.conftest import require_root
from tests.kernel.runtime_env import Served, wait_for

pytestmark = pytest.mark.kernel


def ready_dirs(name: str) -> list[str]:
    return glob.glob(f"/sys/fs/cgroup/*/lamina/{name}")


def whole(name: str) -> bool:
    """Whether the server's ready set `name` is whole: its claim directory is renamed last
    (readycgroup.keep), once every other hierarchy's is in place."""
    return os.path.isdir(f"/sys/fs/cgroup/{readycgroup.CLAIM}/lamina/{name}")


def memory_ino(name: str) -> int:
    return os.stat(f"/sys/fs/cgroup/memory/lamina/{name}").st_ino


@pytest.fixture
def kept() -> Iterator[list[str]]:
    """This process as a fork server keeping one; whatever a test leaves of it, or of the
    cgroups it renamed it to, goes after."""
    require_root()
    readycgroup.keep()
    names = [readycgroup.name()]
    yield names
    readycgroup.release()
    readycgroup._owner = None
    for name in names:
        with contextlib.suppress(CgroupError):  # gone already
            Cgroup.open(name).remove()
    assert not ready_dirs(readycgroup.name())


def test_a_start_without_options_takes_it_by_rename(kept: list[str]) -> None:
    ours = readycgroup.name()
    before = ready_dirs(ours)
    assert len(before) >= 8  # one per v1 hierarchy, and the hybrid's cgroup2
    made = memory_ino(ours)
    allowed = Path(f"/sys/fs/cgroup/devices/lamina/{ours}/devices.list").read_text()
    assert "a *:* rwm" not in allowed  # a container's cgroup denies all but its devices
    cid = uuid.uuid4().hex
    kept.append(cid)
    cgroup = readycgroup.take(cid, Limits(), readycgroup.default_rules(), "lamina")
    assert cgroup is not None and cgroup.id == cid
    assert ready_dirs(ours) == []
    assert sorted(str(d) for d in cgroup.dirs()) == sorted(d.replace(ours, cid)
                                                           for d in before)
    assert memory_ino(cid) == made  # renamed, not made anew
    assert Path(f"/sys/fs/cgroup/devices/lamina/{cid}/devices.list").read_text() == allowed
    again = uuid.uuid4().hex
    assert readycgroup.take(again, Limits(), readycgroup.default_rules(), "lamina") is None
    readycgroup.keep()  # the server, once that command ended: the next one
    assert len(ready_dirs(ours)) == len(before) and memory_ino(ours) != made
    readycgroup.keep()  # there: nothing made
    assert again not in list_lamina_cgroups()


def test_other_starts_make_their_own_and_leave_it(kept: list[str]) -> None:
    rules = readycgroup.default_rules()
    cid = uuid.uuid4().hex
    made = memory_ino(readycgroup.name())
    assert readycgroup.take(cid, Limits(memory=64 << 20), rules, "lamina") is None
    assert readycgroup.take(cid, Limits(), rules[:-1], "lamina") is None
    assert readycgroup.take(cid, Limits(), rules, "elsewhere") is None
    assert memory_ino(readycgroup.name()) == made  # still there, untouched
    assert cid not in list_lamina_cgroups()


def test_of_starts_side_by_side_one_takes_it(kept: list[str]) -> None:
    """Children of the server (its commands) race for the one set: the freezer's
    directory is the claim, so one gets the whole set and the others none of it."""
    cids = [uuid.uuid4().hex for _ in range(4)]
    kept.extend(cids)
    go_r, go_w = os.pipe()
    pids = []
    for cid in cids:
        pid = os.fork()
        if pid == 0:
            os.read(go_r, 1)
            taken = readycgroup.take(cid, Limits(), readycgroup.default_rules(), "lamina")
            os._exit(0 if taken is None else 1)
        pids.append(pid)
    os.write(go_w, b"gggg")
    won = [cid for cid, pid in zip(cids, pids, strict=True)
           if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 1]
    assert len(won) == 1
    assert ready_dirs(readycgroup.name()) == []
    lamina_ids = list_lamina_cgroups()
    assert won[0] in lamina_ids and not set(cids) - set(won) & set(lamina_ids)
    assert len(Cgroup.open(won[0]).dirs()) >= 8


def test_a_set_being_made_is_not_taken(kept: list[str]) -> None:
    """The server puts the freezer's directory in place last: before that, a taker finds
    no claim to make and makes its own."""
    ours = readycgroup.name()
    making = readycgroup.MAKING + ours.removeprefix(readycgroup.PREFIX)
    freezer = Path(f"/sys/fs/cgroup/freezer/lamina/{ours}")
    freezer.rename(freezer.with_name(making))
    kept.append(making)
    cid = uuid.uuid4().hex
    assert readycgroup.take(cid, Limits(), readycgroup.default_rules(), "lamina") is None
    assert cid not in list_lamina_cgroups()
    readycgroup.keep()  # the server makes it whole again
    assert freezer.is_dir()


def orphan(while_alive: Callable[[str], object] = lambda name: None) -> str:
    """A ready cgroup whose server was killed outright: its name. `while_alive` is given it
    while its server still runs."""
    top = str(Path(__file__).resolve().parents[2])
    code = (f"import sys, time; sys.path.insert(0, {top!r}); from adapters.kernel import "
            "readycgroup as r; r.keep(); print('kept', flush=True); time.sleep(60)")
    server = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline() == "kept\n"
        name = readycgroup.name(server.pid)
        assert ready_dirs(name)
        assert name not in readycgroup.orphans()  # it lives
        readycgroup.sweep()
        assert ready_dirs(name)
        while_alive(name)
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait()
    return name


def test_sweep_removes_those_of_servers_gone() -> None:
    require_root()
    name = orphan()
    assert name in readycgroup.orphans()
    readycgroup.sweep()
    assert ready_dirs(name) == []


def test_system_check_lists_an_orphan_and_reconcile_removes_it(tmp_path: Path) -> None:
    """A set whose server was killed outright: its root's check lists it and its reconcile
    removes it; another root's check passes over it (it must not fail on what another
    root's killed server left), and a live server's is neither listed nor removed. Checked
    in this process: a fork server starting meanwhile sweeps orphans (a CLI check's would)."""
    require_root()
    from adapters.bootstrap import build_engine

    engine = build_engine(str(tmp_path / "root"), recover=False)
    other = build_engine(str(tmp_path / "other"), recover=False)

    def says(name: str) -> str:
        return f"cgroup lamina/{name} was kept ready by this root's fork server, which is gone"

    def live(name: str) -> None:  # the root's server, as claim() names it in cli.pid
        (tmp_path / "root" / "cli.pid").write_text(
            readycgroup.stamp_of(name).partition(".")[0] + "\n")
        assert says(name) not in engine.reconcile(repair=False)
        engine.reconcile(repair=True)
        assert ready_dirs(name)

    name = ""
    try:
        name = orphan(while_alive=live)
        assert says(name) not in other.reconcile(repair=False)
        assert says(name) in engine.reconcile(repair=False)
        assert ready_dirs(name)  # a check changes nothing
        engine.reconcile(repair=True)
        assert ready_dirs(name) == []
        assert says(name) not in engine.reconcile(repair=False)
    finally:
        if name:
            readycgroup.remove(name)
        engine.log.suspend()
        other.log.suspend()


def test_a_served_start_takes_the_servers_and_check_reconcile_and_stop_clean_up(
        tmp_path: Path) -> None:
    """Through a real fork server: the run's cgroup is the one the server kept (renamed),
    the server keeps the next once that command ended, a pause takes none, `system check`
    passes over it, and the server's stop leaves none."""
    require_root()
    it = Served(tmp_path)
    lamina, served, root = it.lamina, it.run, it.lamina.root
    try:
        assert wait_for(lambda: (root / "cli.sock").exists())
        ours = readycgroup.name(it.server.pid)
        assert wait_for(lambda: whole(ours))
        made = memory_ino(ours)
        cid = served("run", "-d", "--network", "none", "busybox", "sleep", "30").strip()
        assert memory_ino(cid) == made  # the server's, renamed
        assert wait_for(lambda: whole(ours))  # the next one, once that command is over
        again = memory_ino(ours)
        assert again != made
        served("pause", cid)
        served("unpause", cid)
        assert memory_ino(ours) == again  # nothing taken, nothing made
        lamina.ok("rm", "-f", cid)
        check = lamina("system", "check")
        assert check.returncode == 0 and "ready" not in check.stdout, check.stdout
    finally:
        it.stop()
    assert ready_dirs(ours) == []


