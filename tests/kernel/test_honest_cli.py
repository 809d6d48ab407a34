"""The CLI drops nothing and leaves nothing behind on a refusal: signals, terminals, the
caller's environment, abbreviations, an image without a command."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.conftest import require_root
from tests.kernel.runtime_env import Lamina, busybox_lamina, busybox_tar

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def lamina(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lamina]:
    require_root()
    yield from busybox_lamina(tmp_path_factory.mktemp("honest"))


def refused(lamina: Lamina, *argv: str, message: str, command: str) -> None:
    """One line on stderr, exit 1, one CommandRejected naming the command, no container."""
    before = len(lamina.events())
    containers = lamina.container_ids()
    out = lamina(*argv)
    assert out.returncode == 1, out
    assert out.stderr == f"lamina: error: {message}\n"
    new = lamina.events()[before:]
    assert [(e["type"], e["data"]["command"]) for e in new] == [("CommandRejected", command)]
    assert lamina.container_ids() == containers


def test_bad_signals_are_refused_and_recorded(lamina: Lamina) -> None:
    cid = lamina.ok("run", "-d", "busybox", "sleep", "60").strip()
    try:
        refused(lamina, "kill", "-s", "BOGUS", cid, message="invalid signal: BOGUS",
                command="kill")
        refused(lamina, "kill", "-s", "99", cid, message="invalid signal: 99", command="kill")
        lamina.ok("kill", "-s", "sigkill", cid)  # a name, lower case: docker's forms
        assert lamina.ok("wait", cid).strip() == "137"
    finally:
        lamina("rm", "-f", cid)


def test_a_terminal_without_one_is_refused_at_once(lamina: Lamina) -> None:
    refused(lamina, "run", "-it", "busybox", "sh", message="the input device is not a TTY",
            command="run")


def test_an_image_without_a_command_leaves_no_container(lamina: Lamina) -> None:
    refused(lamina, "run", "busybox", message="no command specified", command="create")


def test_env_by_name_takes_the_callers_value_or_stays_unset(lamina: Lamina) -> None:
    os.environ["LAMINA_TEST_SET"] = "from the caller"
    try:
        out = lamina.ok("run", "--rm", "-e", "LAMINA_TEST_SET", "-e", "LAMINA_TEST_UNSET",
                        "busybox", "env")
    finally:
        del os.environ["LAMINA_TEST_SET"]
    assert "LAMINA_TEST_SET=from the caller" in out.splitlines()
    assert "LAMINA_TEST_UNSET" not in out


def test_no_abbreviations_and_the_commands_own_usage(lamina: Lamina) -> None:
    out = lamina("run", "--pids", "5", "busybox", "true")
    assert out.returncode == 2
    assert "lamina run: error: unrecognized arguments: --pids" in out.stderr
    assert out.stderr.startswith("usage: lamina run ")


def test_commit_and_import_take_changes(lamina: Lamina, tmp_path) -> None:
    lamina.ok("run", "--name", "changing", "busybox", "sh", "-c", "echo kept > /kept")
    try:
        lamina.ok("commit", "-c", 'CMD ["cat", "/kept"]', "-c", "ENV A=1 B=2", "-c",
                  "LABEL team=core", "-c", "WORKDIR /srv", "-c", "EXPOSE 80",
                  "-c", "USER nobody", "-c", "STOPSIGNAL SIGINT", "changing", "changed:1")
        assert lamina.ok("run", "--rm", "changed:1") == "kept\n"
        import json

        cfg = json.loads(lamina.ok("inspect", "changed:1"))[0]["Config"]
        assert {"A=1", "B=2"} <= set(cfg["Env"]) and cfg["Labels"] == {"team": "core"}
        assert (cfg["WorkingDir"], cfg["User"], cfg["StopSignal"]) == ("/srv", "nobody",
                                                                      "SIGINT")
        assert cfg["ExposedPorts"] == {"80/tcp": {}}
        refused(lamina, "commit", "-c", "RUN rm -rf /", "changing", "bad:1",
                message="RUN is not a valid change command", command="commit")
    finally:
        lamina("rm", "-f", "changing")
        lamina("rmi", "changed:1")
    tar = busybox_tar(tmp_path)
    lamina.ok("import", "-c", 'CMD ["echo", "imported"]', str(tar), "withcmd:1")
    assert lamina.ok("run", "--rm", "withcmd:1") == "imported\n"


def signal_state(text: str) -> dict[str, str]:
    return dict(line.split(":\t") for line in text.splitlines()
                if line.startswith(("SigIgn", "SigBlk")))


CLEAN = {"SigIgn": "0" * 16, "SigBlk": "0" * 16}


def test_processes_start_with_clean_signal_state(lamina: Lamina, tmp_path) -> None:
    """Nothing ignored, nothing blocked: run, start, exec and a build's RUN step."""
    status = ["grep", "-E", "SigIgn|SigBlk", "/proc/self/status"]
    assert signal_state(lamina.ok("run", "--rm", "busybox", *status)) == CLEAN
    # a caller that ignores and blocks signals, 32 (glibc's own) among them, passes none on
    import ctypes
    import signal
    import subprocess

    from adapters.kernel import libc
    from tests.kernel.runtime_env import LAMINA

    def hostile_caller() -> None:
        act = (ctypes.c_ulong * 4)(1, 0, 0, 0)  # SIG_IGN
        libc.check(libc.syscall(13, 32, ctypes.addressof(act), 0, 8), "ignore 32")
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})

    out = subprocess.run([LAMINA, "--root", str(lamina.root), "run", "--rm", "busybox",
                          *status], capture_output=True, text=True, timeout=60,
                         preexec_fn=hostile_caller)
    assert signal_state(out.stdout) == CLEAN, out
    cid = lamina.ok("create", "busybox", *status).strip()
    try:
        lamina.ok("start", "-a", cid)
        assert signal_state(lamina.ok("logs", cid)) == CLEAN
    finally:
        lamina("rm", "-f", cid)
    cid = lamina.ok("run", "-d", "busybox", "sleep", "60").strip()
    try:
        assert signal_state(lamina.ok("exec", cid, *status)) == CLEAN
    finally:
        lamina("rm", "-f", cid)
    # exec form: busybox's sh ignores SIGQUIT itself, and a `sh -c` of one command execs
    # that command with it (docker's the same); cp reads its own status
    (tmp_path / "Dockerfile").write_text(
        'FROM busybox\nRUN ["cp", "/proc/self/status", "/signals"]\n')
    lamina.ok("build", "-t", "signals:1", str(tmp_path))
    try:
        assert signal_state(lamina.ok("run", "--rm", "signals:1", "cat", "/signals")) == CLEAN
    finally:
        lamina("rmi", "signals:1")
    # what SIGPIPE at its default gives: no "Broken pipe" from the writer
    out = lamina("run", "--rm", "busybox", "sh", "-c", "yes | head -2")
    assert out.stdout == "y\ny\n" and "Broken pipe" not in out.stderr


