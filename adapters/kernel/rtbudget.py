"""Real-time CPU budgets on cgroup v1's cpu hierarchy: lend a container's budget through
its ancestors, and give it back when it goes (core/rtbudget.py's plan, applied here).

Every change runs under an exclusive flock on the hierarchy's root directory: two lamina
processes (any root, the CLI or `lamina serve`) starting RT containers at once would
otherwise each see the same free budget. What an ancestor holds is read from the kernel
each time, never remembered: a crash between two writes leaves nothing to reconcile but a
budget a later give-back trims to what its children hold.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from adapters.kernel.cgroupfs import CgroupError
from adapters.kernel.cgroupfs import read_int as _read_int
from adapters.kernel.cgroupfs import write as _write
from core import rtbudget
from core.rtbudget import Group

PERIOD, RUNTIME = "cpu.rt_period_us", "cpu.rt_runtime_us"


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _share(d: Path) -> int:
    return rtbudget.ratio(_read_int(d / PERIOD, rtbudget.DEFAULT_PERIOD),
                          _read_int(d / RUNTIME))


def _children_share(d: Path, but: Path | None = None) -> int:
    return sum(_share(c) for c in d.iterdir() if c.is_dir() and c != but)


def _group(root: Path, d: Path, on_path: Path) -> Group:
    name = "cpu cgroup" if d == root else f"cgroup {d.relative_to(root)}"
    return Group(name, _read_int(d / PERIOD, rtbudget.DEFAULT_PERIOD),
                 _read_int(d / RUNTIME), _children_share(d, on_path))


def _chain(root: Path, cgroup: Path) -> list[Path]:
    """root, then each cgroup down to cgroup's parent."""
    return [root, *reversed([p for p in cgroup.parents if root in p.parents])]


def give(root: Path, cgroup: Path, period: int | None, runtime: int | None) -> None:
    """Set cgroup's cpu.rt_period_us/cpu.rt_runtime_us (None: as they are), raising its
    ancestors first just enough (core/rtbudget.raised); BudgetError when the host's root
    hasn't the budget free, CgroupError when the kernel refuses a write anyway."""
    if not (root / RUNTIME).exists():
        raise CgroupError(f"this kernel has no {RUNTIME} in its cgroup v1 cpu hierarchy "
                          "(no real-time group scheduling)")
    with _locked(root):
        old_p, old_r = _read_int(cgroup / PERIOD), _read_int(cgroup / RUNTIME)
        new_p = period or old_p
        new_r = old_r if runtime is None else runtime
        asked = f"cpu-rt-runtime {new_r}" + (f" per cpu-rt-period {new_p}"
                                              if new_p != rtbudget.DEFAULT_PERIOD else "")
        share = max(rtbudget.ratio(old_p, old_r), rtbudget.ratio(new_p, new_r))
        chain = _chain(root, cgroup)
        below = [*chain[1:], cgroup]
        groups = [_group(root, d, b) for d, b in zip(chain, below, strict=True)]
        for d, runtime_us in zip(chain[1:], rtbudget.raised(groups, share, asked), strict=True):
            if runtime_us is not None:
                _write(d / RUNTIME, str(runtime_us))
        # the order that never asks more than the old or the new pair (runtime <= period)
        pairs = [(PERIOD, new_p), (RUNTIME, new_r)] if new_p >= old_p else \
            [(RUNTIME, new_r), (PERIOD, new_p)]
        for knob, value in pairs:
            _write(cgroup / knob, str(value))
        if rtbudget.ratio(new_p, new_r) < share:
            _fit(root, cgroup.parent)


def lent(cgroup: Path) -> bool:
    """Whether cgroup holds a real-time budget (to give back once it is removed)."""
    return _read_int(cgroup / RUNTIME) > 0


def drop(cgroup: Path) -> None:
    """A cgroup about to be removed gives up its budget first: once removed, the kernel
    counts a cgroup in its parent's until it has released it, a moment later."""
    with contextlib.suppress(CgroupError):  # a task still RT (EBUSY): the rmdir frees it
        _write(cgroup / RUNTIME, "0")


def give_back(root: Path, parent: Path, timeout: float = 2.0) -> None:
    """After a budget below parent went: lower parent and its ancestors to what their
    children hold (never below). A removed child the kernel hasn't released yet still
    counts there: retried until timeout, then left for the next give-back to trim."""
    deadline = time.monotonic() + timeout
    with _locked(root):
        while not _fit(root, parent) and time.monotonic() < deadline:
            time.sleep(0.01)


def _fit(root: Path, parent: Path) -> bool:
    """Whether every group on the way up holds no more than its children's budgets."""
    done = True
    for d in [parent, *(p for p in parent.parents if root in p.parents)]:
        if not d.is_dir():
            continue  # lamina's own parent, removed with its last container
        group = Group(str(d), _read_int(d / PERIOD, rtbudget.DEFAULT_PERIOD),
                      _read_int(d / RUNTIME))
        runtime_us = rtbudget.fitted(group, _children_share(d))
        if runtime_us is not None:
            try:
                _write(d / RUNTIME, str(runtime_us))
            except CgroupError:  # EINVAL: a child not yet released; EBUSY: its own RT tasks
                done = False
    return done
