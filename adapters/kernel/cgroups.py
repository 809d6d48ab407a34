"""Control groups: one container = one `lamina/<id>` cgroup, on cgroup v2 or v1 hosts.

Why two back ends behind one class: a unified (v2) host puts every controller in one tree,
while a hybrid host (this project's CI) still runs the real controllers on v1 hierarchies,
one directory per controller. The engine only ever needs the same dozen verbs (limit,
freeze, thaw, kill, count, remove), so `Cgroup` hides which files implement them.

Two guarantees the rest of the engine relies on:
- `freeze()` returns only once the kernel says every task is frozen (v2 `cgroup.events`
  `frozen 1`, v1 `freezer.state` FROZEN), so a paused container really is paused.
- `kill()` cannot miss a process forked while it runs: v2 uses `cgroup.kill`, everything
  else freezes the group, signals each pid, then thaws.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import select
import signal
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adapters.kernel.cgroupfs import CgroupError
from adapters.kernel.cgroupfs import read as _read
from adapters.kernel.cgroupfs import read_int as _read_int
from adapters.kernel.cgroupfs import write as _write
from core.cgroupparent import DEFAULT as PARENT

if TYPE_CHECKING:
    from core.devices import Rule

CGROUP_ROOT = Path("/sys/fs/cgroup")
CPU_PERIOD_US = 100_000
MIN_CPU_QUOTA_US = 1_000  # the kernel rejects cpu quotas under 1 ms
V2_CONTROLLERS = ("memory", "pids", "cpu")
# Limits' fields beyond memory, pids and cpus (core/resources.py's keys)
_RESOURCE_KEYS = ("cpu_shares", "cpu_period", "cpu_quota", "cpuset_cpus", "cpuset_mems",
                  "memory_reservation", "memory_swap", "memory_swappiness", "cpu_rt_period",
                  "cpu_rt_runtime")
_RT_KEYS = ("cpu_rt_period", "cpu_rt_runtime")  # adapters/kernel/rtbudget.py's
# v1: key -> (controller, file, the value that lifts it on update; None: leave it)
_V1_KNOBS: dict[str, tuple[str, str, int | None]] = {
    "cpu_shares": ("cpu", "cpu.shares", 1024),
    "cpu_period": ("cpu", "cpu.cfs_period_us", CPU_PERIOD_US),
    "cpu_quota": ("cpu", "cpu.cfs_quota_us", -1),
    "memory_reservation": ("memory", "memory.soft_limit_in_bytes", -1),
    "memory_swap": ("memory", "memory.memsw.limit_in_bytes", -1),
    "memory_swappiness": ("memory", "memory.swappiness", None),
}
_V1_UNLIMITED = 1 << 62  # v1 reports "no memory limit" as PAGE_COUNTER_MAX pages in bytes
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class Mode(StrEnum):
    V1 = "v1"
    V2 = "v2"


class CgroupNotFound(CgroupError):
    """`Cgroup.open` found no cgroup for the id."""


@dataclass(frozen=True)
class Limits:
    """Resource limits; None means unlimited (or the parent's). cpus is docker's `--cpus`
    (0.5 = half a CPU); the rest are core/resources.py's, judged there, in docker's units
    (cpu_period and cpu_quota in µs, memory_swap memory plus swap in bytes, -1 unlimited)."""

    memory: int | None = None
    pids: int | None = None
    cpus: float | None = None
    cpu_shares: int | None = None
    cpu_period: int | None = None
    cpu_quota: int | None = None
    cpuset_cpus: str | None = None
    cpuset_mems: str | None = None
    memory_reservation: int | None = None
    memory_swap: int | None = None
    memory_swappiness: int | None = None
    cpu_rt_period: int | None = None
    cpu_rt_runtime: int | None = None

    @staticmethod
    def of(values: Mapping[str, int | float | str | None]) -> Limits:
        """Limits from lamina's option keys (a create's spec, an update's changes)."""
        unknown = set(values) - set(Limits.__dataclass_fields__)
        if unknown:
            raise CgroupError(f"no cgroup limit {sorted(unknown)[0]!r}")
        try:
            typed: dict[str, Any] = {k: _typed(k, v) for k, v in values.items()}
            return Limits(**typed)
        except (TypeError, ValueError) as err:
            raise CgroupError(str(err)) from None

    def __post_init__(self) -> None:
        for name in ("memory", "pids"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} limit must be positive, got {value}")
        if self.cpus is not None and self.cpu_quota_us() < MIN_CPU_QUOTA_US:
            raise ValueError(f"cpus must be at least 0.01, got {self.cpus}")

    def cpu_quota_us(self) -> int:
        """CFS quota per CPU_PERIOD_US: the CPU time the group may use each period."""
        return int((self.cpus or 0) * CPU_PERIOD_US)


@dataclass(frozen=True)
class Stats:
    """Point-in-time usage. memory_limit None = unlimited; pids counts tasks (threads)."""

    cpu_ns: int
    memory_bytes: int
    memory_limit: int | None
    pids: int


# --- small file helpers: every cgroup knob is a one-line text file -----------------------

def _typed(key: str, value: int | float | str | None) -> int | float | str | None:
    if value is None:
        return None
    if key == "cpus":
        return float(value)
    return str(value) if key.startswith("cpuset_") else int(value)


def _v2_weight(shares: int) -> int:
    """cpu.shares (2..262144) as cgroup v2's cpu.weight (1..10000): runc's conversion."""
    return 1 + ((shares - 2) * 9999) // 262142


def _read_keyed(path: Path) -> dict[str, str]:
    """Parse `key value` lines (cgroup.events, memory.events, cpu.stat, oom_control)."""
    try:
        lines = _read(path).splitlines()
    except FileNotFoundError:
        return {}
    return dict(line.split(maxsplit=1) for line in lines if " " in line)


def _counters(path: Path) -> dict[str, int]:
    """`key number` lines (memory.stat) as ints; {} when the file is missing."""
    return {k: int(v) for k, v in _read_keyed(path).items() if v.lstrip("-").isdigit()}


def _mkdir(path: Path) -> None:
    """Make a container's dir (and its parents: the shared `lamina` one, or a
    --cgroup-parent's, made as docker's runtime makes them); an existing one is an error.

    The directory itself is tried first: its parents are there on every start but a
    host's first (a start's ten hierarchies saved ten mkdirs and ten stats of the parent).
    The `lamina` parent is removed by the last container's `remove()`, possibly between our
    two mkdirs (then make it again), or within the parent's own: pathlib's exist_ok mkdir
    checks is_dir() after its EEXIST, and raised FileExistsError when the parent went in
    between, which read as this container's directory existing (a start refused "already
    exists", seen under load)."""
    for _ in range(5):
        try:
            os.mkdir(path)
            return
        except FileExistsError:
            raise CgroupError(f"cgroup {path} already exists") from None
        except FileNotFoundError:  # no parent (yet, or any more): made, then again
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except FileExistsError:  # there, then gone: again
                continue
            except OSError as e:
                raise CgroupError(f"mkdir {e.filename}: {e.strerror}") from e
        except OSError as e:
            raise CgroupError(f"mkdir {e.filename}: {e.strerror}") from e
    raise CgroupError(f"mkdir {path.parent}: it kept going away while being made")


def _inherit_cpuset(root: Path, path: Path) -> None:
    """A new v1 cpuset cgroup starts with no CPUs and no memory nodes, and nothing can
    join it until it has some: give it (and each parent made for it) their parent's."""
    for d in [*reversed(_between(root, path)), path]:
        for knob in ("cpuset.cpus", "cpuset.mems"):
            if not _read(d / knob).strip():
                _write(d / knob, _read(d.parent / knob).strip())


def _between(root: Path, path: Path) -> list[Path]:
    """The cgroups strictly between a hierarchy's root and path, nearest first."""
    return [p for p in path.parents if p != root and root in p.parents]


def _real(path: Path) -> str:
    """os.path.realpath(path), remembered while the mount table read with it is (_mounts):
    for a hierarchy's root and a container's parent there (`lamina`, a --cgroup-parent),
    which every start, pause and stop resolves again. A container's own directory is never
    looked up through it: it is made by our mkdir, and cgroupfs holds no symlinks."""
    _mounts()  # a fresh read of the table forgets what was resolved with the old one
    return _resolved(path)


def _resolved(path: Path) -> str:
    """_real's lookup, for a caller that has just called _mounts() (one stat of the mount
    namespace for a whole set of hierarchies, not one per path)."""
    key = str(path)
    real = _reals.get(key)
    if real is None:
        real = _reals[key] = os.path.realpath(key)
    return real


_reals: dict[str, str] = {}


def _inside(root: Path, path: Path) -> Path:
    """path, once its real path is known to stay in root's hierarchy (a --cgroup-parent
    can't reach another hierarchy, or a directory outside cgroupfs, by a symlink). Its
    last name is the container's own, made by our mkdir: only its parent is resolved."""
    _mounts()
    real_root, real = _resolved(root), os.path.join(_resolved(path.parent), path.name)
    if os.path.commonpath([real_root, real]) != real_root:
        raise CgroupError(f"cgroup {path} resolves to {real}, outside the hierarchy at "
                          f"{root}")
    return path


def _pids_in(path: Path) -> list[int]:
    try:
        return sorted(int(line) for line in _read(path / "cgroup.procs").split())
    except FileNotFoundError:
        return []


def _mount_fstype(path: Path) -> str | None:
    """Filesystem type mounted exactly at path (the last mount wins, as it shadows others)."""
    fstype = None
    for point, kind in _mounts():
        if point == str(path):
            fstype = kind
    return fstype


_MOUNTS_FRESH = 1.0  # seconds a process reuses its read of the mount table
_mounts_seen: tuple[tuple[int, int], float, list[tuple[str, str]]] | None = None


def _mounts() -> list[tuple[str, str]]:
    """(mount point, fstype) of every mount of this mount namespace, in mountinfo order.

    Read once a second at most by a process in one mount namespace (not across a fork,
    an unshare or a setns, which the key of pid and namespace inode tells apart): a run
    reads the cgroup layout five times (create, open, release, oom check, rm) and
    /proc/self/mountinfo costs 0.1-2 ms a read (it waits for the host's mounts and
    unmounts); the cgroup hierarchies' mounts don't move while a command runs."""
    global _mounts_seen
    now = time.monotonic()
    key = (os.getpid(), os.stat("/proc/self/ns/mnt").st_ino)
    seen = _mounts_seen
    if seen is not None and seen[0] == key and now - seen[1] < _MOUNTS_FRESH:
        return seen[2]
    with open("/proc/self/mountinfo") as f:
        mounts = [(fields.split()[4], rest.split()[0]) for fields, _, rest in
                  (line.partition(" - ") for line in f)]
    _mounts_seen = (key, now, mounts)
    _reals.clear()
    return mounts


SPIN = 0.0005  # seconds of polling without sleeping before the backoff starts


def _wait(predicate: Callable[[], bool], timeout: float,
          kick: Callable[[], None] | None = None) -> bool:
    """Poll predicate, first without sleeping for SPIN (a v1 freeze of a few tasks is done
    in ~0.1 ms: a 1 ms first sleep made it cost 1 ms and more, and on a loaded machine each
    sleep costs a wake-up's wait for a CPU besides; runc polls every 10 us), then with a
    short backoff; `kick` runs every ~100 ms to retry a stuck write.

    The spin yields the CPU between two looks: a task still FREEZING is one that must run
    to freeze (it enters the freezer on its way back to user space), and on a busy host it
    often waits for the very CPU the spin holds. A busy-looping task's freeze at load 9 on
    2 CPUs: median 0.93 -> 0.44 ms, p75 3.7 -> 0.6 ms (docs/benchmarks.md). A sleeping
    task is frozen by the write itself: no poll at all."""
    start = time.monotonic()
    deadline = start + timeout
    delay, last_kick = 0.0001, start
    while not predicate():
        now = time.monotonic()
        if now >= deadline:
            return False
        if kick is not None and now - last_kick >= 0.1:
            kick()
            last_kick = now
        if now - start < SPIN:
            os.sched_yield()
            continue
        time.sleep(delay)
        delay = min(delay * 2, 0.01)
    return True


def _rmdir_tree(top: Path, timeout: float) -> None:
    """rmdir top and any sub-cgroups, deepest first, retrying EBUSY while tasks exit.

    Why retry: a killed task leaves cgroup.procs a moment after the signal is sent, and
    rmdir fails with EBUSY until it has. Already-missing directories are fine (idempotent).
    """
    try:  # a container's own cgroup has no sub-cgroups: one rmdir, no walk of its files
        os.rmdir(top)
        return
    except FileNotFoundError:
        return
    except OSError as e:
        if e.errno not in (errno.EBUSY, errno.ENOTEMPTY):
            raise CgroupError(f"rmdir {top}: {e.strerror} (pids {_pids_in(top)})") from e
    dirs = [Path(d) for d, _, _ in os.walk(top, topdown=False)]
    deadline = time.monotonic() + timeout
    for d in dirs:
        while True:
            try:
                d.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError as e:
                if e.errno != errno.EBUSY or time.monotonic() >= deadline:
                    raise CgroupError(f"rmdir {d}: {e.strerror} (pids {_pids_in(d)})") from e
                time.sleep(0.01)


# --- the migration lock ----------------------------------------------------------------

def warm_migration(root: Path = CGROUP_ROOT) -> int:
    """Start a helper that moves itself into the cgroup2 cgroup it is already in; return
    its pid for reap() (0 when it can't be started: no cgroup2 tree, no /bin/sh).

    Why: every cgroup migration takes the kernel's one cgroup_threadgroup_rwsem for
    writing, whose rcu_sync waits a whole RCU grace period (5-13 ms here) when no migration
    came within the last one, and a container's init, joining its cgroups first thing,
    paid it on every quiet start. Started once the container's cgroups are made, this
    no-op migration waits out that grace period while the start plans and forks the
    monitor and init, so init's joins wait only what is left of it (docs/benchmarks.md:
    -5 ms of a quiet 59 ms `run --rm`). Not sooner: the waiting write holds the kernel's
    cgroup_mutex, which the making of the container's cgroups needs. A hint only: a helper
    that can't write changes nothing, and its stdio is /dev/null, never the caller's.
    posix_spawn (a vfork), not fork: a fork of this process costs more in page tables and
    copy-on-write faults than the grace period it would save."""
    try:
        procs = _own_procs(root)
        quiet = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, flags, 0)
                 for fd, flags in ((0, os.O_RDONLY), (1, os.O_WRONLY), (2, os.O_WRONLY))]
        return os.posix_spawn(_SH, ["sh", "-c", 'echo 0 > "$1"', "sh", str(procs)], {},
                              file_actions=quiet)
    except (CgroupError, OSError):
        return 0


