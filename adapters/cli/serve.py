"""`lamina serve`: the Docker Engine API on a Unix socket (adapters/dockerapi), and beside it
the fork server of the command's fast path (adapters/fastpath), running this CLI (app.Served).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

COMMANDS = ("serve",)


def serve(root: str, socket_path: str, listener: Any = None, gid: int | None = None) -> int:
    """Serve until SIGTERM or SIGINT, telling systemd when ready (Type=notify). Kept a
    plain function: others may wrap it."""
    from adapters import systemd
    from adapters.dockerapi.server import serve as run

    def ready() -> None:
        systemd.notify("READY=1")

    return run(root, socket_path, ready=ready, listener=listener, gid=gid)


def bring_back(root: str) -> list[str]:
    """docker's daemon start: the stopped containers whose restart policy says so are
    started again (core/restart.py at_host_start), and those whose process the host lost
    (a reboot) after their end is recorded (Engine.recover). In a child of its own, waited
    for: nothing of it (an SQLite connection, the runtime's sockets) may stay in this
    process, which forks the fork server next. The ids started, as the child prints them."""
    import contextlib

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(r)
            from adapters.bootstrap import build_engine

            back = build_engine(root).bring_back("lamina serve started")
            os.write(w, "\n".join(back).encode())
            code = 0
        except BaseException:  # noqa: BLE001 - never unwind into the server's code
            pass
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read().decode()
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
    return out.split()


def cmd_serve(args: argparse.Namespace) -> int:
    from adapters import logs, systemd
    from adapters.cmdline import root_dir
    from adapters.fastpath.forkserver import claim, socket_path, unlink_stale

    root = root_dir(args.root)
    refuse_postgres(root)
    api_socket = os.path.abspath(args.socket or os.path.join(root, "lamina.sock"))
    passed = passed_sockets(systemd.listen_fds(), socket_path(root))
    api_listener, cli_listener = passed.get("api"), passed.get("cli")
    gid = socket_group(args.group, explicit=args.group != DEFAULT_GROUP)
    held = claim(root)  # one server per root: held until serve returns
    if api_listener is None:
        unlink_stale(api_socket)  # refused before the fork server starts, if another answers
    if args.userns_remap is not None:  # before anything serves: refused -> exit 1
        from adapters.cli.runtime import configure_root

        configure_root(root, args.userns_remap)
    bring_back(root)
    shipper = start_shipper(root, args.event_store or os.environ.get("LAMINA_EVENT_STORE"))
    forkserver = None
    if not args.no_cli_server:
        from adapters.fastpath.forkserver import start_background

        # forked first, while this process has one thread: see adapters/fastpath/forkserver.py;
        # it runs this CLI, handed over by the runner (adapters/cli/app.Served)
        forkserver = start_background(root, args.served, listener=cli_listener)
    elif cli_listener is not None:
        cli_listener.close()
    if args.log_level == "warning":  # a service logs its requests unless told otherwise
        logs.configure(args.log_format, "info")
    try:
        return serve(root, api_socket, api_listener, gid)
    finally:
        stop_shipper(shipper)
        if forkserver is not None:
            from adapters.fastpath.forkserver import stop_server

            stop_server(root, only=forkserver)  # its socket gone before we say we are
        os.close(held)


DEFAULT_GROUP = "lamina"


def socket_group(name: str, explicit: bool) -> int | None:
    """The gid that owns the API socket (docker's -G: members may use it, which makes them
    root's equals). The default group, when it doesn't exist, leaves the socket root's; a
    group asked for by name must exist."""
    import grp

    from core.errors import BadInput

    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        if explicit:
            raise BadInput(f"--group {name}: no such group") from None
        return None


def passed_sockets(sockets: list[Any], cli_path: str) -> dict[str, Any]:
    """systemd's sockets (lamina.socket) by their use: the one bound to the root's
    cli.sock serves the fork server, the other Unix stream socket the Docker API. Any
    other is closed (and said so on stderr): one lamina does not know how to serve."""
    from adapters.systemd import unix_path

    found: dict[str, Any] = {}
    for sock in sockets:
        path = unix_path(sock)
        use = "cli" if path == cli_path else "api"
        if path is None or use in found:
            import sys

            print(f"lamina: warning: ignoring a socket systemd passed: {sock}", file=sys.stderr)
            sock.close()
            continue
        found[use] = sock
    return found


def refuse_postgres(root: str) -> None:
    """The Docker API's /events and a removed container's exit code read SQLite's log:
    a root whose log is in PostgreSQL (adapters/eventstore/where.py) is refused by name,
    not served half. (Such a root has nothing to ship either.)"""
    from adapters.eventstore.where import store_url
    from core.errors import LaminaError

    if store_url(root) is not None:
        raise LaminaError(f"serve: root {root} keeps its event log in PostgreSQL; the API "
                          "server reads SQLite's log (not yet)")


def start_shipper(root: str, url: str | None) -> Any:
    """With a central store configured, `lamina ship --follow` beside the server, its own
    process (nothing of it may be in the process that forks the fork server), ended with
    the server (SIGTERM on the server's death too). None without a store."""
    if not url:
        return None
    import subprocess
    import sys

    from adapters.eventstore.ship import store_url

    store_url(url)  # a malformed one is refused now, not in the background

    def die_with_parent() -> None:
        import signal

        from adapters.kernel import libc

        libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGTERM)

    return subprocess.Popen(
        [sys.executable, "-m", "adapters.cli", "--root", root, "--log-format", "json",
         "--log-level", "info", "ship", "--follow", "--event-store", url],
        stdin=subprocess.DEVNULL, preexec_fn=die_with_parent, close_fds=True)


def stop_shipper(proc: Any) -> None:
    if proc is None:
        return
    import subprocess

    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def register(sub: Any, fmt: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("serve", help="serve the Docker Engine API on a Unix socket")
    p.add_argument("--socket", help="socket path (default <root>/lamina.sock, mode 0660)")
    p.add_argument("--group", default=DEFAULT_GROUP,
                   help="the group that may use the API socket, as root may (default "
                        "lamina, when it exists)")
    p.add_argument("--no-cli-server", action="store_true",
                   help="don't serve the lamina command's fast path (<root>/cli.sock)")
    from adapters.cli.runtime import add_userns_remap

    add_userns_remap(p)
    p.add_argument("--event-store", metavar="URL",
                   help="ship this root's log to the central store postgresql://... in the "
                        "background (`lamina ship --follow`; default $LAMINA_EVENT_STORE)")
    p.set_defaults(func=cmd_serve)
