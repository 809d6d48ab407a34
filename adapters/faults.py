"""Fault injection: die by SIGKILL at a named step, to prove a crash there is recoverable.

`LAMINA_FAULT=<name>` arms one point per process; `point(name)` then kills the process, with
no chance to clean up, the first time execution reaches a point of that name (`<name>#N`:
the N-th time, for a command that passes it more than once). Unarmed (the
normal case), a point is one string comparison, and nothing is wrapped or imported at all:
adapters/bootstrap.build_engine imports this module only when the variable is set.

Where the points are, and why there: the core stays pure (no I/O, not even a kill), so the
points sit at the ports, where every step of a command passes anyway. `wrap(obj, "layers")`
puts `before:layers.<method>` and `after:layers.<method>` around each effectful method call
of a port (the event log, the layer store, the runtime, the volume store, the network
host: EFFECTS), which
gives a point between every two steps of every command, build and pull included, without a
line in the core. A few steps happen inside one port call; the adapters call
`self.fault(name)` there (a no-op unless armed): `store.staged` (a layer written under
<root>/tmp, not yet renamed into place), `volumes.staged` (a volume made under <root>/tmp,
not yet in place) and `volumes.hidden` (a removed volume moved out of sight, not yet
deleted). The full list is in docs/reliability.md. `LAMINA_FAULT_TRACE=<file>` lists the
points a command passes (the harness, tests/reliability/test_faults.py, asks each command
first, then kills it at each point in turn).
"""

from __future__ import annotations

import os
import signal
from typing import Any

ENV = "LAMINA_FAULT"
TRACE_ENV = "LAMINA_FAULT_TRACE"  # a file: every point passed is appended to it, one a line
_armed: str | None = None
_trace: str | None = None

# The port methods that change the disk, the processes or the log: a point before and after
# each. (Reads are left out: a crash around a read is the crash around the step before it.)
# Build and pull go through these too (install_layer, commit_rw_layer, mount, start, append);
# a new effectful port method is added here.
EFFECTS = frozenset({
    "append",
    "import_layer", "create_rw_layer", "commit_rw_layer", "remove_rw_layer", "remove_layer",
    "install_layer", "mount", "unmount", "export", "save_images", "open_archive",
    "start", "confirm_start", "abort_start", "signal", "stop", "freeze", "thaw", "release",
    "limit",  # update's new limits on a running container's cgroup
    "remove", "exec", "copy_out",
    "create",  # volumes and networks (and `remove`, above)
    "discard",  # networks: a leftover bridge removed by reconcile
    "archive_in",  # cp into a container (archive_out and path_stat only read)
})


_nth = 1  # `name#N` arms the N-th time a point of that name is reached (default: the 1st)
_seen = 0


def arm(name: str | None) -> None:
    """Arm `name` or `name#N` (None disarms): what the environment variable does, for a
    forked child (a monitor must not die of its client's fault point)."""
    global _armed, _nth, _seen
    name, _, nth = (name or "").partition("#")
    _armed, _nth, _seen = name or None, int(nth) if nth.isdigit() else 1, 0


def armed() -> str | None:
    return _armed


def point(name: str) -> None:
    """Die here, now, by SIGKILL, if `name` is the armed point."""
    if name == _armed:
        global _seen
        _seen += 1
        if _seen == _nth:
            os.kill(os.getpid(), signal.SIGKILL)
    if _trace is not None:
        with open(_trace, "a") as f:
            f.write(name + "\n")


class _Port:
    """A port with a fault point before and after each of its method calls."""

    def __init__(self, target: Any, port: str) -> None:
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_port", port)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if name not in EFFECTS or not callable(value):
            return value
        where = f"{self._port}.{name}"

        def call(*args: Any, **kwargs: Any) -> Any:
            point(f"before:{where}")
            result = value(*args, **kwargs)
            point(f"after:{where}")
            return result

        return call

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._target, name, value)


def wrap(target: Any, port: str) -> Any:
    """`target` with fault points around its methods, or itself when no point is armed."""
    return _Port(target, port) if _armed or _trace else target


def wire(log: Any, layers: Any, runtime: Any, *, monitor: bool) -> tuple[Any, Any, Any]:
    """Arm from the environment (read here, once per engine: a fork server's child gets its
    client's environment after this module was imported) and put the ports behind fault
    points. A monitor is never armed: it shares its client's environment, and the point is
    meant for the client."""
    global _trace
    arm(None if monitor else os.environ.get(ENV))
    _trace = None if monitor else os.environ.get(TRACE_ENV) or None
    if not _armed and not _trace:
        return log, layers, runtime
    layers.fault = point
    log, layers = wrap(log, "log"), wrap(layers, "layers")
    runtime.layers, runtime.log = layers, log
    return log, layers, wrap(runtime, "runtime")


def wire_volumes(volumes: Any) -> Any:
    """The volume store behind fault points too (after `wire` armed them, or not)."""
    if not _armed and not _trace:
        return volumes
    volumes.fault = point
    return wrap(volumes, "volumes")


def wire_networks(networks: Any) -> Any:
    """The network host behind fault points too (before/after its create and remove)."""
    return wrap(networks, "networks")
