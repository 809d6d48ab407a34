"""cgroups on the real kernel, through both back ends.

The v1 tests use this host's v1 hierarchies; the v2 tests force Mode.V2, which on a hybrid
host lands in /sys/fs/cgroup/unified: no controllers there, but freeze and kill work, and
those are the v2 paths that differ most from v1.

Every workload waits on its stdin before doing anything, so it runs only once it is inside
the cgroup (a process's existing memory stays charged where it was before `add`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from adapters.kernel.cgroups import (
    Cgroup,
    CgroupError,
    CgroupNotFound,
    Limits,
    Mode,
    list_lamina_cgroups,
    v1_roots,
    v2_root,
)
from tests.conftest import require_root

pytestmark = pytest.mark.kernel

MODES = [Mode.V1, Mode.V2]

# Two processes (a parent and its forked child) each bumping a counter in its own file.
# pwrite of a fixed-width number is one syscall, so a freeze can never catch a half-written
# value (a shell's `echo $i > f` truncates first and may be frozen with the file empty).
COUNTERS = """
import os
path = sys.argv[1] if os.fork() else sys.argv[2]
fd = os.open(path, os.O_WRONLY | os.O_CREAT)
n = 0
while True:
    n += 1
    os.pwrite(fd, b"%20d" % n, 0)
"""


class Sandbox:
    """Makes cgroups and gated processes, and removes every one of them afterwards."""

    def __init__(self) -> None:
        self.cgroups: list[Cgroup] = []
        self.procs: list[subprocess.Popen[str]] = []

    def cgroup(self, mode: Mode, limits: Limits | None = None) -> Cgroup:
        cg = Cgroup.create(f"test-{uuid.uuid4().hex[:12]}", limits, mode=mode)
        self.cgroups.append(cg)
        return cg

    def start(self, cg: Cgroup, argv: list[str]) -> subprocess.Popen[str]:
        """Run argv inside cg: it blocks on a stdin line until it has been added."""
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.procs.append(proc)
        cg.add(proc.pid)
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
        return proc

    def python(self, cg: Cgroup, body: str, *args: str) -> subprocess.Popen[str]:
        script = f"import sys\nsys.stdin.readline()\n{body}"
        return self.start(cg, [sys.executable, "-c", script, *args])

    def close(self) -> None:
        for cg in self.cgroups:
            with contextlib.suppress(CgroupError, OSError):
                cg.kill()
        for proc in self.procs:
            proc.kill()
            proc.wait(timeout=5)
        for cg in self.cgroups:
            cg.remove()
            assert cg.id not in list_lamina_cgroups(cg.mode), f"{cg} left behind"


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    require_root()
    box = Sandbox()
    try:
        yield box
    finally:
        box.close()


def read_counter(path: Path) -> int:
    """0 until the counter's first write lands."""
    text = path.read_text().strip() if path.exists() else ""
    return int(text) if text else 0


