"""The monitor a fork server keeps forked ahead for its commands' starts
(adapters/runtime/sparemonitor.py), on the real kernel: a served start is handed to it
(its PID namespace, the command's environment and umask), starts it can't serve fork their
own, one taker wins, and none outlives its server or its stop."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.kernel import proc
from adapters.runtime import sparemonitor
from tests.conftest import require_root
from tests.kernel.runtime_env import Served, alive, wait_for

pytestmark = pytest.mark.kernel


def listening(path: str) -> int:
    """The inode of the spare's socket file (0: none there)."""
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return 0


@pytest.fixture
def kept() -> Iterator[str]:
    """This process as a fork server keeping a spare (settled: it listens); it goes after."""
    require_root()
    sparemonitor.keep()
    assert sparemonitor._pending is not None
    assert sparemonitor._settled(block=True)
    assert sparemonitor._path is not None and os.path.exists(sparemonitor._path)
    yield sparemonitor._path
    pid = sparemonitor._pid
    sparemonitor.release()
    assert wait_for(lambda: not alive(pid))
    assert not os.path.exists(sparemonitor.path_for(proc.stamp()))


def test_release_kills_the_unclaimed_spare(kept: str) -> None:
    pid = sparemonitor._pid
    assert alive(pid) and os.getsid(pid) == pid  # a session of its own
    # its PID namespace unshared ahead: the link is empty until its first child (a
    # container's init, PID 1 there) is made; a process that made none has its own there
    with pytest.raises(FileNotFoundError):
        os.readlink(f"/proc/{pid}/ns/pid_for_children")
    assert os.readlink("/proc/self/ns/pid_for_children") == os.readlink("/proc/self/ns/pid")
    sparemonitor.release()
    assert wait_for(lambda: not alive(pid))
    assert not [n for n in os.listdir(sparemonitor.DIR) if n.startswith(proc.stamp())]
    sparemonitor.keep()  # for the fixture's own release
    assert sparemonitor._settled(block=True)


def test_keep_makes_none_while_one_waits_or_gets_ready(kept: str) -> None:
    before = (sparemonitor._pid, listening(kept))
    sparemonitor.keep()
    assert (sparemonitor._pid, listening(kept)) == before and sparemonitor._pending is None


def test_of_starts_side_by_side_one_claims_it(kept: str) -> None:
    """Children of the server (its commands) race for the one spare: renaming its file is
    the claim, so one gets it and the others none."""
    go_r, go_w = os.pipe()
    pids = []
    for _ in range(4):
        pid = os.fork()
        if pid == 0:
            os.read(go_r, 1)
            os._exit(0 if sparemonitor._claim(kept) is None else 1)
        pids.append(pid)
    os.write(go_w, b"gggg")
    won = [pid for pid in pids if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 1]
    assert len(won) == 1 and not os.path.exists(kept)
    os.rename(f"{kept}.taken.{won[0]}", kept)  # given back, for the fixture's release


def test_an_unclaimed_spare_ends_with_its_server_and_sweep_removes_what_is_left() -> None:
    require_root()
    top = str(Path(__file__).resolve().parents[2])
    code = (f"import sys, time; sys.path.insert(0, {top!r}); from adapters.runtime import "
            "sparemonitor as s; s.keep(); s._settled(block=True); "
            "print(s._path, s._pid, flush=True); time.sleep(60)")
    server = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        path, pid_text = server.stdout.readline().split()
        spare = int(pid_text)
        assert os.path.exists(path) and alive(spare)
        sparemonitor.sweep()  # its server lives: kept
        assert os.path.exists(path)
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait()
    assert wait_for(lambda: not alive(spare))
    assert not os.path.exists(path)
    dead = f"{path}.taken.{server.pid}"  # as a start killed after its claim leaves it
    Path(dead).touch()
    sparemonitor.sweep()
    assert not os.path.exists(dead)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """A root with busybox, served by a real fork server; stopped after, leaving nothing
    (no spare's file either)."""
    require_root()
    served = Served(tmp_path)
    try:
        assert wait_for(lambda: (served.lamina.root / "cli.sock").exists())
        yield served
    finally:
        served.stop()
    path = sparemonitor.path_for(proc.stamp(served.server.pid))
    assert not [n for n in os.listdir(sparemonitor.DIR)
                if n.startswith(os.path.basename(path))]


