"""Restart policies on the real kernel: the monitor applies them (with docker's back-off),
`lamina serve` and the first command after a reboot bring containers back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import require_root
from tests.kernel.runtime_env import LAMINA, Lamina, busybox_tar, leftovers


@pytest.fixture
def lamina(tmp_path: Path) -> Iterator[Lamina]:
    require_root()
    lam = Lamina(tmp_path / "root")
    lam.ok("import", str(busybox_tar(tmp_path)), "busybox")
    yield lam
    ids = lam.remove_all()
    deadline = time.monotonic() + 5  # a monitor in its back-off sees the rm within 0.5 s
    while leftovers(lam.root, ids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert leftovers(lam.root, ids) == []


def _run(lamina: Lamina, name: str, policy: str, *cmd: str) -> str:
    return lamina.ok("run", "-d", "--network", "none", "--name", name, "--restart", policy,
                     "busybox", *cmd).strip()


def _inspect(lamina: Lamina, name: str) -> dict:
    return json.loads(lamina.ok("inspect", name))[0]


def _events(lamina: Lamina, name: str, kind: str) -> list[dict]:
    """The events of kind `kind` of the container created as `name`. The filter
    `container=NAME` matches an id that begins with NAME too, as docker's does: the
    container `z`, whose id began with an f, once had its exit counted as `f`'s."""
    found = lamina.events(f"container={name}")
    ids = {e["data"]["id"] for e in found
           if e["type"] == "ContainerCreated" and e["data"]["name"] == name}
    return [e for e in found if e["type"] == kind and (
        e["stream"].removeprefix("container:") in ids  # its own stream, or a refusal of
        or e["data"].get("target") in {name, *ids})]  # a command that named it


