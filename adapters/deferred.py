"""Work a command may finish after its caller has its answer: the deletion of what it has
already renamed out of sight (a removed container's read-write layer and runtime files),
and a removal's clearing of the host (core/engine/containers.py `_cleared`: the run's
cgroups and view, then those renames) when `run --rm` hands this module's later() to the
engine (EngineBase.later); a plain rm clears before its answer, as it always did.

Why: a `run --rm` spends ~10 ms of its wall time deleting the read-write layer it renamed
into <root>/tmp (rmdir on ext4 and overlay's work directories), after the container is
removed in the log and from view. A fork server's child answers its client first, lets go
of the client's stdio (a pipeline must not wait on it), then deletes: Served.run enables
this (enable), adapters/fastpath/forkserver.py runs the work (run_pending) once the exit
code is sent. Everywhere else (a command in-process, the Docker API's workers, the exit
recorder) later() does the work at once: an in-process command would have to fork to
defer, and its renamed directory carries its own pid and start time, which reconcile
would take for a leftover once it exits. A deletion cut short (its process killed) leaves
the renamed directory under <root>/tmp, stamped with the process's pid and start time
(adapters/kernel/proc.py stamp): reconcile removes it once that process is gone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

_pending: list[Callable[[], None]] | None = None


def enable() -> None:
    """From now on, this process's later() work waits for run_pending()."""
    global _pending
    if _pending is None:
        _pending = []


def forget() -> None:
    """Drop the deferred work this process inherited and do the next at once (a monitor
    forked from a command that defers: the command runs its own work, the monitor none)."""
    global _pending
    _pending = None


def later(work: Callable[[], None]) -> None:
    """Do `work` after the answer when this process defers, else now."""
    if _pending is None:
        work()
    else:
        _pending.append(work)


def run_pending() -> None:
    """Do the deferred work, in order; a failure of one is not the others'."""
    while _pending:
        work = _pending.pop(0)
        with contextlib.suppress(Exception):
            work()
