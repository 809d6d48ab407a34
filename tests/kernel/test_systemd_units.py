"""lamina.socket + lamina.service as `make install` renders them, run by a real systemd:
Debian's systemd booted as PID 1 of a container, with lamina installed in it the way
`make install` installs it (tests/kernel/systemd_machine.py says how, and why a container).

- `systemctl start lamina.socket`: systemd binds both sockets; the first connection, the
  lamina command's, starts lamina.service (socket activation) and is served by its fork
  server; the Docker API answers on /run/lamina.sock;
- a SIGKILL of the service's main process: systemd starts it again (Restart=on-failure) on
  the same sockets; the containers run on;
- enabled, and the machine rebooted: lamina-shutdown.service (enabled by `make install`)
  stops every container as the machine goes down, one whose init ignores SIGTERM by
  SIGKILL after its stop timeout (10 s) instead of holding the shutdown for systemd's 90 s,
  each recorded as the host's stop; lamina.service runs once the boot is over, and the
  containers run with `--restart always` or `unless-stopped` are running again, not one an
  `unless-stopped` container's user stopped.

And on a machine that sees cgroup v2 alone (test_on_a_host_with_cgroup_v2_alone): run,
pause and unpause by cgroup.freeze, exec, a limit refused by name, and a reboot.

~9 s, ~12 s and ~8 s here (a boot of ~1 s, a reboot of ~3 s plus the deaf container's 2 s
stop timeout, RestartSec=2).
"""

from __future__ import annotations

import json
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_root
from tests.kernel.runtime_env import Lamina, busybox_tar, leftovers
from tests.kernel.systemd_machine import NSPAWN, Machine, python_binds
from tests.kernel.test_storage_support import require_tool

pytestmark = pytest.mark.kernel
REPO = Path(__file__).resolve().parents[2]
BINDIR = "/opt/lamina/bin"
ROOT = "/var/lib/lamina"  # in the machine: the test's root, bound there (the default root)


def make(box: Machine, target: str) -> str:
    """`make install` or `make uninstall` run in the machine as root runs it on a host whose
    PID 1 is systemd (no DESTDIR: the group, systemctl daemon-reload), into the machine's
    /opt/lamina and /etc, for the default root; `-o client -o joiner`: the native client
    and exec's joiner the test run built are installed as they are (the checkout is
    read-only in the machine, which has no Debian mirror for `deb`)."""
    return box.ok("make", "-s", "-C", str(REPO), "-o", "client", "-o", "joiner",
                  "PREFIX=/opt/lamina", "UNITDIR=/etc/systemd/system", target, timeout=300)


@pytest.fixture
def machine(tmp_path: Path) -> Iterator[tuple[Machine, Lamina]]:
    """A booted machine with lamina installed in it by `make install`, for a root holding
    busybox."""
    yield from installed(tmp_path, unified=False)


@pytest.fixture
def v2_machine(tmp_path: Path) -> Iterator[tuple[Machine, Lamina]]:
    """The same, on a machine that sees cgroup v2 alone."""
    yield from installed(tmp_path, unified=True)


def installed(tmp_path: Path, unified: bool) -> Iterator[tuple[Machine, Lamina]]:
    require_root()
    require_tool(NSPAWN, "systemd-container")
    root, tree = tmp_path / "root", tmp_path / "tree"
    lam = Lamina(root)
    lam.ok("import", str(busybox_tar(tmp_path)), "busybox")
    Machine.make_tree(tree, unified)
    box = Machine(tree, binds=[f"{root}:{ROOT}"], ro_binds=[str(REPO), *python_binds()],
                  unified=unified)
    try:
        box.boot()
        out = make(box, "install")
        assert "start it: systemctl enable --now lamina.socket lamina.service" in out, out
        assert box.ok("getent", "group", "lamina").startswith("lamina:x:")
        yield box, lam
    finally:
        box.stop()
    assert leftovers(root, []) == []


def api(box: Machine, path: str = "/_ping") -> bytes:
    """GET path on the machine's /run/lamina.sock (reached through its PID 1's root)."""
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(60)
        client.connect(f"/proc/{box.leader()}/root/run/lamina.sock")
        client.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        return client.makefile("rb").read()


def show(box: Machine, unit: str, *props: str) -> dict[str, str]:
    out = box.ok("systemctl", "show", unit, *(f"--property={p}" for p in props))
    return dict(line.split("=", 1) for line in out.splitlines())


