"""A worker's side of an API job: the job runs as its caller (the event meta), and its
value, or the error that refused it, goes back as one JSON line on the report pipe
(worker.Workers reads it as a worker.Report).

Kept apart from worker.py (the loop's side, which hands jobs to the spare) because both kinds
of worker run it: a child forked from the loop (worker._child) and the workers' fork
server's spare (spares.Jobs), which worker.py itself imports.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

from core.errors import LaminaError


class Reporter:
    """The child's side of the report pipe: one JSON line, then the pipe is closed."""

    def __init__(self, fd: int) -> None:
        self.fd: int | None = fd

    def send(self, report: dict[str, Any]) -> None:
        if self.fd is None:
            return
        data = (json.dumps(report) + "\n").encode()
        with contextlib.suppress(OSError):
            os.write(self.fd, data)
        self.done()

    def ok(self, value: Any = None) -> None:
        self.send({"value": value})

    def error(self, err: BaseException) -> None:
        if isinstance(err, LaminaError):
            self.send({"error": str(err), "kind": type(err).__name__,
                       "exit_code": err.exit_code})
        else:
            self.send({"error": f"{type(err).__name__}: {err}", "kind": "internal",
                       "exit_code": 125})

    def done(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None


Job = Callable[[Any, Reporter], Any]


def run_job(engine: Any, job: Job, meta: dict[str, Any], reporter: Reporter) -> None:
    """Run the job as the caller `meta` names (the event meta), and report its value or
    the error that refused it; in a child forked from the loop (worker._child) or in the
    spare (spares.Jobs)."""
    try:
        engine.meta = lambda: dict(meta)
        value = job(engine, reporter)
        reporter.ok(value)
    except BaseException as err:  # noqa: BLE001 - a child must never unwind into the server
        if not isinstance(err, LaminaError):
            with contextlib.suppress(Exception):
                traceback.print_exc(file=sys.stderr)
        reporter.error(err)
    finally:
        reporter.done()
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