def test_add_host_lines(lamina: Lamina) -> None:
    out = lamina.ok("run", "--rm", "--add-host", "db:10.0.0.5", "--add-host", "v6=fd00::1",
                    "busybox", "cat", "/etc/hosts")
    assert out.splitlines()[-2:] == ["10.0.0.5\tdb", "fd00::1\tv6"]
    refused(lamina, "run", "--add-host", "db:not-an-ip", "busybox", "true",
            message="invalid IP address in --add-host 'db:not-an-ip': not-an-ip",
            command="create")


def gone(lamina: Lamina, cid: str, timeout: float = 15) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while cid in lamina.container_ids():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_detached_rm_is_removed_when_it_ends(lamina: Lamina) -> None:
    """--rm is recorded (auto_remove) and honoured without a client: the monitor removes a
    detached container once its end is recorded, whoever recorded it."""
    ended = lamina.ok("run", "-d", "--rm", "busybox", "true").strip()
    assert gone(lamina, ended)
    stopped = lamina.ok("run", "-d", "--rm", "busybox", "sleep", "60").strip()
    lamina.ok("kill", stopped)
    assert gone(lamina, stopped)
    removed = [e for e in lamina.events() if e["type"] == "ContainerRemoved"
               and e["data"]["id"] in (ended, stopped)]
    assert len(removed) == 2
    assert not [e for e in lamina.events() if e["type"] == "CommandRejected"
                and e["data"]["target"] in (ended, stopped)]


def test_a_host_without_cgroups_gets_one_line(lamina: Lamina) -> None:
    """What `ip netns exec` does to /sys: in a mount namespace of the test's own, without
    /sys/fs/cgroup, run says what is missing in one line, leaves nothing mounted and no
    container (--rm), and the refusal is recorded."""
    import subprocess

    from tests.kernel.runtime_env import LAMINA

    before = len(lamina.events())
    script = (f"mount --make-rprivate / && umount -R /sys/fs/cgroup && exec {LAMINA} "
              f"--root {lamina.root} run --rm busybox true")
    out = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 125, out
    assert out.stderr.startswith("lamina: error: ") and "cgroup" in out.stderr
    assert out.stderr.count("\n") == 1, out.stderr  # one line, no traceback
    types = [e["type"] for e in lamina.events()[before:]]
    assert types[0] == "ContainerCreated" and "CommandRejected" in types
    assert types[-1] == "ContainerRemoved"
    with open("/proc/self/mountinfo") as f:
        assert str(lamina.root) not in f.read()


def test_system_check_sees_a_live_container_without_its_union_view(lamina: Lamina) -> None:
    from adapters.storage.overlay import unmount

    cid = lamina.ok("run", "-d", "busybox", "sleep", "60").strip()
    merged = lamina.root / "layers" / f"rw-{cid}" / "merged"
    try:
        assert os.path.ismount(merged)
        unmount(str(merged))
        out = lamina("system", "check")
        assert out.returncode == 1
        assert f"is running but its union view {merged} is not mounted" in out.stdout
        lamina.ok("system", "reconcile")
        assert os.path.ismount(merged)
        assert lamina("system", "check").returncode == 0
    finally:
        lamina("rm", "-f", cid)
