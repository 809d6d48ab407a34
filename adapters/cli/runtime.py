"""CLI commands for running containers: run, start, stop, kill, pause, unpause, exec, logs,
restart, attach, top (and the work of `system check|reconcile|configure`, which
adapters/cli/system.py registers)."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from adapters.cli.common import for_each
from core.errors import BadInput, LaminaError

COMMANDS = ("run", "start", "stop", "restart", "kill", "pause", "unpause", "exec", "logs",
            "attach", "top")  # wait, stats, system: adapters/cli/system.py


def _engine(args: argparse.Namespace) -> Any:
    from adapters.cli.common import engine

    return engine(args)


def _attached(e: Any, cid: str, interactive: bool, tty: bool,
              detach_keys: str | None = None,
              remove: Callable[[], None] | None = None) -> int:
    """Stream a started container's output until it exits; forward our signals to it.
    With -it, the detach keys let go of it (docker's ctrl-p ctrl-q): it runs on.
    `remove` (--rm) runs once the exit is recorded, before we hang up on the monitor (it
    then finds the container gone: nothing to check, no lock to take from the removal);
    its record's fsync is the exit's too (SqliteEventLog.sync_deferred; the caller flushes
    the log if nothing was removed), and it releases the run's cgroup and view, which the
    exit's record leaves to it (after the answer in a served command: cmd_run hands the
    engine adapters/deferred.py's later)."""
    from adapters.runtime import frames
    from adapters.runtime.terminal import Detached, let_go, pump_attach
    from core.logfilter import detach_keys as keys_of

    keys = keys_of(detach_keys)
    sock = e.runtime.attach(cid)
    if sock is None:
        raise LaminaError(f"cannot attach to container {cid[:12]}")
    if not frames.exit_within(sock, frames.START_SYNC_WITHIN):  # it runs on: its start (cmd_run's,
        e.log.flush()  # committed without the fsync) goes on the disk now
    if not tty:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, lambda signum, _f: _forward(e, cid, signum))
    try:
        code = pump_attach(sock, interactive, tty, keys)
    except Detached:
        let_go(sock)  # its monitor records its end
        return 0
    if code is None:
        sock.close()
        return wait_for(e, cid, poll=0.02)
    try:
        c = e.log.container(cid)
        kept = None
        if c is not None and c.state in ("running", "paused"):
            from adapters.record_exit import record_exit

            with e.log.sync_deferred() if remove else contextlib.nullcontext():
                kept = record_exit(e, cid, c.pid, release=remove is None)  # at once,
                # rather than wait for the monitor to
        if remove is not None:
            try:
                remove()
            finally:
                if kept is not None:
                    _release_kept(e, cid)
    finally:
        sock.close()  # after the record: the monitor then finds nothing left to record
    return code


def _release_kept(e: Any, cid: str) -> None:
    """The exit was recorded without its release for an rm that did not remove the
    container (it failed): release the run now, as the exit would have."""
    with contextlib.suppress(LaminaError):
        c = e.log.container(cid)
        if c is not None and c.state == "stopped":
            with e.runtime.ending(c):
                e.runtime.release(c)


def _forward(e: Any, cid: str, signum: int) -> None:
    with contextlib.suppress(LaminaError):
        e.kill(cid, signum)


CONDITIONS = ("not-running", "next-exit", "removed")  # docker wait --condition


def wait_for(e: Any, ref: str, condition: str = "not-running", poll: float = 0.05) -> int:
    """docker's wait: until the container is not running (`not-running`), ends the run
    after now (`next-exit`) or is removed (`removed`); its exit code (the last recorded
    one once removed). While it runs, once a second, the engine's recover(): a process
    whose monitor died with it (killed, or its record failed) has its end recorded by the
    wait itself, as by the next command that changes state, instead of a wait that never
    ends."""
    if condition not in CONDITIONS:
        raise BadInput(f"invalid condition: {condition!r}")
    c = e.container(ref)
    first = c.finished_at
    from core.engine.host import RECOVER_EVERY

    look = time.monotonic() + RECOVER_EVERY
    while True:
        if time.monotonic() >= look:
            e.recover()
            look = time.monotonic() + RECOVER_EVERY
        now = e.log.container(c.id)
        if now is None:
            if condition in ("removed", "next-exit") or c.state == "stopped":
                return last_exit_code(e, c.id)
            raise LaminaError(f"container {c.id[:12]} was removed while waiting")
        if condition != "removed" and now.state == "stopped" and \
                (condition == "not-running" or now.finished_at != first):
            return now.exit_code if now.exit_code is not None else 0
        c = now
        time.sleep(poll)


