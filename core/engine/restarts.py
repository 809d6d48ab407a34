"""Restart policies applied: after a run's end (its monitor waits the back-off), when the
host starts (`lamina serve`, the first command after a reboot), and a user's stop during the
back-off.

The rules are core/restart.py's; here they meet the log. The restart a run's end wants is
recorded with the end, in the same append (core/engine/processes.py exited:
ContainerRestartScheduled, the container stays stopped, docker's "restarting"; or, while
the host shuts down, ContainerRestartCancelled), and made after the back-off only if
nothing happened to the container since (the version read then): a user's start, stop,
kill or rm meanwhile wins.
"""

from __future__ import annotations

from contextlib import suppress

from core import restart
from core.command import Command
from core.engine.base import EngineBase
from core.engine.containers import image_of, judge
from core.errors import LaminaError, NotFound
from core.model import Container
from events import types as ev

COMMAND = "restart policy"  # the meta's command of what the policy records


def _find(e: EngineBase, ref: str) -> Container | None:
    try:
        return e.container(ref)
    except NotFound:  # removed meanwhile
        return None


def schedule(e: EngineBase, ref: str, pid: int) -> Container | None:
    """After the run of init `pid` ended and its end is recorded (by whoever came first):
    the restart that record scheduled, while it is still pending (the container as it
    stands: its version is what restart_scheduled compares). None when there is none: no
    policy or one that says no, the user stopped it, the host is shutting down, another
    run since, or the restart made or cancelled already. Nothing is appended here: an end
    and the restart it wants are one record (processes.exited), so a restart is never
    scheduled after the fact (a stop or a shutdown between the two would be overridden)."""
    c = _find(e, ref)
    if c is None or c.state != "stopped" or c.ended_pid != pid or not c.restarting:
        return None
    return c


def restart_scheduled(e: EngineBase, ref: str, version: int) -> Container | None:
    """The back-off is over: start the container again, if it is still as scheduled (the
    same version: nothing happened since). None when something did."""
    c = _find(e, ref)
    if c is None or c.version != version or not c.restarting:
        return None
    due = restart.decision(c)  # as scheduled: the same end, count and policy
    if due is None:
        return None
    return _restart(e, c, version, due.reason, due.count, c.restart_delay)


def _restart(e: EngineBase, c: Container, version: int, reason: str, count: int,
             delay: float) -> Container | None:
    from core.engine.processes import launch

    with e.command(COMMAND, c.id) as cmd:
        started = False
        with e.runtime.ending(c):
            now = e.log.container(c.id)
            if now is None or now.version != version:
                return None
            if e.shutting_down():  # the back-off ended after the host's shutdown began
                cancel_due(cmd, now, restart.SHUTTING_DOWN)
                return None
            judge(now, "restart")
            try:
                launch(e, cmd, now, image_of(e, now), ev.ContainerRestarted,
                        automatic=True, reason=reason, count=count, delay=delay)
                started = True
            except LaminaError as err:
                _cancel_failed(e, cmd, now, err)
                raise
        if started:
            e.runtime.confirm_start(now)
            e.runtime.detach(now.id)  # its new monitor records its end (and restarts it)
        return e.log.container(c.id)


def _cancel_failed(e: EngineBase, cmd: Command, c: Container, err: LaminaError) -> None:
    """A restart that failed leaves the container stopped, no longer restarting (docker
    sets it stopped too)."""
    now = e.log.container(c.id)
    if now is not None:
        with suppress(LaminaError):
            cancel_due(cmd, now, f"restart failed: {err}")


def cancel_due(cmd: Command, c: Container, reason: str) -> None:
    """A restart due (in its back-off) that won't be made, recorded with why (not the
    user's doing: theirs is processes.cancel_restart)."""
    if c.restarting:
        cmd.append([ev.ContainerRestartCancelled(id=c.id, reason=reason)],
                   {f"container:{c.id}": c.version})


def bring_back(e: EngineBase, why: str, only: set[str] | None = None) -> list[str]:
    """The host started (`lamina serve`, or a reboot found by the first command): start the
    stopped containers their policy brings back (core/restart.py at_host_start), at once,
    as docker's daemon does at its start (RestartCount starts over). `only`: these ids
    (those whose process the host lost). A container whose scheduled restart still has its
    monitor waiting is left to it. The ids started again."""
    back = []
    for c in e.log.containers(("stopped",)):
        if only is not None and c.id not in only:
            continue
        p = restart.of(c.config)
        if p.name == restart.NO or not restart.at_host_start(
                p, c.exit_code, c.manually_stopped, c.restart_count, c.restarting):
            continue
        if c.restarting and e.runtime.watched(c):
            continue  # its monitor waits out the back-off and restarts it
        try:
            if _restart(e, c, c.version, f"{p.text()}: {why}", 0, 0.0) is not None:
                back.append(c.id)
        except LaminaError:
            continue  # recorded as refused; the others still come back
    return back
