"""`make demo`: the seed's commands as a scripted session, then the log, replay and audit.

Until the runtime lands, the session drives the real engine and the real SQLite event log,
with the in-memory layer store and runtime standing in for overlayfs and namespaces (the
demo says so when it starts). Everything shown is read back from the log through the CLI.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import sys
import tempfile

from adapters.cli import run
from adapters.compose import caller_meta
from core.engine import Engine
from core.errors import LaminaError
from core.memory import CountingIds, MemoryLayerStore, MemoryRuntime
from events.sqlite_log import SqliteEventLog, utcnow


def banner(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}")


def lamina(root: str, *argv: str) -> int:
    print(f"$ lamina {' '.join(argv)}")
    sys.stdout.flush()
    code = run(["--root", root, *argv])
    sys.stdout.flush()
    sys.stderr.flush()
    return code


def session(engine: Engine) -> None:
    """The seed's walk-through, command by command."""
    steps = [
        ("import a busybox rootfs as an image", lambda: engine.import_image(
            {"bin/busybox": "ELF", "etc/passwd": "root:x:0:0"}, "busybox")),
        ("create: a read-write layer on top of the image", lambda: engine.create(
            "busybox", ["touch", "happiness.txt"], name="happy")),
        ("start: a process space around the union view", lambda: engine.start("happy")),
        ("start again: refused by the state machine", lambda: engine.start("happy")),
        ("pause: freeze the cgroup", lambda: engine.pause("happy")),
        ("exec in a paused container: refused", lambda: engine.exec("happy", ["ls"])),
        ("unpause", lambda: engine.unpause("happy")),
        ("commit: burn the read-write layer into an image", lambda: engine.commit(
            "happy", "happy:v1", comment="the seed's happiness.txt")),
        ("stop: SIGTERM", lambda: engine.stop("happy")),
        ("rmi of an image with a child image: refused", lambda: engine.rmi("busybox")),
        ("rm: the read-write layer goes", lambda: engine.rm("happy")),
        ("rmi of the committed image", lambda: engine.rmi("happy:v1")),
    ]
    for text, step in steps:
        try:
            step()
            print(f"  ok       {text}")
        except LaminaError as err:
            print(f"  refused  {text}: {err}")


def tamper(root: str) -> None:
    """Change one recorded row behind the append-only triggers' back."""
    con = sqlite3.connect(os.path.join(root, "events.db"))
    con.executescript("DROP TRIGGER events_no_update;"
                      "UPDATE events SET data = replace(data, 'happy', 'sad') WHERE seq = 4;")
    con.close()


def main() -> None:
    root = tempfile.mkdtemp(prefix="lamina-demo-")
    try:
        banner(f"a scripted session (root {root}; in-memory runtime until the runtime lands)")
        log = SqliteEventLog(root)
        ids = CountingIds()
        engine = Engine(log=log, layers=MemoryLayerStore(ids=CountingIds(n=10**6)),
                        runtime=MemoryRuntime(), ids=ids, clock=utcnow,
                        meta=lambda: caller_meta(["demo"]))
        session(engine)
        banner("the audit trail: every command, accepted or refused")
        lamina(root, "events")
        banner("time travel: the state right after the commit (seq 12)")
        lamina(root, "replay", "--at", "12")
        banner("replay: rebuild the read model from the log")
        lamina(root, "replay")
        lamina(root, "images", "-a")
        banner("audit: the hash chain verifies")
        lamina(root, "audit", "verify")
        banner("tamper with seq 4 behind the triggers' back, then verify again")
        tamper(root)
        code = lamina(root, "audit", "verify")
        print(f"(exit code {code})")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