def last_exit_code(e: Any, cid: str) -> int:
    """The exit code of a container's last run, from its stream (it may be removed)."""
    code = 0
    for rec in e.log.read(stream=f"container:{cid}"):
        if rec.type in ("ContainerExited", "ContainerStopped", "ContainerKilled"):
            code = int(rec.data.get("exit_code") or 0)
    return code


def cmd_run(args: argparse.Namespace) -> int:
    from adapters.cli.storage import create_options

    e = _engine(args)
    if args.tty and args.interactive and not args.detach and not os.isatty(0):
        e.refuse("run", args.image, "the input device is not a TTY")
    options = create_options(args)
    if args.rm:  # recorded: a detached one is removed by its monitor when it ends
        options["auto_remove"] = True
        from adapters import deferred

        e.later = deferred.later  # served, the run's release comes after the answer
    try:
        with e.log.sync_deferred():  # on the disk with the start's record (or the flush)
            cid = e.create(args.image, args.cmd, name=args.name, config=options)
        return _run_created(e, args, cid)
    finally:
        e.log.flush()  # what sync_deferred committed, if no later record put it on the disk


def _run_created(e: Any, args: argparse.Namespace, cid: str) -> int:
    """Start the container `run` created; attached, until it exits (then removed, --rm).
    Attached, the start is committed without its fsync: a container that ended before it
    was recorded (`true`) has it put on the disk with its end's record, one fsync instead
    of two before the answer; one that runs on has it at once (_attached)."""
    try:
        with e.log.sync_deferred() if not args.detach else contextlib.nullcontext():
            e.start(cid)
    except LaminaError:
        if args.rm:
            e.rm(cid, force=True, volumes=True)
        raise
    if args.detach:
        e.runtime.detach(cid)
        print(cid)
        return 0

    def remove() -> None:
        now = e.log.container(cid)
        if now is not None and now.state == "stopped":  # not when detached:
            e.rm(cid, force=True, volumes=True)  # docker's --rm takes the anonymous
            # volumes along

    code = _attached(e, cid, args.interactive, args.tty, args.detach_keys,
                     remove if args.rm else None)
    if args.rm:
        remove()  # stopped another way than the attached end (none left if removed)
    return code


def cmd_start(args: argparse.Namespace) -> int:
    e = _engine(args)
    if args.attach or args.interactive:
        c = e.start(args.containers[0])
        return _attached(e, c.id, args.interactive, bool(c.config.get("tty")),
                         args.detach_keys)

    def start(ref: str) -> None:
        c = e.start(ref)
        e.runtime.detach(c.id)

    return for_each(args.containers, start)


def cmd_stop(args: argparse.Namespace) -> int:
    e = _engine(args)
    return for_each(args.containers, lambda ref: e.stop(ref, args.time))


def cmd_restart(args: argparse.Namespace) -> int:
    e = _engine(args)

    def restart(ref: str) -> None:
        c = e.restart(ref, args.time)
        e.runtime.detach(c.id)

    return for_each(args.containers, restart)


def cmd_kill(args: argparse.Namespace) -> int:
    e = _engine(args)
    return for_each(args.containers, lambda ref: e.kill(ref, args.signal))


def cmd_pause(args: argparse.Namespace) -> int:
    e = _engine(args)
    return for_each(args.containers, e.pause)


def cmd_unpause(args: argparse.Namespace) -> int:
    e = _engine(args)
    return for_each(args.containers, e.unpause)


def cmd_exec(args: argparse.Namespace) -> int:
    """docker exec: -i keeps the process's stdin open until ours ends; -t a terminal, whose
    detach keys let go of the process (it runs on); -d runs it in the background, recorded,
    and returns once it started."""
    if not args.cmd:
        raise BadInput("exec needs a command")
    from adapters.cli.storage import from_caller
    from core.logfilter import detach_keys
    from core.ports import ExecDetached

    e = _engine(args)
    options: dict[str, Any] = {
        "env": [from_caller(v) for v in args.env or []], "workdir": args.workdir,
        "tty": args.tty and not args.detach, "interactive": args.interactive and not args.detach,
        "detach_keys": detach_keys(args.detach_keys)}
    if args.tty and args.interactive and not args.detach and not os.isatty(0):
        e.refuse("exec", args.container, "the input device is not a TTY")
    if args.detach:
        return _exec_detached(e, args.container, args.cmd, args.user or "", options)
    try:  # ExecStarted and ExecExited on the disk with one fsync: the exec's own flush,
        with e.log.sync_deferred():  # once it runs on past START_SYNC_WITHIN, or ours
            return e.exec(args.container, args.cmd, args.user or "", options)
    except ExecDetached as detached:  # recorded; the process's end will be too
        sys.stderr.write(f"{detached}\n")  # docker's exec says so, and exits 1
        return 1
    finally:
        e.log.flush()


