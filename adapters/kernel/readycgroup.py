"""A container's cgroup kept ready by the root's fork server, and renamed to it at a start.

Why: making a container's cgroups is ~2 ms of every start (2.2 ms at load 9: ten mkdirs in
cgroupfs, a memory cgroup's the dearest, then the cpuset and the device rules), and a
served start waited for it. The fork server keeps one made (`keep`): `lamina/ready-<its
pid>.<its start time>`, as a start without options would make a container's (no limits, the
default device rules). A start of one of its commands whose cgroup would be exactly that
`take`s it, renamed to `lamina/<id>` (~0.2 ms: cgroup v1 renames a cgroup in place; the
hybrid's controller-less cgroup2 directory is made anew), and the server makes the next one
as its next command is taken, or once that command has ended. Anything else (limits,
--device, --privileged, a --cgroup-parent, a start without a server, a host with cgroup2
alone, which renames nothing) makes its cgroup as before. Commands that start nothing cost
nothing: the one made stays.

One set, many takers (commands run side by side): the freezer hierarchy's directory is the
claim. The server renames it into place last, once the whole set is made under another
name; a taker renames it first, then the rest; a taker that finds it gone makes its own.

Nobody else sees these: a ready cgroup holds no process, and `system check` passes over a
live server's (no log knows its name; it is no root's). The server removes its own when it
stops (`release`); one left by a server killed outright is an orphan (its stamp is dead),
which the next fork server to start removes, whichever its root (`sweep`), and which its
root's `system check` lists and `system reconcile` removes meanwhile (`orphans`, `remove`).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Sequence
from pathlib import Path

from adapters.kernel import proc
from adapters.kernel.cgroups import (
    Cgroup,
    CgroupError,
    Limits,
    Mode,
    detect,
    list_lamina_cgroups,
)
from core.cgroupparent import DEFAULT as PARENT
from core.devices import Rule
from core.errors import LaminaError

PREFIX = "ready-"
MAKING = "making-"
CLAIM = "freezer"  # the hierarchy whose directory says whose the set is

_owner: str | None = None  # the name of the set its fork server keeps (its children inherit it)
_rules: list[Rule] = []  # the device rules it was made with
_kept: Path | None = None  # its claim directory, in the server that made it (keep's one stat)


def name(pid: int | None = None) -> str:
    """The ready cgroup process `pid` (this one by default) keeps: named by its stamp (pid
    and start time), so that a pid used again is never taken for its server."""
    return PREFIX + proc.stamp(pid)


def default_rules() -> list[Rule]:
    """The device rules of a start without options."""
    from adapters.kernel import devices
    from core.devices import rules_for
    from core.security import Security

    return rules_for(Security(), devices.nodes_for(Security()))


def keep() -> None:
    """In the fork server, at its start and after each child ends: make the ready cgroup
    unless it is there (one stat), or the host's cgroups can't rename it (cgroup2 alone)."""
    global _owner, _rules, _kept
    if _kept is not None and _kept.is_dir():
        return
    _kept = None
    mine = name()
    making = MAKING + mine.removeprefix(PREFIX)
    try:
        if detect() is not Mode.V1:
            return
        _rules = default_rules()
        for leftover in (making, mine):  # of a taker that lost a race, or a failed make
            remove(leftover)
        dirs = Cgroup.create(making, Limits(), devices=_rules).dirs()
        claim = _claim_dir(dirs)
        if claim is None:  # no freezer directory of that name (a co-mounted one): none kept
            remove(making)
            return
        _move([*(d for d in dirs if d != claim), claim], mine)  # the claim's last
    except (CgroupError, OSError, LaminaError):  # a hint only, in the server's loop: a
        remove(making)                           # start without it makes its own
        return
    _owner = mine
    _kept = claim.parent / mine


def take(cid: str, limits: Limits, rules: Sequence[Rule], parent: str) -> Cgroup | None:
    """The server's ready cgroup renamed to `cid`, if it is the one this start would make;
    else None (the caller makes one). A claim lost to another taker, or a rename that
    fails, leaves nothing of ours."""
    if _owner is None or parent != PARENT or limits != Limits() or list(rules) != _rules:
        return None
    try:
        ready = Cgroup.open(_owner)
    except (CgroupError, OSError):
        return None
    dirs = ready.dirs()
    claim = _claim_dir(dirs)
    if claim is None:
        return None
    try:
        os.rename(claim, claim.parent / cid)  # the claim
    except OSError:
        return None  # another start took it, or the server is still making it
    try:
        _move([d for d in dirs if d != claim], cid)
        return Cgroup.open(cid, parent=parent)
    except (OSError, CgroupError):
        remove(cid)
        return None


def release() -> None:
    """In the fork server as it stops: its ready cgroup goes."""
    if _owner is not None and _owner == name():
        remove(_owner)


def orphans() -> list[str]:
    """Ready cgroups whose server is gone (killed outright), or one it was making."""
    out = []
    for cid in list_lamina_cgroups():
        for prefix in (PREFIX, MAKING):
            stamp = cid.removeprefix(prefix)
            if cid.startswith(prefix) and _STAMP.match(stamp) and not proc.stamp_alive(stamp):
                out.append(cid)
    return out


_STAMP = re.compile(r"^\d+\.\d+$")


def stamp_of(name: str) -> str:
    """The stamp (pid.starttime) of the server a ready set's name names."""
    return name.removeprefix(PREFIX).removeprefix(MAKING)


def sweep() -> None:
    """Remove every orphan (a fork server does as it starts)."""
    with contextlib.suppress(CgroupError, OSError):
        for cid in orphans():
            remove(cid)


def _claim_dir(dirs: list[Path]) -> Path | None:
    return next((d for d in dirs if d.parent.parent.name == CLAIM), None)


def _move(dirs: list[Path], to: str) -> None:
    """Rename each of these cgroup directories to `to`, in this order."""
    for old in dirs:
        new = old.parent / to
        try:
            os.rename(old, new)
        except PermissionError:  # cgroup2 renames nothing: its controller-less dir anew
            new.mkdir()
            old.rmdir()


def remove(cid: str) -> None:
    """This set gone from every hierarchy, if it is there (an orphan's: `sweep`, and
    `system reconcile`'s repair of one, adapters/runtime/hostcheck.py)."""
    with contextlib.suppress(CgroupError, OSError):
        Cgroup.open(cid).remove()
