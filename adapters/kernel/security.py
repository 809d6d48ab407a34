"""Process privileges: no_new_privs and Linux capabilities, applied just before exec.

Why both: dropping capabilities shrinks what root inside the container may do, and
no_new_privs stops a setuid binary (or file capabilities) from taking any of it back.
Order matters and mirrors runc: the bounding set is dropped first because PR_CAPBSET_DROP
itself needs CAP_SETPCAP, which the capset that follows may remove.
"""

from __future__ import annotations

from adapters.kernel import libc
from core.security import CAPABILITIES, DEFAULT_CAPS


def set_no_new_privs() -> None:
    """Forbid exec from ever granting privileges (setuid bits, file caps); irreversible."""
    libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)


def caps_mask(names: set[str] | frozenset[str]) -> int:
    """Bit mask for capability names; accepts `CHOWN` or `cap_chown`, rejects typos."""
    mask = 0
    for name in names:
        key = name.upper().removeprefix("CAP_")
        if key not in CAPABILITIES:
            raise ValueError(f"unknown capability {name!r}")
        mask |= 1 << CAPABILITIES[key]
    return mask


def last_cap() -> int:
    """Highest capability this kernel knows; the bounding set has no bits above it."""
    with open("/proc/sys/kernel/cap_last_cap") as f:
        return int(f.read())


def drop_capabilities(keep: set[str] | frozenset[str] = DEFAULT_CAPS) -> None:
    """Reduce this thread to `keep` in the bounding, effective and permitted sets."""
    drop_bounding(keep)
    limit_to(keep)


def drop_bounding(keep: set[str] | frozenset[str]) -> None:
    """Cut the bounding set to `keep` and clear the ambient set.

    Why first and apart: the bounding set is what root regains on exec, so it is the cut that
    survives into the container's process, and dropping from it needs CAP_SETPCAP; the
    effective set is left whole so that changing user (CAP_SETUID/SETGID) still works after
    it, whatever `keep` says. Ambient caps would otherwise pass through exec to non-root
    users."""
    wanted = caps_mask(keep)
    for cap in range(last_cap() + 1):
        if not wanted & (1 << cap) and libc.prctl(libc.PR_CAPBSET_READ, cap):
            libc.prctl(libc.PR_CAPBSET_DROP, cap)
    libc.prctl(libc.PR_CAP_AMBIENT, libc.PR_CAP_AMBIENT_CLEAR_ALL)


def limit_to(keep: set[str] | frozenset[str]) -> None:
    """Effective and permitted become `keep` (what is still held of it); inheritable empty,
    as docker's since CVE-2022-24769: nothing legitimate needs it and it let file
    capabilities leak past the bounding set. A capability can only be dropped, never
    gained, so caps in `keep` this thread no longer holds are left out."""
    _effective, permitted, _inheritable = libc.capget()
    kept = caps_mask(keep) & permitted
    libc.capset(kept, kept, 0)