def _exec_detached(e: Any, ref: str, argv: list[str], user: str,
                   options: dict[str, Any]) -> int:
    """exec -d: a child of ours, in a session of its own with /dev/null for stdio, runs
    the exec as the engine does (ExecStarted, ExecExited when it ends) and tells us on a
    pipe whether the process started; we return then."""
    e.container(ref)  # a missing container is said here, in our stdio
    r, w = os.pipe()
    e.log.suspend()  # no SQLite state across the fork
    if os.fork() == 0:
        code = 125
        try:
            os.close(r)
            os.setsid()
            null = os.open("/dev/null", os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.closerange(3, w)
            os.closerange(w + 1, 65536)

            def started(text: str) -> None:
                with contextlib.suppress(OSError):
                    os.write(w, text.encode())
                    os.close(w)

            code = e.exec(ref, argv, user, {**options, "detach": True, "started": started})
        except LaminaError as err:
            with contextlib.suppress(OSError):
                os.write(w, f"{err.exit_code} {err}".encode())
        except BaseException:  # noqa: BLE001, S110 - nothing may unwind into the caller's code
            pass
        os._exit(code)
    os.close(w)
    try:  # one small write (atomic), not EOF: the exec's joiner holds the pipe till the end
        said = os.read(r, 65536).decode(errors="replace")
    finally:
        os.close(r)
    if said == "started":
        return 0
    code_text, _, message = said.partition(" ")
    if not code_text.isdigit():
        code_text, message = "126", said or "the exec did not start"
    sys.stderr.write(f"lamina: error: {message}\n")
    return int(code_text)


def cmd_attach(args: argparse.Namespace) -> int:
    """docker attach: a running container's output from now on, our stdin to its stdin
    (if it was made with -i and not --no-stdin), through its monitor's attach socket; the
    detach keys (with a terminal) let go of it; else its exit code when it ends."""
    from adapters.runtime import frames
    from adapters.runtime.terminal import Detached, pump_attach
    from core.logfilter import detach_keys

    e = _engine(args)
    keys = detach_keys(args.detach_keys)
    c = e.container(args.container)
    if c.state == "stopped":
        e.refuse("attach", args.container, "You cannot attach to a stopped container, "
                                           "start it first")
    if c.state == "paused":
        e.refuse("attach", args.container, "You cannot attach to a paused container, "
                                           "unpause it first")
    tty = bool(c.config.get("tty"))
    interactive = not args.no_stdin and bool(c.config.get("interactive"))
    if tty and interactive and not os.isatty(0):
        e.refuse("attach", args.container, "the input device is not a TTY")
    sock = frames.connect_attach(e.runtime.container_dir(c.id))
    if sock is None:
        raise LaminaError(f"cannot attach to container {c.id[:12]}: it has no attach socket "
                          "(not running, or started before lamina had attach)")
    with contextlib.suppress(LaminaError):  # the audit's: who attached (removed meanwhile)
        e.attached(c.id, interactive, True, True)
    if args.sig_proxy and not tty:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, lambda signum, _f: _forward(e, c.id, signum))
    try:
        code = pump_attach(sock, interactive, tty, keys)
    except Detached as detached:
        sock.close()
        with contextlib.suppress(LaminaError):
            e.detached(c.id)
        sys.stderr.write(f"{detached}\n")  # docker's attach says so, and exits 1
        return 1
    finally:
        sock.close()
    if code is None:
        return wait_for(e, c.id, poll=0.02)
    from adapters.record_exit import wait_recorded

    wait_recorded(e, c.id, timeout=5)  # as docker's attach answers after its wait: the end is in
    return code


