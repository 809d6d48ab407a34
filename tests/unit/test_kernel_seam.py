"""The kernel seam itself (adapters/kernel/syscalls.py) and what runs through it without
root: namespaces' flags, enter and join, and devices.make_nodes.

The recording double is only worth what its answers are: the filesystem calls it simulates
are run side by side with the real ones on a temporary directory (no root needed) and
must answer alike, errors included.
"""

from __future__ import annotations

import errno
import inspect
import itertools
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from adapters.kernel import devices, libc, namespaces, syscalls
from adapters.kernel.recording import Call, Recording, clone_flags
from core.devices import DEFAULT_NODES, Node
from core.security import Security, security_of

# --- the seam's shape --------------------------------------------------------------------------


def _members(cls: type) -> set[str]:
    return {name for name, value in vars(cls).items()
            if not name.startswith("_") and (callable(value) or isinstance(value, staticmethod))}


def test_the_real_kernel_and_the_double_have_the_same_calls() -> None:
    """Every call of the protocol is on both, with the protocol's parameters: a double
    that lacked one would fail loudly, never fall through to the real call."""
    wanted = _members(syscalls.Syscalls)
    assert wanted <= _members(syscalls.Linux)
    assert wanted <= _members(Recording)
    for name in wanted:
        params = list(inspect.signature(getattr(syscalls.Syscalls, name)).parameters)[1:]
        double = list(inspect.signature(getattr(Recording, name)).parameters)[1:]
        assert double == params, name
    assert not issubclass(Recording, syscalls.Linux)


def test_the_real_members_are_the_calls_themselves() -> None:
    """The container start pays nothing for the seam: no wrapper between it and os/libc."""
    real = syscalls.LINUX
    assert (real.mount, real.umount, real.pivot_root, real.unshare, real.setns) == (
        libc.mount, libc.umount, libc.pivot_root, libc.unshare, libc.setns)
    assert (real.makedirs, real.mknod, real.open, real.stat, real.chdir) == (
        os.makedirs, os.mknod, os.open, os.stat, os.chdir)


# --- the double answers as the filesystem does -------------------------------------------------


def _outcome(k: syscalls.Syscalls, call: Callable[[], object], strip: str) -> object:
    try:
        got = call()
    except OSError as err:
        return f"errno {errno.errorcode[err.errno or 0]}"
    if isinstance(got, int) and not isinstance(got, bool):
        k.close(got)
        return "fd"
    if isinstance(got, str):
        return got.replace(strip, "")
    if isinstance(got, list):
        return sorted(p.replace(strip, "") for p in got)  # glob: in the directory's order
    if isinstance(got, os.stat_result):
        return stat.S_IFMT(got.st_mode)
    return got


def _at(k: syscalls.Syscalls, d: str, call: Callable[[int], object]) -> object:
    """call(fd of d/a), the fd closed after."""
    fd = k.open(f"{d}/a", os.O_RDONLY | os.O_DIRECTORY)
    try:
        return call(fd)
    finally:
        k.close(fd)


