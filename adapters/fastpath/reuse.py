"""Whether a fork server's child that ran a command is left as it was when it first
waited for a client: then it may wait for another instead of exiting.

Why: a served command costs ~15 ms of CPU outside the command itself, on 2 cores the
bound of a script's back-to-back commands: the server's fork of its ~45 MB image (~2 ms
of page tables), the child's copy-on-write faults of every page it writes (~1,400 for a
`version`), and its exit's unmapping of all of it (~3 ms). A child that served one command
owns its pages already and is still forked; serving the next costs none of that again.

The rule is the fork server's promise, kept: a command runs as it would in a fresh child.
The per-command state run_command sets (stdio, environment, directory, umask, session,
the handlers it names) is set again by the next command; what is put back here is the
environment, directory and umask the child had; everything else a command could leave
behind must be as it was, or the child exits as before:
- its descriptors (a leaked pipe end would keep a container's stdin from its EOF), its
  threads and its child processes;
- its signal handlers, signal mask and timers, its resource limits (adopted from each
  client: peer.adopt_limits), its scheduling (nice value, CPU affinity), its name, its
  namespaces, root directory and credentials (peer.view_of), its own session and process
  group (run_command made them) and no controlling terminal;
- and at most MAX_COMMANDS commands, so that what a command leaves in Python's heap
  (caches, fragments) stays bounded.
"""

from __future__ import annotations

import os
import resource
import signal
from dataclasses import dataclass

from adapters.fastpath.peer import LIMITS, View, view_of
from adapters.kernel import proc

MAX_COMMANDS = 100
SIGNALS = tuple(s for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP))
OWN_HANDLERS = (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGINT)


@dataclass(frozen=True)
class Baseline:
    """What a waiting child is: taken before its first client, compared after each."""

    fds: tuple[str, ...]
    handlers: tuple[object, ...]
    mask: frozenset[int]
    limits: tuple[tuple[int, int], ...]
    scheduling: tuple[object, ...]
    view: View | None
    env: tuple[tuple[str, str], ...]
    cwd: str
    umask: int


def baseline(listener: int) -> Baseline:
    """This child's state as it waits for its first client (its `listener`, which it
    closes once it has one, left out)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return Baseline(_fds(listener), _handlers(), _mask(), _limits(), _scheduling(),
                    view_of("self"),
                    tuple(os.environ.items()), os.getcwd(), mask)


def restore(base: Baseline) -> None:
    """Put back what every command sets for itself (forkserver.run_command): the
    environment, directory, umask and the handlers of SIGTERM, SIGHUP, SIGCHLD, SIGINT."""
    proc.take_environment(dict(base.env))
    os.chdir(base.cwd)
    os.umask(base.umask)
    for sig in OWN_HANDLERS:
        handler = base.handlers[SIGNALS.index(sig)]
        if handler is not None:  # None: not set from Python (never one of these four)
            signal.signal(sig, handler)  # type: ignore[arg-type]


def changed(base: Baseline, commands: int) -> str | None:
    """What makes this child unfit for another command (None: nothing), once its command
    is over and its stdio, connection and listener are closed."""
    if commands >= MAX_COMMANDS:
        return f"served {commands} commands"
    if _fds() != base.fds:
        return "its descriptors changed"
    if len(os.listdir("/proc/self/task")) != 1:
        return "it has a thread"
    if _has_children():
        return "it has a child process"
    if _handlers() != base.handlers or _mask() != base.mask or _timers():
        return "its signal handling changed"
    if _limits() != base.limits:
        return "its resource limits changed"
    if _scheduling() != base.scheduling:
        return "its scheduling or name changed"
    if not os.getsid(0) == os.getpgrp() == os.getpid():
        return "its session or process group changed"
    if _controlling_terminal() or view_of("self") != base.view:
        return "its namespaces, root, credentials or terminal changed"
    return None


def _fds(skip: int = -1) -> tuple[str, ...]:
    """What the open descriptors are (their targets, sorted), not their numbers: the
    root's event log, prepared again for the next command, may come back on others."""
    targets = []
    for name in os.listdir("/proc/self/fd"):  # one of them is listdir's own, gone again
        if name in ("0", "1", "2", str(skip)):  # stdio: each command's own (run_command)
            continue
        try:
            targets.append(os.readlink(f"/proc/self/fd/{name}"))
        except OSError:
            continue
    return tuple(sorted(targets))


def _handlers() -> tuple[object, ...]:
    return tuple(signal.getsignal(s) for s in SIGNALS)


def _mask() -> frozenset[int]:
    return frozenset(signal.pthread_sigmask(signal.SIG_BLOCK, []))


def _timers() -> bool:
    """Whether an alarm or interval timer is set (it would go off in the next command)."""
    return any(signal.getitimer(which) != (0.0, 0.0)
               for which in (signal.ITIMER_REAL, signal.ITIMER_VIRTUAL, signal.ITIMER_PROF))


def _scheduling() -> tuple[object, ...]:
    with open("/proc/self/comm") as f:
        name = f.read()
    return (os.getpriority(os.PRIO_PROCESS, 0), frozenset(os.sched_getaffinity(0)), name)


def _limits() -> tuple[tuple[int, int], ...]:
    return tuple(resource.getrlimit(which) for which in LIMITS)


def _has_children() -> bool:
    """Any child, running or ended and not yet reaped."""
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def _controlling_terminal() -> bool:
    with open("/proc/self/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[4] != "0"  # tty_nr
