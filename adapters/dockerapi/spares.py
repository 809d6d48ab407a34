"""The workers' fork server: the fast path's ForkServer (adapters/fastpath/forkserver.py),
forked from `lamina serve` once its modules and engine are loaded, runs the API's jobs in
its pre-forked spare, so that the serving loop forks no worker itself.

Why: a fork of the serving process holds its loop for the fork and the copy-on-write
faults after it, and closes its SQLite connection first (the next query reopens it).
Profiled at 20 clients of `docker run --rm`, 24% of the server's samples were os.fork()
in the loop and 6% reopening the log. The spare is forked, and has opened the log
(Jobs.prepare), before a job comes; the loop only connects and hands the job over.

What goes there: a job that pickles (a module-level function, or a functools.partial of
one over plain values) and is handed no descriptor. Any other (a closure; one given a
client's connection) is forked from the loop as before (worker.Workers.fork).

The fork server's protocol (client.encode_request) with argv [JOB, base64 of the pickled
(job, meta)] and three descriptors: 0 the report pipe's write end, 1 and 2 the server's
stdout and stderr. The spare answers the worker's pid, then its exit code when it ends
(or its server does, if a signal killed it), and hangs up. The listening socket is an
abstract one, autobound: no file to clean up; the fork server takes only root or our
own uid (SO_PEERCRED), who could ptrace the service all the same.
"""

from __future__ import annotations

import base64
import os
import pickle
import signal
import socket
from dataclasses import dataclass
from typing import Any

from adapters.dockerapi.reporter import Reporter, run_job

JOB = "docker-api-job"


@dataclass
class Jobs:
    """The API's jobs as the fork server runs them (forkserver.Commands): each as a forked
    worker runs it (reporter.run_job), its report on descriptor 0."""

    engine: Any
    serves_again = False  # a worker's engine and report pipe are one job's (forkserver.Commands)

    def warm(self) -> None:
        """Nothing to import: this process was forked from the service after its preload.
        The exec joiner's sealed copy is made once here, for every worker."""
        from adapters.runtime import nativejoin

        if nativejoin.program() is not None:
            nativejoin.sealed()

    def prepare(self, root: str) -> None:
        """In the spare: open the log now, not when the job's first query comes."""
        self.engine.log.con  # noqa: B018 - opens the connection

    def run(self, argv: list[str], peer: dict[str, int]) -> int:
        if argv[:1] != [JOB] or len(argv) != 2:
            return 125
        job, meta = pickle.loads(base64.b64decode(argv[1]))  # noqa: S301 - from our service
        run_job(self.engine, job, meta, Reporter(0))
        return 0

    def finish(self) -> None:
        """Nothing left for after the answer."""

    def done(self, pid: int) -> None:
        """Nothing kept for the jobs (a start makes its cgroup: readycgroup.py is the CLI
        server's)."""

    def stopped(self) -> None:
        """Nothing kept."""


def pickled(job: Any, meta: dict[str, Any]) -> str | None:
    """The job and its meta as the spare takes them; None when the job does not pickle
    (a closure: it is forked from the loop instead)."""
    try:
        return base64.b64encode(pickle.dumps((job, meta))).decode()
    except (pickle.PicklingError, AttributeError, TypeError):
        return None


def start(jobs: Jobs, root: str) -> tuple[int, bytes]:
    """Fork the workers' fork server off this process (before its loop and its sockets
    exist: nothing of them may be in it); (its pid, its address). It dies with us
    (PR_SET_PDEATHSIG), after the jobs in flight when it is told to stop (stop())."""
    from adapters.fastpath.forkserver import ForkServer, run_server
    from adapters.kernel import libc
    from adapters.kernel.proc import close_all_but

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    listener.bind("")  # autobind: an abstract address of the kernel's choosing
    listener.listen(256)
    address = listener.getsockname()
    jobs.engine.log.suspend()  # no SQLite connection may cross the fork
    pid = os.fork()
    if pid == 0:
        try:
            libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGTERM)
            close_all_but({0, 1, 2, listener.fileno()})
            run_server(ForkServer(root, jobs, listener=listener))
        finally:
            os._exit(0)
    listener.close()
    return pid, address


def stop(pid: int, wait: float = 15.0) -> None:
    """Tell the workers' fork server to stop and reap it (its jobs in flight finish first;
    the service waited for them already). Killed when it takes longer than `wait`."""
    import time

    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + wait
    try:
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return
            time.sleep(0.02)
    except ChildProcessError:
        return
