"""Running containers on the real kernel: namespaces, cgroups, the monitor, signals."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.conftest import require_root
from tests.kernel.remap_env import configure, host_state, subid_prefix
from tests.kernel.runtime_env import Lamina, busybox_tar, leftovers


@pytest.fixture(scope="module", params=["plain", "remapped"])
def lamina(request, tmp_path_factory) -> Lamina:
    """A root with busybox, plain or --userns-remap default (every test runs on both:
    a remapped root must behave the same from inside)."""
    require_root()
    before = host_state()
    base = tmp_path_factory.mktemp("runtime")
    lam = Lamina(base / "root")
    lam.remapped = request.param == "remapped"
    if lam.remapped:
        configure(lam, subid_prefix(base / "prefix"))
    lam.ok("import", str(busybox_tar(base)), "busybox")
    seen: list[str] = []
    lam.seen = seen
    yield lam
    ids = lam.remove_all()
    assert leftovers(lam.root, ids + seen) == []
    assert host_state() == before, "the host's users, ids or device nodes changed"


def run(lamina: Lamina, *argv: str, **kw):
    out = lamina("run", *argv, **kw)
    return out


def cid_of(lamina: Lamina, name: str) -> str:
    cid = None
    for line in lamina.ok("ps", "-a", "--format", "json").splitlines():
        doc = json.loads(line)
        if doc["name"] == name:
            cid = doc["id"]
    assert cid, f"no container named {name}"
    lamina.seen.append(cid)
    return cid


def test_the_seeds_walk_through(lamina: Lamina) -> None:
    """`run busybox touch happiness.txt`: afterwards, with nothing running, the file is in
    that container's read-write layer on the host."""
    out = run(lamina, "--name", "happy", "busybox", "touch", "happiness.txt")
    assert out.returncode == 0, out.stderr
    cid = cid_of(lamina, "happy")
    upper = lamina.root / "layers" / f"rw-{cid}" / "diff"
    assert (upper / "happiness.txt").is_file()
    assert list(upper.iterdir()) == [upper / "happiness.txt"]
    merged = lamina.root / "layers" / f"rw-{cid}" / "merged"
    assert not os.path.ismount(merged)  # nothing running, nothing mounted


def test_exit_codes_through_run_wait_and_exec(lamina: Lamina) -> None:
    assert run(lamina, "--rm", "busybox", "sh", "-c", "exit 42").returncode == 42
    out = run(lamina, "--rm", "busybox", "no-such-command")
    assert out.returncode == 127
    assert "executable file not found" in out.stderr
    lamina.ok("run", "-d", "--name", "waiter", "busybox", "sh", "-c", "sleep 0.3; exit 4")
    assert lamina.ok("wait", "waiter").strip() == "4"
    lamina.ok("run", "-d", "--name", "execd", "busybox", "sleep", "30")
    assert lamina("exec", "execd", "sh", "-c", "exit 9").returncode == 9
    assert lamina.ok("exec", "execd", "echo", "hi").strip() == "hi"
    lamina.ok("rm", "-f", "execd")


def test_an_exit_with_no_command_running_is_recorded_by_the_monitor(lamina: Lamina) -> None:
    lamina.ok("run", "-d", "--name", "self-exit", "busybox", "sh", "-c", "sleep 0.2; exit 3")
    cid = cid_of(lamina, "self-exit")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        exited = [e for e in lamina.events(f"container={cid}") if e["type"] == "ContainerExited"]
        if exited:
            break
        time.sleep(0.05)
    assert exited and exited[0]["data"]["exit_code"] == 3
    assert exited[0]["meta"]["argv"] == ["lamina-monitor"]
    ps = json.loads([line for line in lamina.ok("ps", "-a", "--format", "json").splitlines()
                     if cid in line][0])
    assert (ps["state"], ps["exit_code"], ps["pid"]) == ("stopped", 3, 0)


