"""A fork server's child serves command after command (adapters/fastpath/reuse.py), on a
real server: spoken to with the client's own protocol (adapters/fastpath/client.py), which
answers the pid of the child that runs each command."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.fastpath import client
from adapters.fastpath.forkserver import HANG_UP_WITHIN, SPARES
from tests.conftest import require_root
from tests.kernel.runtime_env import Served, alive, wait_for

pytestmark = pytest.mark.kernel


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    require_root()
    it = Served(tmp_path)
    assert wait_for(lambda: (it.lamina.root / "cli.sock").exists())
    try:
        yield it
    finally:
        it.stop()


def _ask(root: Path, *argv: str) -> tuple[int, int, object]:
    """(the pid that ran it, its exit code, the still open connection)."""
    sock = client._connect(f"{root}/cli.sock")
    assert sock is not None
    env = {k: v for k, v in os.environ.items() if k != "LAMINA_NO_SERVER"}
    pid = client._hand_over(sock, client.request_for(["--root", str(root), *argv], "/", env))
    code = client._recv_int(sock)
    assert pid is not None and pid > 0 and code is not None
    return pid, code, sock


def _versions(root: Path, n: int = 6) -> set[int]:
    """The pids that ran `n` back-to-back `version`s."""
    pids = set()
    for _ in range(n):
        pid, code, sock = _ask(root, "version")
        sock.close()  # type: ignore[attr-defined]
        assert code == 0
        pids.add(pid)
    return pids


def test_back_to_back_commands_are_served_by_children_that_served_before(
        served: Served) -> None:
    """Ten commands, each once the last one's child is back (well within 0.3 s): no fork
    for each (at most the spares and the one forked when the first was taken), and each
    answers as it would in a fresh child."""
    root = served.lamina.root
    pids = []
    for _ in range(10):
        pid, code, sock = _ask(root, "ps", "-a")
        sock.close()  # type: ignore[attr-defined]
        assert code == 0
        pids.append(pid)
        time.sleep(0.3)
    assert len(set(pids)) <= SPARES + 1 < len(pids), pids
    served.run("run", "--rm", "--network", "none", "busybox", "true")
    assert served.run("ps", "-a", "-q") == ""


def _inheritable(pid: int) -> list[str]:
    """What process `pid` holds that an exec would pass on, its stdio aside."""
    held = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with open(f"/proc/{pid}/fdinfo/{fd}") as f:
            flags = next(int(line.split()[1], 8) for line in f if line.startswith("flags:"))
        if fd not in ("0", "1", "2") and not flags & os.O_CLOEXEC:
            held.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return held


def test_a_child_waiting_again_holds_nothing_an_exec_would_pass_on(served: Served) -> None:
    """The listener comes back over SCM_RIGHTS, which hands a descriptor over inheritable:
    a child waiting for its next client must hold it close-on-exec, as every other."""
    root = served.lamina.root
    pids = []
    for _ in range(6):
        pid, _code, sock = _ask(root, "version")
        sock.close()  # type: ignore[attr-defined]
        pids.append(pid)
        time.sleep(0.3)  # back among the spares, the listener in hand
    again = {pid for pid in pids if pids.count(pid) > 1 and alive(pid)}
    assert again
    assert {pid: _inheritable(pid) for pid in again} == {pid: [] for pid in again}


def test_a_client_still_connected_keeps_its_child_from_serving_another(served: Served) -> None:
    """A client forwards its signals to the pid that ran its command until it has gone: a
    child waits for its client's hang-up before it takes another, and one whose client
    stays past HANG_UP_WITHIN ends instead."""
    root = served.lamina.root
    held, code, sock = _ask(root, "version")
    assert code == 0
    try:
        assert held not in _versions(root)
        assert wait_for(lambda: not alive(held), HANG_UP_WITHIN + 5), "it served on"
    finally:
        sock.close()  # type: ignore[attr-defined]


def test_a_command_that_leaves_a_child_process_serves_no_other(served: Served) -> None:
    """`run -d --pid host` forks the container's monitor itself (a spare monitor has made
    its PID namespace already): the monitor, running on, is that child's child, and the
    child takes no other command; it ends instead."""
    root = served.lamina.root
    pid, code, sock = _ask(root, "run", "-d", "--pid", "host", "--network", "none",
                           "busybox", "sleep", "60")
    sock.close()  # type: ignore[attr-defined]
    assert code == 0
    assert pid not in _versions(root)
    assert wait_for(lambda: not alive(pid)), "it waits for clients still"
    for cid in served.run("ps", "-q").split():
        served.run("rm", "-f", cid)
    assert served.run("ps", "-a", "-q") == ""
