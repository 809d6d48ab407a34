"""A fork server told to stop lets every command it took finish, the work after its answer
included (adapters/deferred.py), however late the server itself reads that it was taken.

A real ForkServer over a stand-in for the CLI's Commands, in a process of its own: its
done() keeps the server busy for a second once, as forking a spare monitor does under
load, while a spare takes a client, answers it, and is still deleting when the stop comes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from adapters.fastpath import client

SERVER = textwrap.dedent("""
    import os, sys, time
    from adapters.fastpath.forkserver import ForkServer, run_server

    class Stand:
        serves_again = False

        def __init__(self, marks):
            self.marks, self.busy, self.after = marks, True, 0.0

        def warm(self): pass
        def prepare(self, root): pass
        def stopped(self): pass

        def run(self, argv, peer):
            self.after = float(argv[0])
            return 0

        def finish(self):
            time.sleep(self.after)
            open(os.path.join(self.marks, f"finished-{self.after}"), "w").close()

        def done(self, pid):
            # the first command over (its child reaped, or the next take): the server is
            # away for a second
            if self.busy and os.path.exists(os.path.join(self.marks, "finished-0.0")):
                self.busy = False
                time.sleep(1.0)

    root = sys.argv[1]
    server = ForkServer(root, Stand(root))
    server.bind()
    run_server(server)
""")


def _wait_for(path: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} did not appear"
        time.sleep(0.01)


def test_a_stopping_server_kills_no_command_it_has_not_yet_heard_was_taken(
        tmp_path: Path) -> None:
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(tmp_path)],
                              cwd=Path(__file__).parents[2], stdin=subprocess.DEVNULL)
    try:
        _wait_for(tmp_path / client.SOCKET_NAME, 20)
        assert client.ask(str(tmp_path), ["0"], {}) == 0
        _wait_for(tmp_path / "finished-0.0", 10)  # its child exits: the server is in done()
        time.sleep(0.1)
        assert client.ask(str(tmp_path), ["1.5"], {}) == 0  # taken by a spare meanwhile
        server.send_signal(signal.SIGTERM)  # while that one deletes, after its answer
        assert server.wait(20) == 0
        assert sorted(os.listdir(tmp_path)) == ["finished-0.0", "finished-1.5"]
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
