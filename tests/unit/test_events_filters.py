"""`lamina events --filter` with docker's keys and rule (a key's values are alternatives,
different keys must all hold): event= with docker's action names, label=, on a real SQLite
log."""

from __future__ import annotations

import pytest

from adapters.eventstore.query import select
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
