"""A container's process: start, restart, stop, kill, pause, unpause, and its recorded exit.

Each move is judged and recorded while holding the container's guard (Runtime.ending), so a
stop and the monitor's exit record never both land; a start is recorded before the monitor
may record its end (Runtime.confirm_start)."""

from __future__ import annotations

import signal as _signal
from typing import Any

from core import restart as policies
from core import rootconfig, runopts
from core.command import Command
from core.engine import attaching
from core.engine.base import EngineBase
from core.engine.containers import ending, image_of, in_backoff, judge
from core.errors import Conflict
from core.model import Container, Image
from core.references import short
from core.signals import parse_signal
from events import types as ev


def start(e: EngineBase, ref: str) -> Container:
    with e.command("start", ref) as cmd:
        return cmd.retrying(lambda: _start(e, cmd, ref))


def _start(e: EngineBase, cmd: Command, ref: str) -> Container:
    with ending(e, ref, "start") as c:  # no reconcile takes the half-made start
        _launch(e, cmd, c, image_of(e, c), ev.ContainerStarted)
    e.runtime.confirm_start(c)
    return e.log.container(c.id) or c


def _launch(e: EngineBase, cmd: Command, c: Container, image: Image,
            event: type[ev.ContainerStarted] | type[ev.ContainerRestarted],
            **extra: Any) -> None:
    """Start the process, then record it; if the record fails, undo the start. The
    root's setting is judged again: a create that raced a `system configure` must not
    start with options the new setting refuses."""
    rootconfig.check_container(c.config, rootconfig.current(e.log))
    c = attaching.leased(e, c, image)
    started = e.runtime.start(c, image)
    try:
        cmd.append([event(id=c.id, pid=started.pid, cgroup=started.cgroup,
                          start_time=started.start_time, networks=c.endpoints,
                          ports=list(c.ports), **extra)],
                   {f"container:{c.id}": c.version})
    except BaseException:
        e.runtime.abort_start(c)
        raise


launch = _launch  # the restart policy's restarts too (core/engine/restarts.py)


def stop_plan(c: Container, image: Image | None, timeout: float | None
              ) -> tuple[float | None, int]:
    """(how long to wait, which signal): `stop -t`, else the container's --stop-timeout,
    else 10 s; its --stop-signal, else its image's STOPSIGNAL, else SIGTERM (docker's)."""
    cfg = (image.config.get("config") or {}) if image is not None else {}
    return runopts.stop_timeout(c.config, timeout), runopts.stop_signal(c.config, cfg)


def restart(e: EngineBase, ref: str, timeout: float | None = None) -> Container:
    with e.command("restart", ref) as cmd:
        with ending(e, ref, "restart") as c:
            image = image_of(e, c)
            attaching.leased(e, c, image)  # refused leases refuse before the process stops
            if c.state == "running":
                e.runtime.stop(c, *stop_plan(c, image, timeout))
                e.runtime.release(c)
            _launch(e, cmd, c, image, ev.ContainerRestarted)
        e.runtime.confirm_start(c)
        return e.log.container(c.id) or c


def stop(e: EngineBase, ref: str, timeout: float | None = None) -> Container:
    """The stop signal (SIGTERM unless --stop-signal or the image's STOPSIGNAL says), then
    SIGKILL after `timeout` seconds (--stop-timeout's, or 10, unless given) (seed: `docker
    stop`)."""
    with e.command("stop", ref) as cmd:
        with ending(e, ref, "stop", backoff=True) as c:
            if in_backoff(c):  # docker's stop of a restarting container
                return cancel_restart(e, cmd, c, "stopped")
            ended = e.runtime.stop(c, *stop_plan(c, e.log.image(c.image), timeout))
            cmd.append_locked(c, ev.ContainerStopped(
                id=c.id, signal=ended.signal, exit_code=ended.exit_code))
            e.runtime.release(c)  # under the lock: an export must not lose its view
        return e.log.container(c.id) or c


def kill(e: EngineBase, ref: str, sig: int | str = _signal.SIGKILL) -> Container:
    """Send a signal (SIGKILL by default; a name or number, docker's forms); the
    container stops if its process ends. A bad signal is refused and recorded."""
    with e.command("kill", ref) as cmd:
        sig = parse_signal(sig)
        with ending(e, ref, "signal", backoff=True) as c:
            if in_backoff(c):
                return cancel_restart(e, cmd, c, "killed")
            ended = e.runtime.signal(c, int(sig))
            if ended is None:
                event: ev.Event = ev.ContainerSignalled(id=c.id, signal=int(sig))
            else:
                judge(c, "kill")
                event = ev.ContainerKilled(id=c.id, signal=int(sig), exit_code=ended.exit_code)
            cmd.append_locked(c, event)
            if ended is not None:
                e.runtime.release(c)
        return e.log.container(c.id) or c


