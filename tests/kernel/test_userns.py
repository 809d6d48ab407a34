"""User-namespace remapping on the real kernel: idmapped layers under overlay, a remapped
root that is nobody to the host, and what that root may mount in namespaces it owns.

Ranges come from subuid/subgid files written under the test's temp dir (never the host's
/etc/subuid). Every process runs through `inside()`: a forked, single-threaded helper (what
the monitor is) spawns the namespaced child, so the raw clone is tested whatever threads
this pytest process has. Mounts made on the host are undone in `finally` blocks and checked
by `no_leftover_mounts`; a mount made inside a child's mount namespace dies with it.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from adapters.kernel import idmap, libc, userns
from adapters.kernel.idmap import IdMap
from tests.conftest import require_root

pytestmark = pytest.mark.kernel

NOBODY = 65534  # the overflow uid/gid: how an unmapped id shows inside a user namespace
OVERLAY_OPTS = ("index=off", "redirect_dir=off", "metacopy=off")
NOSUID_NODEV_NOEXEC = libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC
SPAWN_NS = libc.CLONE_NEWUSER | libc.CLONE_NEWPID
CONTAINER_NS = (libc.CLONE_NEWNS | libc.CLONE_NEWNET | libc.CLONE_NEWUTS | libc.CLONE_NEWIPC
                | libc.CLONE_NEWCGROUP)


def _children() -> set[str]:
    """Pids of this process's children, zombies included."""
    tasks = os.listdir("/proc/self/task")
    return {pid for tid in tasks
            for pid in Path(f"/proc/self/task/{tid}/children").read_text().split()}


@pytest.fixture(autouse=True)
def _root(no_leftover_mounts: None) -> Iterator[None]:
    require_root()
    before = _children()
    yield
    assert _children() <= before, "a namespace process was left behind (or not reaped)"


@pytest.fixture
def maps(tmp_path: Path) -> tuple[IdMap, IdMap]:
    """Two containers' maps, read the way lamina reads /etc/subuid: from test files.
    tmp_path opens to others (0755): the remapped root is an other, and works in it."""
    tmp_path.chmod(0o755)
    subuid, subgid = tmp_path / "subuid", tmp_path / "subgid"
    text = ("# test ranges, not the host's\nlamina-test-a:200000:65536\n"
            "lamina-test-b:300000:65536\n")
    subuid.write_text(text)
    subgid.write_text(text)
    a = idmap.idmap_for("lamina-test-a", str(subuid), str(subgid))
    b = idmap.idmap_for("lamina-test-b", str(subuid), str(subgid))
    assert (a, b) == (IdMap.shifted(200000, 65536), IdMap.shifted(300000, 65536))
    return a, b


def inside(idmap_: IdMap, fn: Callable[[], Any], cwd: str | Path, flags: int = SPAWN_NS,
           method: userns.Method = userns.Method.CLONE, host_pidns: bool = False,
           prepare: Callable[[int], None] | None = None) -> Any:
    """fn()'s JSON result, run as root of a new user namespace (plus `flags`) mapped by
    idmap_, in the directory `cwd` (fn uses paths relative to it: the remapped root could
    not walk pytest's 0700 directories above). With host_pidns the helper first unshares a
    PID namespace of its own, owned by the host's user namespace (the monitor's way today)."""
    r, w = os.pipe()
    helper = os.fork()
    if helper == 0:
        os.close(r)
        os.chdir(cwd)
        os._exit(_helper(idmap_, fn, flags, method, host_pidns, w, prepare))
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    code = os.waitstatus_to_exitcode(os.waitpid(helper, 0)[1])
    assert code == 0, f"namespace child exited {code}: {data!r}"
    result = json.loads(data)
    assert not (isinstance(result, dict) and "error" in result), result
    return result


def _helper(idmap_: IdMap, fn: Callable[[], Any], flags: int, method: userns.Method,
            host_pidns: bool, w: int, prepare: Callable[[int], None] | None) -> int:
    def run() -> int:
        try:
            result = fn()
        except BaseException as err:  # noqa: BLE001 - reported to the test
            result = {"error": f"{type(err).__name__}: {err}"}
        os.write(w, json.dumps(result).encode())
        return 0

    try:
        if host_pidns:
            libc.unshare(libc.CLONE_NEWPID)
        pid = userns.spawn(idmap_, run, flags=flags, method=method, prepare=prepare)
        os.close(w)
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    except BaseException as err:  # noqa: BLE001
        os.write(w, json.dumps({"error": f"helper: {err}"}).encode())
        return 1


