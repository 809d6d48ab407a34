"""`exec` fails closed and hands the container nothing of its caller.

Fail closed: an exec racing a container whose init is dying, or aimed at a pid that is no
longer (or never was) that init, runs nowhere; it never runs in the host's namespaces.
Nothing of the caller: without -t the process's stdio are lamina's pipes (or /dev/null),
so TIOCSTI, /dev/tty and reopening /proc/self/fd/N reach neither the caller's terminal nor
its files; the same holds for `run`. Real containers, through the lamina CLI.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import termios
import time
import tty
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import require_root
from tests.kernel.runtime_env import LAMINA, Lamina, busybox_tar, leftovers, parent_of, wait_for

pytestmark = pytest.mark.kernel

# A static program run inside containers: TIOCSTI on fds 0-2, on /dev/tty, and on each of
# fds 0-2 reopened through /proc/self/fd; one line each, "PUSHED" if the kernel took it.
PROBE_C = r"""
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static void push(const char *what, int fd) {
    const char *s = "echo PWNED\n";
    int pushed = 1;
    for (; *s; s++) pushed &= ioctl(fd, TIOCSTI, s) == 0;
    printf("%s %s\n", what, pushed ? "PUSHED" : strerror(errno));
}

int main(void) {
    char path[32], name[16];
    for (int fd = 0; fd < 3; fd++) {
        snprintf(name, sizeof name, "fd%d", fd);
        push(name, fd);
    }
    int t = open("/dev/tty", O_RDWR);
    if (t < 0) printf("tty %s\n", strerror(errno)); else push("tty", t);
    for (int fd = 0; fd < 3; fd++) {
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        snprintf(name, sizeof name, "reopened%d", fd);
        int r = open(path, fd ? O_WRONLY : O_RDONLY);
        if (r < 0) printf("%s %s\n", name, strerror(errno)); else push(name, r);
    }
    return 0;
}
"""
PROBE = "/tiocsti"
NOT_RUNNING = re.compile(r"lamina: error: container [0-9a-f]{12} is not running")
CHANGED = re.compile(r"lamina: error: container:[0-9a-f]{64} changed while this command ran")


@pytest.fixture(scope="module")
def lamina(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lamina]:
    require_root()
    base = tmp_path_factory.mktemp("execiso")
    lam = Lamina(base / "root")
    lam.ok("import", str(busybox_tar(base)), "busybox")
    probe = _compile_probe(base)
    if probe is not None:
        lam.ok("import", str(_with_file(busybox_tar(base), probe, base / "probe.tar")), "probe")
    lam.probe = probe
    yield lam
    ids = lam.remove_all()
    assert leftovers(lam.root, ids) == []


def _compile_probe(base: Path) -> Path | None:
    gcc = shutil.which("gcc")
    if gcc is None:
        return None
    (base / "probe.c").write_text(PROBE_C)
    out = subprocess.run([gcc, "-static", "-O1", "-o", str(base / "probe"), str(base / "probe.c")],
                         capture_output=True, text=True)
    return base / "probe" if out.returncode == 0 else None


def _with_file(rootfs_tar: Path, path: Path, dest: Path) -> Path:
    """busybox's rootfs tar plus `path` as PROBE."""
    with tarfile.open(rootfs_tar) as src, tarfile.open(dest, "w") as out:
        for member in src.getmembers():
            out.addfile(member, src.extractfile(member) if member.isfile() else None)
        info = out.gettarinfo(str(path), PROBE.lstrip("/"))
        info.mode, info.uid, info.gid, info.uname, info.gname = 0o755, 0, 0, "root", "root"
        with open(path, "rb") as f:
            out.addfile(info, f)
    return dest


def _needs_probe(lamina: Lamina) -> None:
    if lamina.probe is None:
        pytest.skip("no gcc with a static libc here to build the TIOCSTI probe")


def _pid_of(lamina: Lamina, cid: str) -> int:
    return int(json.loads(lamina.ok("inspect", cid))[0]["State"]["Pid"])


@pytest.fixture(scope="module")
def sleeper(lamina: Lamina) -> str:
    return lamina.ok("run", "-d", "--name", "sleeper", "busybox", "sleep", "600").strip()


# --- fail closed ---------------------------------------------------------------------------