def test_stop_waits_for_a_process_that_ignores_sigterm_then_kills(lamina: Lamina) -> None:
    lamina.ok("run", "-d", "--name", "stubborn", "busybox", "sh", "-c",
              "trap '' TERM; while true; do sleep 0.05; done")
    t0 = time.monotonic()
    lamina.ok("stop", "-t", "1", "stubborn")
    took = time.monotonic() - t0
    assert took >= 1.0
    stopped = [e for e in lamina.events("container=stubborn", "type=ContainerStopped")]
    assert stopped[0]["data"] == {**stopped[0]["data"], "signal": 9, "exit_code": 137}


def test_stop_of_a_process_that_handles_sigterm(lamina: Lamina) -> None:
    lamina.ok("run", "-d", "--name", "polite", "busybox", "sh", "-c",
              "trap 'exit 7' TERM; while true; do sleep 0.05; done")
    time.sleep(0.2)
    lamina.ok("stop", "polite")
    stopped = lamina.events("container=polite", "type=ContainerStopped")[0]["data"]
    assert (stopped["signal"], stopped["exit_code"]) == (15, 7)


def test_kill_does_not_wait_and_a_survived_signal_leaves_it_running(lamina: Lamina) -> None:
    lamina.ok("run", "-d", "--name", "victim", "busybox", "sh", "-c",
              "trap '' TERM HUP; while true; do sleep 0.05; done")
    lamina.ok("kill", "-s", "HUP", "victim")
    assert lamina.events("container=victim")[-1]["type"] == "ContainerSignalled"
    assert '"state":"running"' in lamina.ok("ps", "--format", "json")
    t0 = time.monotonic()
    lamina.ok("kill", "victim")
    assert time.monotonic() - t0 < 3
    killed = lamina.events("container=victim", "type=ContainerKilled")[0]["data"]
    assert (killed["signal"], killed["exit_code"]) == (9, 137)


def _counter(lamina: Lamina, name: str) -> int:
    return int(lamina.ok("exec", name, "cat", "/tmp/n").strip() or 0)


def test_pause_freezes_every_process_and_unpause_thaws(lamina: Lamina) -> None:
    lamina.ok("run", "-d", "--name", "counter", "busybox", "sh", "-c",
              "i=0; while true; do i=$((i+1)); echo $i > /tmp/n; sleep 0.02; done")
    cid = cid_of(lamina, "counter")
    time.sleep(0.3)
    lamina.ok("pause", "counter")
    state = Path(f"/sys/fs/cgroup/freezer/lamina/{cid}/freezer.state").read_text().strip()
    assert state == "FROZEN"
    upper = lamina.root / "layers" / f"rw-{cid}" / "diff" / "tmp" / "n"
    frozen_at = upper.read_text()  # may be empty: frozen between `>`'s truncate and write
    time.sleep(0.4)
    assert upper.read_text() == frozen_at
    assert "paused" in lamina("exec", "counter", "true").stderr
    lamina.ok("unpause", "counter")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        now = upper.read_text().strip()
        if now and (not frozen_at.strip() or int(now) > int(frozen_at)):
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"the counter did not move after unpause (stuck at {frozen_at!r})")
    lamina.ok("rm", "-f", "counter")


