"""adapters/record_exit.py in a container's warm monitor: a fork of the command that started
the container records the exit in its own process (in_monitor), so it must first forget
what that command was doing for its client, which a recorder exec'd afresh never had."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from adapters import bootstrap, deferred, record_exit


@pytest.fixture
def forked_from_a_served_command() -> Iterator[list[str]]:
    """This process as a fork server's child leaves it: its client's identity in PEER,
    a deletion deferred to after its answer."""
    done: list[str] = []
    bootstrap.PEER.update(uid=4321, pid=98765)
    deferred.enable()
    deferred.later(lambda: done.append("the command's deletion"))
    try:
        yield done
    finally:
        bootstrap.PEER.clear()
        deferred.forget()


def test_the_monitor_records_as_itself_and_deletes_at_once(
        forked_from_a_served_command: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def main(argv: list[str]) -> int:
        seen["argv"] = argv
        seen["meta"] = bootstrap.caller_meta(["lamina-monitor"])
        deferred.later(lambda: seen.setdefault("deleted", True))
        return 0

    monkeypatch.setattr(record_exit, "main", main)
    assert record_exit.in_monitor(["/root", "c" * 64, "7", "--remove"]) == 0
    assert seen["argv"] == ["/root", "c" * 64, "7", "--remove"]
    assert (seen["meta"]["uid"], seen["meta"]["pid"]) == (os.getuid(), os.getpid())
    assert seen["deleted"]  # done at once, not left for an answer the monitor never gives
    assert forked_from_a_served_command == []  # the command's own work is the command's


def test_an_end_the_recorder_cannot_record_is_said_in_serve_log(tmp_path) -> None:
    """The log locked by another writer for longer than the busy timeout: the recorder
    (`python -m adapters.record_exit`, as a monitor execs it, its stderr /dev/null) says
    in the root's serve.log that the end is not recorded, and exits non-zero; the
    container is as it was (running), and a later recorder records the end."""
    import json
    import sqlite3
    import subprocess
    import sys

    from tests.sessions import engine as session_engine

    root = str(tmp_path)
    e = session_engine(root)
    e.import_image({"bin/sh": "x"}, "busybox")
    e.create("busybox", ["sh"], name="c")
    c = e.start("c")
    cdir = tmp_path / "containers" / c.id
    cdir.mkdir(parents=True, exist_ok=True)
    (cdir / "exit.json").write_text(json.dumps({"pid": c.pid, "code": 3}))
    top = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    def recorder() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "adapters.record_exit", root, c.id, str(c.pid)],
            cwd=top, env={**os.environ, "LAMINA_BUSY_TIMEOUT": "0.3"},
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)

    blocker = sqlite3.connect(e.log.path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        out = recorder()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert out.returncode != 0, out
    assert out.stderr == ""  # said where an operator looks, not on a monitor's /dev/null
    [line] = (tmp_path / "serve.log").read_text().splitlines()
    assert " lamina exit recorder " in line
    assert f": could not record its end: container {c.id[:12]}, process {c.pid}: " in line
    assert "locked" in line, line
    assert line.endswith("(the log shows it running until the next lamina command "
                         "records its end)")
    assert e.log.container(c.id).state == "running"  # nothing recorded, nothing lost

    again = recorder()
    assert again.returncode == 0, again
    ended = e.log.container(c.id)
    assert (ended.state, ended.exit_code) == ("stopped", 3)
    assert len((tmp_path / "serve.log").read_text().splitlines()) == 1
