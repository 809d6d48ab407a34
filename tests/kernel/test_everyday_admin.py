"""rename, update, wait --condition, stats, container/image/system prune, system df and
system info on the real kernel (busybox, --network none): docker's outputs and errors, the
cgroup changed under a running container, each change one event."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import require_root
from tests.kernel.runtime_env import LAMINA, Lamina, busybox_lamina, wait_for

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def lam(tmp_path_factory: pytest.TempPathFactory):
    require_root()
    yield from busybox_lamina(tmp_path_factory.mktemp("everyday"))


def run_d(lam: Lamina, name: str, *argv: str) -> str:
    return lam.ok("run", "-d", "--network", "none", "--name", name, *argv).strip()


def fails(lam: Lamina, *argv: str) -> str:
    out = lam(*argv)
    assert out.returncode != 0, out
    return out.stderr.strip().removeprefix("lamina: error: ")


def memory_limit(cid: str) -> str:
    for path in (f"/sys/fs/cgroup/memory/lamina/{cid}/memory.limit_in_bytes",
                 f"/sys/fs/cgroup/lamina/{cid}/memory.max"):
        if Path(path).exists():
            return Path(path).read_text().strip()
    raise AssertionError("no memory limit file")


def test_rename(lam: Lamina) -> None:
    cid = run_d(lam, "r1", "busybox", "sleep", "60")
    lam.ok("create", "--network", "none", "--name", "r2", "busybox", "true")
    assert lam.ok("rename", "r1", "renamed") == ""
    assert json.loads(lam.ok("inspect", "renamed"))[0]["Id"] == cid
    assert "already in use by container" in fails(lam, "rename", "renamed", "r2")
    assert "same name as its current name" in fails(lam, "rename", "renamed", "renamed")
    assert "no such container" in fails(lam, "rename", "nosuch", "x")
    [event] = lam.events("event=rename")
    assert event["type"] == "ContainerRenamed"
    assert (event["data"]["old_name"], event["data"]["name"]) == ("r1", "renamed")
    assert [e["data"]["name"] for e in lam.events("container=r1", "type=ContainerRenamed")] \
        == ["renamed"]
    lam.ok("rm", "-f", "renamed", "r2")


def test_update_running_and_stopped(lam: Lamina) -> None:
    cid = run_d(lam, "up", "-m", "64m", "busybox", "sleep", "60")
    assert memory_limit(cid) == str(64 << 20)
    assert lam.ok("update", "--memory", "32m", "--pids-limit", "30", "--cpus", "0.5",
                  "up") == "up\n"
    assert memory_limit(cid) == str(32 << 20)
    host = json.loads(lam.ok("inspect", "up"))[0]["HostConfig"]
    assert (host["Memory"], host["PidsLimit"], host["NanoCpus"]) == (32 << 20, 30, 500_000_000)
    assert "BlkioWeight (--blkio-weight) is not supported by lamina yet" in \
        fails(lam, "update", "--blkio-weight", "300", "up")
    assert "Minimum memory limit allowed is 6MB" in fails(lam, "update", "-m", "1m", "up")
    assert "one or more flags" in fails(lam, "update", "up")
    lam.ok("stop", "-t", "0", "up")
    lam.ok("update", "--memory", "48m", "up")  # recorded for the next start
    lam.ok("start", "up")
    assert memory_limit(cid) == str(48 << 20)
    updates = lam.events("container=up", "event=update")
    assert [(e["data"]["changes"].get("memory"), e["data"]["applied"]) for e in updates] == \
        [(32 << 20, True), (48 << 20, False)]
    rejected = lam.events("container=up", "type=CommandRejected")
    assert len(rejected) == 3
    lam.ok("rm", "-f", "up")


def test_wait_conditions(lam: Lamina) -> None:
    lam.ok("create", "--network", "none", "--name", "never", "busybox", "true")
    assert lam.ok("wait", "never") == "0\n"  # not running: at once
    run_d(lam, "w", "busybox", "sleep", "60")
    waiter = subprocess.Popen([LAMINA, "--root", str(lam.root), "wait", "--condition",
                               "next-exit", "w"], stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    lam.ok("kill", "w")
    assert waiter.communicate(timeout=20)[0] == "137\n"
    remover = subprocess.Popen([LAMINA, "--root", str(lam.root), "wait", "--condition",
                                "removed", "never"], stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    assert remover.poll() is None  # stopped is not removed
    lam.ok("rm", "never")
    assert remover.communicate(timeout=20)[0] == "0\n"
    assert "invalid choice" in fails(lam, "wait", "--condition", "soon", "w")
    lam.ok("rm", "-f", "w")


CLEAR = "\033[2J\033[H"  # what stats writes before each table it draws


def _until_drawn_twice(proc: subprocess.Popen) -> bytes:
    """What a streaming `stats` wrote once it drew its second table (about two seconds in:
    a table a second), read as it comes; the pipe is left blocking for the rest."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    shown = bytearray()

    def twice() -> bool:
        with contextlib.suppress(BlockingIOError):
            shown.extend(os.read(fd, 65536))
        return len([f for f in shown.split(CLEAR.encode()) if f.strip()]) >= 2

    drawn = wait_for(twice, timeout=20)
    os.set_blocking(fd, True)
    assert drawn, f"stats drew fewer than two tables: {bytes(shown)!r}"
    return bytes(shown)


