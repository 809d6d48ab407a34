"""What a container holds of the host, seen from inside real containers: capabilities,
namespaces shared on request only, its own cgroups read-only through a cgroup namespace, a
read-only /sys with the host's network too, a read-only root on request, and a private log.

(The probe suite, tests/kernel/test_probes.py, tries the forbidden operations themselves;
here the container reports what it was given.)"""

from __future__ import annotations

import json
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.security import DEFAULT_CAPS, capabilities
from tests.conftest import require_root
from tests.kernel.conftest import Loop
from tests.kernel.runtime_env import Lamina, busybox_lamina

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def lamina(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lamina]:
    require_root()
    yield from busybox_lamina(tmp_path_factory.mktemp("isolation"))


def inside(lamina: Lamina, *argv: str) -> str:
    return lamina.ok("run", "--rm", *argv)


def status(lamina: Lamina, *flags: str) -> dict[str, str]:
    text = inside(lamina, *flags, "busybox", "cat", "/proc/self/status")
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def mask(names: frozenset[str]) -> str:
    from adapters.kernel.security import caps_mask

    return f"{caps_mask(names):016x}"


def test_capabilities_as_asked(lamina: Lamina) -> None:
    default = status(lamina)
    assert default["CapEff"] == default["CapBnd"] == mask(DEFAULT_CAPS) == "00000000a80425fb"
    assert default["CapInh"] == default["CapAmb"] == "0" * 16
    tweaked = status(lamina, "--cap-drop", "ALL", "--cap-add", "NET_ADMIN")
    assert tweaked["CapEff"] == tweaked["CapBnd"] == f"{1 << 12:016x}"
    dropped = status(lamina, "--cap-drop", "chown", "--cap-add", "cap_sys_ptrace")
    assert dropped["CapBnd"] == mask(capabilities(add=["SYS_PTRACE"], drop=["CHOWN"]))
    nobody = status(lamina, "-u", "65534")
    assert nobody["CapEff"] == nobody["CapPrm"] == "0" * 16
    assert nobody["CapBnd"] == mask(DEFAULT_CAPS)
    privileged = status(lamina, "--privileged")
    assert privileged["CapEff"] == privileged["CapBnd"] == own_bounding_set()