def cmd_top(args: argparse.Namespace) -> int:
    """docker top: the container's processes as the host's ps shows them (-ef unless
    other ps options follow the container)."""
    from adapters.runtime import top

    e = _engine(args)
    c = e.container(args.container)
    if c.state not in ("running", "paused"):
        e.refuse("top", args.container, f"container {c.id} is not running")
    titles, rows = top.top(top.container_pids(c), " ".join(args.ps_options))
    sys.stdout.write(top.table(titles, rows))
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    """docker logs: the json-file log's entries in the window of --since/--until/--tail,
    with -t's times and --details' attributes; -f follows until the container stops or
    --until is past."""
    from core import logfilter
    from core.runopts import readable

    e = _engine(args)
    c = e.container(args.container)
    readable(c.config)  # --log-driver none keeps nothing to read: docker's refusal
    window = logfilter.Window.of(args.since, args.until, args.tail)
    selection = logfilter.Selection(window)
    offset = 0
    out: dict[str, Any] = {"stdout": sys.stdout, "stderr": sys.stderr}

    def show() -> None:
        nonlocal offset
        last, shown = selection.pick(e.runtime.logs(c.id, offset))
        for entry in shown:
            out.get(str(entry.get("stream")), out["stdout"]).write(
                logfilter.line(entry, args.timestamps, args.details))
        offset = last if last is not None else offset
        sys.stdout.flush()
        sys.stderr.flush()

    show()
    while args.follow and not selection.done and not window.ended():
        now = e.log.container(c.id)
        if now is None or now.state == "stopped":
            show()
            return 0
        time.sleep(0.1)
        show()
    return 0


def cmd_system(args: argparse.Namespace) -> int:
    """check: print what the log and the host disagree on (exit 1 if anything);
    reconcile: repair it. Both are recorded. The engine is built without its start-up
    recovery: check must report what it finds, not repair it first."""
    from adapters.bootstrap import build_engine
    from adapters.cmdline import root_dir

    root = root_dir(args.root)
    e = build_engine(root, recover=False)
    repair = args.system_command == "reconcile"
    findings = e.reconcile(repair=repair)
    for line in findings:
        print(("repaired: " if repair else "") + line)
    if not findings:
        print("the log and the host agree")
    if not repair:
        print(server_status(root))
    return 1 if findings and not repair else 0


def server_status(root: str) -> str:
    """Whether a fork server serves the root's commands (adapters/fastpath), and which."""
    from adapters.fastpath.forkserver import holder, socket_path

    pid = holder(root)
    if pid is None:
        return "server: none (the next command starts one)"
    return f"server: running, pid {pid}, socket {socket_path(root)}"


def add_userns_remap(p: argparse.ArgumentParser) -> None:
    p.add_argument("--userns-remap", metavar="default|USER[:GROUP]|off",
                   help="run every container of the root in a user namespace whose root is "
                        "a subordinate id of USER (default: the laminaremap user, made if "
                        "missing); refused once the root has containers")


def configure_root(root: str, setting: str) -> Any:
    """Record the root's --userns-remap (Engine.configure_root); the RootConfig."""
    from adapters import remap
    from adapters.bootstrap import build_engine

    engine = build_engine(root)
    try:
        return engine.configure_root(setting, lambda s: remap.resolve(s, root))
    finally:
        engine.log.close()  # `serve` forks its servers next: no SQLite state across a fork


def cmd_system_configure(args: argparse.Namespace) -> int:
    """`system configure --userns-remap X`: chosen once, before the first container (a
    refusal is one line and a CommandRejected); without options: the current setting."""
    from adapters.bootstrap import open_log
    from adapters.cmdline import root_dir
    from core import rootconfig

    root = root_dir(args.root)
    if args.userns_remap is not None:
        config = configure_root(root, args.userns_remap)
    else:
        log = open_log(root, create=False)
        config = rootconfig.current(log) if log is not None else rootconfig.RootConfig()
    print(config.describe())
    return 0


def add_detach_keys(p: argparse.ArgumentParser) -> None:
    p.add_argument("--detach-keys", metavar="KEYS",
                   help="the key sequence that detaches from the container, with a "
                        "terminal: docker's spec, e.g. ctrl-a,b (default ctrl-p,ctrl-q)")


