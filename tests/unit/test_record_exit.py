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
