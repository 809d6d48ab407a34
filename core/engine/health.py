"""The health process's record: a container's health status changed (core/health.py's
rules, applied by adapters/runtime/health.py).

Recorded under the container's lock (Runtime.ending), as an exit is, and only for the run it
was judged in: a container that stopped, was paused or started again since (another init
`pid`) gets nothing, and nothing is refused (a probe that raced the end is no one's error).
"""

from __future__ import annotations

from core.engine.base import EngineBase
from core.model import Container
from events import types as ev


def health_changed(e: EngineBase, ref: str, pid: int, status: str, failing_streak: int = 0,
                   exit_code: int = 0, output: str = "") -> Container | None:
    """Record ContainerHealthChanged for the run of init `pid`; None when that run is over."""
    with e.command("health", ref) as cmd:
        c = e.log.container(ref)
        if c is None:
            return None  # removed meanwhile
        with e.runtime.ending(c):
            now = e.log.container(c.id)
            if now is None or now.state != "running" or now.pid != pid:
                return None
            if now.health.get("status") == status:
                return now  # recorded already: a change is recorded once
            cmd.append_locked(now, ev.ContainerHealthChanged(
                id=now.id, status=status, pid=pid, failing_streak=failing_streak,
                exit_code=exit_code, output=output))
        return e.log.container(c.id) or now