def _errno(fn: Callable[[], object]) -> str:
    try:
        fn()
    except OSError as err:
        return errno.errorcode[err.errno]
    return "ok"


# --- an image and a container's layers --------------------------------------------------------


def make_image(base: Path) -> list[str]:
    """Two layers owned as an image's are: root, plus a user's file and a group-42 secret."""
    bottom, top = base / "layer0", base / "layer1"
    for d in ("etc", "home/user", "old", "tmp", "proc", "sys", "dev"):
        (bottom / d).mkdir(parents=True)
    (bottom / "tmp").chmod(0o1777)
    (bottom / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (bottom / "etc/shadow").write_text("root:*:1::::::\n")
    os.chown(bottom / "etc/shadow", 0, 42)
    (bottom / "etc/shadow").chmod(0o640)
    (bottom / "home/user/notes").write_text("mine\n")
    os.chown(bottom / "home/user/notes", 1000, 1000)
    (bottom / "old/file").write_text("to be deleted\n")
    (bottom / "etc/motd").write_text("bottom\n")
    (top / "etc").mkdir(parents=True)
    (top / "etc/motd").write_text("top\n")  # the upper layer hides the lower's
    return [str(top), str(bottom)]  # top-most first, as overlay wants


def make_rw(base: Path) -> Path:
    for d in ("diff", "work", "merged"):
        (base / d).mkdir(parents=True)
    return base


@contextmanager
def idmapped_overlay(lowers: list[str], rw: Path, map_: IdMap, attach_dir: Path
                     ) -> Iterator[str]:
    """The union of `lowers` under rw/diff at rw/merged, every layer an idmapped mount
    (open_tree, mount_setattr, move_mount) attached under attach_dir; all unmounted after."""
    attach_dir.mkdir()
    points = []
    try:
        with idmap.userns_holding(map_) as ns:
            for i, source in enumerate([*lowers, str(rw)]):
                point = attach_dir / str(i)
                point.mkdir()
                idmap.idmapped_mount(source, str(point), ns)
                points.append(str(point))
        *low, top = points
        idmap.mount_overlay_paths(low, f"{top}/diff", f"{top}/work", str(rw / "merged"), map_,
                                  OVERLAY_OPTS)
        try:
            yield str(rw / "merged")
        finally:
            idmap.unmount(str(rw / "merged"))
    finally:
        for point in reversed(points):
            idmap.unmount(point)


@contextmanager
def detached_overlay(lowers: list[str], rw: Path, map_: IdMap) -> Iterator[str]:
    """The same union from detached idmapped trees handed to overlay as fds: nothing but
    the overlay itself is ever attached."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC  # O_PATH: 6.15+
    fds: list[int] = []
    try:
        with idmap.userns_holding(map_) as ns:
            fds += [idmap.idmapped_tree(low, ns) for low in lowers]
            top = idmap.idmapped_tree(str(rw), ns)
            fds.append(top)
        upper, work = os.open("diff", flags, dir_fd=top), os.open("work", flags, dir_fd=top)
        fds += [upper, work]
        idmap.mount_overlay(fds[:len(lowers)], upper, work, str(rw / "merged"), map_,
                            OVERLAY_OPTS)
    finally:
        for fd in fds:
            os.close(fd)
    try:
        yield str(rw / "merged")
    finally:
        idmap.unmount(str(rw / "merged"))


def container_work() -> dict:
    """What root of a remapped container sees and does in its union view (the cwd)."""
    seen = {p: owner(Path(p)) for p in ("etc", "etc/passwd", "etc/shadow", "home/user/notes")}
    with open("etc/shadow") as f:
        shadow = f.read()
    with open("etc/motd") as f:
        motd = f.read()
    with open("etc/new", "w") as f:
        f.write("written inside\n")
    with open("etc/passwd", "a") as f:
        f.write("app:x:1000:1000::/home/user:/bin/sh\n")
    os.unlink("old/file")
    os.mkdir("made")
    os.chown("made", 1000, 1000)
    os.setresuid(1000, 1000, 1000)  # a process of user 1000 writes too
    with open("tmp/by-1000", "w") as f:
        f.write("x")
    return {"seen": seen, "shadow": shadow, "motd": motd,
            "uid_map": idmap.read_maps().uid_map()}


def owner(path: Path) -> list[int]:
    st = os.lstat(path)
    return [st.st_uid, st.st_gid]


# --- 1. overlay over idmapped layers -----------------------------------------------------------


@pytest.mark.parametrize("kind", ["attached", "detached"])
def test_idmapped_layers_show_the_image_as_root_and_writes_land_unshifted(
        tmp_path: Path, maps: tuple[IdMap, IdMap], kind: str) -> None:
    map_a, _ = maps
    lowers = make_image(tmp_path / "image")
    rw = make_rw(tmp_path / "rw-a")
    view = (idmapped_overlay(lowers, rw, map_a, tmp_path / "idmapped") if kind == "attached"
            else detached_overlay(lowers, rw, map_a))
    with view as merged:
        assert owner(Path(merged) / "etc/passwd") == [200000, 200000]  # the host's view
        got = inside(map_a, container_work, cwd=merged)
    assert got["seen"] == {"etc": [0, 0], "etc/passwd": [0, 0], "etc/shadow": [0, 42],
                           "home/user/notes": [1000, 1000]}
    assert got["shadow"].startswith("root:")
    assert got["motd"] == "top\n"  # layer order kept
    assert got["uid_map"] == "0 200000 65536\n"
    diff = rw / "diff"
    # On disk the rw layer holds container ids, unshifted: committable and shareable as is.
    assert owner(diff / "etc/new") == [0, 0]
    assert owner(diff / "etc/passwd") == [0, 0]  # copied up
    assert owner(diff / "etc") == [0, 0]
    assert owner(diff / "made") == [1000, 1000]
    assert owner(diff / "tmp/by-1000") == [1000, 0]  # fsgid stayed 0
    whiteout = os.lstat(diff / "old/file")  # overlay's whiteout, as lamina's layers store it
    assert stat.S_ISCHR(whiteout.st_mode) and whiteout.st_rdev == 0
    assert owner(diff / "old/file") == [0, 0]
    assert os.getxattr(diff / "etc", "trusted.overlay.impure")  # trusted xattrs still work
    assert "app:x" not in (Path(lowers[1]) / "etc/passwd").read_text()  # the image untouched
    assert owner(Path(lowers[1]) / "etc/passwd") == [0, 0]


def test_the_same_layers_serve_two_ranges_at_once(tmp_path: Path,
                                                   maps: tuple[IdMap, IdMap]) -> None:
    map_a, map_b = maps
    lowers = make_image(tmp_path / "image")
    rw_a, rw_b = make_rw(tmp_path / "rw-a"), make_rw(tmp_path / "rw-b")
    with idmapped_overlay(lowers, rw_a, map_a, tmp_path / "idmapped-a") as merged_a, \
            detached_overlay(lowers, rw_b, map_b) as merged_b:
        assert owner(Path(merged_a) / "etc/passwd") == [200000, 200000]
        assert owner(Path(merged_b) / "etc/passwd") == [300000, 300000]
        got_a = inside(map_a, container_work, cwd=merged_a)
        got_b = inside(map_b, container_work, cwd=merged_b)
        # One container's root is nobody in the other's view.
        assert inside(map_b, lambda: os.stat("etc/new").st_uid, cwd=merged_a) == NOBODY
    assert got_a["seen"] == got_b["seen"]
    assert (got_a["uid_map"], got_b["uid_map"]) == ("0 200000 65536\n", "0 300000 65536\n")
    for rw in (rw_a, rw_b):
        assert owner(rw / "diff/etc/new") == [0, 0]
        assert owner(rw / "diff/made") == [1000, 1000]


def test_without_idmapping_root_inside_sees_nobody_and_writes_shifted(
        tmp_path: Path, maps: tuple[IdMap, IdMap]) -> None:
    """The comparison: a plain overlay of the same image."""
    map_a, _ = maps
    lowers = make_image(tmp_path / "image")
    rw = make_rw(tmp_path / "rw")
    merged = str(rw / "merged")
    libc.mount("overlay", merged, "overlay", 0,
               f"lowerdir={':'.join(lowers)},upperdir={rw}/diff,workdir={rw}/work")
    try:
        def look() -> dict:
            def create_in_tmp() -> None:
                with open("tmp/new", "w") as f:
                    f.write("x")

            return {"passwd": owner(Path("etc/passwd")),
                    "notes": owner(Path("home/user/notes")),
                    "read shadow": _errno(lambda: open("etc/shadow").close()),
                    "write etc": _errno(lambda: open("etc/new", "w").close()),
                    "chown": _errno(lambda: os.chown("etc/passwd", 0, 0)),
                    "tmp": _errno(create_in_tmp)}
        got = inside(map_a, look, cwd=merged)
    finally:
        idmap.unmount(merged)
    assert got == {"passwd": [NOBODY, NOBODY], "notes": [NOBODY, NOBODY],
                   "read shadow": "EACCES", "write etc": "EACCES", "chown": "EPERM",
                   "tmp": "ok"}
    assert owner(rw / "diff/tmp/new") == [200000, 200000]  # shifted: not a shareable layer


# --- 2. nobody to the host ---------------------------------------------------------------------


def test_remapped_root_is_nobody_to_the_host(tmp_path: Path, maps: tuple[IdMap, IdMap]) -> None:
    map_a, _ = maps
    closed, open_ = tmp_path / "closed", tmp_path / "open"
    closed.mkdir(mode=0o700)
    open_.mkdir(mode=0o755)
    for d in (closed, open_):
        (d / "key").write_text("host secret\n")
        (d / "key").chmod(0o600)

    def probe() -> dict:
        with open("/proc/self/status") as f:
            caps = next(line.split()[1] for line in f if line.startswith("CapEff:"))
        return {"ids": [os.getuid(), os.getgid()], "cap_eff": caps,
                "uid_map": idmap.read_maps().uid_map(),
                "gid_map": idmap.read_maps().gid_map(),
                "stat in 0700 dir": _errno(lambda: os.stat("closed/key")),
                "open 0600": _errno(lambda: open("open/key").close()),
                "owner seen": owner(Path("open/key")),
                "chmod": _errno(lambda: os.chmod("open/key", 0o644)),
                "create": _errno(lambda: open("open/new", "w").close())}

    got = inside(map_a, probe, cwd=tmp_path, flags=libc.CLONE_NEWUSER)
    assert got["ids"] == [0, 0]
    assert int(got["cap_eff"], 16) != 0  # every capability... in its own namespace only
    assert got["uid_map"] == got["gid_map"] == "0 200000 65536\n"
    assert got["stat in 0700 dir"] == "EACCES"
    assert got["open 0600"] == "EACCES"
    assert got["owner seen"] == [NOBODY, NOBODY]
    assert got["chmod"] == "EPERM"
    assert got["create"] == "EACCES"
    assert (open_ / "key").stat().st_mode & 0o777 == 0o600


# --- 3. what the remapped root may mount -------------------------------------------------------


def _v1_hierarchies() -> dict[str, str]:
    """This host's cgroup v1 hierarchies: directory name -> mount data (their options)."""
    out = {}
    with open("/proc/self/mountinfo") as f:
        for fields in map(str.split, f):
            if fields[-3] == "cgroup":
                data = ",".join(o for o in fields[-1].split(",") if o not in ("rw", "ro"))
                out[os.path.basename(fields[4])] = data
    return out


def _mount_everything(scratch: str, v1: dict[str, str]) -> dict:
    """In namespaces owned by the user namespace: what mounts, what a root there gets."""
    libc.unshare(CONTAINER_NS)
    libc.make_mounts_private("/")
    libc.mount("tmpfs", scratch, "tmpfs", 0, "mode=755")
    tries = {"proc": ("proc", "proc", None), "sysfs": ("sysfs", "sysfs", None),
             "tmpfs": ("tmpfs", "tmpfs", "size=1m,mode=755"),  # /dev-like
             "devpts": ("devpts", "devpts", "newinstance,ptmxmode=0666,mode=0620,gid=5"),
             "mqueue": ("mqueue", "mqueue", None), "cgroup2": ("cgroup2", "cgroup2", None)}
    tries |= {f"cgroup v1 {name}": ("cgroup", "cgroup", data) for name, data in v1.items()}
    out: dict[str, Any] = {}
    for name, (source, fstype, data) in tries.items():
        os.mkdir(f"{scratch}/{name}")
        out[name] = _errno(lambda s=source, n=name, t=fstype, d=data:
                           libc.mount(s, f"{scratch}/{n}", t, 0, d))
    return out


def _devices(scratch: str) -> dict:
    """mknod is refused; a bind of the host's device node works instead."""
    out = {"mknod": _errno(lambda: os.mknod(f"{scratch}/null", 0o666 | stat.S_IFCHR,
                                            os.makedev(1, 3)))}
    for name in ("null", "zero", "urandom"):
        open(f"{scratch}/{name}", "w").close()
        out[f"bind {name}"] = _errno(lambda n=name: libc.mount(f"/dev/{n}", f"{scratch}/{n}",
                                                               None, libc.MS_BIND))
    with open(f"{scratch}/null", "w") as f:
        f.write("discarded")
    with open(f"{scratch}/zero", "rb") as f:
        out["zero reads"] = f.read(4).hex()
    return out


def test_namespaces_owned_by_the_user_namespace_and_their_mounts(
        tmp_path: Path, maps: tuple[IdMap, IdMap]) -> None:
    map_a, _ = maps
    (tmp_path / "scratch").mkdir()
    v1 = _v1_hierarchies()

    def probe() -> dict:
        s = "scratch"
        out = _mount_everything(s, v1)
        out["pid 1"] = os.readlink(f"{s}/proc/self")
        out["net"] = sorted(os.listdir(f"{s}/sysfs/class/net"))
        some_v1 = next((f"{s}/cgroup v1 {n}" for n in v1), None)
        for name, path in (("cgroup2", f"{s}/cgroup2"), ("cgroup v1", some_v1)):
            if path is not None:
                procs = f"{path}/cgroup.procs"
                out[f"{name} procs"] = [owner(Path(procs)), os.access(procs, os.W_OK)]
        out.update(_devices(s + "/tmpfs"))
        out["hostname"] = _errno(lambda: socket.sethostname("c"))
        return out

    got = inside(map_a, probe, cwd=tmp_path)
    mounts = {"proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup2",
              *(f"cgroup v1 {n}" for n in v1)}
    assert {k: got[k] for k in mounts} == dict.fromkeys(mounts, "ok")
    assert got["pid 1"] == "1"  # its own PID namespace's proc
    assert got["net"] == ["lo"]  # its own network namespace's sysfs
    # The cgroup files are the host's: nobody's, not writable by the container's root.
    assert got["cgroup2 procs"] == [[NOBODY, NOBODY], False]
    if v1:
        assert got["cgroup v1 procs"] == [[NOBODY, NOBODY], False]
    assert got["mknod"] == "EPERM"
    assert got["bind null"] == got["bind zero"] == got["bind urandom"] == "ok"
    assert got["zero reads"] == "00000000"
    assert got["hostname"] == "ok"
    assert os.uname().nodename != "c"


@pytest.mark.parametrize("method", list(userns.Method))
def test_proc_needs_the_pid_namespace_owned_by_the_user_namespace(
        tmp_path: Path, maps: tuple[IdMap, IdMap], method: userns.Method) -> None:
    """Both ways of starting give an owned PID namespace; a PID namespace made in the host's
    user namespace first (the monitor's unshare today) leaves proc unmountable."""
    map_a, _ = maps
    (tmp_path / "proc").mkdir()

    def mount_proc() -> dict:
        libc.unshare(libc.CLONE_NEWNS)
        libc.make_mounts_private("/")
        result = _errno(lambda: libc.mount("proc", "proc", "proc", 0))
        return {"pid": os.getpid(), "proc": result, "ids": [os.getuid(), os.getgid()]}

    assert inside(map_a, mount_proc, cwd=tmp_path, method=method) == {
        "pid": 1, "proc": "ok", "ids": [0, 0]}
    assert inside(map_a, mount_proc, cwd=tmp_path, flags=libc.CLONE_NEWUSER, method=method,
                  host_pidns=True) == {"pid": 1, "proc": "EPERM", "ids": [0, 0]}


# --- the primitives' own edges -----------------------------------------------------------------


def test_subordinate_files_by_name_or_uid_lowest_first(tmp_path: Path) -> None:
    path = tmp_path / "subuid"
    path.write_text("other:100000:65536\n\nroot:400000:1000\n# c\n0:300000:65536\n")
    got = idmap.subordinate_ranges(str(path), "root", 0)
    assert got == [idmap.SubordinateRange(300000, 65536), idmap.SubordinateRange(400000, 1000)]
    m = idmap.idmap_for("root", str(path), str(path))
    assert m.uid_map() == "0 300000 65536\n65536 400000 1000\n"
    assert m.host_uid(65536) == 400000
    with pytest.raises(idmap.IdmapError, match="outside the id map"):
        m.host_uid(66536)
    with pytest.raises(idmap.IdmapError, match="no subordinate ids for nobody-here"):
        idmap.idmap_for("nobody-here", str(path), str(path))
    path.write_text("root:400000\n")
    with pytest.raises(idmap.IdmapError, match=r"subuid:1: not name:start:count"):
        idmap.subordinate_ranges(str(path), "root")


def test_a_failed_map_write_kills_the_child(maps: tuple[IdMap, IdMap]) -> None:
    """A map the kernel refuses (two ranges overlapping on the host) must not leave a
    child running unmapped."""
    bad = IdMap((idmap.IdRange(0, 200000, 10), idmap.IdRange(10, 200005, 10)),
                maps[0].gids)

    def never() -> int:
        raise AssertionError("ran without its maps")

    with pytest.raises(idmap.IdmapError, match="cannot write uid_map"):
        userns.spawn(bad, never, flags=libc.CLONE_NEWUSER, method=userns.Method.FORK)


def test_an_idmapped_overlay_with_the_wrong_creator_fails_closed(
        tmp_path: Path, maps: tuple[IdMap, IdMap]) -> None:
    """Overlay would mount read-only (EOVERFLOW on its work dir) if its creator's ids were
    outside the rw layer's map: refused, and nothing is left mounted."""
    map_a, map_b = maps
    lowers = make_image(tmp_path / "image")
    rw = make_rw(tmp_path / "rw")
    point = tmp_path / "rw-idmapped"
    point.mkdir()
    with idmap.userns_holding(map_a) as ns:
        idmap.idmapped_mount(str(rw), str(point), ns)
    try:
        with pytest.raises(idmap.IdmapError, match="came up read-only"):
            idmap.mount_overlay_paths(lowers, f"{point}/diff", f"{point}/work",
                                      str(rw / "merged"), map_b, OVERLAY_OPTS)
    finally:
        idmap.unmount(str(point))


# --- 4. a container's root filesystem, built by its remapped root -------------------------


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A temp dir others may traverse (0711), as the lamina root must be for a remapped root:
    init builds the rootfs by absolute paths before pivot_root."""
    import shutil
    import tempfile

    from adapters.storage.overlay import mounts_under

    path = Path(tempfile.mkdtemp(prefix="lamina-userns-"))
    path.chmod(0o711)
    yield path
    leftover = mounts_under(str(path))
    for target in reversed(leftover):
        idmap.unmount(target)
    shutil.rmtree(path)
    assert leftover == [], "a test left mounts behind"


def _dev_by_binds(root: str) -> None:
    """rootfs.mount_dev for a remapped root: the same /dev, but every node a bind of the
    host's (mknod is refused in a user namespace)."""
    dev = root + "/dev"
    libc.mount("tmpfs", dev, "tmpfs", libc.MS_NOSUID | libc.MS_STRICTATIME, "mode=755,size=64k")
    for name in ("null", "zero", "full", "random", "urandom", "tty"):
        open(f"{dev}/{name}", "w").close()
        libc.mount(f"/dev/{name}", f"{dev}/{name}", None, libc.MS_BIND)
    for name, target in (("fd", "/proc/self/fd"), ("ptmx", "pts/ptmx")):
        os.symlink(target, f"{dev}/{name}")
    for sub, fstype, data in (("pts", "devpts", "newinstance,ptmxmode=0666,mode=0620,gid=5"),
                              ("shm", "tmpfs", "mode=1777,size=64k"),
                              ("mqueue", "mqueue", None)):
        os.mkdir(f"{dev}/{sub}")
        libc.mount(sub, f"{dev}/{sub}", fstype, NOSUID_NODEV_NOEXEC, data)


def test_a_container_rootfs_is_built_by_its_remapped_root(
        open_dir: Path, maps: tuple[IdMap, IdMap]) -> None:
    """rootfs.build's steps, /dev by binds, in namespaces owned by the user namespace, on an
    idmapped overlay, in a real cgroup the parent joined the child to (`prepare`)."""
    from adapters.kernel import rootfs
    from adapters.kernel.cgroups import Cgroup, Limits
    from core.security import Security

    map_a, _ = maps
    lowers = make_image(open_dir / "image")
    rw = make_rw(open_dir / "rw")
    (open_dir / "rw").chmod(0o711)
    hostname = open_dir / "hostname"
    hostname.write_text("remapped\n")
    cgroup = Cgroup.create(f"userns-test-{os.getpid()}", Limits(pids=64))
    mounts = rootfs.cgroup_mounts(cgroup.dirs())
    security = Security(read_only=True)

    def build() -> dict:
        libc.unshare(CONTAINER_NS)
        socket.sethostname("remapped")
        root = merged
        libc.make_mounts_private("/")
        libc.mount(root, root, None, libc.MS_BIND | libc.MS_REC)
        rootfs.mount_proc_sys(root, security)
        rootfs.mount_cgroups(root, mounts, security)
        _dev_by_binds(root)
        rootfs.bind_files(root, {"/etc/hostname": str(hostname)})
        rootfs.mask_paths(root)
        rootfs.readonly_paths(root)
        rootfs.make_readonly(root)
        rootfs.pivot(root)
        with open("/dev/null", "w") as f:
            f.write("x")
        with open("/dev/shm/x", "w") as f:
            f.write("x")
        with open("/proc/self/cgroup") as f:
            cgroups = f.read()
        return {"root owner": owner(Path("/etc/passwd")), "pid": os.readlink("/proc/self"),
                "cgroup ns": sorted({line.split(":")[2] for line in cgroups.splitlines()}),
                "cgroup dirs": sorted(os.listdir("/sys/fs/cgroup")),
                "masked": [os.stat("/proc/keys").st_rdev == os.makedev(1, 3),
                           os.listdir("/sys/firmware")],
                "write /etc": _errno(lambda: open("/etc/new", "w").close()),
                "write /proc/sys": _errno(lambda: open("/proc/sys/kernel/hostname", "w")
                                          .close()),
                "hostname file": [open("/etc/hostname").read(),
                                  _errno(lambda: open("/etc/hostname", "a").close())],
                "mknod": _errno(lambda: os.mknod("/dev/shm/n", 0o600 | stat.S_IFCHR,
                                                 os.makedev(1, 3))),
                "root": sorted(os.listdir("/"))}

    try:
        with detached_overlay(lowers, rw, map_a) as merged:
            got = inside(map_a, build, cwd=open_dir, prepare=cgroup.add)
    finally:
        cgroup.remove()
    assert got["root owner"] == [0, 0]
    assert got["pid"] == "1"
    assert got["cgroup ns"] == ["/"]  # its cgroup namespace is rooted at its own cgroup
    assert got["cgroup dirs"] == sorted(m.name for m in mounts if m.name)
    assert got["masked"] == [True, []]  # /dev/null over a file, an empty tmpfs over a dir
    assert got["write /etc"] == "EROFS"  # --read-only
    assert got["write /proc/sys"] == "EROFS"
    assert got["hostname file"] == ["remapped\n", "EACCES"]  # host-owned: chown it (design)
    assert got["mknod"] == "EPERM"
    assert got["root"] == ["dev", "etc", "home", "old", "proc", "sys", "tmp"]


# --- 5. exec: joining a remapped container --------------------------------------------------


JOIN = (("user", libc.CLONE_NEWUSER), ("ipc", libc.CLONE_NEWIPC), ("uts", libc.CLONE_NEWUTS),
        ("net", libc.CLONE_NEWNET), ("pid", libc.CLONE_NEWPID),
        ("cgroup", libc.CLONE_NEWCGROUP), ("mnt", libc.CLONE_NEWNS))


def test_exec_joins_the_user_namespace_first_then_the_others(
        tmp_path: Path, maps: tuple[IdMap, IdMap]) -> None:
    """What exec.py does, with `user` at the head of the join order: host root may enter
    the container's user namespace, is privileged over the namespaces it owns, and its
    child becomes the container's root (the container's, not the host's, uid 0)."""
    map_a, _ = maps
    up_r, up_w = os.pipe()
    hold_r, hold_w = os.pipe()

    def container() -> int:
        libc.unshare(CONTAINER_NS)
        libc.make_mounts_private("/")
        socket.sethostname("remapped")
        os.write(up_w, b"u")
        os.read(hold_r, 1)  # until the test says done (no EOF: the FORK middle holds hold_w)
        return 0

    pid = userns.spawn(map_a, container, method=userns.Method.FORK)
    os.close(up_w)
    os.close(hold_r)
    try:
        assert os.read(up_r, 1) == b"u"
        init = _pid1_of(pid)
        fds = [(os.open(f"/proc/{init}/ns/{name}", os.O_RDONLY), flag) for name, flag in JOIN]
        user_ino = os.stat(f"/proc/{init}/ns/user").st_ino
        got = _join_and_report(fds)
    finally:
        os.write(hold_w, b"d")
        os.close(hold_w)
        os.waitpid(pid, 0)
        os.close(up_r)
    assert got == {"uid": 0, "uid_map": "0 200000 65536\n", "hostname": "remapped",
                   "user ns": user_ino, "pid": 2}


def _pid1_of(middle: int) -> int:
    """The FORK method's PID 1 is the middle process's only child."""
    with open(f"/proc/{middle}/task/{middle}/children") as f:
        return int(f.read().split()[0])


def _join_and_report(fds: list[tuple[int, int]]) -> dict:
    r, w = os.pipe()
    joiner = os.fork()
    if joiner == 0:
        os.close(r)
        try:
            for fd, flag in fds:
                libc.setns(fd, flag)
            child = os.fork()  # only a child enters the joined PID namespace
            if child == 0:
                userns.become_root()
                report = {"uid": os.getuid(), "uid_map": idmap.read_maps().uid_map(),
                          "hostname": socket.gethostname(),
                          "user ns": os.stat("/proc/self/ns/user").st_ino, "pid": os.getpid()}
                os.write(w, json.dumps(report).encode())
                os._exit(0)
            os._exit(os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]))
        except BaseException as err:  # noqa: BLE001
            os.write(w, json.dumps({"error": str(err)}).encode())
            os._exit(1)
    os.close(w)
    for fd, _ in fds:
        os.close(fd)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    assert os.waitstatus_to_exitcode(os.waitpid(joiner, 0)[1]) == 0, data
    return json.loads(data)


def test_the_fallback_shifts_a_copy_and_back_keeping_setuid_bits(
        tmp_path: Path, maps: tuple[IdMap, IdMap]) -> None:
    """For a filesystem without idmapped mounts: a chowned copy (chown clears setuid)."""
    map_a, _ = maps
    tree = Path(make_image(tmp_path / "image")[1])
    (tree / "su").write_text("#!/bin/sh\n")
    (tree / "su").chmod(0o4755)
    (tree / "link").symlink_to("etc/passwd")
    count = idmap.shift_tree(str(tree), map_a)
    assert count == sum(1 for _ in tree.rglob("*")) + 1
    assert owner(tree / "etc/shadow") == [200000, 200042]
    assert owner(tree / "home/user/notes") == [201000, 201000]
    assert owner(tree / "link") == [200000, 200000]  # the link itself, not its target
    assert (tree / "su").stat().st_mode & 0o7777 == 0o4755
    idmap.shift_tree(str(tree), map_a, reverse=True)
    assert owner(tree / "etc/shadow") == [0, 42]
    assert owner(tree) == [0, 0]
    assert (tree / "su").stat().st_mode & 0o7777 == 0o4755