def test_isolation_from_inside(lamina: Lamina) -> None:
    script = ("echo pid=$$; hostname; mount -t tmpfs x /tmp && echo MOUNTED; "
              "cat /proc/kcore > /dev/null 2>&1 && echo KCORE; "
              "ps -o comm | grep -c -e python -e pytest -e init -e systemd; "
              "echo $(tail -n +3 /proc/net/dev | cut -d: -f1 | sort); "
              "grep -c ' /work\\| /root ' /proc/mounts; grep NoNewPrivs /proc/self/status; "
              "grep CapEff /proc/self/status")
    out = run(lamina, "--rm", "--name", "isolated", "busybox", "sh", "-c", script)
    lines = out.stdout.splitlines()
    assert lines[0] == "pid=1"
    assert len(lines[1]) == 12  # the short id
    assert "MOUNTED" not in out.stdout and "KCORE" not in out.stdout
    assert lines[2] == "0"  # the host's processes are invisible
    # its own links, none of the host's: lo, and eth0 on the default bridge (a remapped
    # root's containers default to --network none)
    assert sorted(lines[3].split()) == (["lo"] if lamina.remapped else ["eth0", "lo"])
    assert lines[4] == "0"  # the host's mounts are invisible
    assert lines[5].split() == ["NoNewPrivs:", "1"]
    assert lines[6].split() == ["CapEff:", "00000000a80425fb"]
    # no descriptor but stdio reaches the process (ls's 3 is the directory it reads)
    fds = run(lamina, "--rm", "busybox", "ls", "/proc/self/fd").stdout.split()
    assert fds == ["0", "1", "2", "3"], fds


def test_no_new_privileges_can_be_turned_off(lamina: Lamina) -> None:
    out = run(lamina, "--rm", "--security-opt", "no-new-privileges=false", "busybox",
              "grep", "NoNewPrivs", "/proc/self/status")
    assert out.stdout.split() == ["NoNewPrivs:", "0"]


def test_image_config_and_run_options(lamina: Lamina) -> None:
    out = run(lamina, "--rm", "-e", "GREETING=hi", "-w", "/work/dir", "-u", "nobody",
              "--hostname", "box", "busybox", "sh", "-c", 'echo "$GREETING $(pwd) $(id -u) '
              '$(hostname)"')
    assert out.stdout.strip() == "hi /work/dir 65534 box"


def test_memory_and_pids_limits(lamina: Lamina) -> None:
    out = run(lamina, "--memory", "32m", "--name", "hog", "busybox", "sh", "-c",
              "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived")
    assert out.returncode == 137 and "survived" not in out.stdout
    exited = lamina.events("container=hog", "type=ContainerExited")[0]["data"]
    assert exited["oom"] is True
    out = run(lamina, "--rm", "--pids-limit", "5", "busybox", "sh", "-c",
              "for i in 1 2 3 4 5 6 7 8; do sleep 2 & echo started $i; done; wait")
    assert out.returncode != 0
    assert "can't fork" in out.stderr or "Resource temporarily unavailable" in out.stderr
    assert "started 4" in out.stdout and "started 5" not in out.stdout


def test_logs_and_stdin(lamina: Lamina) -> None:
    lamina.ok("run", "--name", "talker", "busybox", "sh", "-c", "echo out; echo err >&2")
    assert lamina.ok("logs", "talker") == "out\n"
    assert lamina("logs", "talker").stderr == "err\n"
    log = lamina.root / "containers" / cid_of(lamina, "talker")
    line = json.loads((log / f"{log.name}-json.log").read_text().splitlines()[0])
    assert line["log"] == "out\n" and line["stream"] == "stdout" and line["time"].endswith("Z")
    out = lamina("run", "--rm", "-i", "busybox", "sh", "-c", "tr a-z A-Z", input="shout\n")
    assert out.stdout == "SHOUT\n"


def test_restart_and_stats(lamina: Lamina) -> None:
    lamina.ok("run", "-d", "--name", "again", "busybox", "sleep", "30")
    pid = json.loads([x for x in lamina.ok("ps", "--format", "json").splitlines()
                      if '"again"' in x][0])["pid"]
    lamina.ok("restart", "-t", "0", "again")
    doc = json.loads([x for x in lamina.ok("ps", "--format", "json").splitlines()
                      if '"again"' in x][0])
    # docker's RestartCount counts the restart policy's restarts; a user's restart resets it
    assert doc["state"] == "running" and doc["pid"] != pid and doc["restart_count"] == 0
    stats = json.loads(lamina.ok("stats", "--no-stream", "--format", "json", "again"))
    assert stats["pids"] >= 1 and stats["memory"] > 0
    lamina.ok("rm", "-f", "again")