STEPS: list[tuple[str, Callable[[syscalls.Syscalls, str], object]]] = [
    ("makedirs", lambda k, d: k.makedirs(f"{d}/a/b", 0o755)),
    ("makedirs again", lambda k, d: k.makedirs(f"{d}/a/b", 0o755)),
    ("makedirs exist_ok", lambda k, d: k.makedirs(f"{d}/a/b", 0o755, True)),
    ("touch", lambda k, d: k.touch(f"{d}/a/f")),
    ("makedirs over a file", lambda k, d: k.makedirs(f"{d}/a/f", 0o755, True)),
    ("touch a dir", lambda k, d: k.touch(f"{d}/a/b")),
    ("touch in nothing", lambda k, d: k.touch(f"{d}/none/f")),
    ("symlink", lambda k, d: k.symlink("f", f"{d}/a/l")),
    ("symlink dangling", lambda k, d: k.symlink("../gone", f"{d}/a/dangling")),
    ("symlink dir", lambda k, d: k.symlink("b", f"{d}/a/lb")),
    ("symlink again", lambda k, d: k.symlink("f", f"{d}/a/l")),
    ("exists link", lambda k, d: k.exists(f"{d}/a/l")),
    ("exists dangling", lambda k, d: k.exists(f"{d}/a/dangling")),
    ("islink dangling", lambda k, d: k.islink(f"{d}/a/dangling")),
    ("isdir via link", lambda k, d: k.isdir(f"{d}/a/lb")),
    ("isdir file", lambda k, d: k.isdir(f"{d}/a/f")),
    ("through a link", lambda k, d: k.exists(f"{d}/a/lb/../f")),
    ("realpath", lambda k, d: k.realpath(f"{d}/a/l")),
    ("glob", lambda k, d: k.glob(f"{d}/a/*")),
    ("glob deep", lambda k, d: k.glob(f"{d}/*/b")),
    ("glob none", lambda k, d: k.glob(f"{d}/a/x*")),
    ("open nofollow", lambda k, d: k.open(f"{d}/a/l", os.O_RDONLY | os.O_NOFOLLOW)),
    ("open excl", lambda k, d: k.open(f"{d}/a/f", os.O_WRONLY | os.O_CREAT | os.O_EXCL)),
    ("open directory", lambda k, d: k.open(f"{d}/a/f", os.O_RDONLY | os.O_DIRECTORY)),
    ("open missing", lambda k, d: k.open(f"{d}/a/nope", os.O_RDONLY)),
    ("open creates", lambda k, d: k.open(f"{d}/a/new", os.O_WRONLY | os.O_CREAT, 0o600)),
    ("created", lambda k, d: k.exists(f"{d}/a/new")),
    ("mkdir at", lambda k, d: _at(k, d, lambda fd: k.mkdir("c", 0o755, dir_fd=fd))),
    ("mkdir at again", lambda k, d: _at(k, d, lambda fd: k.mkdir("c", 0o755, dir_fd=fd))),
    ("mknod at", lambda k, d: _at(k, d, lambda fd: k.mknod("p", stat.S_IFIFO | 0o600,
                                                           dir_fd=fd))),
    ("stat link", lambda k, d: k.stat(f"{d}/a/l", follow_symlinks=False)),
    ("stat via link", lambda k, d: k.stat(f"{d}/a/l")),
    ("stat dir at", lambda k, d: _at(k, d, lambda fd: k.stat("c", dir_fd=fd))),
    ("dup", lambda k, d: _at(k, d, lambda fd: k.dup(fd))),
    ("unlink link", lambda k, d: k.unlink(f"{d}/a/l")),
    ("unlink again", lambda k, d: k.unlink(f"{d}/a/l")),
    ("unlink dir", lambda k, d: k.unlink(f"{d}/a/b")),
    ("gone", lambda k, d: k.islink(f"{d}/a/l")),
    ("close a bad fd", lambda k, d: k.close(99999)),
    ("chdir file", lambda k, d: k.chdir(f"{d}/a/f")),
    ("chdir", lambda k, d: k.chdir(f"{d}/a")),
    ("relative", lambda k, d: k.exists("f")),
    ("glob relative", lambda k, d: k.glob("./l*")),
]


def test_the_double_answers_as_the_filesystem(tmp_path: Path) -> None:
    """The same steps on a real directory and on the double: the same answers."""
    d = str(tmp_path)
    cwd = os.getcwd()
    try:
        real = [(name, _outcome(syscalls.LINUX, lambda s=step: s(syscalls.LINUX, d), d))
                for name, step in STEPS]
    finally:
        os.chdir(cwd)
    rec = Recording(tree={d: "dir"})
    double = [(name, _outcome(rec, lambda s=step: s(rec, d), d)) for name, step in STEPS]
    assert double == real
    assert rec.open_fds() == {}