def test_a_served_start_is_handed_to_the_spare(served: Served) -> None:
    """The run's monitor is the spare the server kept (it was there before the command
    began), with the command's environment and umask, in a PID namespace of the
    container's; the server keeps the next once that command ended."""
    lamina, run = served.lamina, served.run
    path = sparemonitor.path_for(proc.stamp(served.server.pid))
    assert wait_for(lambda: listening(path))
    first = listening(path)
    time.sleep(0.05)  # past a clock tick: the spare's start time is before the marker's
    marker = subprocess.Popen(["sleep", "30"])
    try:
        cid = run("run", "-d", "--network", "none", "busybox", "sleep", "30",
                  umask=0o027, SPARE_TEST="handed").strip()
        began = proc.start_time(marker.pid)
    finally:
        marker.kill()
        marker.wait()
    monitor_pid, monitor_start = map(int, (lamina.root / "containers" / cid / "monitor")
                                     .read_text().split("."))
    assert began is not None and monitor_start < began  # forked before the command began
    assert wait_for(lambda: listening(path) not in (0, first))  # the next spare
    # once it has exec'd its lean interpreter: what it was handed shows in /proc
    assert wait_for(lambda: b"SPARE_TEST=handed" in Path(f"/proc/{monitor_pid}/environ")
                    .read_bytes())
    with open(f"/proc/{monitor_pid}/status") as f:
        assert "Umask:\t0027" in f.read()
    assert run("exec", cid, "cat", "/proc/1/cmdline") == "sleep\x0030\x00"
    lamina.ok("rm", "-f", cid)
    assert wait_for(lambda: not alive(monitor_pid))
    assert run("run", "--rm", "--network", "none", "busybox", "sh", "-c",
               "echo $$").strip() == "1"


def test_a_host_pid_start_forks_its_own(served: Served) -> None:
    """--pid host can't have the spare (its PID namespace is made): the spare stays."""
    run = served.run
    path = sparemonitor.path_for(proc.stamp(served.server.pid))
    assert wait_for(lambda: listening(path))
    first = listening(path)
    pid = run("run", "--rm", "--pid", "host", "--network", "none", "busybox", "sh", "-c",
              "echo $$").strip()
    assert pid != "1"
    time.sleep(0.2)
    assert listening(path) == first


def test_a_start_with_no_spare_forks_its_own(served: Served) -> None:
    """A spare taken (by a start beside, say) leaves the next start to fork one."""
    run = served.run
    path = sparemonitor.path_for(proc.stamp(served.server.pid))
    assert wait_for(lambda: listening(path))
    aside = f"{path}.aside"
    os.rename(path, aside)  # claimed, as a start beside would
    try:
        assert run("run", "--rm", "--network", "none", "busybox", "sh", "-c",
                   "echo $$").strip() == "1"
    finally:  # unclaimed, it ends with the server
        with contextlib.suppress(FileNotFoundError):
            os.unlink(aside)


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("PPid:")).split()[1])


def test_a_server_that_is_inits_child_clones_its_spare_beside_it() -> None:
    """A server whose parent is init (a client double-forks it) clones the spare as init's
    child itself (CLONE_PARENT): the pid keep() made is the spare's, no child between. A
    server with another parent (this test process) forks it through a child that exits."""
    require_root()
    theirs, mine = os.pipe()
    first = os.fork()
    if first == 0:  # the "server": a grandchild of this process, adopted by init
        code = 1
        try:
            os.close(theirs)
            if os.fork() == 0:
                while os.getppid() != 1:
                    time.sleep(0.001)
                sparemonitor.keep()
                assert sparemonitor._pending is not None
                made = sparemonitor._pending[0]
                assert sparemonitor._settled(block=True)
                spare = sparemonitor._pid
                os.write(mine, f"{made} {spare} {_ppid(spare)}\n".encode())
                sparemonitor.release()
                code = 0
        finally:
            os._exit(code)
    os.close(mine)
    os.waitpid(first, 0)
    with os.fdopen(theirs) as f:
        made, spare, parent = map(int, f.read().split())
    assert made == spare and parent == 1
    assert wait_for(lambda: not alive(spare))


def test_a_server_with_another_parent_forks_its_spare_through_a_child(kept: str) -> None:
    assert os.getppid() != 1
    pid = sparemonitor._pid
    sparemonitor.release()
    assert wait_for(lambda: not alive(pid))
    sparemonitor.keep()
    assert sparemonitor._pending is not None
    made = sparemonitor._pending[0]
    assert sparemonitor._settled(block=True)
    assert made != sparemonitor._pid and _ppid(sparemonitor._pid) != os.getpid()