_SH = "/bin/sh"


def reap(pid: int) -> None:
    """Wait for warm_migration()'s helper (done long before a start has its report)."""
    if pid:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


SWITCH = 0.0001  # seconds: the GIL's switch interval while a Warming's thread runs


class Warming:
    """warm_migration's no-op migration, made by a thread of this process: it writes "0"
    (this process) into the cgroup2 cgroup.procs of the cgroup it is already in. For a
    caller that forks only later (an exec's command): a thread costs no exec of a shell
    and no scheduling of a second process on a busy machine. The kernel keeps the
    migration lock fast for about a grace period after the write, so the fork's child
    joins the container's cgroups without waiting a grace period of its own; forked while
    the write still waits, it waits only for the rest of it (the write holds the
    cgroup_mutex its joins need), and `wait()` just after the fork leaves the caller
    single-threaded again. A hint only: nothing
    to write to (no cgroup2 tree) or a failed write starts or changes nothing."""

    def __init__(self, root: Path = CGROUP_ROOT) -> None:
        import threading

        self._thread: threading.Thread | None = None
        self._wrote = False
        try:
            procs = _own_procs(root)
            fd = os.open(procs, os.O_WRONLY | os.O_CLOEXEC)
        except (CgroupError, OSError):
            return
        # The thread needs the GIL for a few lines before its write: by default it would
        # wait up to 5 ms (the switch interval) for this thread to let go of it.
        self._interval = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH)
        self._thread = threading.Thread(target=self._write, args=(fd,), daemon=True,
                                        name="warm-migration")
        try:
            self._thread.start()
        except RuntimeError:  # no thread to be had: no warming, nothing changed
            self._thread = None
            sys.setswitchinterval(self._interval)
            os.close(fd)

    def _write(self, fd: int) -> None:
        try:
            os.write(fd, b"0")
            self._wrote = True
        except OSError:
            pass
        finally:
            os.close(fd)

    def wait(self) -> bool:
        """Until the write is done (at once if it is, or if there was none); whether the
        migration was made."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            sys.setswitchinterval(self._interval)
        return self._wrote


def _own_procs(root: Path) -> Path:
    """The cgroup.procs of this process's own cgroup2 cgroup: writing "0" to it is the
    no-op migration warm_migration and Warming make."""
    return v2_root(root) / _own_v2_path().lstrip("/") / "cgroup.procs"


def _own_v2_path() -> str:
    with open("/proc/self/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                return line[3:].strip()
    raise CgroupError("this process is in no cgroup2 cgroup")


# --- mode detection and layout -----------------------------------------------------------

def read_mounts_ahead() -> None:
    """Read the mount table now, and the cgroup layout it gives (the mode, the
    hierarchies' roots and lamina's parent in each, as Cgroup.open asks them), for the
    command this process runs next (the fork server's spare, while no client waits:
    bootstrap.prepare): within _MOUNTS_FRESH, that command's pause, exec or stop then
    costs it no read of /proc/self/mountinfo (in a freshly forked child, ~1 ms of CPU with
    its parsing, and a wait for the host's mounts and unmounts), nor the layout's making
    from it (0.25 ms of a served pause's CPU in its fresh child: docs/benchmarks.md)."""
    if detect() is Mode.V2:
        v2_root()
    else:
        _v1_layout(CGROUP_ROOT, PARENT)


def _from_table(what: str, root: Path, read: Callable[[], Any]) -> Any:
    """What `read` makes of the mount table, remembered while that read of it is (_mounts):
    every Cgroup.open scanned the whole table twice (detect, v1_roots), four to six times
    a `run`, in proportion to the host's mounts."""
    mounts = _mounts()
    key = (what, str(root))
    seen = _layout.get(key)
    if seen is None or seen[0] is not mounts:
        seen = _layout[key] = (mounts, read())
    return seen[1]


_layout: dict[tuple[str, str], tuple[list[tuple[str, str]], Any]] = {}


def detect(root: Path = CGROUP_ROOT) -> Mode:
    """V2 on a unified host (root itself is cgroup2), else V1 (legacy or hybrid)."""
    return _from_table("mode", root, lambda: Mode.V2 if _mount_fstype(Path(root)) ==
                       "cgroup2" else Mode.V1)


def v2_root(root: Path = CGROUP_ROOT) -> Path:
    """The cgroup2 tree: root on a unified host, root/unified on a hybrid one."""
    root = Path(root)

    def read() -> Path:
        for candidate in (root, root / "unified"):
            if _mount_fstype(candidate) == "cgroup2":
                return candidate
        raise CgroupError(f"no cgroup2 filesystem mounted at {root} or {root / 'unified'}")

    return _from_table("v2", root, read)


def v1_roots(root: Path = CGROUP_ROOT) -> dict[str, Path]:
    """Hierarchy name -> root for every hierarchy a legacy or hybrid host mounts under
    `root`: the controllers, the named ones (name=systemd) and a hybrid host's cgroup2
    (`unified`). A container joins all of them, not just those it limits: in a hierarchy it
    did not join, its cgroup namespace would be rooted at the host's cgroup, where a
    process holding CAP_SYS_ADMIN could mount the hierarchy and reach its release_agent
    (CVE-2022-0492) or other cgroups' files."""
    root = Path(root)

    def read() -> dict[str, Path]:
        points = [Path(point) for point, kind in _mounts() if kind in ("cgroup", "cgroup2")]
        return {p.name: p for p in points if p.parent == root}

    return dict(_from_table("v1", root, read))


def _v1_layout(root: Path, parent: str) -> tuple[dict[str, Path], dict[str, Path]]:
    """v1_roots, and hierarchy name -> `<its root>/<parent>`, made with the layout
    (_from_table, which the fork server's spare fills ahead: read_mounts_ahead) in one
    look at the table: a CgroupV1 joins its id onto these, ten joins where it made twenty
    (in a freshly forked child each new Path costs copy-on-write faults: ~0.1 ms of a
    served pause). Read only: CgroupV1's own, never handed out."""
    def read() -> tuple[dict[str, Path], dict[str, Path]]:
        roots = v1_roots(root)
        return roots, {c: r / parent for c, r in roots.items()}

    return _from_table(f"v1 {parent}", root, read)


def list_lamina_cgroups(mode: Mode | None = None, root: Path = CGROUP_ROOT,
                       parent: str = PARENT) -> list[str]:
    """Ids of every cgroup under `parent` (lamina's own by default, or a --cgroup-parent)
    on the host, so a restarted engine can find leftovers.

    A parent that isn't there holds none: also one that goes while we look, since the
    last container's remove() takes the shared `lamina` parent with it, in any root on the
    host (one listing, no is-it-there first: `system check` failed with ENOENT when another
    root's last container went between the two)."""
    mode = mode or detect(root)
    parents = ([v2_root(root) / parent] if mode is Mode.V2
               else [r / parent for r in v1_roots(root).values()])
    ids: set[str] = set()
    for d in parents:
        try:
            names = os.listdir(d)
        except (FileNotFoundError, NotADirectoryError):
            continue
        ids.update(n for n in names if _ID.match(n) and (d / n).is_dir())
    return sorted(ids)


# --- the adapter -------------------------------------------------------------------------

class Cgroup(ABC):
    """A container's cgroup. Build with `Cgroup.create` or `Cgroup.open`, not directly."""

    def __init__(self, id: str, parent: str = PARENT) -> None:
        if not _ID.match(id):
            raise ValueError(f"invalid cgroup id {id!r}: use letters, digits, '_', '.', '-'")
        self.id = id
        self.parent = parent  # relative to each hierarchy's root (core/cgroupparent.py)

    @staticmethod
    def _for(id: str, mode: Mode | None, root: Path, parent: str) -> Cgroup:
        mode = Mode(mode) if mode else detect(root)
        return CgroupV2(id, v2_root(root), parent) if mode is Mode.V2 \
            else CgroupV1(id, root, parent)

    @staticmethod
    def create(id: str, limits: Limits | None = None, mode: Mode | None = None,
               root: Path = CGROUP_ROOT, devices: Sequence[Rule] | None = None,
               parent: str = PARENT) -> Cgroup:
        """Make `<parent>/<id>` with limits applied; mode forces v1/v2 (default: detect).

        `devices` (core.devices rules) makes the cgroup deny every device but those, before
        any process can join it; None leaves device access as the parent's. `parent` is
        core/cgroupparent.py's (`lamina`, or a --cgroup-parent relative to the root)."""
        cgroup = Cgroup._for(id, mode, root, parent)
        cgroup._make()
        try:
            limits = limits or Limits()
            cgroup._apply(limits)
            cgroup._set(limits, [k for k in _RESOURCE_KEYS if getattr(limits, k) is not None])
            if devices is not None:
                cgroup._apply_devices(devices)
        except BaseException:
            cgroup.remove()
            raise
        return cgroup

    @staticmethod
    def open(id: str, mode: Mode | None = None, root: Path = CGROUP_ROOT,
             parent: str = PARENT) -> Cgroup:
        """Attach to an existing `<parent>/<id>`, e.g. after an engine restart."""
        cgroup = Cgroup._for(id, mode, root, parent)
        if not cgroup.exists():
            raise CgroupNotFound(f"no cgroup {cgroup.path}")
        return cgroup

    def exists(self) -> bool:
        """Whether any of its directories is there."""
        return any(d.is_dir() for d in self.dirs())

    @property
    @abstractmethod
    def mode(self) -> Mode: ...

    @property
    def path(self) -> str:
        """`<parent>/<id>` relative to each hierarchy's root (ContainerStarted's cgroup)."""
        return f"{self.parent}/{self.id}".lstrip("/")

    @abstractmethod
    def dirs(self) -> list[Path]:
        """Every directory this cgroup owns (one per v1 hierarchy, one on v2)."""

    @abstractmethod
    def _make(self) -> None: ...

    @abstractmethod
    def _apply(self, limits: Limits) -> None: ...

    def update(self, changes: Mapping[str, int | float | str | None]) -> None:
        """`update` of a live container: set the limits named (Limits' fields), None
        lifting one; the others stay as they are."""
        checked = Limits.of(changes)
        self._update(changes, checked)
        self._set(checked, [k for k in changes if k in _RESOURCE_KEYS], update=True)

    @abstractmethod
    def _update(self, changes: Mapping[str, int | float | str | None],
                checked: Limits) -> None: ...

    @abstractmethod
    def _set(self, limits: Limits, keys: Sequence[str], update: bool = False) -> None:
        """Write core/resources.py's limits named by `keys` (None: back to the default,
        on update)."""

    @abstractmethod
    def _apply_devices(self, rules: Sequence[Rule]) -> None: ...

    @abstractmethod
    def freeze(self, timeout: float = 5.0) -> None:
        """Freeze every task; returns only once the kernel reports the group frozen."""

    @abstractmethod
    def thaw(self, timeout: float = 5.0) -> None: ...

    @abstractmethod
    def is_frozen(self) -> bool: ...

    @abstractmethod
    def pids(self) -> list[int]:
        """Process ids (thread-group leaders) in the cgroup."""

    @abstractmethod
    def stats(self) -> Stats: ...

    @abstractmethod
    def memory_stat(self) -> dict[str, int]: ...

    @abstractmethod
    def io_bytes(self) -> tuple[int, int]: ...

    @abstractmethod
    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer has killed a task in this cgroup."""

    def add(self, pid: int) -> None:
        """Move pid (and, from then on, its children) into the cgroup."""
        for d in self.dirs():
            _write(d / "cgroup.procs", str(pid))

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal every process; the group is frozen meanwhile so no fork can escape.

        A frozen group stays frozen afterwards, except for SIGKILL, which needs the tasks
        to run again in order to die. (On v2 the kernel lets any signal whose default
        action is fatal kill a frozen task at once; handled signals wait for the thaw.)
        """
        was_frozen = self.is_frozen()
        with contextlib.suppress(CgroupError):  # a fork racing the kill beats no kill at all
            self.freeze()
        try:
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
        finally:
            if not was_frozen or sig == signal.SIGKILL:
                self.thaw()

    def remove(self, timeout: float = 2.0) -> None:
        """Delete the cgroup everywhere; idempotent. Tasks must already be dead or dying.

        The shared `lamina` parent goes too once it is empty, so no trace is left on the host
        (rmdir fails harmlessly while other containers' cgroups are in it); a
        --cgroup-parent stays, as docker's runtime leaves it."""
        for d in self.dirs():
            _rmdir_tree(d, timeout)
            if self.parent == PARENT:
                with contextlib.suppress(OSError):
                    d.parent.rmdir()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path}>"


class CgroupV1(Cgroup):
    """Legacy/hybrid hierarchies: one directory per controller, joined by the same pid."""

    def __init__(self, id: str, root: Path = CGROUP_ROOT, parent: str = PARENT) -> None:
        super().__init__(id, parent)
        roots, parents = _v1_layout(root, parent)
        if "freezer" not in roots:
            raise CgroupError("no cgroup v1 freezer hierarchy: cannot pause or kill reliably")
        self._roots = roots
        self._dir = {c: d / id for c, d in parents.items()}

    @property
    def mode(self) -> Mode:
        return Mode.V1

    def exists(self) -> bool:
        """As Cgroup.exists, without dirs()' real paths (ten of six lstats each): what a
        pause, an unpause or a stop asks of an existing cgroup."""
        return any(d.is_dir() for d in self._dir.values())

    def dirs(self) -> list[Path]:
        # cpu and cpuacct are often one hierarchy reached through two symlinks.
        unique: dict[str, Path] = {}
        _mounts()
        for d in self._dir.values():
            unique.setdefault(os.path.join(_resolved(d.parent), d.name), d)
        return list(unique.values())

    def _controller(self, name: str) -> Path:
        if name not in self._dir:
            raise CgroupError(f"cgroup v1 controller {name!r} is not mounted")
        return self._dir[name]

    def _make(self) -> None:
        made: list[Path] = []
        try:
            for c, d in self._dir.items():
                _inside(self._roots[c], d)
            for d in self.dirs():
                _mkdir(d)
                made.append(d)
                if "cpuset" in self._dir and d == self._dir["cpuset"]:
                    _inherit_cpuset(self._roots["cpuset"], d)
        except BaseException:
            for m in made:  # undo only our own dirs: an existing one belongs to someone else
                m.rmdir()
            raise

    def _apply(self, limits: Limits) -> None:
        if limits.memory is not None:
            _write(self._controller("memory") / "memory.limit_in_bytes", str(limits.memory))
        if limits.pids is not None:
            _write(self._controller("pids") / "pids.max", str(limits.pids))
        if limits.cpus is not None:
            cpu = self._controller("cpu")
            _write(cpu / "cpu.cfs_period_us", str(CPU_PERIOD_US))
            _write(cpu / "cpu.cfs_quota_us", str(limits.cpu_quota_us()))

    def _apply_devices(self, rules: Sequence[Rule]) -> None:
        from adapters.kernel import devices  # bpf/ctypes only for containers that need it

        devices.apply_v1(self._controller("devices"), rules)

    def _set(self, limits: Limits, keys: Sequence[str], update: bool = False) -> None:
        if any(k in _RT_KEYS for k in keys):
            from adapters.kernel import rtbudget

            cpu = self._controller("cpu")
            rtbudget.give(self._roots["cpu"], cpu,
                          limits.cpu_rt_period if "cpu_rt_period" in keys else None,
                          limits.cpu_rt_runtime if "cpu_rt_runtime" in keys else None)
        for key in keys:
            value = getattr(limits, key)
            if key in _RT_KEYS:
                continue
            if key.startswith("cpuset_"):
                self._cpuset(key, value)
                continue
            controller, knob, default = _V1_KNOBS[key]
            if value is None and default is None:
                continue  # swappiness: the parent's stays
            path = self._controller(controller) / knob
            if not path.exists():
                raise CgroupError(f"this kernel has no {knob} in its cgroup v1 {controller} "
                                  "hierarchy")
            _write(path, str(default if value is None else value))

    def _cpuset(self, key: str, value: str | None) -> None:
        d = self._controller("cpuset")
        knob = "cpuset.cpus" if key == "cpuset_cpus" else "cpuset.mems"
        wanted = value or _read(d.parent / knob)
        try:
            _write(d / knob, wanted)
        except CgroupError:
            available = _read(d.parent / f"cpuset.effective_{knob.split('.')[1]}")
            what = "CPUs" if key == "cpuset_cpus" else "memory nodes"
            raise CgroupError(f"Requested {what} are not available - requested {wanted}, "
                              f"available: {available}") from None

    def _update(self, changes: Mapping[str, int | float | str | None],
                checked: Limits) -> None:
        if "memory" in changes:
            memory = self._controller("memory") / "memory.limit_in_bytes"
            try:
                _write(memory, str(checked.memory or -1))
            except CgroupError:  # above the swap limit: that one first (the new or none)
                self._set(checked if "memory_swap" in changes else Limits(),
                          ["memory_swap"], update=True)
                _write(memory, str(checked.memory or -1))
        if "pids" in changes:
            _write(self._controller("pids") / "pids.max", str(checked.pids or "max"))
        if "cpus" in changes:
            cpu = self._controller("cpu")
            _write(cpu / "cpu.cfs_period_us", str(CPU_PERIOD_US))
            _write(cpu / "cpu.cfs_quota_us", str(checked.cpu_quota_us() or -1))

    def remove(self, timeout: float = 2.0) -> None:
        """As Cgroup.remove, and a real-time budget it held is given back by its
        ancestors (adapters/kernel/rtbudget.py)."""
        from adapters.kernel import rtbudget

        cpu = self._dir.get("cpu")
        lent = cpu is not None and cpu.is_dir() and rtbudget.lent(cpu)
        if lent and cpu is not None:
            rtbudget.drop(cpu)
        super().remove(timeout)
        if lent and cpu is not None:
            rtbudget.give_back(self._roots["cpu"], cpu.parent)

    def _state(self) -> str:
        return _read(self._dir["freezer"] / "freezer.state")

    def freeze(self, timeout: float = 5.0) -> None:
        # Re-writing FROZEN makes the kernel retry tasks that dodged the first pass
        # (runc does the same); a group still FREEZING at the deadline is thawed back.
        state_file = self._dir["freezer"] / "freezer.state"
        _write(state_file, "FROZEN")
        if not _wait(lambda: self._state() == "FROZEN", timeout,
                     kick=lambda: _write(state_file, "FROZEN")):
            _write(state_file, "THAWED")
            raise CgroupError(f"{self!r} did not freeze within {timeout}s")

    def thaw(self, timeout: float = 5.0) -> None:
        _write(self._dir["freezer"] / "freezer.state", "THAWED")
        if not _wait(lambda: self._state() == "THAWED", timeout):
            raise CgroupError(f"{self!r} did not thaw within {timeout}s")

    def is_frozen(self) -> bool:
        return self._state() == "FROZEN"

    def pids(self) -> list[int]:
        return _pids_in(self._dir["freezer"])

    def _knob(self, controller: str, name: str) -> Path | None:
        """A controller file, or None when this host does not mount that controller."""
        d = self._dir.get(controller)
        return d / name if d is not None else None

    def stats(self) -> Stats:
        limit = _read_int(self._knob("memory", "memory.limit_in_bytes"), _V1_UNLIMITED)
        if "pids" in self._dir:
            tasks = _read_int(self._knob("pids", "pids.current"))
        else:
            tasks = len(_read(self._dir["freezer"] / "tasks").split())
        return Stats(
            cpu_ns=_read_int(self._knob("cpuacct", "cpuacct.usage")),
            memory_bytes=_read_int(self._knob("memory", "memory.usage_in_bytes")),
            memory_limit=None if limit >= _V1_UNLIMITED else limit,
            pids=tasks,
        )

    def oom_killed(self) -> bool:
        control_file = self._knob("memory", "memory.oom_control")
        control = _read_keyed(control_file) if control_file else {}
        if "oom_kill" in control:  # Linux >= 4.13 counts kills exactly
            return int(control["oom_kill"]) > 0
        # Older kernels only count hits on the limit: the best available hint.
        return _read_int(self._knob("memory", "memory.failcnt")) > 0


    def memory_stat(self) -> dict[str, int]:
        """memory.stat's counters (docker's memory_stats.stats), {} without the controller."""
        path = self._knob("memory", "memory.stat")
        return _counters(path) if path is not None else {}

    def io_bytes(self) -> tuple[int, int]:
        """Bytes read and written by the group's block I/O (blkio's throttle counters)."""
        path = self._knob("blkio", "blkio.throttle.io_service_bytes")
        read = write = 0
        with contextlib.suppress(OSError):
            for line in _read(path).splitlines() if path is not None else ():
                parts = line.split()
                if len(parts) == 3 and parts[1] in ("Read", "Write"):
                    if parts[1] == "Read":
                        read += int(parts[2])
                    else:
                        write += int(parts[2])
        return read, write



class CgroupV2(Cgroup):
    """Unified hierarchy: one directory; controllers enabled from the parents downwards."""

    def __init__(self, id: str, root: Path, parent: str = PARENT) -> None:
        super().__init__(id, parent)
        self._root = root
        self._path = root / parent / id

    @property
    def mode(self) -> Mode:
        return Mode.V2

    def dirs(self) -> list[Path]:
        return [self._path]

    def _enable_controllers(self, needed: set[str]) -> None:
        """Delegate the controllers limits need (and any others available, for stats).

        Why: on v2 a child only gets a controller's files once every ancestor lists it in
        cgroup.subtree_control; a hybrid host's cgroup2 tree may have none of them.
        """
        available = set(_read(self._root / "cgroup.controllers").split())
        missing = needed - available
        if missing:
            raise CgroupError(f"cgroup2 at {self._root} lacks controllers {sorted(missing)}")
        wanted = [*sorted(needed), *(c for c in V2_CONTROLLERS if c in available)]
        for parent in [self._root, *reversed(_between(self._root, self._path))]:
            enabled = set(_read(parent / "cgroup.subtree_control").split())
            for controller in wanted:
                if controller not in enabled:
                    _write(parent / "cgroup.subtree_control", f"+{controller}")

    def _make(self) -> None:
        _mkdir(_inside(self._root, self._path))

    def _apply(self, limits: Limits) -> None:
        needed = {name for name, value in (("memory", limits.memory), ("pids", limits.pids),
                                           ("cpu", limits.cpus)) if value is not None}
        self._enable_controllers(needed)
        if limits.memory is not None:
            _write(self._path / "memory.max", str(limits.memory))
        if limits.pids is not None:
            _write(self._path / "pids.max", str(limits.pids))
        if limits.cpus is not None:
            _write(self._path / "cpu.max", f"{limits.cpu_quota_us()} {CPU_PERIOD_US}")

    def _apply_devices(self, rules: Sequence[Rule]) -> None:
        from adapters.kernel import devices  # bpf/ctypes only for containers that need it

        devices.attach_v2(self._path, rules)

    def _set(self, limits: Limits, keys: Sequence[str], update: bool = False) -> None:
        if "memory_swappiness" in keys and limits.memory_swappiness is not None:
            raise CgroupError("memory swappiness is not supported on cgroup v2 (no such knob)")
        for key, flag in zip(_RT_KEYS, ("--cpu-rt-period", "--cpu-rt-runtime"), strict=True):
            if key in keys and getattr(limits, key):
                raise CgroupError(f"{flag} is not supported on cgroup v2: real-time group "
                                  "budgets (cpu.rt_runtime_us) are cgroup v1's")
        needed = {"cpuset" if k.startswith("cpuset_") else k.split("_")[0] for k in keys}
        if not needed:
            return
        self._enable_controllers(needed)
        for key in keys:
            value = getattr(limits, key)
            if key == "cpu_shares":
                _write(self._path / "cpu.weight", str(_v2_weight(value) if value else 100))
            elif key in ("cpu_period", "cpu_quota"):
                quota, period = _read(self._path / "cpu.max").split()
                quota = str(limits.cpu_quota or "max") if "cpu_quota" in keys else quota
                period = str(limits.cpu_period or CPU_PERIOD_US) if "cpu_period" in keys \
                    else period
                _write(self._path / "cpu.max", f"{quota} {period}")
            elif key.startswith("cpuset_"):
                knob = "cpuset.cpus" if key == "cpuset_cpus" else "cpuset.mems"
                _write(self._path / knob, value or "")
            elif key == "memory_reservation":
                _write(self._path / "memory.low", str(value or 0))
            elif key == "memory_swap":
                memory = limits.memory or _read_int(self._path / "memory.max", 0)
                swap = "max" if value in (None, -1) else str(max(value - memory, 0))
                _write(self._path / "memory.swap.max", swap)

    def _update(self, changes: Mapping[str, int | float | str | None],
                checked: Limits) -> None:
        self._enable_controllers({k for k in changes if k in ("memory", "pids")}
                                 | ({"cpu"} if "cpus" in changes else set()))
        if "memory" in changes:
            _write(self._path / "memory.max", str(checked.memory or "max"))
        if "pids" in changes:
            _write(self._path / "pids.max", str(checked.pids or "max"))
        if "cpus" in changes:
            quota = checked.cpu_quota_us()
            _write(self._path / "cpu.max", f"{quota or 'max'} {CPU_PERIOD_US}")

    def _wait_frozen(self, frozen: bool, timeout: float) -> bool:
        """Wait for cgroup.events `frozen`, woken by the kernel's POLLPRI on each change."""
        want = "1" if frozen else "0"
        events = self._path / "cgroup.events"
        deadline = time.monotonic() + timeout
        with open(events) as f:
            poller = select.poll()
            poller.register(f, select.POLLPRI)
            while _read_keyed(events).get("frozen") != want:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                poller.poll(min(remaining, 0.05) * 1000)  # short cap: never trust one wakeup
        return True

    def freeze(self, timeout: float = 5.0) -> None:
        _write(self._path / "cgroup.freeze", "1")
        if not self._wait_frozen(True, timeout):
            _write(self._path / "cgroup.freeze", "0")
            raise CgroupError(f"{self!r} did not freeze within {timeout}s")

    def thaw(self, timeout: float = 5.0) -> None:
        _write(self._path / "cgroup.freeze", "0")
        if not self._wait_frozen(False, timeout):
            raise CgroupError(f"{self!r} did not thaw within {timeout}s")

    def is_frozen(self) -> bool:
        return _read_keyed(self._path / "cgroup.events").get("frozen") == "1"

    def kill(self, sig: int = signal.SIGKILL) -> None:
        # cgroup.kill (Linux 5.14+) kills atomically, forks included; only SIGKILL though.
        if sig == signal.SIGKILL and (self._path / "cgroup.kill").exists():
            _write(self._path / "cgroup.kill", "1")
        else:
            super().kill(sig)

    def pids(self) -> list[int]:
        return _pids_in(self._path)

    def stats(self) -> Stats:
        cpu = _read_keyed(self._path / "cpu.stat")  # usage_usec exists without the controller
        try:
            limit_text = _read(self._path / "memory.max")
        except FileNotFoundError:
            limit_text = "max"
        if (self._path / "pids.current").exists():
            tasks = _read_int(self._path / "pids.current")
        else:
            tasks = len(_read(self._path / "cgroup.threads").split())
        return Stats(
            cpu_ns=int(cpu.get("usage_usec", 0)) * 1000,
            memory_bytes=_read_int(self._path / "memory.current"),
            memory_limit=None if limit_text == "max" else int(limit_text),
            pids=tasks,
        )

    def oom_killed(self) -> bool:
        return int(_read_keyed(self._path / "memory.events").get("oom_kill", 0)) > 0

    def memory_stat(self) -> dict[str, int]:
        return _counters(self._path / "memory.stat")

    def io_bytes(self) -> tuple[int, int]:
        read = write = 0
        with contextlib.suppress(OSError):
            for line in _read(self._path / "io.stat").splitlines():
                fields = dict(f.split("=", 1) for f in line.split()[1:] if "=" in f)
                read += int(fields.get("rbytes", 0))
                write += int(fields.get("wbytes", 0))
        return read, write
