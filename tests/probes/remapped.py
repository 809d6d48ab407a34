"""What the probes must report in a container of a --userns-remap root, where that differs
from a plain root's (tests/probes/expected.py), each difference with its reason.

The container's root is then a subordinate uid of the host (adapters/remap.py): the host's
files (cgroup limits, /proc/sys) are another user's to it whatever its capabilities, no device
node can be made, and the kernel's per-user objects (keyrings) are that uid's, not host root's.
The default mode as root and as 65534, the --device run, and the keyring probes without the
seccomp filter (which otherwise hides the keyring from both kinds of root alike).
"""

from __future__ import annotations

from collections.abc import Mapping

from tests.probes import Line
from tests.probes.expected import BY_NAME, DEVICE_RUN, Cell, Outcome, allowed, blocked

CELLS: tuple[Cell, ...] = (("default", "root"), ("default", "65534"))
HOST_FILE = ("host root's file: its owner is not mapped, so the container's root has no say "
             "over it (EACCES, before the read-only mount is looked at)")

# probe -> {cell: (outcome, why)} where a remapped root's container differs.
DIFFERENCES: dict[str, dict[Cell, tuple[Outcome, str]]] = {
    "mknod_null": {("default", "root"): (blocked("mknod:EPERM"),
                                         "mknod is refused in a user namespace, even of an "
                                         "allowed device: /dev is binds of the host's nodes")},
    "cgroup_pids_write": {("default", "root"): (blocked("EACCES"), HOST_FILE)},
    "cgroup_memory_write": {("default", "root"): (blocked("EACCES"), HOST_FILE)},
    "proc_sys_write": {("default", "root"): (blocked("EACCES"), HOST_FILE)},
    "device_read": {DEVICE_RUN: (blocked("open:EACCES"),
                                 "the host's node is bound with its host owner and mode (root:"
                                 "disk 0660): the remapped root is neither (docker's "
                                 "userns-remap alike)")},
    "device_write": {DEVICE_RUN: (blocked("EACCES"), "as device_read, before the cgroup")},
}

# The keyring probes with --security-opt seccomp=unconfined: the kernel alone decides.
UNCONFINED = ("--security-opt", "seccomp=unconfined")
KEYRING: dict[str, tuple[Outcome, str]] = {
    "keyctl": (allowed("ok"), ""),
    "add_key": (allowed("ok"), ""),
    "key_session": (blocked("own session"), ""),
    "key_search": (blocked("ENOKEY"), "host root's user keyring is uid 0's: the container's "
                                      "root is another uid (a plain root's finds the key: "
                                      "the privileged cell)"),
    "key_request": (blocked("ENOKEY"), ""),
    "key_read_id": (blocked("EACCES"), "the key is host root's, possessed by nobody here"),
}


def expected(name: str, cell: Cell) -> Outcome:
    change = DIFFERENCES.get(name, {}).get(cell)
    return change[0] if change else BY_NAME[name].expected(cell)


def mismatches(cell: Cell, lines: Mapping[str, Line]) -> list[tuple[str, str, str]]:
    """(probe, expected, measured) for every probe of the cell that is not as it must be."""
    names = [n for n in BY_NAME if cell != DEVICE_RUN or n in ("device_read", "device_write")]
    out = []
    for name in names:
        want, line = expected(name, cell), lines.get(name)
        probe = BY_NAME[name]
        ok = line is not None and (want.matches(line) or (
            probe.absent and line.outcome == "blocked" and line.detail == probe.absent))
        if not ok:
            out.append((name, str(want), str(line) if line else "missing"))
    return out + [(n, "no such probe", str(x)) for n, x in lines.items() if n not in BY_NAME]


def keyring_mismatches(lines: Mapping[str, Line]) -> list[tuple[str, str, str]]:
    return [(name, str(want), str(lines.get(name) or "missing"))
            for name, (want, _) in KEYRING.items()
            if name not in lines or not want.matches(lines[name])]