def _judge(out: subprocess.CompletedProcess, cid: str, host: str) -> str:
    """One racing exec's outcome, or an AssertionError saying what was wrong with it."""
    where = f"rc={out.returncode} stdout={out.stdout!r} stderr={out.stderr!r}"
    assert host not in out.stdout, f"ran on the host: {where}"
    assert "Traceback" not in out.stderr, where
    if out.returncode == 0:
        assert (out.stdout, out.stderr) == (f"{cid[:12]}\n", ""), where
        return "ran inside"
    assert out.stdout in ("", f"{cid[:12]}\n"), where
    if out.returncode == 137:  # the init's death took the exec'd process with it
        assert out.stderr == "", where
        return "killed with the container"
    assert len(out.stderr.splitlines()) == 1, where
    if NOT_RUNNING.fullmatch(out.stderr.strip()):
        assert out.returncode in (1, 126), where  # 1: the engine's judgement, 126: the join
        return f"not running ({out.returncode})"
    assert CHANGED.match(out.stderr) and out.returncode == 1, where
    return "changed meanwhile"


def _race_round(lamina: Lamina, pool: ThreadPoolExecutor, execs: int, host: str) -> Counter:
    """A container whose init is SIGKILLed while `execs` execs of `hostname` run into it,
    four at a time; the kill lands once a fifth of them are done."""
    cid = lamina.ok("run", "-d", "busybox", "sleep", "600").strip()
    pid = _pid_of(lamina, cid)
    futures = [pool.submit(lamina, "exec", cid, "hostname") for _ in range(execs)]
    while sum(f.done() for f in futures) < execs // 5:
        time.sleep(0.002)
    os.kill(pid, signal.SIGKILL)
    outcomes = Counter(_judge(f.result(), cid, host) for f in futures)
    lamina.ok("rm", "-f", cid)
    return outcomes


@pytest.fixture
def served(lamina: Lamina, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lamina]:
    """The module's root with a fork server on it (`lamina serve`'s warm process), so that
    an exec costs ~30 ms rather than ~150 ms; stopped afterwards. The commands go to it:
    without the in-process pass's LAMINA_NO_SERVER (tests/conftest.py), with which the client
    would run each in a fresh interpreter and leave the server idle. The one the root's
    commands started goes first: a root has one server."""
    from tests.servers import stop_servers_of

    monkeypatch.delenv("LAMINA_NO_SERVER", raising=False)
    stop_servers_of(str(lamina.root))
    server = subprocess.Popen([sys.executable, "-m", "adapters.cli.served", "--root",
                               str(lamina.root)], stderr=subprocess.DEVNULL)
    sock = lamina.root / "cli.sock"
    deadline = time.monotonic() + 20
    while not sock.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sock.exists(), "the fork server did not come up"
    try:
        yield lamina
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(10) == 0


def test_a_thousand_execs_racing_a_dying_container_never_run_on_the_host(
        served: Lamina) -> None:
    """Each exec prints the container's hostname, or fails cleanly: the engine's refusal,
    or the runtime's "is not running" when the init died after the engine judged it
    running (the window where the exec used to run in the host's namespaces)."""
    host = socket.gethostname()
    outcomes: Counter = Counter()
    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        for _ in range(25):
            outcomes += _race_round(served, pool, 40, host)
    # one more with a container that exits by itself at once, raced from its start
    with ThreadPoolExecutor(4) as pool:
        for _ in range(10):
            cid = served.ok("run", "-d", "busybox", "true").strip()
            results = list(pool.map(served, *zip(*[("exec", cid, "hostname")] * 8,
                                                 strict=True)))
            outcomes += Counter(_judge(out, cid, host) for out in results)
    elapsed = time.monotonic() - started
    print(f"\n{sum(outcomes.values())} racing execs in {elapsed:.1f}s: {dict(outcomes)}")
    assert sum(outcomes.values()) == 1080
    # both kinds of refusal, and success, happened: the race was really run
    assert outcomes["ran inside"] and outcomes["not running (1)"]
    assert outcomes["not running (126)"]


def _exec_as(lamina: Lamina, ref: str, pid: int, start_time: int,
             *argv: str) -> subprocess.CompletedProcess:
    """The runtime's exec (not the engine's: it would refuse by the log) on the container
    `ref` as if its ContainerStarted had recorded `pid` and `start_time`."""
    script = ("import dataclasses, sys\n"
              "from adapters.bootstrap import build_engine\n"
              "e = build_engine(sys.argv[1])\n"
              "c = dataclasses.replace(e.container(sys.argv[2]), pid=int(sys.argv[3]),"
              " start_time=int(sys.argv[4]))\n"
              "sys.exit(e.runtime.exec(c, sys.argv[5:], '', {}))\n")
    return subprocess.run([sys.executable, "-c", script, str(lamina.root), ref, str(pid),
                           str(start_time), *argv], capture_output=True, text=True,
                          timeout=30, stdin=subprocess.DEVNULL)


