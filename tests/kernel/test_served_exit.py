"""The end of a long-lived container recorded by the root's fork server, not by a recorder
exec'd afresh (adapters/runtime/supervise.py _served, adapters/record_exit.py for_monitor).

A container that lives past the monitor's warm window has its watch in the lean
supervisor (`python -S ... adapters.runtime.supervise`); at its end the supervisor asks the
server, and only when none answers (or it refuses) becomes `python -m
adapters.record_exit`. Each test follows the container's monitor processes through
/proc/PID/cmdline until they are gone, so it sees which of the two recorded the end: an
exec'd recorder lives ~100 ms at the least (an interpreter's start and lamina's imports),
far longer than the few ms between two looks.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.fastpath import client
from adapters.fastpath.forkserver import holder, stop_server
from adapters.runtime.supervise import SERVED_RECORD
from tests.conftest import require_root
from tests.kernel.runtime_env import Lamina, busybox_lamina

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("served_environment")]


@pytest.fixture(scope="module")
def lamina(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lamina]:
    """A root whose fork server the client starts (on the first command after the import
    made the log), as any user's root gets one."""
    require_root()
    yield from busybox_lamina(tmp_path_factory.mktemp("served-exit"))


def served(lamina: Lamina) -> int:
    """The root's fork server, started by a command if none runs: its pid."""
    lamina.ok("ps")
    pid = holder(str(lamina.root))
    assert pid is not None, "no fork server serves the root"
    return pid


def kind(cmdline: bytes) -> str:
    if b"adapters.record_exit" in cmdline:
        return "recorder"
    if b"adapters.runtime.supervise" in cmdline:
        return "supervisor"
    return "other"  # the forked monitor before its exec, or a zombie


def monitors(lamina: Lamina, cid: str, runs: int = 1, timeout: float = 60
             ) -> dict[int, set[str]]:
    """What each monitor of the container's first `runs` runs was (kind of its command
    line) from now until it is gone: the monitor named by <cdir>/monitor, which a restart
    rewrites."""
    path = lamina.root / "containers" / cid / "monitor"
    seen: dict[int, set[str]] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):  # removed (--rm), or rewritten
            seen.setdefault(int(path.read_text().partition(".")[0]), set())
        alive = False
        for pid, kinds in seen.items():
            try:
                kinds.add(kind(Path(f"/proc/{pid}/cmdline").read_bytes()))
                alive = True
            except OSError:
                continue
        if not alive and len(seen) >= runs:
            return seen
        time.sleep(0.003)
    raise AssertionError(f"the monitors of {cid} did not end: {seen}")


def inspect(lamina: Lamina, cid: str) -> dict:
    return json.loads(lamina.ok("inspect", cid))[0]


def exited(lamina: Lamina, cid: str) -> list[dict]:
    return [e for e in lamina.events(f"container={cid}") if e["type"] == "ContainerExited"]


def test_a_long_lived_container_is_recorded_by_the_server(lamina: Lamina) -> None:
    """Its exit code, as its monitor's (`lamina-monitor`, the monitor's pid), with no
    recorder exec'd; `lamina wait` answers it."""
    served(lamina)
    cid = lamina.ok("run", "-d", "--network", "none", "busybox", "sh", "-c",
                    "sleep 0.4; exit 3").strip()
    seen = monitors(lamina, cid)
    assert len(seen) == 1 and "supervisor" in next(iter(seen.values())), seen
    assert "recorder" not in next(iter(seen.values())), seen
    assert lamina.ok("wait", cid).strip() == "3"
    [event] = exited(lamina, cid)
    assert event["data"]["exit_code"] == 3 and event["data"]["oom"] is False
    assert event["meta"]["argv"] == ["lamina-monitor"]
    assert event["meta"]["pid"] == next(iter(seen))
    lamina.ok("rm", cid)


def test_oom_and_auto_remove_through_the_server(lamina: Lamina) -> None:
    """The kernel's OOM kill is recorded as such (137, oom), and a detached --rm container
    is removed, by the server's child."""
    served(lamina)
    hog = lamina.ok("run", "-d", "--network", "none", "--memory", "16m", "busybox", "sh",
                    "-c", "sleep 0.3; x=$(head -c 40000000 /dev/zero | tr '\\0' a)").strip()
    assert all("recorder" not in k for k in monitors(lamina, hog).values())
    [event] = exited(lamina, hog)
    assert (event["data"]["exit_code"], event["data"]["oom"]) == (137, True)
    lamina.ok("rm", hog)
    gone = lamina.ok("run", "-d", "--rm", "--network", "none", "busybox", "sleep",
                     "0.3").strip()
    assert all("recorder" not in k for k in monitors(lamina, gone).values())
    deadline = time.monotonic() + 20
    while gone in lamina.container_ids() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone not in lamina.container_ids()
    removed = [e for e in lamina.events(f"container={gone}") if e["type"] == "ContainerRemoved"]
    assert [e["meta"]["argv"] for e in removed] == [["lamina-monitor"]]


