"""`lamina events --filter` with docker's keys and rule (a key's values are alternatives,
different keys must all hold): event= with docker's action names, label=, on a real SQLite
log."""

from __future__ import annotations

import pytest

from adapters.eventstore.query import parse_time, select
from adapters.eventstore.sqlite_log import SqliteEventLog
from core.errors import BadInput
from events import types as ev

A, B, IMAGE = "a" * 64, "b" * 64, "c" * 64


@pytest.fixture
def log(tmp_path):
    log = SqliteEventLog(str(tmp_path))
    log.append([ev.LayerRegistered(id="l" * 64, parent=None, diff_id="sha256:x",
                                   chain_id="sha256:x", size=1),
                ev.ImageCreated(id=IMAGE, parent=None, layers=["l" * 64],
                                config={"config": {"Labels": {"tier": "base"}}})],
               expected={}, meta={"user": "root"})
    for cid, name, labels in ((A, "web", {"tier": "web", "x": "1"}), (B, "db", {"tier": "db"})):
        log.append([ev.ContainerCreated(id=cid, name=name, image=IMAGE, cmd=["sh"],
                                        config={"labels": labels})],
                   expected={f"container:{cid}": 0}, meta={"user": "root"})
        log.append([ev.ContainerStarted(id=cid, pid=1)], expected={}, meta={"user": "root"})
    yield log
    log.close()


def picked(log, *filters: str) -> list[tuple[str, str]]:
    return [(r.type, r.stream[:11]) for r in select(log.con, filters=list(filters))]


def test_docker_action_names_and_alternatives(log) -> None:
    assert picked(log, "event=start") == [("ContainerStarted", "container:a"),
                                          ("ContainerStarted", "container:b")]
    assert [t for t, _ in picked(log, "event=create", "type=container")] == \
        ["ContainerCreated", "ContainerCreated"]
    # one key twice: either; two keys: both
    assert len(picked(log, "container=web", "container=db")) == 4
    assert picked(log, "container=web", "event=start") == [("ContainerStarted", "container:a")]


def test_labels_select_the_objects_that_carry_them(log) -> None:
    assert picked(log, "label=tier=web") == [("ContainerCreated", "container:a"),
                                             ("ContainerStarted", "container:a")]
    assert picked(log, "label=tier=web", "label=x") == picked(log, "label=tier=web")
    assert picked(log, "label=tier=web", "label=nope") == []
    assert picked(log, "label=tier=base") == [("ImageCreated", "image:ccccc")]
    with pytest.raises(BadInput, match="invalid filter key 'colour'"):
        picked(log, "colour=red")


def test_since_and_until_pick_by_time_whatever_the_clock_did(log) -> None:
    """--since/--until bound the seqs through the index by time; with times that go back
    (a clock stepped back between appends) they still pick exactly the rows by their time."""
    con = log.con
    con.executescript("DROP TRIGGER events_no_update")  # to give the rows chosen times
    rows = con.execute("SELECT seq FROM events ORDER BY seq").fetchall()
    times = [f"2026-01-01T00:00:0{t}.000000Z" for t in (5, 1, 7, 3, 9, 2)]
    for (seq,), at in zip(rows, times, strict=True):
        con.execute("UPDATE events SET at = ? WHERE seq = ?", (at, seq))
    for since in (None, "2026-01-01T00:00:02", "2026-01-01T00:00:06"):
        for until in (None, "2026-01-01T00:00:03", "2026-01-01T00:00:08"):
            got = [r.seq for r in select(con, since, until)]
            low, high = (parse_time(t) if t else None for t in (since, until))
            want = [seq for (seq,), at in zip(rows, times, strict=True)
                    if (low is None or at >= low) and (high is None or at <= high)]
            assert got == want, (since, until)


def test_names_are_the_last_each_container_had(log) -> None:
    from adapters.eventstore.query import ContainerNames

    log.append([ev.ContainerRenamed(id=A, name="front")], expected={}, meta={"user": "root"})
    names = ContainerNames(log.con)
    assert names.get(A) == "front" and names[B] == "db" and names.get("x" * 64, "") == ""
    assert dict(names) == {A: "front", B: "db"}