def _wait(what, timeout: float = 15, step: float = 0.05, lamina: Lamina | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = what()
        if got:
            return got
        time.sleep(step)
    raise AssertionError("timed out" + (_story(lamina) if lamina is not None else ""))


def _story(lamina: Lamina) -> str:
    """What a wait that timed out leaves to go on: the root's containers' events and what
    its background processes said (a monitor's failed restart is in serve.log)."""
    lines = [f"{e['at']} #{e['seq']} {e['type']} {e['stream'][:22]} "
             f"{json.dumps(e['data'], sort_keys=True)} {e['meta'].get('command')} "
             f"{e['meta'].get('pid', '')}" for e in lamina.events()]
    log = Path(lamina.root) / "serve.log"
    told = log.read_text() if log.exists() else "(no serve.log)"
    return ":\nevents:\n" + "\n".join(lines[-40:]) + "\nserve.log:\n" + told[-4000:]


def _at(event: dict) -> datetime:
    return datetime.fromisoformat(event["at"].replace("Z", "+00:00"))


def test_always_comes_back_within_dockers_backoff_and_counts(lamina: Lamina) -> None:
    _run(lamina, "a", "always", "sh", "-c", "exit 3")
    restarts = _wait(lambda: (r := _events(lamina, "a", "ContainerRestarted"))
                     and len(r) >= 3 and r, lamina=lamina)
    exits = _events(lamina, "a", "ContainerExited")
    for n, r in enumerate(restarts[:3]):
        d = r["data"]
        assert d["automatic"] and d["count"] == n + 1
        assert d["reason"] == "always: exited with code 3"
        assert d["delay"] == [0.1, 0.2, 0.4][n]  # moby's table
        waited = (_at(r) - _at(exits[n])).total_seconds()
        # + a start's cost, which a busy machine (a parallel run) can stretch past a second
        assert d["delay"] <= waited < d["delay"] + 5, (n, waited)
    assert _inspect(lamina, "a")["RestartCount"] >= 3
    assert _inspect(lamina, "a")["HostConfig"]["RestartPolicy"] == {
        "Name": "always", "MaximumRetryCount": 0}
    lamina.ok("stop", "a")  # running or in its back-off: either way it stays stopped now
    count = len(_events(lamina, "a", "ContainerRestarted"))
    time.sleep(1.5)
    doc = _inspect(lamina, "a")
    assert doc["State"]["Status"] == "stopped" and not doc["State"]["Restarting"]
    assert len(_events(lamina, "a", "ContainerRestarted")) == count


def test_on_failure_stops_after_its_maximum_and_never_for_zero(lamina: Lamina) -> None:
    _run(lamina, "f", "on-failure:2", "sh", "-c", "exit 1")
    _run(lamina, "z", "on-failure", "true")
    _wait(lambda: len(_events(lamina, "f", "ContainerExited")) >= 3, lamina=lamina)
    time.sleep(1.5)  # a third restart would be due after 0.4 s
    assert len(_events(lamina, "f", "ContainerExited")) == 3, _story(lamina)
    assert [e["data"]["count"] for e in _events(lamina, "f", "ContainerRestarted")] == [1, 2]
    doc = _inspect(lamina, "f")
    assert doc["State"]["Status"] == "stopped" and doc["RestartCount"] == 2
    assert not doc["State"]["Restarting"]
    assert _events(lamina, "z", "ContainerRestarted") == []
    assert _events(lamina, "z", "ContainerRestartScheduled") == []


def test_unless_stopped_stays_stopped_after_a_stop(lamina: Lamina) -> None:
    _run(lamina, "u", "unless-stopped", "sleep", "600")
    lamina.ok("stop", "-t", "1", "u")
    time.sleep(1.5)
    assert _inspect(lamina, "u")["State"]["Status"] == "stopped"
    assert _events(lamina, "u", "ContainerRestartScheduled") == []


def test_rm_with_a_policy_is_refused(lamina: Lamina) -> None:
    out = lamina("run", "--rm", "--restart", "always", "--network", "none", "busybox", "true")
    assert out.returncode != 0
    assert "can't create 'AutoRemove' container with restart policy" in out.stderr


def _lose(lamina: Lamina, cid: str) -> None:
    """A reboot, as the container sees it: its monitor and its processes gone (SIGKILL)."""
    pid = _inspect(lamina, cid)["State"]["Pid"]
    with open(lamina.root / "containers" / cid / "monitor") as f:
        monitor = int(f.read().split(".")[0])
    os.kill(monitor, signal.SIGKILL)
    os.kill(pid, signal.SIGKILL)  # PID 1 of its namespace: the rest go with it
    _wait(lambda: _ended(pid) and _ended(monitor))


def _ended(pid: int) -> bool:
    """Gone, or a zombie, as lamina takes it (adapters/kernel/proc.is_same): the orphans
    are reaped by the machine's init, which here does so only every ~2 s."""
    from adapters.kernel.proc import stat_fields

    fields = stat_fields(pid)
    return fields is None or fields[0] in ("Z", "X")


def test_after_the_monitor_is_killed_the_next_command_brings_it_back(lamina: Lamina) -> None:
    cid = _run(lamina, "a", "always", "sleep", "600")
    old = _inspect(lamina, "a")["State"]["Pid"]
    _lose(lamina, cid)
    lamina("stop", "no-such-container")  # any state-changing command checks first
    doc = _inspect(lamina, "a")
    assert doc["State"]["Status"] == "running" and doc["State"]["Pid"] != old
    last = _events(lamina, "a", "ContainerRestarted")[-1]["data"]
    assert last["automatic"] and "its process was lost" in last["reason"]


def test_serve_killed_and_started_again_brings_containers_back(lamina: Lamina,
                                                              tmp_path: Path) -> None:
    sock = tmp_path / "api.sock"

    def serve() -> subprocess.Popen:
        proc = subprocess.Popen([LAMINA, "--root", str(lamina.root), "serve", "--socket",
                                 str(sock), "--no-cli-server"], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(sock.exists)
        return proc

    server = serve()
    cid = _run(lamina, "a", "always", "sleep", "600")
    _run(lamina, "s", "always", "sleep", "600")
    _run(lamina, "u", "unless-stopped", "sleep", "600")
    lamina.ok("stop", "-t", "1", "s", "u")
    server.kill()
    server.wait(10)
    _lose(lamina, cid)  # the reboot
    sock.unlink(missing_ok=True)
    server = serve()
    try:
        assert _inspect(lamina, "a")["State"]["Status"] == "running"
        # docker's daemon start: always even after a user's stop, unless-stopped not
        assert _inspect(lamina, "s")["State"]["Status"] == "running"
        assert _inspect(lamina, "u")["State"]["Status"] == "stopped"
        reasons = [e["data"]["reason"] for e in _events(lamina, "s", "ContainerRestarted")]
        assert reasons == ["always: lamina serve started"]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(10)


def test_rm_in_the_back_off_needs_force(lamina: Lamina) -> None:
    """docker's: a container whose restart is due is removed only with -f (the refusal
    recorded as such)."""
    cid = _run(lamina, "b", "always", "sh", "-c", "exit 2")
    # from the fourth restart on, the back-off is 0.8 s and more: time to ask in it; a busy
    # machine may start our rm after the back-off ended: ask in the next, twice as long
    for _ in range(3):
        _wait(lambda: (s := _inspect(lamina, cid))["RestartCount"] >= 4
              and s["State"]["Restarting"], step=0.02, timeout=30, lamina=lamina)
        out = lamina("rm", "b")
        if "container is running" not in out.stderr:
            break
    assert out.returncode != 0 and out.stderr.strip().endswith(
        f"cannot remove container {cid[:12]}: container is restarting: stop the container "
        "before removing or force remove")
    assert _events(lamina, "b", "CommandRejected")
    lamina.ok("rm", "-f", "b")
    assert lamina.container_ids() == []


def test_no_policy_fires_while_this_boot_is_shutting_down(lamina: Lamina) -> None:
    """`system shutdown` marks the root with the boot id first: a container that ends by
    itself then is not restarted (its restart recorded as cancelled for the host); a mark
    of another boot is stale, removed, and the policy restarts as always."""
    mark = lamina.root / "shutting-down"
    mark.write_text(Path("/proc/sys/kernel/random/boot_id").read_text())
    _run(lamina, "a", "always", "sh", "-c", "exit 3")
    cancel = _wait(lambda: _events(lamina, "a", "ContainerRestartCancelled"), lamina=lamina)
    assert [(c["data"]["reason"], c["data"]["by_user"]) for c in cancel] == [
        ("the host is shutting down", False)]
    doc = _inspect(lamina, "a")
    assert doc["State"]["Status"] == "stopped" and not doc["State"]["Restarting"]
    assert _events(lamina, "a", "ContainerRestartScheduled") == []
    assert _events(lamina, "a", "ContainerRestarted") == []
    mark.write_text("00000000-0000-0000-0000-000000000000\n")  # an earlier boot's
    _run(lamina, "b", "always", "sh", "-c", "exit 3")
    _wait(lambda: _events(lamina, "b", "ContainerRestarted"), lamina=lamina)
    assert not mark.exists()
    lamina.ok("stop", "b")


def test_a_wait_records_a_run_whose_monitor_died_with_it(lamina: Lamina) -> None:
    """A container's monitor killed, then its init: nobody records the end (the monitor
    would have), and a wait that began before it used to wait for ever (until the next
    command that changes state). The wait looks once a second (Engine.recover) and records
    it itself."""
    cid = lamina.ok("run", "-d", "--network", "none", "--name", "w", "busybox", "sleep",
                    "1000").strip()
    init = _inspect(lamina, "w")["State"]["Pid"]
    monitor = int((lamina.root / "containers" / cid / "monitor").read_text().split(".")[0])
    waiting = subprocess.Popen([LAMINA, "--root", str(lamina.root), "wait", "w"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)  # the wait is polling
    os.kill(monitor, signal.SIGKILL)
    stat = Path(f"/proc/{monitor}/stat")
    _wait(lambda: not stat.exists() or stat.read_text().split(") ")[1].startswith("Z"))
    os.kill(init, signal.SIGKILL)
    try:
        out, err = waiting.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        waiting.kill()
        raise AssertionError("the wait did not see the run end") from None
    assert waiting.returncode == 0, err
    assert out.strip().lstrip("-").isdigit(), out
    assert _inspect(lamina, "w")["State"]["Status"] in ("stopped", "exited"), out