def test_stats_streams_until_interrupted(lam: Lamina) -> None:
    cid = run_d(lam, "st", "busybox", "sh", "-c", "while :; do :; done")
    out = lam.ok("stats", "--no-stream", "st").splitlines()
    assert out[0].split("   ")[:3] == ["CONTAINER ID", "NAME", "CPU %"]
    assert "MEM USAGE / LIMIT" in out[0] and "BLOCK I/O" in out[0]
    assert out[1].startswith(cid[:12]) and " st " in out[1]
    [doc] = [json.loads(line) for line in
             lam.ok("stats", "--no-stream", "--format", "json", "st").splitlines()]
    assert doc["cpu_percent"] > 10 and doc["pids"] >= 1
    proc = subprocess.Popen([LAMINA, "--root", str(lam.root), "stats", "st"],
                            stdout=subprocess.PIPE)
    shown = _until_drawn_twice(proc)
    proc.send_signal(signal.SIGINT)
    text = (shown + proc.communicate(timeout=20)[0]).decode()
    assert proc.returncode == 0
    frames = text.split(CLEAR)
    assert len([f for f in frames if f.strip()]) >= 2  # refreshed, not one sample
    lam.ok("rm", "-f", "st")
    assert lam.events("event=stats") == []  # a query: nothing recorded


def test_prunes_and_disk_usage(lam: Lamina) -> None:
    lam.ok("run", "--network", "none", "--name", "p1", "busybox", "sh", "-c",
           "echo hello > /data.txt")
    lam.ok("run", "--network", "none", "--name", "p2", "-l", "keep=yes", "busybox", "true")
    live = run_d(lam, "p3", "busybox", "sleep", "60")
    df = lam.ok("system", "df").splitlines()
    assert df[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    assert df[2].split()[:3] == ["Containers", "3", "1"]
    assert "Images space usage:" in lam.ok("system", "df", "-v")
    assert lam.ok("container", "prune", "-f", "--filter", "until=2000-01-01") == \
        "Total reclaimed space: 0B\n"
    out = lam.ok("container", "prune", "-f", "--filter", "label!=keep")
    assert out.startswith("Deleted Containers:\n") and out.endswith(
        "\nTotal reclaimed space: 6B\n")
    assert lam("container", "prune", input="n\n").returncode == 1  # docker's prompt
    assert "p2" in lam.ok("ps", "-a")
    lam.ok("commit", "p2", "keepme:1")
    lam.ok("commit", "p2")  # a dangling image
    out = lam.ok("image", "prune", "-f")
    assert out.startswith("Deleted Images:\ndeleted: sha256:")
    out = lam.ok("system", "prune", "-f", "-a")
    assert "Deleted Containers:" in out and "untagged: keepme:1" in out
    assert lam.container_ids() == [live]
    assert 'not supported with "--volumes"' in fails(lam, "system", "prune", "-f",
                                                     "--volumes", "--filter", "until=1h")
    info = lam.ok("system", "info")
    assert " Containers: 1\n  Running: 1\n" in info and "Storage Driver: overlay2" in info
    assert json.loads(lam.ok("info", "--format", "json"))["ContainersRunning"] == 1
    lam.ok("rm", "-f", "p3")
