"""Recording a container's exit: what the monitor execs once the container's init ended,
and what an attached `run` or `start -a` does itself when it gets the exit code.

Whoever comes first records `ContainerExited`, with the restart the container's policy
wants in the same append (under the runtime's per-container lock, see Engine.exited); the
other finds the container already stopped and records nothing.

`python -m adapters.record_exit ROOT CONTAINER_ID PID [--remove | --policy]`; with
`--policy` it then waits out the scheduled restart's back-off and makes it
(`follow_policy`). What fails is said in <root>/serve.log and exits 1 (`failed`). The same work
is done in the container's warm monitor (`in_monitor`), and in the root's fork server's
child when a lean monitor asks it (`for_monitor`: no interpreter started for it). Beside the
composition root rather than in adapters/runtime: it builds an engine
(bootstrap.build_engine), which wires the runtime, so the runtime names it to exec and
never imports it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Any

from core.errors import LaminaError


def record_exit(engine: Any, container_id: str, pid: int, release: bool = True) -> Any:
    """Record the exit the monitor wrote down for `pid`, if nobody recorded it yet: an
    attached client's try (`lamina run`, the API's attach), which leaves a failure to the
    container's monitor, whose recorder says it (after_exit).

    Through the Runtime port: its last_exit is the monitor's record for the recorded pid,
    so a container recorded with another pid (restarted) or gone (removed) has nothing
    here to record, as Engine.exited(pid=...) would find too. Without `release`, the
    caller's rm right after releases the run (Engine.exited)."""
    with contextlib.suppress(LaminaError):
        return _record(engine, container_id, pid, release)
    return None


def _record(engine: Any, container_id: str, pid: int, release: bool = True) -> Any:
    """record_exit's work; what fails is raised, but for a container removed meanwhile
    (nothing to record)."""
    from core.errors import NotFound

    c = engine.log.container(container_id)
    if c is None or c.pid != pid:
        return None
    code = engine.runtime.last_exit(c)
    if code is None:
        return None
    oom = engine.runtime.oom_killed(c)
    with contextlib.suppress(NotFound):
        return engine.exited(container_id, code, oom=oom, pid=pid,
                             reason="out of memory" if oom else "", release=release)
    return None


