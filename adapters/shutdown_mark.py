"""The root's "host shutting down" mark: `<root>/shutting-down`, holding the boot id
(/proc/sys/kernel/random/boot_id) of the boot whose shutdown wrote it.

Why: `system shutdown` stops every container as the host goes down, but a container that
ends by itself meanwhile has a monitor of its own that applies its restart policy; docker's
daemon refuses every restart once it is shutting down (IsShuttingDown). lamina is
daemonless, so the shutdown leaves this mark before its first stop and every restart policy
of the root (the monitors', the host start's) asks `current` first. A mark of an earlier
boot is stale: removed when read, so the next boot brings containers back as before.
"""

from __future__ import annotations

import contextlib
import os

NAME = "shutting-down"
BOOT_ID = "/proc/sys/kernel/random/boot_id"


def boot_id() -> str:
    with open(BOOT_ID) as f:
        return f.read().strip()


def write(root: str) -> None:
    """The mark of this boot, staged and renamed (a reader sees all of it or nothing)."""
    path = os.path.join(root, NAME)
    staged = f"{path}.{os.getpid()}"
    with open(staged, "w") as f:
        f.write(boot_id() + "\n")
    os.replace(staged, path)


def current(root: str) -> bool:
    """Whether this boot's shutdown marked the root; a mark of another boot is removed."""
    path = os.path.join(root, NAME)
    try:
        with open(path) as f:
            marked = f.read().strip()
    except FileNotFoundError:
        return False
    if marked == boot_id():
        return True
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return False