def test_a_restart_policy_fires_through_the_server(lamina: Lamina) -> None:
    """on-failure:2: the server's child records each end, schedules the restart, waits
    the back-off (the supervisor, still the monitor, waits for its answer) and starts the
    next run; three runs, three monitors, no recorder exec'd."""
    served(lamina)
    cid = lamina.ok("run", "-d", "--network", "none", "--restart", "on-failure:2",
                    "busybox", "sh", "-c", "sleep 0.3; exit 1").strip()
    seen = monitors(lamina, cid, runs=3)
    assert len(seen) == 3 and all("recorder" not in k for k in seen.values()), seen
    deadline = time.monotonic() + 20
    while (state := inspect(lamina, cid))["State"]["Restarting"] \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state["RestartCount"] == 2 and state["State"]["Status"] == "stopped"
    assert [e["data"]["exit_code"] for e in exited(lamina, cid)] == [1, 1, 1]
    lamina.ok("rm", cid)


def test_only_the_containers_monitor_may_ask(lamina: Lamina) -> None:
    """The request from another process (this test, root as the monitor is) is refused
    and changes nothing (not even once the container is removed); a server of code that
    doesn't know the request (here: one asked in an older form) says so as argparse does
    (2), and the monitor then records it itself."""
    served(lamina)
    cid = lamina.ok("run", "-d", "--rm", "--network", "none", "busybox", "sleep",
                    "30").strip()
    root, pid = str(lamina.root), str(inspect(lamina, cid)["State"]["Pid"])
    env = client.environment()
    assert client.ask(root, [SERVED_RECORD, root, cid, pid, "--remove"], env) == 3
    assert client.ask(root, ["monitor-exit/2", root, cid, pid, "detached"], env) == 2
    assert inspect(lamina, cid)["State"]["Status"] == "running"
    lamina.ok("rm", "-f", cid)
    assert client.ask(root, [SERVED_RECORD, root, cid, pid, "--remove"], env) == 3


def test_without_a_server_the_recorder_is_exec_d(lamina: Lamina,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The server stopped while the container runs (and LAMINA_NO_SERVER in the starting
    command's environment, with a server up): the monitor becomes the recorder, as before,
    and the exit is recorded all the same."""
    served(lamina)
    cid = lamina.ok("run", "-d", "--network", "none", "busybox", "sh", "-c",
                    "sleep 1; exit 5").strip()
    assert stop_server(str(lamina.root)) is not None
    seen = monitors(lamina, cid)
    assert len(seen) == 1 and {"recorder", "supervisor"} <= next(iter(seen.values())), seen
    assert [e["data"]["exit_code"] for e in exited(lamina, cid)] == [5]
    served(lamina)
    monkeypatch.setenv("LAMINA_NO_SERVER", "1")
    other = lamina.ok("run", "-d", "--network", "none", "busybox", "sleep", "0.3").strip()
    monkeypatch.delenv("LAMINA_NO_SERVER")
    assert holder(str(lamina.root)) is not None
    assert "recorder" in next(iter(monitors(lamina, other).values()))
    assert [e["data"]["exit_code"] for e in exited(lamina, other)] == [0]
    lamina.ok("rm", cid, other)


def test_the_recorder_leaves_the_pid_namespace_it_made_for_init_first(tmp_path: Path) -> None:
    """A monitor unshared a PID namespace for its children (init's): until it goes back to
    its own, it can make no thread (the kernel refuses a thread outside its process's PID
    namespace), and the log's writers wait for their turn in one. record_exit.main goes
    back first (own_pid_namespace), so the recorder waits in the queue as every writer."""
    import os
    import threading

    from adapters import record_exit
    from adapters.kernel import libc

    require_root()

    def can_thread() -> bool:
        thread = threading.Thread(target=lambda: None)
        try:
            thread.start()
        except RuntimeError:
            return False
        thread.join()
        return True

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            libc.unshare(libc.CLONE_NEWPID)
            init = os.fork()  # the namespace is made by its first child, as init is
            if init == 0:
                os._exit(0)
            os.waitpid(init, 0)
            before = can_thread()
            record_exit.main([str(tmp_path / "root"), "0" * 64, "1"])  # records nothing
            os.write(w, bytes([before, can_thread()]))
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        got = f.read()
    os.waitpid(pid, 0)
    assert got == bytes([False, True])
