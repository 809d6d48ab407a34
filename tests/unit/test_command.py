"""The unit of work (core/command.py) on the in-memory log: a command's meta, its rejection
(once, with the command, target and reason; never for a StoreError), expected versions,
the append under a container's lock, and the optimistic-concurrency retry."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from core.command import Command
from core.errors import ConcurrencyError, IllegalMove, NotFound, StoreError
from core.memory import MemoryEventLog, memory_engine
from events import types as ev

REPO = Path(__file__).resolve().parents[2]


def rejections(log: MemoryEventLog) -> list[dict]:
    return [r.data for r in log.read() if r.type == "CommandRejected"]


def engine_with_image():
    e = memory_engine(user="t")
    iid = e.import_image({"/bin/sh": "x"}, "busybox")
    return e, iid


def test_a_refusal_is_recorded_once_with_command_target_and_reason() -> None:
    log = MemoryEventLog()
    cmd = Command.begin(log, "start", "web", {"user": "t", "pid": 7}, "c0ffee")
    with pytest.raises(NotFound, match="no such container: web"), cmd:
        raise NotFound("no such container: web")
    [rec] = list(log.read())
    assert rec.type == "CommandRejected" and rec.stream == "command:c0ffee"
    assert rec.data == {"id": "c0ffee", "command": "start", "target": "web",
                        "reason": "no such container: web"}
    assert rec.meta == {"user": "t", "pid": 7, "command": "start", "command_id": "c0ffee"}


def test_a_refusal_through_the_engine_is_recorded_once() -> None:
    """The error passes through the container's guard and the part's own blocks: still one
    record, naming the engine command and the reference the caller gave."""
    e, _ = engine_with_image()
    cid = e.create("busybox", ["sh"], name="web")
    with pytest.raises(IllegalMove, match="is not running"):
        e.pause("web")
    assert rejections(e.log) == [{"id": rejections(e.log)[0]["id"], "command": "pause",
                                  "target": "web",
                                  "reason": f"container {cid[:12]} is not running"}]


def test_a_store_error_or_a_foreign_exception_is_not_recorded() -> None:
    """The log failing is no refusal (and can't record one); what isn't a LaminaError is a
    bug or an interruption, not an answer to the caller."""
    log = MemoryEventLog()
    for err in (StoreError("events.db is locked"), KeyError("x"), KeyboardInterrupt()):
        with pytest.raises(type(err)), Command.begin(log, "pause", "web", {}, "c1"):
            raise err
    assert list(log.read()) == []


def test_every_event_of_a_command_carries_its_meta() -> None:
    e, _ = engine_with_image()
    e.create("busybox", ["sh"], name="web")
    iid = e.commit("web", "snap")
    recs = [r for r in e.log.read() if r.meta["command"] == "commit"]
    assert [r.type for r in recs] == ["LayerRegistered", "ImageCreated", "ImageTagged",
                                      "ContainerCommitted"]
    assert {r.meta["command_id"] for r in recs} == {recs[0].meta["command_id"]}
    assert recs[0].meta["user"] == "t" and recs[1].data["id"] == iid
    first, second = e.command("tag", "x"), e.command("tag", "x")
    assert first.id != second.id and first.meta["command"] == "tag"


def test_expected_versions_are_passed_through() -> None:
    e, iid = engine_with_image()
    stream = f"image:{iid}"
    version = e.log.image(iid).version
    cmd = e.command("tag", iid)
    with pytest.raises(ConcurrencyError, match=f"{stream} is at version {version}"):
        cmd.append([ev.ImageTagged(id=iid, tag="other:latest")], {stream: version - 1})
    assert e.log.image_tagged("other:latest") is None  # all or nothing
    cmd.append([ev.ImageTagged(id=iid, tag="other:latest")], {stream: version})
    assert e.log.image(iid).version == version + 1
    assert [r.meta for r in e.log.read(stream=stream)][-1] == cmd.meta


def test_a_removed_stream_keeps_its_version() -> None:
    """An id can come back (the same config, imported again): its stream's next append must
    expect the version the log holds, which the read model forgot with the image."""
    e, iid = engine_with_image()
    e.rmi("busybox")
    assert e.log.image(iid) is None
    assert [r.type for r in e.log.read(stream=f"image:{iid}")] == [
        "ImageCreated", "ImageTagged", "ImageUntagged", "ImageRemoved"]
    cmd = e.command("import", "again")
    assert cmd.stream_version(f"image:{iid}") == 4
    assert cmd.stream_version("image:never") == 0


def test_a_conflict_is_retried_once() -> None:
    e, iid = engine_with_image()
    cmd = e.command("tag", iid)
    attempts = []

    def attempt() -> int:
        seen = e.log.image(iid).version
        attempts.append(seen)
        if len(attempts) == 1:  # a rival appends between our read and our append
            e.command("tag", iid).append([ev.ImageTagged(id=iid, tag="rival:1")],
                                         {f"image:{iid}": seen})
        cmd.append([ev.ImageTagged(id=iid, tag="mine:1")], {f"image:{iid}": seen})
        return seen

    assert cmd.retrying(attempt) == attempts[0] + 1  # judged again on the new version
    assert len(attempts) == 2
    assert set(e.log.image(iid).tags) >= {"rival:1", "mine:1"}


def test_a_second_conflict_is_raised_and_recorded_as_the_refusal() -> None:
    e, iid = engine_with_image()
    attempts = []

    def attempt() -> None:
        seen = e.log.image(iid).version
        attempts.append(seen)
        e.command("tag", iid).append([ev.ImageTagged(id=iid, tag=f"rival:{len(attempts)}")],
                                     {f"image:{iid}": seen})
        cmd.append([ev.ImageTagged(id=iid, tag="mine:1")], {f"image:{iid}": seen})

    with pytest.raises(ConcurrencyError), e.command("tag", iid) as cmd:
        cmd.retrying(attempt)
    assert len(attempts) == 2
    assert "mine:1" not in e.log.image(iid).tags
    [rejected] = rejections(e.log)
    assert rejected["command"] == "tag" and "expected" in rejected["reason"]


def test_an_append_under_the_lock_takes_a_version_moved_without_a_state_change() -> None:
    """exec appends to a running container's stream without its lock: a stop holding the
    lock still records, on the new version. A move of state meanwhile is a real conflict."""
    e, _ = engine_with_image()
    cid = e.create("busybox", ["sh"], name="web")
    e.start("web")
    read = e.container("web")
    assert e.exec("web", ["true"]) == 0  # ExecStarted, ExecExited: two versions on
    e.command("stop", "web").append_locked(read, ev.ContainerStopped(id=cid, signal=15,
                                                                      exit_code=143))
    assert e.container("web").state == "stopped"

    other = e.create("busybox", ["sh"], name="db")
    e.start("db")
    read = e.container("db")
    e.pause("db")
    with pytest.raises(ConcurrencyError):
        e.command("stop", "db").append_locked(read, ev.ContainerStopped(
            id=other, signal=15, exit_code=143))
    assert e.container("db").state == "paused"


def test_an_append_under_the_lock_answers_with_the_container_the_log_now_holds() -> None:
    """append_locked's container is the read model's after the append (pause and unpause
    answer with it, reading nothing back), also when an exec moved the version first."""
    e, _ = engine_with_image()
    cid = e.create("busybox", ["sh"], name="web")
    e.start("web")
    assert e.pause("web") == e.log.container(cid) and e.log.container(cid).state == "paused"
    assert e.unpause("web") == e.log.container(cid) and e.log.container(cid).state == "running"
    read = e.container("web")
    assert e.exec("web", ["true"]) == 0  # two versions on, the state unchanged
    paused = e.command("pause", "web").append_locked(read, ev.ContainerPaused(id=cid))
    assert paused == e.log.container(cid)
    assert (paused.state, paused.version) == ("paused", read.version + 3)


def test_on_sqlite_the_container_answered_is_the_one_read_back(tmp_path: Path) -> None:
    """The same on SQLite, whose read model keeps the container as JSON text: the answer
    made without reading it is equal to the one read back from that text."""
    from adapters.eventstore.sqlite_log import SqliteEventLog

    log = SqliteEventLog(str(tmp_path))
    cid = "c" * 64
    log.append([ev.ContainerCreated(id=cid, name="web", image="i" * 64, cmd=["sh", "-c", "x"],
                                    config={"env": ["A=1"], "labels": {"k": "v"},
                                            "network": "none"})],
               expected={f"container:{cid}": 0}, meta={})
    log.append([ev.ContainerStarted(id=cid, pid=7, cgroup=f"lamina/{cid}", start_time=9)],
               expected={f"container:{cid}": 1}, meta={})
    read = log.container(cid)
    log.append([ev.ExecStarted(id=cid, exec_id="e1", argv=["true"])],
               expected={f"container:{cid}": 2}, meta={})
    cmd = Command.begin(log, "pause", "web", {"user": "t"}, "c0ffee")
    paused = cmd.append_locked(read, ev.ContainerPaused(id=cid))
    assert paused == log.container(cid) and paused.state == "paused" and paused.version == 4
    unpaused = cmd.append_locked(paused, ev.ContainerUnpaused(id=cid))
    assert unpaused == log.container(cid) and unpaused.state == "running"
    log.close()


# --- no module of core reaches into another's private names --------------------------------


def private_reaches(source: str) -> list[str]:
    """`obj._name` on anything but self or cls, and `from x import _name`: the plumbing a
    module keeps to itself, used from outside it."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                and not node.attr.startswith("__") \
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.ImportFrom):
            found += [f"{node.lineno}: from {node.module} import {a.name}" for a in node.names
                      if a.name.startswith("_") and not a.name.startswith("__")]
    return found


def test_no_core_module_calls_another_modules_private_names() -> None:
    """Build and distribution once called the engine's _command, _append, _load... 21
    times; they use the unit of work and the engine's public parts now, and stay so."""
    found = {str(p.relative_to(REPO)): hits for p in sorted((REPO / "core").rglob("*.py"))
             if (hits := private_reaches(p.read_text()))}
    assert found == {}


def test_the_private_reach_check_sees_what_it_looks_for() -> None:
    source = ("from core.engine.images import _as_tag\n"
              "def f(engine, self):\n"
              "    engine._append([])\n    self._ok()\n    engine.__class__\n")
    assert private_reaches(source) == ["1: from core.engine.images import _as_tag",
                                       "3: engine._append"]
