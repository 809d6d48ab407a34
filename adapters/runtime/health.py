"""The health process: one small process per running container with a healthcheck, which
probes it on docker's schedule and has each change of status recorded.

Daemonless, as the monitor is: LinuxRuntime.start spawns it once the monitor reported the
start (`spawn`: two forks, detached, then a lean `python -S` interpreter, ~19 MB, that
imports only the exec path and core/health.py). It holds the container's init by a pidfd
and ends with it: a stop, a kill, an exit, an rm or an aborted start all end the init, and
the process exits at its next wake-up or during the probe it was running, with nothing
recorded for a run that is over.

Each probe is an exec through the very path of `lamina exec` (adapters/runtime/exec.py
run_exec: the init's namespaces joined with one setns(pidfd), its cgroup, the container's
user, capabilities and seccomp filter), its stdout and stderr read here into one buffer
(4096 bytes kept). A probe still running at its timeout is killed (its session, as E made
one, then the joiner and our child) and is a failure. No probe runs while the container is
paused (docker stops probing too), nor before its start is in the log.

What is recorded where, and why:
- each change of status is an event, ContainerHealthChanged on the container's stream
  (docker's `health_status: ...`), with the probe's exit code and output: recorded through
  the engine (Engine.health_changed, under the container's lock, for this run only) by a
  short-lived full interpreter this process forks (`python -m adapters.record_health`),
  so that the long-lived one stays lean;
- each probe's result is not: at docker's default of one probe every 30 s a container
  would add ~2,900 events a day to an append-only log, each saying "still healthy". The
  failing streak and the last 5 results live in `<root>/containers/<id>/health.json`
  (written whole, then renamed), as docker keeps them in its memory only; inspect reads
  them there, and they go with the container's directory.
"""

from __future__ import annotations

import json
import os
import pickle
import select
import signal
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core import health

FILE = "health.json"
JOB = "health.job"
TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclass
class HealthJob:
    """What the health process needs, decided by the start (pickled into the container's
    directory: the exec target, the container's process spec and seccomp program, the
    healthcheck and the probe's argv)."""

    root: str
    container_dir: str
    target: Any  # adapters.runtime.exec.ExecTarget
    spec: Any  # core.process.ProcessSpec
    seccomp: bytes | None
    healthcheck: dict[str, Any]
    argv: list[str]
    started: float  # time.time() of the start (docker's State.StartedAt)


def spawn(job: HealthJob) -> None:
    """Start the health process for `job`'s container, detached (two forks: it is nobody's
    child to reap), and return at once."""
    path = os.path.join(job.container_dir, JOB)
    with open(path + ".tmp", "wb") as f:
        pickle.dump(job, f)
    os.replace(path + ".tmp", path)
    child = os.fork()
    if child:
        os.waitpid(child, 0)
        return
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
        _detach()
        boot = (f"import sys; sys.path.insert(0, {TOP!r}); "
                "from adapters.runtime.health import main; main(sys.argv[1])")
        os.execv(sys.executable, [sys.executable, "-S", "-c", boot, path])
    finally:
        os._exit(1)


def _detach() -> None:
    """Our stdio on /dev/null, every other descriptor closed (the starter's sockets, its
    log, its client's terminal must not live on in here)."""
    devnull = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            try:  # noqa: SIM105 - contextlib costs an import here
                os.close(fd)
            except OSError:
                pass
    os.chdir("/")


def read(container_dir: str) -> dict[str, Any] | None:
    """The health process's file: {pid, status, failing_streak, log}."""
    try:
        with open(os.path.join(container_dir, FILE)) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write(container_dir: str, pid: int, h: health.Health) -> None:
    path = os.path.join(container_dir, FILE)
    try:
        with open(path + ".tmp", "w") as f:
            json.dump({"pid": pid, "status": h.status, "failing_streak": h.failing_streak,
                       "log": list(h.log)}, f)
        os.replace(path + ".tmp", path)
    except OSError:
        pass  # rm took the directory: the init is going, and so are we


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


# --- the process --------------------------------------------------------------------------------


def main(path: str) -> None:
    code = 1
    try:
        with open(path, "rb") as f:
            job = pickle.load(f)  # noqa: S301 - written by the start, in a 0700 root
        os.unlink(path)
        code = run(job)
    finally:
        os._exit(code)


def run(job: HealthJob) -> int:
    """Probe until the container's init ends; 0 then."""
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    target = job.target
    try:
        init = os.pidfd_open(target.pid)
    except OSError:
        return 0
    from adapters.kernel.proc import is_init_of

    if not is_init_of(target.pid, target.start_time, target.container_id):
        return 0
    old = read(job.container_dir) or {}
    h = health.restarted(health.Health(log=tuple(old.get("log") or ())))
    _write(job.container_dir, target.pid, h)
    t = health.timing(job.healthcheck)
    recorded = False  # the log showed this run
    while True:
        wait = health.next_wait(t, h.status, time.time() - job.started)
        if select.select([init], [], [], wait)[0]:
            return 0
        state = _state(job)
        if state is None:
            return 0  # removed
        if not state[0]:
            continue  # the log was busy: ask again next time
        if state[1] != target.pid or state[0] not in ("running", "paused"):
            if recorded:
                return 0  # ended, or another run: its own health process probes it
            continue  # the start not recorded yet (or aborted: the init goes soon)
        recorded = True
        if state[0] == "paused":
            continue
        result = _probe(job, t, init)
        if result is None:
            return 0  # the init ended during the probe
        before = h.status
        start = datetime.fromisoformat(result["Start"].replace("Z", "+00:00")).timestamp()
        h = health.judge(h, result, t, start - job.started)
        _write(job.container_dir, target.pid, h)
        if h.status != before:
            _record(job, h, result)