def own_bounding_set() -> str:
    """Every capability the host gives lamina (a sandbox may already lack some): what
    --privileged must pass on, whole."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapBnd:"):
            return line.split()[1]
    raise AssertionError("no CapBnd")


def test_no_new_privileges_is_on_unless_turned_off(lamina: Lamina) -> None:
    assert status(lamina)["NoNewPrivs"] == "1"
    assert status(lamina, "-u", "65534")["NoNewPrivs"] == "1"
    off = status(lamina, "--security-opt", "no-new-privileges=false", "-u", "65534")
    assert off["NoNewPrivs"] == "0"


def ns_of(lamina: Lamina, *flags: str) -> dict[str, str]:
    out = inside(lamina, *flags, "busybox", "sh", "-c",
                 "for n in cgroup ipc mnt net pid uts; do echo $n $(readlink /proc/self/ns/$n);"
                 " done")
    return dict(line.split(" ", 1) for line in out.splitlines())


def host_ns() -> dict[str, str]:
    return {n: os.readlink(f"/proc/self/ns/{n}")
            for n in ("cgroup", "ipc", "mnt", "net", "pid", "uts")}


def test_namespaces_are_shared_only_on_request(lamina: Lamina) -> None:
    host = host_ns()
    own = ns_of(lamina)
    assert all(own[n] != host[n] for n in host), own
    shared = ns_of(lamina, "--pid", "host", "--ipc", "host", "--uts", "host",
                   "--network", "host")
    assert {n for n in host if shared[n] == host[n]} == {"pid", "ipc", "uts", "net"}
    assert shared["mnt"] != host["mnt"] and shared["cgroup"] != host["cgroup"]


def test_host_namespaces_show_the_host(lamina: Lamina) -> None:
    assert inside(lamina, "--uts", "host", "busybox", "hostname").strip() \
        == socket.gethostname()
    assert inside(lamina, "busybox", "hostname").strip() != socket.gethostname()
    me = os.getpid()
    assert inside(lamina, "--pid", "host", "busybox", "sh", "-c",
                  f"test -d /proc/{me} && echo seen").strip() == "seen"
    assert inside(lamina, "busybox", "sh", "-c", "echo $$").strip() == "1"
    shm = Path("/dev/shm") / f"lamina-test-{me}"
    shm.write_text("from the host")
    try:
        assert inside(lamina, "--ipc", "host", "busybox", "cat", str(shm)) == "from the host"
        assert lamina("run", "--rm", "busybox", "cat", str(shm)).returncode != 0
    finally:
        shm.unlink()
    assert inside(lamina, "--ipc", "none", "busybox", "sh", "-c",
                  "grep -c ' /dev/shm ' /proc/self/mountinfo || true").strip() == "0"


def mountinfo(lamina: Lamina, *flags: str) -> dict[str, list[str]]:
    """mount point -> [per-mount options, super options] as the container sees them."""
    out = inside(lamina, *flags, "busybox", "cat", "/proc/self/mountinfo")
    rows = {}
    for line in out.splitlines():
        fields = line.split()
        rows[fields[4]] = [fields[5], fields[-1]]
    return rows


@pytest.mark.parametrize("flags", [(), ("--network", "host")], ids=["own-net", "host-net"])
def test_sys_and_cgroups_are_read_only(lamina: Lamina, flags: tuple[str, ...]) -> None:
    mounts = mountinfo(lamina, *flags)
    assert mounts["/sys"][0].startswith("ro,"), mounts["/sys"]
    cgroups = {p: o for p, o in mounts.items() if p.startswith("/sys/fs/cgroup")}
    assert {"/sys/fs/cgroup/freezer", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids"} \
        <= set(cgroups)
    assert all(o[0].startswith("ro,") for o in cgroups.values()), cgroups
    # nothing of the host's sysfs submounts (a recursive bind would carry them, writable)
    assert not any(p.startswith("/sys/") and p not in cgroups for p in mounts
                   if not p.startswith(("/sys/firmware", "/sys/devices/virtual/powercap"))), \
        mounts


def test_the_cgroup_namespace_shows_only_its_own_limits(lamina: Lamina) -> None:
    out = inside(lamina, "--pids-limit", "77", "busybox", "sh", "-c",
                 "cat /sys/fs/cgroup/pids/pids.max; grep pids /proc/self/cgroup; "
                 "ls /sys/fs/cgroup/freezer; "
                 "ls /sys/fs/cgroup/memory | grep -c release_agent; true")
    lines = out.splitlines()
    assert lines[0] == "77"
    assert lines[1].endswith(":pids:/")
    assert "lamina" not in lines[2:-1]  # no other container's cgroup to reach
    assert lines[-1] == "0"  # release_agent lives in a hierarchy's root: not this one


def test_privileged_gets_writable_sys_and_cgroups(lamina: Lamina) -> None:
    mounts = mountinfo(lamina, "--privileged")
    assert mounts["/sys"][0].startswith("rw,")
    assert mounts["/sys/fs/cgroup/pids"][0].startswith("rw,")
    assert "/proc/kcore" not in mounts  # nothing masked


def test_read_only_root(lamina: Lamina) -> None:
    out = lamina("run", "--rm", "--read-only", "busybox", "sh", "-c",
                 "touch /etc/x; echo $?; touch /dev/shm/x && echo shm ok; hostname")
    lines = out.stdout.splitlines()
    assert lines[0] != "0" and "Read-only file system" in out.stderr
    assert lines[1] == "shm ok"
    rw = lamina.ok("run", "--rm", "busybox", "sh", "-c", "touch /etc/x && echo ok")
    assert rw.strip() == "ok"


def test_group_add(lamina: Lamina) -> None:
    out = inside(lamina, "-u", "65534", "--group-add", "10", "--group-add", "4321",
                 "busybox", "id", "-G")
    assert set(out.split()) == {"65534", "10", "4321"}
    bad = lamina("run", "--rm", "--group-add", "no-such-group", "busybox", "true")
    assert bad.returncode != 0 and "unable to find group no-such-group" in bad.stderr


def test_refusals_are_one_line_and_recorded(lamina: Lamina) -> None:
    cases = {
        ("--security-opt", "apparmor=unconfined"): "--security-opt 'apparmor=unconfined'",
        ("--pid", "container:x"): "--pid 'container:x' is not supported",
        ("--cap-add", "FLY"): "unknown capability: 'FLY'",
        ("--uts", "host", "--hostname", "h"): "conflicting options",
        ("--device", "/dev/null:rwx"): "invalid device",
    }
    for flags, message in cases.items():
        before = len(lamina.events())
        out = lamina("run", "--rm", *flags, "busybox", "true")
        assert out.returncode == 1 and message in out.stderr, (flags, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1
        new = lamina.events()[before:]
        assert [e["type"] for e in new] == ["CommandRejected"], new
        assert message in json.dumps(new[0])


def test_inspect_shows_what_was_accepted(lamina: Lamina) -> None:
    cid = lamina.ok("create", "--cap-add", "NET_ADMIN", "--cap-drop", "MKNOD", "--read-only",
                    "--group-add", "10", "--security-opt", "no-new-privileges=false",
                    "busybox", "true").strip()
    try:
        host = json.loads(lamina.ok("inspect", cid))[0]["HostConfig"]
        assert host["CapAdd"] == ["NET_ADMIN"] and host["CapDrop"] == ["MKNOD"]
        assert host["ReadonlyRootfs"] is True and host["GroupAdd"] == ["10"]
        assert host["SecurityOpt"] == ["no-new-privileges=false"]
        assert host["Privileged"] is False
    finally:
        lamina("rm", cid)


def test_the_root_and_its_log_are_private(tmp_path: Path) -> None:
    require_root()
    root = tmp_path / "private"
    lam = Lamina(root)
    lam.ok("ps")
    lam("tag", "nothing", "x")  # a write: the log and its WAL exist now
    modes = {p.name: stat.S_IMODE(p.stat().st_mode)
             for p in [root, *root.glob("events.db*")]}
    assert modes["private"] == 0o700
    assert {m for n, m in modes.items() if n.startswith("events.db")} == {0o600}, modes
    assert "events.db-wal" in modes
    for p in [root, *root.glob("events.db*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)  # a root made before the rule
    lam.ok("ps")
    assert {stat.S_IMODE(p.stat().st_mode) for p in root.glob("events.db*")} == {0o600}
    assert stat.S_IMODE(root.stat().st_mode) == 0o700


def as_nobody(fn) -> str:
    """fn's result (or its exception's name) in a forked child running as uid 65534."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            result = str(fn())
        except BaseException as err:  # noqa: BLE001 - report it to the parent
            result = type(err).__name__
        os.write(w, result.encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        out = f.read()
    os.waitpid(pid, 0)
    return out


def test_only_root_reads_the_log_or_runs_lamina(tmp_path: Path, capfd) -> None:
    require_root()
    root = tmp_path / "root"
    Lamina(root).ok("ps")
    assert as_nobody(lambda: (root / "events.db").read_bytes()) == "PermissionError"
    assert as_nobody(lambda: os.listdir(root)) == "PermissionError"

    def lamina_events() -> int:
        from adapters.cli import run

        return run(["--root", str(root), "events"])

    assert as_nobody(lamina_events) == "1"
    assert capfd.readouterr().err == "lamina: error: lamina must run as root\n"


def test_devices_inside_are_the_allow_list(lamina: Lamina, loop: Loop) -> None:
    """The default /dev and cgroup allow-list; --device adds one node with the access asked
    (read here: the marker is read, opening for write is refused); mknod of anything else
    is refused."""
    from tests.kernel.conftest import MARKER

    out = inside(lamina, "busybox", "sh", "-c",
                 "ls /dev; cat /sys/fs/cgroup/devices/devices.list; "
                 f"mknod /tmp/disk b {loop.major} {loop.minor} || echo mknod refused")
    names = set(out.split())
    assert {"null", "zero", "full", "random", "urandom", "tty"} <= names
    assert not names & {"kmsg", "mem", "sda", "vda", os.path.basename(loop.device)}
    assert "c 136:* rwm" in out and "a *:* rwm" not in out
    assert "mknod refused" in out
    out = lamina("run", "--rm", "--device", f"{loop.device}:/dev/disk:r", "busybox", "sh", "-c",
                 "head -c 18 /dev/disk; echo; echo x >> /dev/disk || echo write refused")
    assert out.stdout.splitlines() == [MARKER.decode(), "write refused"], out
    bad = lamina("run", "--rm", "--device", "/no/such/device", "busybox", "true")
    assert bad.returncode == 125
    assert 'adding custom device "/no/such/device": no such file' in bad.stderr
