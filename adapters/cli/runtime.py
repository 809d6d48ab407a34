"""CLI commands for running containers: run, start, stop, kill, pause, unpause, exec, logs,
wait, restart, stats."""

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

COMMANDS = ("run", "start", "stop", "restart", "kill", "pause", "unpause", "wait", "exec", "logs",
            "system", "stats")


def _engine(args: argparse.Namespace) -> Any:
    from adapters.cli.common import engine

    return engine(args)


def _attached(e: Any, cid: str, interactive: bool, tty: bool) -> int:
    """Stream a started container's output until it exits; forward our signals to it."""
    from adapters.runtime.terminal import pump_attach

    sock = e.runtime.attach(cid)
    if sock is None:
        raise LaminaError(f"cannot attach to container {cid[:12]}")
    if not tty:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, lambda signum, _f: _forward(e, cid, signum))
    code = pump_attach(sock, interactive, tty)
    if code is None:
        sock.close()
        return _wait_stopped(e, cid)
    c = e.log.container(cid)
    if c is not None and c.state in ("running", "paused"):
        from adapters.record_exit import record_exit

        record_exit(e, cid, c.pid)  # at once, rather than wait for the monitor to
    sock.close()  # after the record: the monitor then finds nothing left to record
    return code


def _forward(e: Any, cid: str, signum: int) -> None:
    with contextlib.suppress(LaminaError):
        e.kill(cid, signum)


def _wait_stopped(e: Any, ref: str, poll: float = 0.02) -> int:
    cid = e.container(ref).id
    while True:
        c = e.log.container(cid)
        if c is None:
            raise LaminaError(f"container {cid[:12]} was removed while waiting")
        if c.state == "stopped":
            return c.exit_code if c.exit_code is not None else 0
        time.sleep(poll)


def cmd_run(args: argparse.Namespace) -> int:
    from adapters.cli.storage import create_options

    e = _engine(args)
    if args.tty and args.interactive and not args.detach and not os.isatty(0):
        e.refuse("run", args.image, "the input device is not a TTY")
    options = create_options(args)
    if args.rm:  # recorded: a detached one is removed by its monitor when it ends
        options["auto_remove"] = True
    cid = e.create(args.image, args.cmd, name=args.name, config=options)
    try:
        e.start(cid)
    except LaminaError:
        if args.rm:
            e.rm(cid, force=True, volumes=True)
        raise
    if args.detach:
        e.runtime.detach(cid)
        print(cid)
        return 0
    code = _attached(e, cid, args.interactive, args.tty)
    if args.rm:  # docker's --rm takes the anonymous volumes along
        e.rm(cid, force=True, volumes=True)
    return code


def cmd_start(args: argparse.Namespace) -> int:
    e = _engine(args)
    if args.attach or args.interactive:
        c = e.start(args.containers[0])
        return _attached(e, c.id, args.interactive, bool(c.config.get("tty")))

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
    if not args.cmd:
        raise BadInput("exec needs a command")
    from adapters.cli.storage import from_caller

    e = _engine(args)
    options = {"env": [from_caller(v) for v in args.env or []], "workdir": args.workdir,
               "tty": args.tty, "interactive": args.interactive}
    return e.exec(args.container, args.cmd, args.user or "", options)


def cmd_wait(args: argparse.Namespace) -> int:
    e = _engine(args)
    for ref in args.containers:
        print(_wait_stopped(e, ref))
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    e = _engine(args)
    c = e.container(args.container)
    offset = 0
    out = {"stdout": sys.stdout, "stderr": sys.stderr}
    while True:
        for end, entry in e.runtime.logs(c.id, offset):
            out.get(entry.get("stream"), sys.stdout).write(entry["log"])
            offset = end
        sys.stdout.flush()
        sys.stderr.flush()
        if not args.follow:
            return 0
        now = e.log.container(c.id)
        if now is None or now.state == "stopped":
            for _, entry in e.runtime.logs(c.id, offset):
                out.get(entry.get("stream"), sys.stdout).write(entry["log"])
            return 0
        time.sleep(0.1)