# --- namespaces --------------------------------------------------------------------------------

@pytest.mark.parametrize("network,uts,ipc,pid", list(itertools.product(
    ("none", "host", "bridge"), ("", "host"), ("", "host"), ("", "host"))))
def test_container_and_owned_flags(network: str, uts: str, ipc: str, pid: str) -> None:
    """Mount and cgroup always; UTS, IPC and net unless shared with the host; the monitor's
    PID namespace unless --pid host, a remapped root's user namespace, and a bridge
    network's namespace (wired before init, entered by init itself) are owned but not
    unshared by init."""
    security = Security(uts=uts, ipc=ipc, pid=pid)
    made = set(clone_flags(namespaces.container_flags(network, security)))
    expect = {"CLONE_NEWNS", "CLONE_NEWCGROUP"} | {
        name for name, shared in (("CLONE_NEWUTS", uts), ("CLONE_NEWIPC", ipc),
                                  ("CLONE_NEWNET", network)) if shared != "host"}
    if network == "bridge":
        expect.discard("CLONE_NEWNET")
    assert made == expect
    for remapped in (False, True):
        owned = set(clone_flags(namespaces.owned_flags(network, security, remapped)))
        assert owned - made == ({"CLONE_NEWPID"} if pid != "host" else set()) | (
            {"CLONE_NEWUSER"} if remapped else set()) | (
            {"CLONE_NEWNET"} if network == "bridge" else set())
    assert "CLONE_NEWUSER" not in made and "CLONE_NEWPID" not in made


def test_enter_unshares_then_names_the_host_then_brings_up_lo() -> None:
    rec = Recording()
    namespaces.enter("none", Security(), "web1", syscall=rec)
    assert rec.calls == [
        Call("unshare", (), ("CLONE_NEWNS", "CLONE_NEWCGROUP", "CLONE_NEWUTS", "CLONE_NEWIPC",
                             "CLONE_NEWNET")),
        Call("sethostname", ("web1",)), Call("loopback_up", ())]
    shared = Recording()
    namespaces.enter("host", security_of({"uts": "host", "ipc": "host"}), "web1",
                     syscall=shared)
    assert shared.trace() == ["unshare CLONE_NEWNS|CLONE_NEWCGROUP"], \
        "sharing the host's UTS and network namespaces: never rename it or touch its lo"
    joined = Recording()
    namespaces.enter("bridge", Security(), "web1", syscall=joined)
    assert joined.trace() == ["unshare CLONE_NEWNS|CLONE_NEWCGROUP|CLONE_NEWUTS|CLONE_NEWIPC",
                              "sethostname web1"], \
        "a bridge network's namespace is entered before init, with its lo up already"


THEIRS = {"user": 1, "mnt": 2, "uts": 3, "ipc": 4, "net": 5, "pid": 6, "cgroup": 7}


def test_join_enters_every_differing_namespace_in_one_setns() -> None:
    rec = Recording(fds={9: "pidfd:1234"}, peers={9: THEIRS})
    flags = namespaces.differing(THEIRS, {n: ino for n, ino in rec.ns.items() if n in THEIRS})
    required = namespaces.owned_flags("bridge", Security())
    namespaces.join(9, flags, required, syscall=rec)
    assert rec.trace("setns") == ["setns pidfd:1234 CLONE_NEWNS|CLONE_NEWCGROUP|CLONE_NEWUTS|"
                                  "CLONE_NEWIPC|CLONE_NEWUSER|CLONE_NEWPID|CLONE_NEWNET"]
    assert rec.ns["mnt"] == 2 and rec.ns["pid_for_children"] == 6
    assert rec.open_fds() == {9: "pidfd:1234"}, "/proc/self/ns closed"


