"""Session keyrings: each container process starts in a keyring of its own.

Why: the kernel's keyrings are per user, not per mount or PID namespace, so a process that
inherits its caller's session keyring (or reaches uid 0's user keyring) could read the
host's keys. Joining a fresh anonymous session keyring before exec cuts the inherited one;
the seccomp profile then denies keyctl/add_key/request_key, so the user keyring that root
inside still shares with root outside can't be searched either (docker relies on the same
pair; user-namespace remapping removes the sharing itself).
"""

from __future__ import annotations

import ctypes

from adapters.kernel import libc

SYS_KEYCTL = 250  # x86_64
KEYCTL_JOIN_SESSION_KEYRING = 1


def join_new_session(name: str | None = None) -> int:
    """Join a new session keyring (named `name`, or anonymous); returns its serial."""
    raw = name.encode() if name is not None else None
    return libc.check(libc.syscall(SYS_KEYCTL, KEYCTL_JOIN_SESSION_KEYRING,
                                   ctypes.c_char_p(raw)), "keyctl(JOIN_SESSION_KEYRING)")