def wait_recorded(engine: Any, container_id: str, timeout: float = 10) -> None:
    """Until the log shows the container stopped (or gone): its monitor records the end
    before it sends the exit code, and a client that saw the code answers only after it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        c = engine.log.container(container_id)
        if c is None or c.state == "stopped":
            return
        time.sleep(0.01)


def remove_ended(engine: Any, container_id: str) -> None:
    """--rm of a container nobody attached: gone once its end is recorded (stop, kill or
    this monitor recorded it). Not while it runs again (a start meanwhile)."""
    c = engine.log.container(container_id)
    if c is not None and c.state == "stopped":
        engine.rm(container_id, force=True, volumes=True)  # docker's --rm: and its
        # anonymous volumes


def follow_policy(engine: Any, container_id: str, pid: int,
                  sleep: Any = time.sleep, poll: float = 0.5) -> Any:
    """The container's restart policy after the end of run `pid` (core/restart.py): the
    restart its end's record scheduled (ContainerRestartScheduled, in the same append as
    the end: Engine.exited), waited out for its back-off, then made.

    This process is the container's monitor while it waits (the same pid: `watched`), so a
    host start leaves the restart to it. The wait is cut short when the container moves (a
    user's start, stop, kill or rm): then nothing is restarted. Returns the container
    started again, or None. Its restart forks the next monitor: main() has already taken
    this process back to its own PID namespace (own_pid_namespace)."""
    scheduled = engine.schedule_restart(container_id, pid)
    if scheduled is None:
        return None
    deadline = time.monotonic() + scheduled.restart_delay
    while (left := deadline - time.monotonic()) > 0:
        sleep(min(left, poll))
        now = engine.log.container(container_id)
        if now is None or now.version != scheduled.version:
            return None
    with contextlib.suppress(LaminaError):  # refused and recorded (e.g. its image gone)
        return engine.restart_scheduled(container_id, scheduled.version)
    return None


def own_pid_namespace() -> None:
    """This process was the monitor, which unshared a PID namespace for its children: the
    ended run's, whose init is gone, so no child can be forked there any more (ENOMEM).
    The next run's monitor is forked from here: its children go back to our own one."""
    try:
        if os.stat("/proc/self/ns/pid_for_children").st_ino == os.stat("/proc/self/ns/pid").st_ino:
            return
    except OSError:
        return
    from adapters.kernel import libc

    fd = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        libc.setns(fd, libc.CLONE_NEWPID)
    finally:
        os.close(fd)


FAILED = 1  # the recorder's exit code (and for_monitor's answer) when its work failed
RECORD = "record its end"  # the first step, whose failure leaves the container "running"


def main(argv: list[str]) -> int:
    from adapters.bootstrap import build_engine

    root, container_id, pid = argv[0], argv[1], int(argv[2])
    with contextlib.suppress(OSError):  # first: a thread is a child of the namespace too
        own_pid_namespace()  # (the log's writers wait for their turn in one: writers.py)
    try:
        engine = build_engine(root, monitor=True)
    except Exception as err:  # noqa: BLE001 - said where an operator looks, answered 1
        return failed(root, container_id, pid, RECORD, err)
    return after_exit(engine, root, container_id, pid, argv[3:])


def after_exit(engine: Any, root: str, container_id: str, pid: int, flags: list[str]) -> int:
    """What the monitor has done once run `pid` ended: record it, then remove the
    container (`--remove`) or follow its restart policy (`--policy`). 0, or FAILED once
    what failed is said in the root's serve.log (`failed`): no retry here (the next lamina
    command records an end this missed: Engine.recover)."""
    step = RECORD
    try:
        _record(engine, container_id, pid)
        if "--remove" in flags:
            step = "remove it after its end"
            remove_ended(engine, container_id)
        elif "--policy" in flags:
            step = "follow its restart policy"
            follow_policy(engine, container_id, pid)
    except Exception as err:  # noqa: BLE001 - said where an operator looks, answered 1
        return failed(root, container_id, pid, step, err)
    return 0


def failed(root: str, container_id: str, pid: int, step: str, err: BaseException) -> int:
    """Say that the recorder could not do `step`, where lamina's background processes
    log: the root's serve.log (the fork server's, adapters/cli/served.py), else our stderr
    (a monitor's is /dev/null). Before, a failure was swallowed: the container looked
    running, with nothing saying why. FAILED."""
    from adapters.fastpath.client import SERVER_LOG

    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    note = " (the log shows it running until the next lamina command records its end)" \
        if step == RECORD else ""
    line = (f"{stamp} lamina exit recorder {os.getpid()}: could not {step}: container "
            f"{container_id[:12]}, process {pid}: {str(err) or type(err).__name__}{note}\n")
    try:
        fd = os.open(os.path.join(root, SERVER_LOG),
                     os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        sys.stderr.write(line)
        return FAILED
    try:
        os.write(fd, line.encode(errors="replace"))
    finally:
        os.close(fd)
    return FAILED


NOT_YOURS = 3  # for_monitor's answer to a request that is not the container's monitor's


def for_monitor(argv: list[str], peer: dict[str, int]) -> int:
    """main(argv) in the fork server's child, for the container's lean monitor that asks
    it instead of exec'ing this module (adapters/runtime/supervise.py _served, through
    app.Served.run): the same work, recorded as `lamina-monitor` with the monitor's pid
    (bootstrap.PEER, from the socket's peer credentials), as main() run in the monitor's
    own process writes it.

    Only the container's monitor may ask: the peer must be the process <cdir>/monitor
    names (pid and start time, written at the start by the monitor itself: monitor._note), which
    holds for no other process; anything else is NOT_YOURS, and the monitor that gets a
    non-zero answer execs this module as before. So does one whose request failed
    (FAILED, said in serve.log as main says it): one more try, by the recorder alone."""
    from adapters import bootstrap
    from adapters.bootstrap import build_engine
    from adapters.kernel import proc

    try:
        root, container_id, pid = argv[0], argv[1], int(argv[2])
        engine = build_engine(root, monitor=True)
        monitor = engine.runtime.monitor_stamp(container_id)
    except (IndexError, ValueError, LaminaError):
        return NOT_YOURS
    if monitor is None or monitor != proc.stamp(peer.get("pid", 0)):
        return NOT_YOURS
    bootstrap.PEER.clear()
    bootstrap.PEER.update(peer)
    return after_exit(engine, root, container_id, pid, argv[3:])


def in_monitor(argv: list[str]) -> int:
    """main() in the container's warm monitor (adapters/runtime/supervise.py _record), a
    fork of the command that started the container: first forget what that command was
    doing for its client, which a recorder exec'd afresh never had: the client's identity
    for the event meta (bootstrap.PEER: the exit is the monitor's, as `lamina-monitor`) and
    the deletions deferred to after its answer (adapters/deferred.py: the monitor's own
    would never run)."""
    from adapters import bootstrap, deferred

    bootstrap.PEER.clear()
    deferred.forget()
    return main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