def wait_for(box: Machine, unit: str, want: dict[str, str], timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        got = show(box, unit, *want)
        if all(got[k] == v for k, v in want.items()):
            return got
        assert time.monotonic() < deadline, f"{unit}: {got}\n{box.journal(unit)}"
        time.sleep(0.05)


def lamina(box: Machine, *argv: str) -> str:
    """The lamina command run by a process of the machine (a transient service: under the
    machine's seccomp filter, as lamina.service is), so that the service's fork server
    may run it in its place (adapters/fastpath/peer.py); a client under nsenter alone would
    differ from the server and run the command itself."""
    return box.ok(*AS_SERVICE, f"{BINDIR}/lamina", *argv, timeout=120)


AS_SERVICE = ("systemd-run", "--wait", "--pipe", "--quiet", "--collect")


def service_processes(box: Machine) -> list[str]:
    """The command lines of the processes in lamina.service's cgroup."""
    group = show(box, "lamina.service", "ControlGroup")["ControlGroup"]
    return box.ok("sh", "-c", 'for p in $(cat "$1"); do tr "\\0" " " </proc/$p/cmdline; '
                  'echo; done', "sh", f"/sys/fs/cgroup/systemd{group}/cgroup.procs"
                  ).splitlines()


def state(box: Machine, cid: str) -> dict:
    return json.loads(lamina(box, "inspect", cid))[0]["State"]


LOOP = ["busybox", "sh", "-c", "trap 'exit 0' TERM; while sleep 1; do :; done"]
DEAF = ["busybox", "sh", "-c", "trap '' TERM; sleep 1000"]  # PID 1 ignoring SIGTERM


def stops(root: Path) -> dict[str, list[dict]]:
    """Each container's ContainerStopped records, oldest first, with their meta's command."""
    con = sqlite3.connect(f"file:{root / 'events.db'}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT stream, data, meta FROM events WHERE type = "
                           "'ContainerStopped' ORDER BY seq").fetchall()
    finally:
        con.close()
    out: dict[str, list[dict]] = {}
    for stream, data, meta in rows:
        out.setdefault(stream.partition(":")[2], []).append(
            {**json.loads(data), "command": json.loads(meta)["command"]})
    return out


def test_socket_activation_and_restart_after_a_crash(machine: tuple[Machine, Lamina]) -> None:
    """systemctl start lamina.socket: the first connection (the lamina command's, on
    <root>/cli.sock) starts lamina.service, whose fork server runs the command (the
    container's monitor is in the service's cgroup); the API answers on /run/lamina.sock;
    a SIGKILL of the service's main process: systemd starts it again on the same sockets,
    the container runs on untouched (KillMode=process), and both sockets answer again."""
    box, lam = machine
    box.ok("systemctl", "stop", "lamina-shutdown")  # by hand: the root is marked...
    assert (lam.root / "shutting-down").exists()
    box.ok("systemctl", "start", "lamina-shutdown")  # ...until the unit runs again
    assert not (lam.root / "shutting-down").exists()
    box.ok("systemctl", "start", "lamina.socket")
    assert show(box, "lamina.service", "ActiveState")["ActiveState"] == "inactive"
    assert box.ok("stat", "-c", "%a %U %G", "/run/lamina.sock").split() == \
        ["660", "root", "lamina"]
    cid = lamina(box, "run", "-d", "--network", "none", *LOOP).strip()
    wait_for(box, "lamina.service", {"ActiveState": "active", "SubState": "running"})
    assert any(cid in line for line in service_processes(box)), service_processes(box)
    listed = json.loads(api(box, "/containers/json").partition(b"\r\n\r\n")[2])
    assert [c["Id"] for c in listed] == [cid]
    assert "serving" in (lam.root / "serve.log").read_text()  # StandardOutput=append:
    main = int(show(box, "lamina.service", "MainPID")["MainPID"])
    pid = state(box, cid)["Pid"]

    box.ok("kill", "-KILL", str(main))
    wait_for(box, "lamina.service", {"ActiveState": "active", "SubState": "running",
                                     "NRestarts": "1"})
    assert int(show(box, "lamina.service", "MainPID")["MainPID"]) != main
    assert api(box).endswith(b"\r\n\r\nOK")
    after = state(box, cid)
    assert (after["Running"], after["Pid"]) == (True, pid)
    assert lamina(box, "run", "--rm", "--network", "none", "busybox", "echo",
                  "back") == "back\n"
    lamina(box, "rm", "-f", cid)
    make(box, "uninstall")  # stops and disables both units, removes the files
    gone = show(box, "lamina.socket", "ActiveState", "LoadState")
    assert gone == {"ActiveState": "inactive", "LoadState": "not-found"}, gone
    with pytest.raises(ConnectionRefusedError):  # the file stays (RemoveOnStop=no)
        api(box)


def test_enabled_it_starts_at_boot_with_the_containers_whose_policy_says_so(
        machine: tuple[Machine, Lamina]) -> None:
    """systemctl start lamina (its socket comes with it), systemctl enable, then a reboot
    of the machine: lamina-shutdown.service stops every container as the machine goes
    down, one whose init ignores SIGTERM by SIGKILL after its stop timeout (its own 2 s,
    set by --stop-timeout: docker's default 10 s only made the reboot 8 s longer; the
    reboot takes well under systemd's 90 s), recorded as the host's stop; lamina.service
    is running once the boot is over, before anyone connects, and the containers run with
    --restart always and unless-stopped are running again (new processes); one without a
    policy is not, nor an unless-stopped one its user stopped."""
    box, lam = machine
    box.ok("systemctl", "start", "lamina")  # its sockets with it (Requires=lamina.socket)
    wait_for(box, "lamina.socket", {"ActiveState": "active"}, 5)
    wait_for(box, "lamina.service", {"ActiveState": "active", "SubState": "running"}, 5)
    box.ok("systemctl", "enable", "lamina.socket", "lamina.service")
    assert show(box, "lamina-shutdown.service", "ActiveState", "UnitFileState") == {
        "ActiveState": "active", "UnitFileState": "enabled"}  # make install's

    def run(*policy: str, argv: list[str] = LOOP) -> str:
        return lamina(box, "run", "-d", *policy, "--network", "none", *argv).strip()

    back = [run("--restart", "always"), run("--restart", "unless-stopped"),
            run("--restart", "unless-stopped", "--stop-timeout", "2", argv=DEAF)]
    stay = [run(), run("--restart", "unless-stopped")]
    lamina(box, "stop", stay[1])
    before = {cid: state(box, cid)["Pid"] for cid in back}
    began = time.monotonic()
    box.reboot()
    took = time.monotonic() - began
    assert took < 40, f"the reboot took {took:.0f} s"  # 93 s before lamina-shutdown
    wait_for(box, "lamina.service", {"ActiveState": "active", "SubState": "running"}, 5)
    now = {cid: state(box, cid) for cid in back + stay}
    assert [now[cid]["Running"] for cid in back + stay] == [True] * 3 + [False] * 2, now
    assert all(now[cid]["Pid"] != before[cid] for cid in back), now
    ended = {cid: [(s["signal"], s.get("shutdown", False), s["command"]) for s in got]
             for cid, got in stops(lam.root).items()}
    assert ended == {back[0]: [(15, True, "system shutdown")],
                     back[1]: [(15, True, "system shutdown")],
                     back[2]: [(9, True, "system shutdown")],  # after its 2 s
                     stay[0]: [(15, True, "system shutdown")],
                     stay[1]: [(15, False, "stop")]}, ended
    lamina(box, "rm", "-f", *back, *stay)


def test_on_a_host_with_cgroup_v2_alone(v2_machine: tuple[Machine, Lamina]) -> None:
    """The same units on a machine whose systemd runs cgroup v2 alone (as a host booted with
    systemd.unified_cgroup_hierarchy=1): lamina makes its containers' cgroups in the unified
    tree. Started by systemctl, a run --rm prints and exits; a detached container pauses by
    cgroup.freeze and thaws, is exec'd into (its cgroup namespace rooted at its own cgroup);
    a memory limit is refused by name, since on this hybrid host the v2 tree has no
    controllers (the v1 hierarchies hold them all); enabled, a reboot brings a --restart
    always container back."""
    box, _ = v2_machine
    assert box.ok("stat", "-fc", "%T", "/sys/fs/cgroup").strip() == "cgroup2fs"
    box.ok("systemctl", "start", "lamina")
    wait_for(box, "lamina.service", {"ActiveState": "active", "SubState": "running"}, 5)
    box.ok("systemctl", "enable", "lamina.socket", "lamina.service")
    assert lamina(box, "run", "--rm", "--network", "none", "busybox", "echo", "hi") == "hi\n"
    cid = lamina(box, "run", "-d", "--restart", "always", "--network", "none", *LOOP).strip()
    freeze = f"/sys/fs/cgroup/lamina/{cid}/cgroup.freeze"
    lamina(box, "pause", cid)
    assert state(box, cid)["Paused"] is True
    assert box.ok("cat", freeze).strip() == "1"
    lamina(box, "unpause", cid)
    assert box.ok("cat", freeze).strip() == "0"
    assert "0::/\n" in lamina(box, "exec", cid, "cat", "/proc/self/cgroup")
    refused = box.sh(*AS_SERVICE, f"{BINDIR}/lamina", "run", "--rm", "--memory", "64m",
                     "--network", "none", "busybox", "true", timeout=120)
    assert refused.returncode == 125, refused
    assert "lacks controllers ['memory']" in refused.stderr, refused.stderr
    before = state(box, cid)["Pid"]
    box.reboot()
    wait_for(box, "lamina.service", {"ActiveState": "active", "SubState": "running"}, 5)
    now = state(box, cid)
    assert now["Running"] is True and now["Pid"] != before, now
    lamina(box, "rm", "-f", cid)
