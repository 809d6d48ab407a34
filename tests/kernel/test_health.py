"""Healthchecks on the real kernel: the health process probes through exec's path, applies
docker's rules, has each change recorded, and goes with the container."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_root
from tests.kernel.runtime_env import Lamina, busybox_lamina, parent_of

pytestmark = pytest.mark.kernel

FAST = ("--health-interval", "0.2s")


@pytest.fixture(scope="module")
def lamina(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lamina]:
    require_root()
    yield from busybox_lamina(tmp_path_factory.mktemp("health"))


def inspect(lamina: Lamina, cid: str) -> dict[str, Any]:
    doc = json.loads(lamina.ok("inspect", cid))
    return doc[0] if isinstance(doc, list) else doc


def status(lamina: Lamina, cid: str) -> str | None:
    return (inspect(lamina, cid)["State"].get("Health") or {}).get("Status")


def wait_for(what: Callable[[], Any], timeout: float = 15) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def health_processes(lamina: Lamina, cid: str) -> list[int]:
    """Health processes of this container (their command line names its job file)."""
    mark = f"{cid}/health.job".encode()
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if mark in f.read():
                        found.append(int(pid))
            except OSError:
                continue
    # a probe is forked by the health process before it execs (its joiner, then the
    # process that execs in the container, reparented into the container once the joiner
    # has gone): not another health process. The health process stays out of the
    # container's cgroups; a probe on its way in has joined them.
    return [pid for pid in found if _parent(pid) not in found and not _joined(pid, cid)]


def _joined(pid: int, cid: str) -> bool:
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            return f"/{cid}" in f.read()
    except OSError:
        return False


def _parent(pid: int) -> int:
    try:
        return parent_of(pid)
    except OSError:  # gone meanwhile
        return 0


def changes(lamina: Lamina, cid: str) -> list[dict[str, Any]]:
    return [e["data"] for e in lamina.events(f"container={cid}")
            if e["type"] == "ContainerHealthChanged"]


def ps_status(lamina: Lamina, cid: str) -> str:
    return lamina.ok("ps", "-a", "--filter", f"id={cid}", "--format", "{{.Status}}").strip()


def filtered(lamina: Lamina, value: str) -> list[str]:
    return lamina.ok("ps", "-a", "-q", "--no-trunc", "--filter", f"health={value}").split()


def test_starting_unhealthy_then_healthy_when_the_file_appears(lamina: Lamina) -> None:
    cid = lamina.ok("run", "-d", "--network", "none", "--health-cmd", "test -f /ok", *FAST,
                    "--health-retries", "2", "busybox", "sleep", "60").strip()
    try:
        assert wait_for(lambda: status(lamina, cid) == "unhealthy")
        assert ps_status(lamina, cid).endswith("(unhealthy)")
        assert "(unhealthy)" in lamina.ok("ps")
        assert cid in filtered(lamina, "unhealthy") and cid not in filtered(lamina, "none")
        doc = inspect(lamina, cid)
        assert doc["Config"]["Healthcheck"] == {"Test": ["CMD-SHELL", "test -f /ok"],
                                                "Interval": 200_000_000, "Retries": 2}
        health = doc["State"]["Health"]
        assert health["FailingStreak"] >= 2 and 1 <= len(health["Log"]) <= 5
        assert {r["ExitCode"] for r in health["Log"]} == {1}
        lamina.ok("exec", cid, "touch", "/ok")
        assert wait_for(lambda: status(lamina, cid) == "healthy")
        assert ps_status(lamina, cid).endswith("(healthy)")
        assert cid in filtered(lamina, "healthy")
        health = inspect(lamina, cid)["State"]["Health"]
        assert health["FailingStreak"] == 0 and health["Log"][-1]["ExitCode"] == 0
        # each change is one event, in order, with the probe that made it; probes aren't
        recorded = changes(lamina, cid)
        assert [(c["status"], c["exit_code"]) for c in recorded] == \
            [("unhealthy", 1), ("healthy", 0)]
        assert recorded[0]["failing_streak"] == 2
        docker_words = lamina.ok("events", "--filter", f"container={cid}", "--format",
                                 "{{.Action}}").split("\n")
        assert "health_status: unhealthy" in docker_words
        assert "health_status: healthy" in docker_words
        assert len(health_processes(lamina, cid)) == 1
    finally:
        lamina.ok("rm", "-f", cid)
    assert wait_for(lambda: not health_processes(lamina, cid), 5), "a health process stayed"


def test_starting_until_the_first_probe(lamina: Lamina) -> None:
    cid = lamina.ok("run", "-d", "--network", "none", "--health-cmd", "true",
                    "busybox", "sleep", "60").strip()  # the first probe in 30 s
    try:
        assert status(lamina, cid) == "starting"
        assert ps_status(lamina, cid).endswith("(health: starting)")
        assert cid in filtered(lamina, "starting")
        lamina.ok("stop", "-t", "1", cid)
        # its probes stopped: docker's word for it is unhealthy
        assert status(lamina, cid) == "unhealthy"
        assert wait_for(lambda: not health_processes(lamina, cid), 5)
    finally:
        lamina.ok("rm", "-f", cid)


def test_a_probe_over_its_timeout_is_a_failure_and_is_killed(lamina: Lamina) -> None:
    cid = lamina.ok("run", "-d", "--network", "none", "--health-cmd", "echo started; sleep 30",
                    *FAST, "--health-timeout", "300ms", "--health-retries", "1",
                    "busybox", "sleep", "60").strip()
    try:
        assert wait_for(lambda: status(lamina, cid) == "unhealthy")
        last = inspect(lamina, cid)["State"]["Health"]["Log"][-1]
        assert last["ExitCode"] == -1
        assert last["Output"] == "Health check exceeded timeout (300ms): started\n"
        # each probe killed at its timeout: never more than the one running now is left
        time.sleep(1.5)
        procs = lamina.ok("exec", cid, "ps", "-o", "stat,args").splitlines()
        assert len([p for p in procs if p.endswith("sleep 30") and "Z" not in p]) <= 1, procs
    finally:
        lamina.ok("rm", "-f", cid)
    assert wait_for(lambda: not health_processes(lamina, cid), 5)


def test_the_images_healthcheck_and_no_healthcheck(lamina: Lamina, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox\nHEALTHCHECK --interval=200ms --retries=1 CMD test -e /proc/1\n")
    lamina.ok("build", "-t", "checked:1", str(tmp_path))
    image = json.loads(lamina.ok("inspect", "--type", "image", "checked:1"))
    image = image[0] if isinstance(image, list) else image
    assert image["Config"]["Healthcheck"] == {"Test": ["CMD-SHELL", "test -e /proc/1"],
                                              "Interval": 200_000_000, "Retries": 1}
    on = lamina.ok("run", "-d", "--network", "none", "checked:1", "sleep", "60").strip()
    off = lamina.ok("run", "-d", "--network", "none", "--no-healthcheck", "checked:1",
                    "sleep", "60").strip()
    try:
        assert wait_for(lambda: status(lamina, on) == "healthy")
        doc = inspect(lamina, off)
        assert "Health" not in doc["State"]
        # docker's merge: the image's numbers stay, its test is NONE
        assert doc["Config"]["Healthcheck"] == {"Test": ["NONE"], "Interval": 200_000_000,
                                                "Retries": 1}
        assert health_processes(lamina, off) == []
        assert off in filtered(lamina, "none") and on not in filtered(lamina, "none")
        assert not ps_status(lamina, off).endswith(")")
        table = {line[:12]: line for line in lamina.ok("ps").splitlines()[1:]}  # the briefs'
        assert "running (healthy)" in table[on[:12]] and "running " in table[off[:12]]
        assert "(" not in table[off[:12]].split("running", 1)[1]
        assert changes(lamina, off) == []
    finally:
        lamina.ok("rm", "-f", on, off)
    # the container's own flags change the image's test's numbers, its test stays
    cid = lamina.ok("create", "--network", "none", "--health-timeout", "5s", "checked:1",
                    "true").strip()
    try:
        assert inspect(lamina, cid)["Config"]["Healthcheck"] == {
            "Test": ["CMD-SHELL", "test -e /proc/1"], "Interval": 200_000_000,
            "Retries": 1, "Timeout": 5_000_000_000}
        assert "Health" not in inspect(lamina, cid)["State"]  # never started
    finally:
        lamina.ok("rm", "-f", cid)


def test_refusals(lamina: Lamina) -> None:
    out = lamina("run", "--no-healthcheck", "--health-cmd", "true", "busybox", "true")
    assert out.returncode != 0
    assert "--no-healthcheck conflicts with --health-* options" in out.stderr
    out = lamina("create", "--health-interval", "10us", "busybox", "true")
    assert "Interval in Healthcheck cannot be less than 1ms" in out.stderr


def test_the_health_process_goes_with_the_container(lamina: Lamina) -> None:
    cid = lamina.ok("run", "-d", "--network", "none", "--health-cmd", "true", *FAST,
                    "busybox", "sh", "-c", "sleep 4").strip()
    assert wait_for(lambda: status(lamina, cid) == "healthy")
    assert len(health_processes(lamina, cid)) == 1
    assert lamina.ok("wait", cid).strip() == "0"
    assert wait_for(lambda: not health_processes(lamina, cid), 5), "it outlived its container"
    assert status(lamina, cid) == "unhealthy"  # as docker's, once the probes stopped
    # a start runs a new one, starting again; the old results kept
    lamina.ok("start", cid)
    try:
        assert len(health_processes(lamina, cid)) == 1
        assert status(lamina, cid) in ("starting", "healthy")
    finally:
        lamina.ok("rm", "-f", cid)
    assert wait_for(lambda: not health_processes(lamina, cid), 5)