def _start_time(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        return int(f.read().rpartition(b")")[2].split()[19])


def _refused(out: subprocess.CompletedProcess, cid: str) -> None:
    assert (out.returncode, out.stdout) == (126, ""), out
    assert out.stderr == f"lamina: error: container {cid[:12]} is not running\n"


def test_the_runtime_joins_no_zombie_no_reused_pid_and_no_host_process(
        lamina: Lamina, sleeper: str, tmp_path: Path) -> None:
    """Aimed at a process that is not the container's running init, exec refuses and runs
    nothing (the marker file shows it: `touch` in the host's mount namespace would make
    it). Control: the same call with the real init's pid and start time works."""
    marker = tmp_path / "ran"
    pid = _pid_of(lamina, sleeper)
    real = _exec_as(lamina, sleeper, pid, _start_time(pid), "hostname")
    assert (real.returncode, real.stdout) == (0, f"{sleeper[:12]}\n"), real
    zombie = os.fork()
    if zombie == 0:
        os._exit(0)
    try:
        time.sleep(0.1)  # it has exited and, unreaped, stays a zombie
        _refused(_exec_as(lamina, sleeper, zombie, _start_time(zombie), "touch", str(marker)),
                 sleeper)
    finally:
        os.waitpid(zombie, 0)
    host = subprocess.Popen(["sleep", "30"])
    try:
        # a pid now used by a host process: its start time is not the recorded one
        _refused(_exec_as(lamina, sleeper, host.pid, _start_time(pid), "touch", str(marker)),
                 sleeper)
        # even with its own start time (a record gone wrong), its namespaces are the host's
        _refused(_exec_as(lamina, sleeper, host.pid, _start_time(host.pid), "touch",
                          str(marker)), sleeper)
    finally:
        host.kill()
        host.wait()
    _refused(_exec_as(lamina, sleeper, 2 ** 22 - 1, 1, "touch", str(marker)), sleeper)
    assert not marker.exists()


def test_exec_with_a_cgroup_dir_missing_is_refused(lamina: Lamina, tmp_path: Path) -> None:
    """Every cgroup dir must be joined: with one gone (moved aside: the kernel allows
    renaming a cgroup), exec refuses rather than run outside that controller's limits."""
    cid = lamina.ok("run", "-d", "busybox", "sleep", "600").strip()
    cgroup = Path(f"/sys/fs/cgroup/pids/lamina/{cid}")
    if not cgroup.is_dir():
        lamina.ok("rm", "-f", cid)
        pytest.skip("no cgroup v1 pids hierarchy here")
    aside = cgroup.with_name(f"aside-{cid[:12]}")
    cgroup.rename(aside)
    try:
        _refused(lamina("exec", cid, "hostname"), cid)
    finally:
        aside.rename(cgroup)
    assert lamina.ok("exec", cid, "hostname") == f"{cid[:12]}\n"
    lamina.ok("rm", "-f", cid)


def test_an_exec_joins_every_cgroup_of_its_container(lamina: Lamina, sleeper: str) -> None:
    """While `exec sleep` runs, every hierarchy's cgroup of the container (devices and
    pids among them: limits an exec must not escape) holds the same processes: init, J and
    the sleep."""
    import glob

    proc = subprocess.Popen([LAMINA, "--root", str(lamina.root), "exec", sleeper, "sleep",
                             "2"], stdin=subprocess.DEVNULL)
    try:
        dirs = glob.glob(f"/sys/fs/cgroup/*/lamina/{sleeper}")
        assert len(dirs) >= 2, dirs
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            members = {d: Path(d, "cgroup.procs").read_text().split() for d in dirs}
            if all(len(pids) >= 3 for pids in members.values()):
                break
            time.sleep(0.02)
        assert len({tuple(sorted(pids)) for pids in members.values()}) == 1, members
        assert all(len(pids) >= 3 for pids in members.values()), members
    finally:
        assert proc.wait(10) == 0


@pytest.mark.parametrize("option", ["--network", "--pid", "--ipc", "--uts"])
def test_exec_into_a_container_sharing_a_host_namespace(lamina: Lamina, option: str) -> None:
    """The shared namespace is the host's, on purpose; every other one is the container's,
    its mount namespace first: `ls /` is the container's root, not the host's."""
    if option != "--network" and option not in lamina.ok("run", "--help"):
        pytest.skip(f"lamina run has no {option} yet")
    cid = lamina.ok("run", "-d", option, "host", "busybox", "sleep", "600").strip()
    names = ("mnt", "uts", "ipc", "net", "pid", "cgroup")
    out = lamina.ok("exec", cid, "sh", "-c",
                    "for n in " + " ".join(names) + "; do readlink /proc/self/ns/$n; done; ls /")
    lamina.ok("rm", "-f", cid)
    lines = out.splitlines()
    shared = {"--network": "net", "--pid": "pid", "--ipc": "ipc", "--uts": "uts"}[option]
    for name, link in zip(names, lines[:len(names)], strict=True):
        host = os.readlink(f"/proc/self/ns/{name}")
        assert (link == host) == (name == shared), f"{name}: {link} (host {host})"
    assert sorted(lines[len(names):]) == ["bin", "dev", "etc", "home", "proc", "root", "sys",
                                           "tmp"]


# --- nothing of the caller -------------------------------------------------------------------


def test_exec_output_goes_through_pipes_never_the_callers_file(
        lamina: Lamina, sleeper: str, tmp_path: Path) -> None:
    """Inside, fd 1 is a pipe; writing through /proc/self/fd/1 (which would reopen, and
    truncate, the caller's file if fd 1 were it) lands once, in order, via the relay."""
    script = "for n in 0 1 2; do readlink /proc/self/fd/$n; done; echo one; " \
             "echo two > /proc/self/fd/1; echo three; echo four > /proc/self/fd/2"
    out_file, err_file = tmp_path / "out", tmp_path / "err"
    with open(out_file, "w") as out, open(err_file, "w") as err:
        code = subprocess.run([LAMINA, "--root", str(lamina.root), "exec", sleeper, "sh",
                               "-c", script], stdout=out, stderr=err,
                              stdin=subprocess.DEVNULL, timeout=30).returncode
    assert code == 0, err_file.read_text()
    lines = out_file.read_text().splitlines()
    assert lines[0] == "/dev/null"
    assert re.fullmatch(r"pipe:\[\d+\]", lines[1]) and re.fullmatch(r"pipe:\[\d+\]", lines[2])
    assert lines[1] != lines[2]
    assert lines[3:] == ["one", "two", "three"]
    assert err_file.read_text() == "four\n"


def test_run_output_goes_through_pipes_never_the_callers_file(
        lamina: Lamina, tmp_path: Path) -> None:
    script = "readlink /proc/self/fd/1; echo one; echo two > /proc/self/fd/1; echo three"
    out_file = tmp_path / "out"
    with open(out_file, "w") as out:
        code = subprocess.run([LAMINA, "--root", str(lamina.root), "run", "--rm", "busybox",
                               "sh", "-c", script], stdout=out, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, timeout=30).returncode
    assert code == 0
    lines = out_file.read_text().splitlines()
    assert re.fullmatch(r"pipe:\[\d+\]", lines[0]), lines
    assert lines[1:] == ["one", "two", "three"]


def _on_a_terminal(argv: list[str]) -> tuple[int, str, int]:
    """Run argv as the test's own terminal session would: a pty slave as its stdio and
    controlling terminal, in raw mode (so a pushed byte would wait unread, not echo).
    Returns (exit code, what it printed, bytes left in the terminal's input queue)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True,
                            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
    output = b""
    try:
        while proc.poll() is None or _readable(master):
            if _readable(master):
                output += os.read(master, 65536)
        queued = int.from_bytes(fcntl.ioctl(slave, termios.FIONREAD, b"\0" * 4), "little")
    finally:
        proc.wait(10)
        os.close(master)
        os.close(slave)
    return proc.returncode, output.decode(errors="replace"), queued


def _readable(fd: int) -> bool:
    import select

    return bool(select.select([fd], [], [], 0.05)[0])


PROBED = ("fd0", "fd1", "fd2", "tty", "reopened0", "reopened1", "reopened2")


def _assert_nothing_pushed(code: int, output: str, queued: int) -> None:
    assert code == 0, output
    results = dict(line.split(" ", 1) for line in output.replace("\r", "").splitlines()
                   if line.split(" ", 1)[0] in PROBED)
    assert set(results) == set(PROBED), output
    assert "PUSHED" not in results.values(), output
    for fd in PROBED:
        expected = "No such device or address" if fd == "tty" else \
            "Inappropriate ioctl for device"  # no controlling terminal; a pipe or /dev/null
        assert results[fd] == expected, output
    assert queued == 0


def test_the_probe_can_push_into_a_terminal_it_is_given(lamina: Lamina) -> None:
    """Control for the two tests below: run on the host, on the test's terminal, the probe
    does push (so an exec or run that handed it that terminal would fail them)."""
    _needs_probe(lamina)
    code, output, queued = _on_a_terminal([str(lamina.probe)])
    assert code == 0 and "fd0 PUSHED" in output and queued > 0, output


def test_tiocsti_from_an_exec_reaches_nothing_of_the_caller(lamina: Lamina) -> None:
    _needs_probe(lamina)
    cid = lamina.ok("run", "-d", "probe", "sleep", "600").strip()
    try:
        _assert_nothing_pushed(*_on_a_terminal([LAMINA, "--root", str(lamina.root), "exec",
                                                cid, PROBE]))
    finally:
        lamina.ok("rm", "-f", cid)


def test_tiocsti_from_a_run_reaches_nothing_of_the_caller(lamina: Lamina) -> None:
    _needs_probe(lamina)
    _assert_nothing_pushed(*_on_a_terminal([LAMINA, "--root", str(lamina.root), "run",
                                            "--rm", "probe", PROBE]))


def test_tiocsti_from_start_attached_reaches_nothing_of_the_caller(lamina: Lamina) -> None:
    _needs_probe(lamina)
    cid = lamina.ok("create", "probe", PROBE).strip()
    try:
        _assert_nothing_pushed(*_on_a_terminal([LAMINA, "--root", str(lamina.root), "start",
                                                "-a", cid]))
    finally:
        lamina.ok("rm", "-f", cid)


def test_tiocsti_from_a_build_step_reaches_nothing_of_the_caller(lamina: Lamina,
                                                                 tmp_path: Path) -> None:
    _needs_probe(lamina)
    (tmp_path / "Dockerfile").write_text(f"FROM probe\nRUN {PROBE}\n")
    _assert_nothing_pushed(*_on_a_terminal([LAMINA, "--root", str(lamina.root), "build",
                                            "--no-cache", "-t", "probed", str(tmp_path)]))


# --- stdin, ordering, ending -------------------------------------------------------------------


def test_exec_stdin_only_with_dash_i(lamina: Lamina, sleeper: str) -> None:
    assert lamina.ok("exec", "-i", sleeper, "cat", input="hi\n") == "hi\n"
    # without -i, cat reads /dev/null and ends at once, though our stdin stays open
    proc = subprocess.Popen([LAMINA, "--root", str(lamina.root), "exec", sleeper, "cat"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.communicate(timeout=10)[0] == "" and proc.returncode == 0
    finally:
        proc.kill()


def test_exec_relays_large_streams_whole_and_in_order(lamina: Lamina, sleeper: str) -> None:
    """2 MiB in through -i while the process writes it back (both pipes full at times: the
    relay must not deadlock), then 20,000 lines printed just before the process exits."""
    data = "".join(f"{i:07d}\n" for i in range(2 << 17))
    out = lamina("exec", "-i", sleeper, "sh", "-c", "cat; echo end >&2", input=data)
    assert (out.returncode, out.stderr) == (0, "end\n")
    assert out.stdout == data
    lines = lamina.ok("exec", sleeper, "seq", "1", "20000").splitlines()
    assert lines == [str(i) for i in range(1, 20001)]


def test_exec_ends_with_its_process_not_with_a_background_one(lamina: Lamina,
                                                              sleeper: str) -> None:
    started = time.monotonic()
    out = lamina("exec", sleeper, "sh", "-c", "sleep 30 & echo started; exit 4")
    assert (out.returncode, out.stdout) == (4, "started\n")
    assert time.monotonic() - started < 10


def test_exec_with_a_terminal_still_works(lamina: Lamina, sleeper: str) -> None:
    script = "[ -t 0 ] && [ -t 1 ] && echo ok; exit 3"
    code, output, _ = _on_a_terminal([LAMINA, "--root", str(lamina.root), "exec", "-t",
                                      sleeper, "sh", "-c", script])
    assert code == 3 and output == "ok\r\n", output



# --- the native joiner (adapters/runtime/joiner.c) and Python's -----------------------------

# What an exec's process is and what it is told when it can't start, each way it can fail.
_AGREE = [
    ("sh", "-c", "id; pwd; echo $HOME; env | sort; ls /proc/self/fd | wc -l; "
     "grep -E '^(Cap|NoNewPrivs|Seccomp|SigIgn|SigBlk)' /proc/self/status"),
    ("-u", "nobody", "-w", "/made/for/it", "@", "sh", "-c", "id; pwd; echo $HOME"),
    ("-u", "1234:5678", "-e", "A=b c", "@", "sh", "-c", 'id; echo "$A"; ulimit -n'),
    ("@", "nosuch"),
    ("@", "/etc/passwd"),
    ("-u", "nosuchuser", "@", "true"),
    ("-u", "0:nosuchgroup", "@", "true"),
    ("-w", "/etc/passwd", "@", "true"),
    ("-w", "/etc/passwd/below", "@", "true"),
    ("-e", "PATH=/nowhere:/etc", "@", "passwd"),
    ("@", "sh", "-c", "kill -TERM $$"),
    ("@", "sh", "-c", "exit 7"),
]


def _exec_case(lamina: Lamina, cid: str, case: tuple[str, ...]) -> tuple[int, str, str]:
    argv = [cid if a == "@" else a for a in case] if "@" in case else [cid, *case]
    out = lamina("exec", *argv)
    return out.returncode, out.stdout, out.stderr


def test_the_native_joiner_and_pythons_agree(lamina: Lamina, sleeper: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The same process (user, groups, directory, environment, capabilities, seccomp,
    descriptors, signals, limits) and the same codes and words for every failure, with
    lamina-join or with exec's Python J and E (LAMINA_JOINER=python)."""
    native = [_exec_case(lamina, sleeper, case) for case in _AGREE]
    monkeypatch.setenv("LAMINA_JOINER", "python")
    python = [_exec_case(lamina, sleeper, case) for case in _AGREE]
    for case, a, b in zip(_AGREE, native, python, strict=True):
        assert a == b, case
    codes = [code for code, _, _ in native]
    assert codes == [0, 0, 0, 127, 126, 126, 126, 127, 127, 126, 143, 7], native


@pytest.mark.parametrize("joiner", ["native", "python"])
def test_an_exec_runs_under_the_joiner_it_is_given(lamina: Lamina, sleeper: str, joiner: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Built by `make`, lamina-join is what starts an exec's process (its parent on the
    host), run from a copy sealed against writes (no host file a container could write
    through /proc/J/exe); LAMINA_JOINER=python forks Python's J instead. Either way J is
    in a session of its own, never its caller's."""
    if joiner == "python":
        monkeypatch.setenv("LAMINA_JOINER", "python")
    tag = f"joiner-{joiner}-{os.getpid()}"
    lamina.ok("exec", "-d", sleeper, "sh", "-c", f"sleep 30; : {tag}")
    pid = wait_for(lambda: _pid_by_cmdline(tag))
    assert pid, "the exec's process did not show up"
    try:
        parent = parent_of(pid)
        exe = os.readlink(f"/proc/{parent}/exe")
        assert exe.startswith("/memfd:lamina-join") == (joiner == "native"), exe
        if joiner == "native":
            program = os.open(f"/proc/{parent}/exe", os.O_RDONLY)
            try:
                assert fcntl.fcntl(program, fcntl.F_GET_SEALS) & fcntl.F_SEAL_WRITE
            finally:
                os.close(program)
        assert os.getsid(parent) not in (os.getsid(0), os.getsid(parent_of(parent)))
    finally:
        os.killpg(pid, signal.SIGKILL)  # its session's, the sleep with it
        assert wait_for(lambda: _exec_ended(lamina, tag))


def _exec_ended(lamina: Lamina, tag: str) -> bool:
    """Whether the log has the end of the exec whose argv holds `tag` (ExecExited names
    only its exec id)."""
    events = lamina.events("container=sleeper")
    ids = {e["data"]["exec_id"] for e in events
           if e["type"] == "ExecStarted" and tag in " ".join(e["data"]["argv"])}
    return any(e["type"] == "ExecExited" and e["data"].get("exec_id") in ids for e in events)


def _pid_by_cmdline(tag: str) -> int | None:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                cmdline = Path(entry.path, "cmdline").read_bytes()
                if cmdline.startswith(b"sh\0-c\0") and tag.encode() in cmdline:
                    return int(entry.name)
            except OSError:
                continue
    return None
