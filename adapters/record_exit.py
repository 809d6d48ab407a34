"""Recording a container's exit: what the monitor execs once the container's init ended,
and what an attached `run` or `start -a` does itself when it gets the exit code.

Whoever comes first records `ContainerExited` (under the runtime's per-container lock, see
Engine.exited); the other finds the container already stopped and records nothing.

`python -m adapters.record_exit ROOT CONTAINER_ID PID [--remove]`. Beside the composition
root rather than in adapters/runtime: it builds an engine (bootstrap.build_engine), which
wires the runtime, so the runtime names it to exec and never imports it.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

from core.errors import LaminaError


def record_exit(engine: Any, container_id: str, pid: int) -> Any:
    """Record the exit the monitor wrote down for `pid`, if nobody recorded it yet.

    Through the Runtime port: its last_exit is the monitor's record for the recorded pid,
    so a container recorded with another pid (restarted) or gone (removed) has nothing
    here to record, as Engine.exited(pid=...) would find too."""
    c = engine.log.container(container_id)
    if c is None or c.pid != pid:
        return None
    code = engine.runtime.last_exit(c)
    if code is None:
        return None
    oom = engine.runtime.oom_killed(c)
    with contextlib.suppress(LaminaError):  # removed or restarted meanwhile
        return engine.exited(container_id, code, oom=oom, pid=pid,
                             reason="out of memory" if oom else "")
    return None


def remove_ended(engine: Any, container_id: str) -> None:
    """--rm of a container nobody attached: gone once its end is recorded (stop, kill or
    this monitor recorded it). Not while it runs again (a start meanwhile)."""
    c = engine.log.container(container_id)
    if c is not None and c.state == "stopped":
        engine.rm(container_id, force=True, volumes=True)  # docker's --rm: and its
        # anonymous volumes


def main(argv: list[str]) -> int:
    from adapters.bootstrap import build_engine

    root, container_id, pid = argv[0], argv[1], int(argv[2])
    with contextlib.suppress(Exception):  # reconciliation catches what this misses
        engine = build_engine(root, monitor=True)
        record_exit(engine, container_id, pid)
        if "--remove" in argv[3:]:
            remove_ended(engine, container_id)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
