"""The device allow-list on the real kernel: the v1 devices controller and the cgroup v2 BPF
program (this hybrid host has both; the v2 cgroup lives under /sys/fs/cgroup/unified, where
the program is enforced for the processes in it), plus making and finding device nodes.

Each probe runs in a forked child that first joins the cgroup, as a container's init does.
The "host block device" is a loop device over a temporary file holding a marker, reached
through a node made in a temporary directory; /dev/kmsg is only ever opened read-only.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.kernel import devices as kdev
from adapters.kernel import libc
from adapters.kernel.cgroups import Cgroup, CgroupError, Mode, list_lamina_cgroups
from core.devices import ALLOW_ALL, DEFAULT_NODES, DEFAULT_RULES, Node, Rule, render, rules_for
from core.security import Device, Security
from tests.conftest import require_root
from tests.kernel.conftest import MARKER, Loop

pytestmark = pytest.mark.kernel

MODES = [Mode.V1, Mode.V2]
@pytest.fixture
def cgroups() -> Iterator[Callable[..., Cgroup]]:
    """make(mode, rules) -> a fresh device-restricted cgroup; every one removed after."""
    require_root()
    made: list[Cgroup] = []

    def make(mode: Mode, rules: list[Rule]) -> Cgroup:
        cg = Cgroup.create(f"test-dev-{uuid.uuid4().hex[:10]}", mode=mode, devices=rules)
        made.append(cg)
        return cg

    yield make
    for cg in made:
        with contextlib.suppress(CgroupError):
            cg.kill()
        cg.remove()
        assert cg.id not in list_lamina_cgroups(cg.mode), f"{cg} left behind"


def in_cgroup(cg: Cgroup, probe: Callable[[], Any]) -> Any:
    """probe()'s JSON result, run in a child that joined cg first."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(r)
        try:
            for d in cg.dirs():
                (d / "cgroup.procs").write_text("0")
            out = json.dumps({"ok": probe()})
        except BaseException as err:  # noqa: BLE001 - report everything to the parent
            out = json.dumps({"error": repr(err)})
        os.write(w, out.encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    assert os.waitpid(pid, 0)[1] == 0
    result = json.loads(data)
    assert "error" not in result, result
    return result["ok"]


def try_open(path: str, flags: int = os.O_RDONLY) -> str:
    try:
        os.close(os.open(path, flags))
        return "ok"
    except OSError as err:
        return str(os.strerror(err.errno or 0))


def try_mknod(directory: str, kind: int, major: int, minor: int) -> str:
    path = os.path.join(directory, f"node-{uuid.uuid4().hex[:8]}")
    try:
        os.mknod(path, kind | 0o600, os.makedev(major, minor))
        os.unlink(path)
        return "ok"
    except OSError as err:
        return str(os.strerror(err.errno or 0))


EPERM = os.strerror(1)


@pytest.mark.parametrize("mode", MODES)
def test_default_allow_list(cgroups: Callable[..., Cgroup], loop: Loop, mode: Mode,
                            tmp_path: Path) -> None:
    """The defaults work; a host block device and /dev/kmsg can be neither opened nor made."""
    cg = cgroups(mode, rules_for(Security()))
    got = in_cgroup(cg, lambda: {
        "null": try_open("/dev/null", os.O_RDWR), "zero": try_open("/dev/zero"),
        "loop": try_open(loop.node), "kmsg": try_open("/dev/kmsg"),
        "mknod block": try_mknod(str(tmp_path), stat.S_IFBLK, loop.major, loop.minor),
        "mknod kmsg": try_mknod(str(tmp_path), stat.S_IFCHR, 1, 11),
        "mknod null": try_mknod(str(tmp_path), stat.S_IFCHR, 1, 3),
    })
    assert got == {"null": "ok", "zero": "ok", "loop": EPERM, "kmsg": EPERM,
                   "mknod block": EPERM, "mknod kmsg": EPERM, "mknod null": "ok"}
    assert try_open(loop.node) == "ok", "outside the cgroup the same node opens"


def read_marker(path: str) -> str:
    with open(path, "rb") as f:
        return f.read(len(MARKER)).decode()


@pytest.mark.parametrize("mode", MODES)
def test_read_only_device(cgroups: Callable[..., Cgroup], loop: Loop, mode: Mode,
                          tmp_path: Path) -> None:
    """A rule granting the loop device "r" lets the child read it, but not open it to write
    nor make a node for it."""
    cg = cgroups(mode, [*DEFAULT_RULES, Rule("b", loop.major, loop.minor, "r")])
    got = in_cgroup(cg, lambda: {
        "read": read_marker(loop.node), "write": try_open(loop.node, os.O_WRONLY),
        "rdwr": try_open(loop.node, os.O_RDWR),
        "mknod": try_mknod(str(tmp_path), stat.S_IFBLK, loop.major, loop.minor),
        "kmsg": try_open("/dev/kmsg"),
    })
    assert got == {"read": MARKER.decode(), "write": EPERM, "rdwr": EPERM, "mknod": EPERM,
                   "kmsg": EPERM}


@pytest.mark.parametrize("mode", MODES)
def test_device_option_end_to_end(cgroups: Callable[..., Cgroup], loop: Loop, mode: Mode,
                                  tmp_path: Path) -> None:
    """`--device LOOP:/dev/xvda:r`: resolved, made in a /dev, allowed "rm" by rules_for; the
    child reads through the node made for it and still cannot write."""
    security = Security(devices=(Device(loop.device, "/dev/xvda", "r"),))
    nodes = kdev.nodes_for(security)
    assert nodes[-1] == Node("/dev/xvda", "b", loop.major, loop.minor, nodes[-1].mode, 0,
                             nodes[-1].gid, "r")
    dev = tmp_path / "dev"
    dev.mkdir()
    cg = cgroups(mode, rules_for(security, nodes))
    got = in_cgroup(cg, lambda: (kdev.make_nodes(str(dev), nodes), {
        "read": read_marker(str(dev / "xvda")), "write": try_open(str(dev / "xvda"), os.O_WRONLY),
        "null": try_open(str(dev / "null"), os.O_RDWR)})[1])
    assert got == {"read": MARKER.decode(), "write": EPERM, "null": "ok"}


@pytest.mark.parametrize("mode", MODES)
def test_privileged_allows_all(cgroups: Callable[..., Cgroup], loop: Loop, mode: Mode,
                               tmp_path: Path) -> None:
    cg = cgroups(mode, rules_for(Security(privileged=True)))
    got = in_cgroup(cg, lambda: [read_marker(loop.node), try_open("/dev/kmsg"),
                                 try_mknod(str(tmp_path), stat.S_IFCHR, 1, 11)])
    assert got == [MARKER.decode(), "ok", "ok"]


def test_v1_devices_list_is_the_allow_list(cgroups: Callable[..., Cgroup]) -> None:
    cg = cgroups(Mode.V1, rules_for(Security()))
    listed = next(d for d in cg.dirs() if "devices" in str(d)) / "devices.list"
    assert sorted(listed.read_text().split("\n")[:-1]) == sorted(map(render, DEFAULT_RULES))
    cg2 = cgroups(Mode.V1, [ALLOW_ALL])
    listed = next(d for d in cg2.dirs() if "devices" in str(d)) / "devices.list"
    assert listed.read_text() == "a *:* rwm\n"


def test_v2_program_is_attached(cgroups: Callable[..., Cgroup]) -> None:
    cg = cgroups(Mode.V2, rules_for(Security()))
    fd = os.open(cg.dirs()[0], os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert kdev.attached_v2(fd) == 1
    finally:
        os.close(fd)


@pytest.mark.parametrize("mode", MODES)
def test_rules_refused_on_a_populated_cgroup(cgroups: Callable[..., Cgroup],
                                             mode: Mode) -> None:
    """Rules are applied to an empty cgroup only: a process already inside would have run
    unrestricted (and v1 could not take `a` with children in place)."""
    cg = cgroups(mode, [ALLOW_ALL])
    proc = subprocess.Popen(["sleep", "30"])
    try:
        cg.add(proc.pid)
        target = next(d for d in cg.dirs() if mode is Mode.V2 or "devices" in str(d))
        apply = kdev.attach_v2 if mode is Mode.V2 else kdev.apply_v1
        with pytest.raises(kdev.DeviceError, match="already has processes"):
            apply(target, [])
    finally:
        proc.kill()
        proc.wait()


def test_a_rule_the_kernel_refuses_names_its_file(cgroups: Callable[..., Cgroup]) -> None:
    """v1 takes the rules through two files held open, one write each: a rule refused (a
    child may not allow what its parent denies) is an error naming the rule and the file."""
    cg = cgroups(Mode.V1, [])  # deny all
    inner = next(d for d in cg.dirs() if "devices" in str(d)) / "inner"
    inner.mkdir()
    try:
        with pytest.raises(kdev.DeviceError, match=r"write 'c 1:3 rwm' to .*/inner/devices"
                                                   r"\.allow: Operation not permitted"):
            kdev.apply_v1(inner, [Rule("c", 1, 3, "rwm")])
    finally:
        inner.rmdir()


@pytest.mark.parametrize("mode", MODES)
def test_overlay_whiteout_under_deny_all(cgroups: Callable[..., Cgroup], mode: Mode,
                                         tmp_path: Path) -> None:
    """Deleting a lower-layer file makes a char 0:0 whiteout on the container's behalf; the
    kernel exempts it from the devices cgroup, so even deny-all lets `rm` work."""
    for name in ("lower", "upper", "work", "merged"):
        (tmp_path / name).mkdir()
    (tmp_path / "lower" / "doomed").write_text("x")
    cg = cgroups(mode, [])

    def remove_in_overlay() -> list[Any]:
        libc.unshare(libc.CLONE_NEWNS)
        libc.make_mounts_private()
        libc.mount("overlay", str(tmp_path / "merged"), "overlay", 0,
                   f"lowerdir={tmp_path}/lower,upperdir={tmp_path}/upper,"
                   f"workdir={tmp_path}/work")
        os.unlink(tmp_path / "merged" / "doomed")
        st = os.lstat(tmp_path / "upper" / "doomed")
        return [os.path.exists(tmp_path / "merged" / "doomed"), stat.S_ISCHR(st.st_mode),
                st.st_rdev, try_mknod(str(tmp_path), stat.S_IFCHR, 1, 3)]

    assert in_cgroup(cg, remove_in_overlay) == [False, True, 0, EPERM]


# --- nodes -------------------------------------------------------------------------------------


def test_make_nodes(tmp_path: Path) -> None:
    require_root()
    dev = tmp_path / "dev"
    dev.mkdir()
    snd = Node("/dev/snd/sub/timer", "c", 116, 33, 0o640, 12, 29)
    disk = Node("/dev/xvda", "b", 7, 200, 0o600, 0, 6)
    old = os.umask(0o077)
    try:
        kdev.make_nodes(str(dev), [*DEFAULT_NODES, snd, disk])
    finally:
        os.umask(old)
    for node in (*DEFAULT_NODES, snd, disk):
        st = os.lstat(dev / node.path.removeprefix("/dev/"))
        kind = stat.S_IFCHR if node.type == "c" else stat.S_IFBLK
        assert (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                st.st_rdev) == (kind, node.mode, node.uid, node.gid,
                                os.makedev(node.major, node.minor))
    assert stat.S_IMODE(os.lstat(dev / "snd" / "sub").st_mode) == 0o755
    with pytest.raises(kdev.DeviceError, match="cannot make device node /dev/null: File exists"):
        kdev.make_nodes(str(dev), [DEFAULT_NODES[0]])


def test_make_nodes_never_follows_a_symlink(tmp_path: Path) -> None:
    require_root()
    dev, outside = tmp_path / "dev", tmp_path / "outside"
    dev.mkdir()
    outside.mkdir()
    (dev / "evil").symlink_to(outside)
    with pytest.raises(kdev.DeviceError, match="cannot make device node /dev/evil/null"):
        kdev.make_nodes(str(dev), [Node("/dev/evil/null", "c", 1, 3)])
    with pytest.raises(kdev.DeviceError, match="reserved"):
        kdev.make_nodes(str(dev), [Node("/dev/pts/0", "c", 136, 0)])
    assert list(outside.iterdir()) == []
    os.symlink(outside, tmp_path / "devlink")
    with pytest.raises(kdev.DeviceError, match="cannot open"):
        kdev.make_nodes(str(tmp_path / "devlink"), [DEFAULT_NODES[0]])
    assert list(outside.iterdir()) == []


def test_resolve(tmp_path: Path) -> None:
    require_root()
    assert kdev.resolve(Device("/dev/null", "/dev/mynull", "rw")) == [
        Node("/dev/mynull", "c", 1, 3, 0o666, 0, 0, "rw")]
    (tmp_path / "link").symlink_to("/dev/zero")
    assert kdev.resolve(Device(str(tmp_path / "link"), "/dev/z"))[0].minor == 5
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    os.mknod(tree / "a", stat.S_IFCHR, os.makedev(1, 7))
    os.chmod(tree / "a", 0o620)
    os.mknod(tree / "sub" / "b", stat.S_IFBLK | 0o600, os.makedev(7, 250))
    (tree / "plain").write_text("not a device")
    (tree / "zero").symlink_to("/dev/zero")
    os.mkfifo(tree / "fifo")
    assert kdev.resolve(Device(str(tree), "/dev/snd", "r")) == [
        Node("/dev/snd/a", "c", 1, 7, 0o620, 0, 0, "r"),
        Node("/dev/snd/sub/b", "b", 7, 250, 0o600, 0, 0, "r")]
    missing = str(tmp_path / "nope")
    with pytest.raises(kdev.DeviceError) as err:
        kdev.resolve(Device(missing, missing))
    assert str(err.value) == (f'error gathering device information while adding custom '
                              f'device "{missing}": no such file or directory')
    with pytest.raises(kdev.DeviceError, match="not a device node"):
        kdev.resolve(Device(str(tree / "plain"), "/dev/x"))


def test_host_nodes_as_docker() -> None:
    require_root()
    nodes = {n.path: n for n in kdev.host_nodes()}
    assert nodes["/dev/null"] == Node("/dev/null", "c", 1, 3, 0o666, 0, 0)
    assert nodes["/dev/kmsg"].major == 1 and nodes["/dev/kmsg"].minor == 11
    assert not {"/dev/ptmx", "/dev/console"} & set(nodes)
    assert not [p for p in nodes if p.startswith(("/dev/pts/", "/dev/shm/", "/dev/mqueue/"))]
    privileged = kdev.nodes_for(Security(privileged=True))
    assert len(privileged) == len({n.path for n in privileged}) >= len(nodes)
