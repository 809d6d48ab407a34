"""Issue 19's process options on the real kernel, through the lamina CLI: --init (tini as
PID 1, reaping orphans, stop through it), --ulimit, --stop-signal, --stop-timeout,
--env-file, --log-driver none, json-file rotation with --log-opt, --workdir made if
missing; each recorded at create and shown by inspect."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_root
from tests.kernel.runtime_env import Lamina, busybox_lamina

pytestmark = pytest.mark.kernel

NET = ("--network", "none")


@pytest.fixture(scope="module")
def lamina(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lamina]:
    require_root()
    yield from busybox_lamina(tmp_path_factory.mktemp("runopts"))


def inspect(lamina: Lamina, ref: str) -> dict:
    return json.loads(lamina.ok("inspect", ref))[0]


def fails(lamina: Lamina, *argv: str) -> str:
    out = lamina(*argv)
    assert out.returncode != 0, out
    return out.stderr.strip().removeprefix("lamina: error: ")


# --- --init ---------------------------------------------------------------------------------

def test_init_is_pid_1_and_reaps_orphans(lamina: Lamina) -> None:
    """An orphan whose parent exits is reparented to PID 1: `sleep` as PID 1 leaves it a
    zombie, tini reaps it."""
    script = "(sleep 0.1 &); exec sleep 30"
    bare = lamina.ok("run", "-d", *NET, "busybox", "sh", "-c", script).strip()
    init = lamina.ok("run", "-d", *NET, "--init", "busybox", "sh", "-c", script).strip()
    time.sleep(0.8)
    bare_ps = lamina.ok("exec", bare, "ps", "-o", "pid,stat,comm")
    init_ps = lamina.ok("exec", init, "ps", "-o", "pid,stat,comm")
    assert any(line.split()[1].startswith("Z") for line in bare_ps.splitlines()[1:]), bare_ps
    rows = [line.split() for line in init_ps.splitlines()[1:]]
    assert rows[0][0] == "1" and rows[0][2] == "docker-init", init_ps
    assert not any(r[1].startswith("Z") for r in rows), init_ps
    assert lamina.ok("exec", init, "cat", "/proc/1/cmdline").split("\0")[:3] == \
        ["/sbin/docker-init", "--", "sh"]
    doc = inspect(lamina, init)
    assert doc["HostConfig"]["Init"] is True and "Init" not in inspect(lamina, bare)["HostConfig"]
    assert doc["Path"] == "sh", "inspect shows the command, not the init"
    started = time.monotonic()
    lamina.ok("stop", init)  # SIGTERM to tini, forwarded to sleep: 128+15
    assert time.monotonic() - started < 5
    assert inspect(lamina, init)["State"]["ExitCode"] == 143
    lamina.ok("rm", "-f", bare, init)


def test_init_binary_is_read_only_and_exit_status_passes_through(lamina: Lamina) -> None:
    out = lamina("run", "--rm", *NET, "--init", "busybox", "sh", "-c",
                 "echo x > /sbin/docker-init; exit 7")
    assert out.returncode == 7
    assert "Read-only file system" in out.stderr or "read-only" in out.stderr.lower(), out


# --- --ulimit --------------------------------------------------------------------------------

def test_ulimit_nofile(lamina: Lamina) -> None:
    out = lamina.ok("run", "--rm", *NET, "--ulimit", "nofile=64:128", "busybox", "sh", "-c",
                    "ulimit -n; ulimit -Hn; grep 'open files' /proc/self/limits")
    soft, hard, line = out.splitlines()
    assert (soft, hard) == ("64", "128") and line.split()[3:5] == ["64", "128"]
    c = lamina.ok("create", *NET, "--ulimit", "nproc=50", "--ulimit", "core=0:-1",
                  "busybox", "true").strip()
    assert inspect(lamina, c)["HostConfig"]["Ulimits"] == [
        {"Name": "nproc", "Soft": 50, "Hard": 50}, {"Name": "core", "Soft": 0, "Hard": -1}]
    lamina.ok("rm", c)


def test_ulimit_applies_to_exec_too(lamina: Lamina) -> None:
    c = lamina.ok("run", "-d", *NET, "--ulimit", "nofile=100:200", "busybox",
                  "sleep", "30").strip()
    assert lamina.ok("exec", c, "sh", "-c", "ulimit -n").strip() == "100"
    lamina.ok("rm", "-f", c)


def test_bad_ulimits_refused_in_docker_words(lamina: Lamina) -> None:
    assert fails(lamina, "run", "--rm", *NET, "--ulimit", "nofiles=1", "busybox", "true") == \
        'invalid argument "nofiles=1" for "--ulimit" flag: invalid ulimit type: nofiles'
    assert "soft limit must be less than or equal to hard limit: 9 > 3" in fails(
        lamina, "create", "--ulimit", "nofile=9:3", "busybox", "true")


# --- --stop-signal, --stop-timeout ------------------------------------------------------------

TRAP = 'trap "echo got {sig}; exit 3" {sig}; echo ready; while true; do sleep 0.05; done'


def _ready(lamina: Lamina, c: str) -> None:
    deadline = time.monotonic() + 10
    while "ready" not in lamina.ok("logs", c):
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_stop_sends_the_stop_signal(lamina: Lamina) -> None:
    c = lamina.ok("run", "-d", *NET, "--stop-signal", "USR1", "busybox", "sh", "-c",
                  TRAP.format(sig="USR1")).strip()
    _ready(lamina, c)
    started = time.monotonic()
    lamina.ok("stop", c)
    assert time.monotonic() - started < 5
    assert "got USR1" in lamina.ok("logs", c)
    doc = inspect(lamina, c)
    assert doc["State"]["ExitCode"] == 3 and doc["Config"]["StopSignal"] == "USR1"
    stopped = [e for e in lamina.events(f"container={c}") if e["type"] == "ContainerStopped"]
    assert stopped[-1]["data"]["signal"] == 10
    lamina.ok("rm", c)


def test_stop_timeout_is_stops_default(lamina: Lamina) -> None:
    c = lamina.ok("run", "-d", *NET, "--stop-timeout", "1", "busybox", "sh", "-c",
                  'trap "" TERM; echo ready; while true; do sleep 0.05; done').strip()
    _ready(lamina, c)
    started = time.monotonic()
    lamina.ok("stop", c)
    took = time.monotonic() - started
    assert 0.9 < took < 4, took
    doc = inspect(lamina, c)
    assert doc["State"]["ExitCode"] == 137 and doc["Config"]["StopTimeout"] == 1
    lamina.ok("rm", c)


def test_bad_stop_signal_refused_and_recorded(lamina: Lamina) -> None:
    assert fails(lamina, "create", "--stop-signal", "SIGNOPE", "busybox", "true") == \
        "invalid signal: SIGNOPE"
    rejected = [e for e in lamina.events() if e["type"] == "CommandRejected"]
    assert rejected and "invalid signal: SIGNOPE" in rejected[-1]["data"]["reason"]


# --- --env-file --------------------------------------------------------------------------------

def test_env_file(lamina: Lamina, tmp_path: Path) -> None:
    env = tmp_path / "env"
    env.write_text("# a comment\nA=1\n  B=two words \nFROM_CALLER\nNOT_SET_ANYWHERE\n\nC=\n"
                   "D=file\n")
    os.environ["FROM_CALLER"] = "yes"
    try:
        out = lamina.ok("run", "--rm", *NET, "--env-file", str(env), "-e", "D=flag",
                        "busybox", "env")
    finally:
        del os.environ["FROM_CALLER"]
    got = dict(line.split("=", 1) for line in out.splitlines())
    assert got["A"] == "1" and got["B"] == "two words " and got["C"] == ""
    assert got["FROM_CALLER"] == "yes" and "NOT_SET_ANYWHERE" not in got
    assert got["D"] == "flag", "-e wins over the file"
    assert fails(lamina, "run", "--rm", "--env-file", str(tmp_path / "nope"), "busybox",
                 "true") == f"open {tmp_path / 'nope'}: no such file or directory"


# --- logs -------------------------------------------------------------------------------------

def test_log_driver_none_keeps_nothing(lamina: Lamina) -> None:
    out = lamina("run", *NET, "--name", "quiet", "--log-driver", "none", "busybox",
                 "echo", "hello")
    assert out.stdout == "hello\n", "the attached client still gets the output"
    assert fails(lamina, "logs", "quiet") == "configured logging driver does not support reading"
    cdir = lamina.root / "containers" / inspect(lamina, "quiet")["Id"]
    assert not list(cdir.glob("*-json.log*"))
    assert inspect(lamina, "quiet")["HostConfig"]["LogConfig"] == {"Type": "none", "Config": {}}
    assert fails(lamina, "create", "--log-driver", "none", "--log-opt", "max-size=1k",
                 "busybox", "true") == "invalid logging opts for driver none"
    assert "no log driver named 'nope' is registered" in fails(
        lamina, "create", "--log-driver", "nope", "busybox", "true")
    lamina.ok("rm", "quiet")


def test_json_file_rotation(lamina: Lamina) -> None:
    script = 'i=0; while [ $i -lt 200 ]; do echo "line $i"; i=$((i+1)); done'
    c = lamina.ok("create", *NET, "--log-opt", "max-size=1k", "--log-opt", "max-file=2",
                  "busybox", "sh", "-c", script).strip()
    lamina.ok("start", "-a", c)
    cdir = lamina.root / "containers" / c
    logs = sorted(p.name for p in cdir.glob("*-json.log*"))
    assert logs == [f"{c}-json.log", f"{c}-json.log.1"]
    for name in logs:  # rotated once it reached 1000 bytes (docker's decimal k)
        assert os.path.getsize(cdir / name) < 1000 + 100
    lines = lamina.ok("logs", c).splitlines()
    numbers = [int(line.split()[1]) for line in lines]
    assert numbers == list(range(numbers[0], 200)) and numbers[0] > 0, \
        "the kept files, oldest first, end with the last line"
    assert inspect(lamina, c)["HostConfig"]["LogConfig"] == {
        "Type": "json-file", "Config": {"max-size": "1k", "max-file": "2"}}
    lamina.ok("rm", c)


# --- --workdir ------------------------------------------------------------------------------

def test_workdir_made_if_missing(lamina: Lamina) -> None:
    assert lamina.ok("run", "--rm", *NET, "-w", "/new/deep/dir", "busybox", "pwd") == \
        "/new/deep/dir\n"