def _state(job: HealthJob) -> tuple[str, int] | None:
    """The container's state and pid in the log's read model (read-only, as the monitor
    reads it); None when it is gone."""
    from adapters.eventstore.peek import Unreadable, container_row
    from core.errors import LaminaError

    try:  # wherever the root's log lives (adapters/eventstore/where.py)
        row = container_row(job.root, job.target.container_id)
    except (Unreadable, LaminaError, OSError):
        return ("", -1)  # busy or unreadable: ask again next time
    if row is None:
        return None
    return row[0], int(json.loads(row[1]).get("pid") or 0)


def _probe(job: HealthJob, t: health.Timing, init: int) -> dict[str, Any] | None:
    """One exec of the probe: {Start, End, ExitCode, Output}; None if the init ended."""
    start = _now()
    out_r, out_w = os.pipe()
    child = os.fork()
    if child == 0:
        _prober(job, out_r, out_w)
    os.close(out_w)
    done = os.pidfd_open(child)
    deadline = time.monotonic() + t.timeout
    output = bytearray()
    code: int | None = None
    reading = True
    try:
        while code is None:
            left = deadline - time.monotonic()
            if left <= 0:
                _kill_probe(child)
                os.waitpid(child, 0)
                return {"Start": start, "End": _now(), "ExitCode": -1,
                        "Output": health.timed_out(t, bytes(output))}
            ready = select.select([done, init, *([out_r] if reading else [])], [], [],
                                  left)[0]
            if out_r in ready:
                reading = _take(out_r, output)
            if done in ready:
                _, status = os.waitpid(child, 0)
                code = os.waitstatus_to_exitcode(status)
            elif init in ready:
                _kill_probe(child)
                os.waitpid(child, 0)
                return None
        # what the probe wrote last; a descendant that kept the pipe open is not waited for
        until = time.monotonic() + 0.2
        while reading and (left := until - time.monotonic()) > 0 \
                and select.select([out_r], [], [], left)[0]:
            reading = _take(out_r, output)
    finally:
        os.close(done)
        os.close(out_r)
    return {"Start": start, "End": _now(), "ExitCode": code,
            "Output": health.output_text(bytes(output))}


def _take(fd: int, output: bytearray) -> bool:
    """Read what is there into `output` (up to one byte past docker's 4096, so that the
    cut shows); False at EOF."""
    data = os.read(fd, 65536)
    if len(output) <= health.MAX_OUTPUT:
        output += data[:health.MAX_OUTPUT + 1 - len(output)]
    return bool(data)


def _prober(job: HealthJob, out_r: int, out_w: int) -> None:
    """Our child: the exec's P, its stdout and stderr the pipe we read. Never returns."""
    code = 126
    try:
        os.close(out_r)
        os.dup2(out_w, 1)
        os.dup2(out_w, 2)
        os.close(out_w)
        from adapters.runtime.exec import run_exec

        code = run_exec(job.target, job.spec, job.argv, "", {}, job.seccomp)
    except BaseException as err:  # noqa: BLE001 - said on the output, a failed probe
        try:  # noqa: SIM105
            os.write(2, f"lamina: health probe: {err}\n".encode())
        except OSError:
            pass
    finally:
        os._exit(code & 0xFF if code >= 0 else 126)


def _kill_probe(child: int) -> None:
    """The probe and everything it started: E's session (E made one: its host pid is its
    group's), which its joiner J then reaps; J and our child P too if they linger."""
    joiners = _children(child)
    for j in joiners:
        for e in _children(j):
            for kill, target in ((os.killpg, e), (os.kill, e)):
                try:  # noqa: SIM105 - contextlib costs an import here
                    kill(target, signal.SIGKILL)
                except OSError:
                    pass
    try:
        done = os.pidfd_open(child)
    except OSError:
        return
    try:
        if select.select([done], [], [], 1)[0]:
            return
    finally:
        os.close(done)
    for pid in (*joiners, child):
        try:  # noqa: SIM105
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(p) for p in f.read().split()]
    except OSError:
        pass
    return out


def _record(job: HealthJob, h: health.Health, result: dict[str, Any]) -> None:
    """Have the change recorded (Engine.health_changed) by a full interpreter, and wait for
    it: changes are recorded in the order they happened."""
    data = json.dumps({"root": job.root, "id": job.target.container_id,
                       "pid": job.target.pid, "status": h.status,
                       "failing_streak": h.failing_streak,
                       "exit_code": result["ExitCode"], "output": result["Output"]})
    child = os.fork()
    if child == 0:
        try:
            os.chdir(TOP)
            os.execv(sys.executable, [sys.executable, "-m", "adapters.record_health", data])
        finally:
            os._exit(1)
    os.waitpid(child, 0)
