"""Process privileges: no_new_privs and Linux capabilities, applied just before exec.

Why both: dropping capabilities shrinks what root inside the container may do, and
no_new_privs stops a setuid binary (or file capabilities) from taking any of it back.
Order matters and mirrors runc: the bounding set is dropped first because PR_CAPBSET_DROP
itself needs CAP_SETPCAP, which the capset that follows may remove.
"""

from __future__ import annotations

from adapters.kernel import libc

# Linux capability numbers, from include/uapi/linux/capability.h.
CAPABILITIES: dict[str, int] = {
    "CHOWN": 0, "DAC_OVERRIDE": 1, "DAC_READ_SEARCH": 2, "FOWNER": 3, "FSETID": 4,
    "KILL": 5, "SETGID": 6, "SETUID": 7, "SETPCAP": 8, "LINUX_IMMUTABLE": 9,
    "NET_BIND_SERVICE": 10, "NET_BROADCAST": 11, "NET_ADMIN": 12, "NET_RAW": 13,
    "IPC_LOCK": 14, "IPC_OWNER": 15, "SYS_MODULE": 16, "SYS_RAWIO": 17, "SYS_CHROOT": 18,
    "SYS_PTRACE": 19, "SYS_PACCT": 20, "SYS_ADMIN": 21, "SYS_BOOT": 22, "SYS_NICE": 23,
    "SYS_RESOURCE": 24, "SYS_TIME": 25, "SYS_TTY_CONFIG": 26, "MKNOD": 27, "LEASE": 28,
    "AUDIT_WRITE": 29, "AUDIT_CONTROL": 30, "SETFCAP": 31, "MAC_OVERRIDE": 32,
    "MAC_ADMIN": 33, "SYSLOG": 34, "WAKE_ALARM": 35, "BLOCK_SUSPEND": 36, "AUDIT_READ": 37,
    "PERFMON": 38, "BPF": 39, "CHECKPOINT_RESTORE": 40,
}

# Docker's default set (moby oci/caps/defaults.go): enough for typical images that
# chown files, bind low ports or switch users, and nothing that reaches the host.
DEFAULT_CAPS: frozenset[str] = frozenset({
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
    "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
})


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
    """Reduce this thread to `keep` in the bounding, effective and permitted sets.

    Why each step: the bounding set is what root regains on exec, so it is the cut that
    survives into the container's process; effective/permitted cover the code still running
    before exec; ambient caps would otherwise pass through exec to non-root users. The
    inheritable set is emptied, as docker does since CVE-2022-24769: nothing legitimate
    needs it and it let file capabilities leak past the bounding set.
    Caps in `keep` that this process no longer holds are silently left out: a capability
    can only be dropped, never gained.
    """
    wanted = caps_mask(keep)
    for cap in range(last_cap() + 1):
        if not wanted & (1 << cap) and libc.prctl(libc.PR_CAPBSET_READ, cap):
            libc.prctl(libc.PR_CAPBSET_DROP, cap)
    libc.prctl(libc.PR_CAP_AMBIENT, libc.PR_CAP_AMBIENT_CLEAR_ALL)
    _effective, permitted, _inheritable = libc.capget()
    kept = wanted & permitted
    libc.capset(kept, kept, 0)