def pause(e: EngineBase, ref: str) -> Container:
    """Freeze every process of the container through the cgroup freezer; no signals."""
    with e.command("pause", ref) as cmd, ending(e, ref, "pause") as c:
        e.runtime.freeze(c)
        try:  # an exec recorded meanwhile moves the version: take the new one
            return cmd.append_locked(c, ev.ContainerPaused(id=c.id))
        except BaseException:
            e.runtime.thaw(c)  # not recorded: the host must not stay frozen
            raise


def unpause(e: EngineBase, ref: str) -> Container:
    with e.command("unpause", ref) as cmd, ending(e, ref, "unpause") as c:
        e.runtime.thaw(c)
        try:
            return cmd.append_locked(c, ev.ContainerUnpaused(id=c.id))
        except BaseException:
            e.runtime.freeze(c)  # not recorded: the host stays paused as the log says
            raise


def exited(e: EngineBase, ref: str, exit_code: int, oom: bool = False, reason: str = "",
           pid: int | None = None, release: bool = True) -> Container | None:
    """Record that the container's process ended by itself (the monitor's report), and
    with it the restart its policy wants (_record_end: one append).

    With `pid`, only that process's end is recorded: if the container was stopped or
    restarted meanwhile, there is nothing to record and None is returned. Without
    `release`, the run's cgroup and view stay for the caller's rm, which records the
    removal next and releases them (after its answer, where the caller defers).
    """
    with e.command("exit", ref) as cmd:
        if pid is not None and e.log.container(ref) is None:
            return None  # removed meanwhile (rm -f): nothing to record, nothing refused
        c = e.container(ref)
        with e.runtime.ending(c):
            now = e.log.container(c.id)
            if pid is not None and (now is None or now.pid != pid
                                    or now.state not in ("running", "paused")):
                return None
            c = now or c
            judge(c, "exit")
            if e.runtime.alive(c):
                raise Conflict(f"container {short(c.id)}'s process is still running")
            # an exec, export or commit record may move the version meanwhile (never the
            # state): a second try reads it again (Command.append_locked's rule)
            cmd.retrying(lambda: _record_end(e, cmd, e.log.container(c.id) or c, exit_code,
                                             oom, reason))
            if release:
                e.runtime.release(c)
        return e.log.container(c.id) or c


def _record_end(e: EngineBase, cmd: Command, c: Container, exit_code: int, oom: bool,
                reason: str) -> None:
    """The process's own end and, in the same append, what the container's policy makes
    of it (_after_end). One record, so there is no moment when the container is stopped
    with the restart its policy wants not recorded yet: a stop then could not tell it from
    a container stopped for good (cancel_restart judges from the log alone)."""
    judge(c, "exit")
    cmd.append([ev.ContainerExited(id=c.id, exit_code=exit_code, oom=oom, reason=reason),
                *_after_end(e, c, exit_code)], {f"container:{c.id}": c.version})


def _after_end(e: EngineBase, c: Container, exit_code: int) -> list[ev.Event]:
    """The restart `c`'s policy wants after its end (core/restart.py after_exit): scheduled
    after its back-off (the monitor waits it out: core/engine/restarts.py), or, once the
    host is shutting down, cancelled for it (docker's IsShuttingDown); none without one."""
    due = policies.after_exit(c, exit_code, e.clock())
    if due is None:
        return []
    if e.shutting_down():
        return [ev.ContainerRestartCancelled(id=c.id, reason=policies.SHUTTING_DOWN)]
    return [ev.ContainerRestartScheduled(id=c.id, delay=due.delay, count=due.count,
                                         reason=due.reason)]


def cancel_restart(e: EngineBase, cmd: Command, c: Container, by: str) -> Container:
    """A user's stop or kill of `c` in its back-off (in_backoff, read under its guard,
    which the caller holds): the restart won't happen, and the container counts as
    stopped by the user (docker's: a stop of a restarting container stops it). Judged
    from the log alone: an end is recorded with the restart its policy wants (exited), so
    a stopped container with none pending is stopped for good (its policy said no, its
    restart was cancelled for the host's shutdown or failed), and its stop is refused as
    "not running" by the judge as before."""
    cmd.append([ev.ContainerRestartCancelled(id=c.id, reason=f"{by} by the user",
                                             by_user=True)],
               {f"container:{c.id}": c.version})
    return e.log.container(c.id) or c