def test_join_refuses_an_init_that_shares_our_namespaces() -> None:
    """An init in our own mount namespace is not the container's: setns "succeeds" and
    nothing changed, which join must notice; and one that shares a namespace the container
    owns by its options is refused before any setns."""
    rec = Recording(fds={9: "pidfd:1234"})
    ours = {n: ino for n, ino in rec.ns.items() if n in THEIRS}
    rec.peers[9] = ours | {"net": 5}
    with pytest.raises(namespaces.NotJoinable, match="still in our mnt namespace"):
        namespaces.join(9, libc.CLONE_NEWNS | libc.CLONE_NEWNET, 0, syscall=rec)
    assert rec.open_fds() == {9: "pidfd:1234"}
    early = Recording(fds={9: "pidfd:1234"}, peers={9: THEIRS})
    with pytest.raises(namespaces.NotJoinable, match="shares namespaces it must own"):
        namespaces.join(9, libc.CLONE_NEWNS, libc.CLONE_NEWNS | libc.CLONE_NEWNET, syscall=early)
    assert early.calls == []


# --- device nodes ------------------------------------------------------------------------------


def test_make_nodes_walks_by_fd_and_closes_every_one() -> None:
    rec = Recording(tree={"/r/dev": "dir"})
    devices.make_nodes("/r/dev", [*DEFAULT_NODES[:1], Node("/dev/snd/timer", "c", 116, 33,
                                                           0o660, 0, 29),
                                  Node("/dev/snd/seq", "c", 116, 1, 0o660, 0, 29)], syscall=rec)
    assert rec.trace("mkdir", "mknod", "chown", "chmod") == [
        "mknod /r/dev/null chr 0o666 1:3", "chown /r/dev/null 0 0",
        "mkdir /r/dev/snd 0o755", "mknod /r/dev/snd/timer chr 0o660 116:33",
        "chown /r/dev/snd/timer 0 29",
        "mkdir /r/dev/snd 0o755", "mknod /r/dev/snd/seq chr 0o660 116:1",
        "chown /r/dev/snd/seq 0 29"]
    opened = [c for c in rec.calls if c.name in ("open", "dup")]
    assert all("O_NOFOLLOW" in c.flags for c in opened if c.name == "open")
    assert len([c for c in rec.calls if c.name == "close"]) == len(opened)
    assert rec.open_fds() == {}


def test_make_nodes_never_follows_a_symlink() -> None:
    """A symlink on the way (only a bug could put one there) fails the node: ELOOP from
    O_NOFOLLOW, nothing made where it points."""
    rec = Recording(tree={"/r/dev/evil": "-> /etc", "/etc": "dir"})
    with pytest.raises(devices.DeviceError, match="cannot make device node /dev/evil/null"):
        devices.make_nodes("/r/dev", [Node("/dev/evil/null", "c", 1, 3)], syscall=rec)
    assert rec.trace("mknod") == [] and rec.open_fds() == {}
    link = Recording(tree={"/r/devlink": "-> dev", "/r/dev": "dir"})
    with pytest.raises(devices.DeviceError, match="cannot open /r/devlink"):
        devices.make_nodes("/r/devlink", DEFAULT_NODES[:1], syscall=link)


def test_make_nodes_restores_a_mode_chown_dropped() -> None:
    """chown clears set-id bits: the mode is read back and set again when it differs."""
    rec = Recording(tree={"/r/dev": "dir"})
    real_chown = rec.chown

    def chown_dropping_setgid(path: str, uid: int, gid: int, **kw: object) -> None:
        real_chown(path, uid, gid, **kw)  # type: ignore[arg-type]
        rec.modes["/r/dev/sg"] = 0o660

    rec.chown = chown_dropping_setgid  # type: ignore[method-assign]
    devices.make_nodes("/r/dev", [Node("/dev/sg", "c", 21, 0, 0o2660)], syscall=rec)
    assert rec.trace("chmod") == ["chmod /r/dev/sg 0o2660"]