def _boolean(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean: {text!r}")


def register(sub: Any, fmt: Callable[[argparse.ArgumentParser], None]) -> None:
    from adapters.cli.storage import add_create_options

    p = sub.add_parser("run", help="create and start a container")
    p.add_argument("-d", "--detach", action="store_true",
                   help="print its id and leave it running")
    add_detach_keys(p)
    p.add_argument("--rm", action="store_true", help="remove the container when it exits")
    add_create_options(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("start", help="start stopped containers")
    p.add_argument("-a", "--attach", action="store_true", help="attach its output")
    p.add_argument("-i", "--interactive", action="store_true", help="attach its stdin")
    add_detach_keys(p)
    p.add_argument("containers", nargs="+", help="containers (ids, id prefixes or names)")
    p.set_defaults(func=cmd_start)

    p = sub.add_parser("attach", help="attach our stdin and output to a running container")
    add_detach_keys(p)
    p.add_argument("--no-stdin", action="store_true", help="do not attach STDIN")
    p.add_argument("--sig-proxy", type=_boolean, nargs="?", const=True, default=True,
                   metavar="true|false",
                   help="proxy the signals we get to the process (without a terminal; "
                        "default true)")
    p.add_argument("container", help="a running container (id, prefix or name)")
    p.set_defaults(func=cmd_attach)

    for name, fn, what in (("stop", cmd_stop, "the stop signal (SIGTERM unless --stop-signal), "
                                              "then SIGKILL after -t seconds"),
                           ("restart", cmd_restart, "stop (if running) and start again")):
        p = sub.add_parser(name, help=what)
        p.add_argument("-t", "--time", type=float, default=None,
                       help="seconds to wait before SIGKILL (default: the container's "
                            "--stop-timeout, or 10)")
        p.add_argument("containers", nargs="+", help="containers (ids, id prefixes or names)")
        p.set_defaults(func=fn)

    p = sub.add_parser("kill", help="send a signal (SIGKILL by default)")
    p.add_argument("-s", "--signal", default="KILL",
                   help="a signal's name or number (default KILL)")
    p.add_argument("containers", nargs="+", help="containers (ids, id prefixes or names)")
    p.set_defaults(func=cmd_kill)

    for name, fn, what in (("pause", cmd_pause, "freeze every process (cgroup freezer)"),
                           ("unpause", cmd_unpause, "thaw a paused container")):
        p = sub.add_parser(name, help=what)
        p.add_argument("containers", nargs="+", help="containers (ids, id prefixes or names)")
        p.set_defaults(func=fn)

    p = sub.add_parser("exec", help="run a command in a running container")
    p.add_argument("-d", "--detach", action="store_true",
                   help="run the command in the background (recorded; returns once started)")
    add_detach_keys(p)
    p.add_argument("-i", "--interactive", action="store_true",
                   help="keep the command's stdin open until ours ends")
    p.add_argument("-t", "--tty", action="store_true", help="give the command a terminal")
    p.add_argument("-e", "--env", action="append", metavar="NAME[=VALUE]",
                   help="set an environment variable (NAME alone: ours)")
    p.add_argument("-w", "--workdir", help="the command's working directory")
    p.add_argument("-u", "--user", metavar="USER[:GROUP]",
                   help="the user (name or uid) to run the command as")
    p.add_argument("container", help="a running container (id, prefix or name)")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="COMMAND",
                   help="the command and its arguments")
    p.set_defaults(func=cmd_exec)

    p = sub.add_parser("top", help="the processes of a running container (ps -ef unless "
                                   "ps options are given)")
    p.add_argument("container", help="a running container (id, prefix or name)")
    p.add_argument("ps_options", nargs=argparse.REMAINDER, metavar="PS OPTIONS",
                   help="options of the host's ps (default -ef)")
    p.set_defaults(func=cmd_top)

    p = sub.add_parser("logs", help="a container's output")
    p.add_argument("-f", "--follow", action="store_true", help="follow log output")
    p.add_argument("--since", help="show logs since a time: RFC 3339 (2013-01-02T13:23:37Z), "
                                   "unix seconds, or a duration before now (42m)")
    p.add_argument("--until", help="show logs before a time (as --since)")
    p.add_argument("-n", "--tail", default="all",
                   help='number of lines to show from the end (default "all")')
    p.add_argument("-t", "--timestamps", action="store_true", help="show timestamps")
    p.add_argument("--details", action="store_true",
                   help="show the extra attributes given to the log (--log-opt labels, env)")
    p.add_argument("container", help="a container (id, prefix or name)")
    p.set_defaults(func=cmd_logs)