def wait_until(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def kernel_says_frozen(cg: Cgroup) -> bool:
    """Read the kernel's own flag, not the adapter's interpretation of it."""
    d = cg.dirs()[0]
    if cg.mode is Mode.V2:
        return "frozen 1" in (d / "cgroup.events").read_text()
    freezer = next(p for p in cg.dirs() if "freezer" in str(p))
    return (freezer / "freezer.state").read_text().strip() == "FROZEN"


@pytest.mark.parametrize("mode", MODES)
def test_freeze_thaw_kill_remove(sandbox: Sandbox, mode: Mode, tmp_path: Path) -> None:
    """Freezing stops every process (parent and child), thaw resumes, kill ends them all."""
    require_root()
    cg = sandbox.cgroup(mode)
    files = [tmp_path / "a", tmp_path / "b"]
    proc = sandbox.python(cg, COUNTERS, *map(str, files))
    wait_until(lambda: all(read_counter(f) > 0 for f in files))
    wait_until(lambda: len(cg.pids()) == 2)

    cg.freeze()
    assert cg.is_frozen() and kernel_says_frozen(cg)
    before = [read_counter(f) for f in files]
    time.sleep(0.2)
    assert [read_counter(f) for f in files] == before, "a frozen process kept running"

    cg.thaw()
    assert not cg.is_frozen() and not kernel_says_frozen(cg)
    wait_until(lambda: all(read_counter(f) > n for f, n in zip(files, before, strict=True)))

    cg.kill()
    assert proc.wait(timeout=5) == -signal.SIGKILL
    wait_until(lambda: cg.pids() == [])

    cg.remove()
    assert not any(d.exists() for d in cg.dirs())
    cg.remove()  # idempotent


@pytest.mark.parametrize("mode", MODES)
def test_kill_catches_a_forking_workload(sandbox: Sandbox, mode: Mode) -> None:
    """Processes forked while kill runs still die: nothing is left to block rmdir."""
    require_root()
    cg = sandbox.cgroup(mode, Limits(pids=200) if mode is Mode.V1 else None)
    sandbox.start(cg, ["sh", "-c", "read _; while :; do sleep 30 & sleep 0.005; done"])
    wait_until(lambda: len(cg.pids()) >= 10)
    cg.kill()
    wait_until(lambda: cg.pids() == [])
    cg.remove()
    assert not any(d.exists() for d in cg.dirs())


@pytest.mark.parametrize("mode", MODES)
def test_gentle_signal_keeps_a_paused_group_paused(sandbox: Sandbox, mode: Mode) -> None:
    """kill(SIGTERM) on a paused group leaves it paused; the handler runs on thaw.

    (The handler matters on v2: there a signal whose default action is fatal kills a
    frozen task straight away, which is the kernel's documented v2 behaviour.)
    """
    require_root()
    cg = sandbox.cgroup(mode)
    proc = sandbox.python(cg, """
import signal, sys, time
def on_term(*_):
    print('term', flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
print('up', flush=True)
time.sleep(60)
""")
    assert proc.stdout is not None and proc.stdout.readline() == "up\n"
    cg.freeze()
    cg.kill(signal.SIGTERM)
    time.sleep(0.1)
    assert cg.is_frozen() and kernel_says_frozen(cg)
    assert proc.poll() is None
    cg.thaw()
    assert proc.wait(timeout=5) == 0
    assert proc.stdout.read() == "term\n"


def test_v1_pids_limit_stops_the_sixth_process(sandbox: Sandbox) -> None:
    """pids.max=5: the parent plus four children fit, the fifth fork gets EAGAIN."""
    require_root()
    cg = sandbox.cgroup(Mode.V1, Limits(pids=5))
    proc = sandbox.python(cg, """
import os, time
forked = 0
for _ in range(10):
    try:
        pid = os.fork()
    except BlockingIOError:
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    forked += 1
print(forked, flush=True)
time.sleep(60)
""")
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "4"
    assert cg.stats().pids == 5
    assert len(cg.pids()) == 5


def test_v1_memory_limit_oom_kills(sandbox: Sandbox) -> None:
    """32m limit, 100 MB touched: the kernel OOM-kills it and oom_killed() notices."""
    require_root()
    cg = sandbox.cgroup(Mode.V1, Limits(memory=32 << 20))
    assert not cg.oom_killed()
    proc = sandbox.python(cg, "data = b'x' * (100 << 20)\nprint('survived', flush=True)")
    assert proc.wait(timeout=10) == -signal.SIGKILL
    assert proc.stdout is not None and proc.stdout.read() == ""
    assert cg.oom_killed()


def test_v1_limits_reach_the_kernel(sandbox: Sandbox) -> None:
    """Each limit lands in its controller's file, and the cpu quota really throttles."""
    require_root()
    cg = sandbox.cgroup(Mode.V1, Limits(memory=64 << 20, pids=50, cpus=0.5))
    knobs = {p.name: p.read_text().strip() for d in cg.dirs() for p in d.iterdir()
             if p.name in {"memory.limit_in_bytes", "pids.max", "cpu.cfs_quota_us",
                           "cpu.cfs_period_us"}}
    assert knobs == {"memory.limit_in_bytes": str(64 << 20), "pids.max": "50",
                     "cpu.cfs_quota_us": "50000", "cpu.cfs_period_us": "100000"}
    start = time.monotonic()
    sandbox.start(cg, ["sh", "-c", "read _; while :; do :; done"])
    # until it has burnt 0.3 s (a busy machine gives it less than its half of a core):
    # however long that takes, the quota holds it to half of the time gone by
    deadline = start + 30
    while (used := cg.stats().cpu_ns / 1e9) < 0.3 and time.monotonic() < deadline:
        time.sleep(0.1)
    wall = time.monotonic() - start
    assert 0.3 <= used < 0.5 * wall + 0.15, f"{used:.2f}s CPU in {wall:.2f}s at cpus=0.5"


@pytest.mark.parametrize("mode", MODES)
def test_stats(sandbox: Sandbox, mode: Mode) -> None:
    """CPU burnt and memory touched inside the group show up; tasks are counted."""
    require_root()
    limits = Limits(memory=256 << 20) if mode is Mode.V1 else None
    cg = sandbox.cgroup(mode, limits)
    proc = sandbox.python(cg, """
import os, time
data = b'x' * (20 << 20)
while time.process_time() < 0.2:  # CPU burnt, not wall time: a loaded machine
    pass
if os.fork() == 0:
    time.sleep(60)
    os._exit(0)
print('ready', flush=True)
time.sleep(60)
""")
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    stats = cg.stats()
    assert stats.cpu_ns >= 100_000_000
    assert stats.pids == 2
    if mode is Mode.V1:
        assert stats.memory_bytes >= 20 << 20
        assert stats.memory_limit == 256 << 20
    else:  # this host's cgroup2 tree has no memory controller
        assert stats.memory_limit is None


@pytest.mark.parametrize("mode", MODES)
def test_open_list_and_duplicate(sandbox: Sandbox, mode: Mode) -> None:
    """open() finds what create() made; a second create() of the same id is refused."""
    require_root()
    cg = sandbox.cgroup(mode)
    assert cg.id in list_lamina_cgroups(mode)
    assert Cgroup.open(cg.id, mode=mode).dirs() == cg.dirs()
    with pytest.raises(CgroupError, match="already exists"):
        Cgroup.create(cg.id, mode=mode)
    assert all(d.is_dir() for d in cg.dirs()), "a refused create removed the original"
    cg.remove()
    with pytest.raises(CgroupNotFound):
        Cgroup.open(cg.id, mode=mode)


@pytest.mark.parametrize("mode", MODES)
def test_remove_takes_the_sub_cgroups_a_container_made(sandbox: Sandbox, mode: Mode) -> None:
    """remove() tries one rmdir of each directory first; a container that made cgroups of
    its own inside (a writable cgroup mount) still has them all removed, deepest first."""
    require_root()
    cg = sandbox.cgroup(mode)
    for d in cg.dirs():
        (d / "inner" / "deeper").mkdir(parents=True)
    cg.remove()
    assert not any(d.exists() for d in cg.dirs())
    assert cg.id not in list_lamina_cgroups(mode)


@pytest.mark.parametrize("mode", MODES)
def test_create_makes_a_parent_that_is_not_there(mode: Mode) -> None:
    """create() tries the container's own directory first; where its parent is missing (a
    --cgroup-parent not made yet) the parent is made, then the directory."""
    require_root()
    parent = f"lamina-test-{uuid.uuid4().hex[:8]}/inner"
    cg = Cgroup.create(f"test-{uuid.uuid4().hex[:12]}", mode=mode, parent=parent)
    try:
        assert cg.dirs() and all(d.is_dir() and d.parent.name == "inner" for d in cg.dirs())
    finally:
        cg.remove()
        for d in cg.dirs():
            with contextlib.suppress(FileNotFoundError):
                d.parent.rmdir()
                d.parent.parent.rmdir()
    assert not any(d.parent.parent.exists() for d in cg.dirs())


@pytest.mark.parametrize("mode", MODES)
def test_a_parent_that_goes_as_it_is_listed_holds_none(mode: Mode,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The last container's remove() takes the shared `lamina` parent with it, whichever
    root on the host it belongs to: a `system check` listing the parent just then failed
    with ENOENT (exit 1, nothing on stdout). Here a parent of the test's own goes between
    being found and being read, as it did then."""
    require_root()
    parent = f"test-gone-{uuid.uuid4().hex[:12]}"
    dirs = [v2_root() / parent] if mode is Mode.V2 else \
        [r / parent for r in v1_roots().values()]
    for d in dirs:
        d.mkdir()
    listdir = os.listdir

    def gone_first(path: str | os.PathLike[str] = ".") -> list[str]:
        if Path(path) in dirs:
            os.rmdir(path)  # another root's last container went, and its parent with it
        return listdir(path)

    monkeypatch.setattr(os, "listdir", gone_first)
    try:
        assert list_lamina_cgroups(mode, parent=parent) == []
    finally:
        monkeypatch.undo()
        for d in dirs:
            with contextlib.suppress(FileNotFoundError):
                d.rmdir()


def test_v2_limit_without_controller_fails_cleanly(sandbox: Sandbox) -> None:
    """A limit the cgroup2 tree cannot enforce is an error, and nothing is left behind."""
    require_root()
    name = f"test-{uuid.uuid4().hex[:12]}"
    with pytest.raises(CgroupError, match="lacks controllers"):
        Cgroup.create(name, Limits(memory=32 << 20), mode=Mode.V2)
    assert name not in list_lamina_cgroups(Mode.V2)


def test_bad_ids_and_limits_are_rejected() -> None:
    """Ids become path components and limits become kernel writes: both checked up front."""
    with pytest.raises(ValueError, match="invalid cgroup id"):
        Cgroup.open("../escape", mode=Mode.V1)
    with pytest.raises(ValueError, match="must be positive"):
        Limits(memory=0)
    with pytest.raises(ValueError, match="at least 0.01"):
        Limits(cpus=0.001)
    assert Limits(cpus=1.5).cpu_quota_us() == 150_000


def test_warm_migration_moves_its_helper_nowhere_and_ends() -> None:
    """The helper a start spawns (warm_migration) makes a no-op migration: it ends with
    status 0 after writing itself into the cgroup2 cgroup it was born in, so this process
    and its cgroups are as they were; it is reaped, and reaping nothing is no error."""
    require_root()
    from adapters.kernel.cgroups import reap, warm_migration

    before = Path("/proc/self/cgroup").read_text()
    pid = warm_migration()
    assert pid > 0
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert Path("/proc/self/cgroup").read_text() == before
    reap(pid)  # already reaped: no error
    reap(0)


def test_warm_migration_without_a_cgroup2_tree_starts_nothing(tmp_path: Path) -> None:
    from adapters.kernel.cgroups import warm_migration

    assert warm_migration(root=tmp_path) == 0


# A process reads the mount table once a second at most; one that unshares its mount
# namespace and mounts there must not be answered from the table of the namespace it left.
_NEW_NAMESPACE = """
import pathlib, sys
from adapters.kernel import cgroups, libc
cgroups._mounts()
libc.unshare(libc.CLONE_NEWNS)
libc.mount(None, "/", None, libc.MS_REC | libc.MS_PRIVATE)
libc.mount("tmpfs", sys.argv[1], "tmpfs")
print(cgroups._mount_fstype(pathlib.Path(sys.argv[1])))
"""


def test_a_new_mount_namespace_rereads_the_mount_table(tmp_path: Path) -> None:
    require_root()
    out = subprocess.run([sys.executable, "-c", _NEW_NAMESPACE, str(tmp_path)],
                         capture_output=True,
                         text=True, timeout=60, check=True)
    assert out.stdout.strip() == "tmpfs", out.stderr


def test_warming_moves_this_process_nowhere_and_leaves_one_thread() -> None:
    """An exec's warming (cgroups.Warming) writes this very process into the cgroup2 cgroup
    it is in, from a thread: once waited for, the thread is gone (the exec forks next) and
    every hierarchy still holds this process where it was; a second wait is no error."""
    require_root()
    import threading

    from adapters.kernel.cgroups import Warming

    before = Path("/proc/self/cgroup").read_text()
    threads = threading.active_count()
    warming = Warming()
    assert warming.wait()
    assert threading.active_count() == threads
    assert Path("/proc/self/cgroup").read_text() == before
    assert warming.wait()


def test_warming_without_a_cgroup2_tree_starts_no_thread(tmp_path: Path) -> None:
    import threading

    from adapters.kernel.cgroups import Warming

    threads = threading.active_count()
    warming = Warming(root=tmp_path)
    assert threading.active_count() == threads
    assert not warming.wait()