def cmd_stats(args: argparse.Namespace) -> int:
    from adapters.cli import render
    from adapters.kernel.cgroups import Cgroup, CgroupError
    from core.sizes import human_size

    e = _engine(args)
    containers = ([e.container(r) for r in args.containers] if args.containers
                  else [c for c in e.log.containers() if c.state in ("running", "paused")])
    first: dict[str, Any] = {}
    for c in containers:
        try:
            first[c.id] = (Cgroup.open(c.id), Cgroup.open(c.id).stats(), time.monotonic())
        except CgroupError:
            continue
    time.sleep(0.2)
    rows, docs = [], []
    for c in containers:
        if c.id not in first:
            continue
        cgroup, before, t0 = first[c.id]
        after = cgroup.stats()
        cpu = (after.cpu_ns - before.cpu_ns) / ((time.monotonic() - t0) * 1e9) * 100
        limit = after.memory_limit
        rows.append([render.short(c.id), c.name, f"{cpu:.2f}%",
                     f"{human_size(after.memory_bytes)} / "
                     f"{human_size(limit) if limit else 'unlimited'}", after.pids])
        docs.append({"id": c.id, "name": c.name, "cpu_percent": round(cpu, 2),
                     "cpu_ns": after.cpu_ns, "memory": after.memory_bytes,
                     "memory_limit": limit, "pids": after.pids})
    if args.format == "json":
        for d in docs:
            render.json_line(d)
    else:
        render.table(["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "PIDS"], rows)
    return 0


def cmd_system(args: argparse.Namespace) -> int:
    """check: print what the log and the host disagree on (exit 1 if anything);
    reconcile: repair it. Both are recorded. The engine is built without its start-up
    recovery: check must report what it finds, not repair it first."""
    from adapters.bootstrap import build_engine
    from adapters.cmdline import root_dir

    e = build_engine(root_dir(args.root), recover=False)
    repair = args.system_command == "reconcile"
    findings = e.reconcile(repair=repair)
    for line in findings:
        print(("repaired: " if repair else "") + line)
    if not findings:
        print("the log and the host agree")
    return 1 if findings and not repair else 0


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


def register(sub: Any, fmt: Callable[[argparse.ArgumentParser], None]) -> None:
    from adapters.cli.storage import add_create_options

    p = sub.add_parser("run", help="create and start a container")
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("--rm", action="store_true", help="remove the container when it exits")
    add_create_options(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("start", help="start stopped containers")
    p.add_argument("-a", "--attach", action="store_true")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("containers", nargs="+")
    p.set_defaults(func=cmd_start)

    for name, fn, what in (("stop", cmd_stop, "SIGTERM, then SIGKILL after -t seconds"),
                           ("restart", cmd_restart, "stop (if running) and start again")):
        p = sub.add_parser(name, help=what)
        p.add_argument("-t", "--time", type=float, default=10)
        p.add_argument("containers", nargs="+")
        p.set_defaults(func=fn)

    p = sub.add_parser("kill", help="send a signal (SIGKILL by default)")
    p.add_argument("-s", "--signal", default="KILL")
    p.add_argument("containers", nargs="+")
    p.set_defaults(func=cmd_kill)

    for name, fn, what in (("pause", cmd_pause, "freeze every process (cgroup freezer)"),
                           ("unpause", cmd_unpause, "thaw a paused container"),
                           ("wait", cmd_wait, "wait until containers stop; print exit codes")):
        p = sub.add_parser(name, help=what)
        p.add_argument("containers", nargs="+")
        p.set_defaults(func=fn)

    p = sub.add_parser("exec", help="run a command in a running container")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("-e", "--env", action="append")
    p.add_argument("-w", "--workdir")
    p.add_argument("-u", "--user")
    p.add_argument("container")
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_exec)

    p = sub.add_parser("logs", help="a container's output")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("container")
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser("system", help="compare the log with the host, or repair; "
                                      "configure the root")
    actions = p.add_subparsers(dest="system_command", metavar="ACTION", required=True)
    for name, what in (("check", "print the differences (exit 1 if any); change nothing"),
                       ("reconcile", "record lost processes' ends and clean leftovers")):
        actions.add_parser(name, help=what).set_defaults(func=cmd_system)
    a = actions.add_parser("configure", help="the root's settings (before its first "
                                              "container); without options, show them")
    add_userns_remap(a)
    a.set_defaults(func=cmd_system_configure)

    p = sub.add_parser("stats", help="CPU, memory and pids from the cgroup")
    p.add_argument("--no-stream", action="store_true", help="one sample (the only mode)")
    p.add_argument("containers", nargs="*")
    fmt(p)
    p.set_defaults(func=cmd_stats)