def test_refused_moves_through_the_cli(lamina: Lamina) -> None:
    lamina.ok("create", "--name", "idle", "busybox", "true")
    for argv in (["stop", "idle"], ["pause", "idle"], ["unpause", "idle"], ["kill", "idle"]):
        out = lamina(*argv)
        assert out.returncode == 1 and "not running" in out.stderr or "not paused" in out.stderr
    lamina.ok("start", "idle")
    assert lamina.ok("wait", "idle").strip() == "0"
    rejected = lamina.events("container=idle", "type=CommandRejected")
    assert [r["data"]["command"] for r in rejected] == ["stop", "pause", "unpause", "kill"]


def test_run_it_gives_an_interactive_shell_on_a_terminal(lamina: Lamina) -> None:
    """`lamina run -it busybox sh` driven through a pseudo-terminal, as a person would."""
    import fcntl
    import pty
    import select
    import struct
    import termios

    from tests.kernel.runtime_env import LAMINA

    pid, fd = pty.fork()
    if pid == 0:
        os.execv(LAMINA, [LAMINA, "--root", str(lamina.root), "run", "-it", "--rm",
                          "busybox", "sh"])
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))

    def read_until(marker: bytes, timeout: float = 10) -> bytes:
        out, end = b"", time.monotonic() + timeout
        while marker not in out and time.monotonic() < end:
            if select.select([fd], [], [], 0.1)[0]:
                try:
                    out += os.read(fd, 4096)
                except OSError:
                    break
        return out

    assert b"# " in read_until(b"# ")
    os.write(fd, b"echo $((6*7)); stty size\r")
    out = read_until(b"40 120")
    assert b"42" in out and b"40 120" in out
    os.write(fd, b"exit 5\r")
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 5


def test_host_network(lamina: Lamina) -> None:
    out = run(lamina, "--rm", "--network", "host", "busybox", "sh", "-c",
              "tail -n +3 /proc/net/dev | wc -l")
    if lamina.remapped:  # the host's network namespace is not its root's to mount sysfs for
        assert out.returncode == 1 and out.stderr.strip().endswith(
            "--network host is incompatible with this root's --userns-remap (default): its "
            "containers' root is not the host's root")
        return
    with open("/proc/net/dev") as f:
        host = len(f.read().splitlines()) - 2
    assert int(out.stdout) == host


def test_a_detached_terminal_container_outlives_its_starting_command(lamina: Lamina) -> None:
    """`run -d -it` leaves a shell waiting on its terminal; the starting command hangs up
    with the prompt unread (a connection reset), which the monitor must take as a hang-up."""
    for _ in range(3):
        cid = lamina.ok("run", "-d", "-it", "busybox", "sh").strip()
        time.sleep(0.3)
        assert lamina.ok("exec", cid, "echo", "alive") == "alive\n"
        lamina.ok("rm", "-f", cid)


def test_a_view_that_fails_to_mount_leaves_nothing_behind(lamina: Lamina) -> None:
    """A plain root mounts the union view once the monitor is forked, while init waits for
    it: a mount that fails then must end init and its monitor, say why, and leave no
    cgroup, mount or process behind; the container starts once its layer is whole
    again."""
    cid = lamina.ok("create", "--name", "broken-view", "busybox", "true").strip()
    lamina.seen.append(cid)
    work = lamina.root / "layers" / f"rw-{cid}" / "work"
    os.rename(work, work.with_name("work.away"))  # overlayfs refuses an upper without it
    out = lamina("start", cid)
    assert out.returncode != 0  # the mount's own error, not init's "given up"
    assert "No such file or directory" in out.stderr and "given up" not in out.stderr, \
        out.stderr
    assert leftovers(lamina.root, [cid]) == []
    os.rename(work.with_name("work.away"), work)
    assert lamina("start", "-a", cid).returncode == 0
    lamina.ok("rm", cid)
