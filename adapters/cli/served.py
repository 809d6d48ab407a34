"""`python -m adapters.cli.served [--root DIR] [--socket PATH] [--ready-fd N]`: the fork server
of the command's fast path alone, running this CLI (app.Served); `lamina serve` starts the
same server beside the Docker API.

With --ready-fd it is the server a client started (adapters/fastpath/client.py start_server,
client.c): the client made it a session of its own with stdout and stderr on
<root>/serve.log and holds <root>/cli.start while it waits; the server writes "ready" on
that fd once it listens. A started server serves until SIGTERM, or until its watch
(Watch) sees its socket file gone (its root removed) or its code changed on disk (an
upgrade, a checkout): a server must not keep running the code of before, so it stops and the
next command starts one with the new code.
"""

from __future__ import annotations

import os
import sys
import time

from adapters.cli.app import SERVED
from adapters.cmdline import root_dir
from adapters.fastpath.client import CLI_LOCK
from adapters.fastpath.forkserver import (
    ForkServer,
    claim,
    file_id,
    run_server,
    stop_server,
)

SOURCES = ("adapters", "core", "events")  # lamina's packages: a change there stops the server


def say(message: str) -> None:
    """One line in serve.log (our stderr), with the time."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    print(f"{stamp} lamina fork server {os.getpid()}: {message}", file=sys.stderr, flush=True)


class Watch:
    """Why a started server should stop, looked at every few seconds (ForkServer.watch):
    its socket file is no longer the one it bound, or one of lamina's modules it imported
    changed on disk. A module's stamp is taken when the watch is made (before the warm-up)
    or, for one the warm-up imported, at the first look; such a module also counts as
    changed when its file was written after the warm-up began (the first command runs in
    its client meanwhile, and an upgrade may come right after it)."""

    def __init__(self, server: ForkServer) -> None:
        self.server = server
        self.since = time.time_ns()
        self.code = self._code()

    def __call__(self) -> str | None:
        if file_id(self.server.path) != self.server.bound:
            return f"its socket {self.server.path} is gone"
        now, clock = self._code(), time.time_ns()
        changed = sorted(p for p, stamp in now.items() if self.code.get(p, stamp) != stamp
                         or (p not in self.code and self.since < stamp[0] <= clock))
        if changed:
            return f"lamina's code changed on disk ({changed[0]})"
        self.code = now
        return None

    @staticmethod
    def _code() -> dict[str, tuple[int, int, int]]:
        top = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        mine = tuple(os.path.join(top, name) + os.sep for name in SOURCES)
        from adapters.runtime.nativejoin import PROGRAM  # its sealed copy is the server's

        stamps = {}
        paths = [getattr(module, "__file__", None) for module in list(sys.modules.values())]
        for path in [*paths, PROGRAM]:
            if not path or not (path.startswith(mine) or path == PROGRAM):
                continue
            try:
                st = os.stat(path)
                stamps[path] = (st.st_mtime_ns, st.st_size, st.st_ino)
            except OSError:
                stamps[path] = (0, 0, 0)
        return stamps


def started(server: ForkServer, ready_fd: int) -> None:
    """The server a client started: take the root's claim from one that no longer answers
    (the client found none), listen, tell the client, serve."""
    try:
        stop_server(server.root)
        server.lock = claim(server.root, CLI_LOCK)
        server.bind()
    except Exception as err:  # noqa: BLE001 - said in serve.log, and the client runs it
        say(f"not started: {err}")
        raise SystemExit(1) from None
    server.watch = Watch(server)
    say(f"serving {server.path}")
    os.write(ready_fd, b"ready\n")
    os.close(ready_fd)
    run_server(server)
    say("stopped")


def main(argv: list[str] | None = None) -> None:
    """The fork server in the foreground, until SIGTERM or SIGINT."""
    import argparse

    parser = argparse.ArgumentParser(prog="lamina-forkserver")
    parser.add_argument("--root")
    parser.add_argument("--socket")
    parser.add_argument("--ready-fd", type=int,
                        help="started by a client: say 'ready' on this fd once listening")
    args = parser.parse_args(argv)
    server = ForkServer(root_dir(args.root), SERVED, args.socket)
    if args.ready_fd is not None:
        started(server, args.ready_fd)
        return
    server.lock = claim(server.root, CLI_LOCK)
    server.bind()
    run_server(server)


if __name__ == "__main__":
    main()
