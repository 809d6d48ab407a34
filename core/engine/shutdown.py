"""The host's shutdown (`lamina system shutdown`, run by lamina-shutdown.service's ExecStop):
every running or paused container stopped at once, each as `stop` stops it (its stop
signal, then SIGKILL after its stop timeout), recorded as the host's stop and not a user's.

Why: lamina is daemonless, so a stop or restart of lamina.service leaves containers running
(KillMode=process); without this, a container's init that ignores SIGTERM held the machine's
shutdown until systemd's final SIGKILL (90 s). docker's daemon shutdown does the same: each
container within its own stop timeout, none counted as "manually stopped" (an
`unless-stopped` one comes back at the next start, one its user stopped doesn't), and no
restart policy fires while the host goes down (ContainerStopped.shutdown; a restart due is
cancelled, not by the user). The caller marks the host as shutting down first
(EngineBase.shutting_down: an end recorded from then on has its restart cancelled in the
same append, core/engine/processes.py exited, and core/engine/restarts.py restarts
nothing); a container its policy restarted before the mark was seen is stopped by a next
pass.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass

from core.command import Command
from core.engine.base import EngineBase
from core.engine.containers import ending
from core.engine.processes import stop_plan
from core.engine.restarts import cancel_due
from core.errors import Conflict, LaminaError
from core.model import Container
from core.ports import Ended
from core.references import short
from core.restart import SHUTTING_DOWN
from events import types as ev

COMMAND = "system shutdown"
PASSES = 3  # a pass stops what a restart policy started during the one before, if any


@dataclass
class _Stopping:
    """A container whose stop is under way: its command and lock held (`held`) until its
    end is recorded."""

    c: Container
    cmd: Command
    held: ExitStack
    ended: Future[Ended] | None = None


def shutdown(e: EngineBase) -> dict[str, str]:
    """Stop every running and paused container, in parallel, and cancel every restart due.
    What happened to each, by container id: `stopped (signal N, exit code M)`, `restart
    cancelled`, or the refusal (also recorded as CommandRejected; not tried again)."""
    done: dict[str, str] = {}
    for _ in range(PASSES):
        refused = {cid for cid, outcome in done.items() if outcome.startswith("refused")}
        live = [c for c in e.log.containers(("running", "paused")) if c.id not in refused]
        due = [c for c in e.log.containers(("stopped",))
               if c.restarting and c.id not in refused]
        if not live and not due:
            break
        for c in due:
            done[c.id] = _cancel(e, c)
        done.update(_stop_all(e, live))
    return done


def _cancel(e: EngineBase, c: Container) -> str:
    """A restart in its back-off won't happen now; the host's next start judges it again."""
    try:
        with e.command(COMMAND, c.id) as cmd, e.runtime.ending(c):
            now = e.log.container(c.id)
            if now is None or not now.restarting:
                return "restart no longer due"
            cancel_due(cmd, now, SHUTTING_DOWN)
        return "restart cancelled"
    except LaminaError as err:
        return f"refused: {err}"


def _stop_all(e: EngineBase, live: list[Container]) -> dict[str, str]:
    """Each container's stop signal sent and waited for in a thread of its own (the waits
    overlap, so the longest stop timeout is the whole wait); judged and recorded here."""
    out: dict[str, str] = {}
    stopping = []
    for c in live:
        try:
            stopping.append(_begin(e, c))
        except LaminaError as err:
            out[c.id] = f"refused: {err}"
    with ThreadPoolExecutor(max_workers=max(len(stopping), 1)) as pool:
        for s in stopping:
            s.ended = pool.submit(e.runtime.stop, s.c,
                                  *stop_plan(s.c, e.log.image(s.c.image), None))
        for s in stopping:
            try:
                out[s.c.id] = _record(e, s)
            except LaminaError as err:
                out[s.c.id] = f"refused: {err}"
    return out


def _begin(e: EngineBase, c: Container) -> _Stopping:
    """The container's command opened and its lock taken, the stop judged (a refusal is
    recorded by the command as it leaves)."""
    with ExitStack() as held:
        cmd = held.enter_context(e.command(COMMAND, c.id))
        now = held.enter_context(ending(e, c.id, "stop"))
        return _Stopping(now, cmd, held.pop_all())


def _record(e: EngineBase, s: _Stopping) -> str:
    with s.held:  # the lock released, the command closed: it records a refusal
        assert s.ended is not None
        try:
            ended = s.ended.result()
        except LaminaError:
            raise
        except Exception as err:  # the host's failure: this one refused, the others stop on
            raise Conflict(f"could not stop container {short(s.c.id)}: {err}") from err
        s.cmd.append_locked(s.c, ev.ContainerStopped(
            id=s.c.id, signal=ended.signal, exit_code=ended.exit_code, shutdown=True))
        e.runtime.release(s.c)
    return f"stopped (signal {ended.signal}, exit code {ended.exit_code})"

