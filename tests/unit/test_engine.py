"""The service layer on in-memory ports: ids, image rules, signals, commit, exec."""

from __future__ import annotations

import signal

import pytest

from core.errors import Ambiguous, BadInput, Conflict, IllegalMove, NotFound
from core.memory import memory_engine


@pytest.fixture
def e():
    e = memory_engine(user="t")
    e.import_image({"bin/sh": "x"}, "busybox")
    return e


def rejections(e) -> list[str]:
    return [r.data["reason"] for r in e.log.records if r.type == "CommandRejected"]


def test_ids_names_and_prefixes(e) -> None:
    a = e.create("busybox", ["sh"], name="a")
    assert len(a) == 64
    assert e.container(a).name == "a"
    assert e.container("a").id == a
    assert e.container(a[:5]).id == a
    generated = e.create("busybox", ["sh"])
    assert "_" in e.container(generated).name
    with pytest.raises(NotFound, match="no such container: nope"):
        e.start("nope")
    assert rejections(e)[-1] == "no such container: nope"


def test_an_ambiguous_prefix_is_an_error(e) -> None:
    ids = [e.create("busybox", ["sh"]) for _ in range(40)]
    first = {}
    for cid in ids:
        first.setdefault(cid[0], []).append(cid)
    shared = next(v for v in first.values() if len(v) > 1)
    with pytest.raises(Ambiguous, match=f"multiple containers found with provided prefix: "
                                        f"{shared[0][0]}"):
        e.start(shared[0][0])


def test_names_are_unique_and_checked(e) -> None:
    e.create("busybox", ["sh"], name="web")
    with pytest.raises(Conflict, match='name "/web" is already in use'):
        e.create("busybox", ["sh"], name="web")
    with pytest.raises(BadInput, match="invalid container name"):
        e.create("busybox", ["sh"], name="bad name")


def test_images_resolve_by_tag_id_and_prefix(e) -> None:
    image = e.log.image_tagged("busybox:latest")
    assert e.image("busybox").id == image.id
    assert e.image("sha256:" + image.id).id == image.id
    assert e.image(image.id[:6]).id == image.id
    with pytest.raises(NotFound):
        e.image("alpine")


def test_illegal_moves_are_refused_and_recorded(e) -> None:
    e.create("busybox", ["sh"], name="c")
    for move in (e.stop, e.pause, e.unpause, e.kill):
        with pytest.raises(IllegalMove):
            move("c")
    assert len(rejections(e)) == 4
    assert e.container("c").state == "stopped"


def test_kill_survivable_signal_and_sigkill(e) -> None:
    e.create("busybox", ["sh"], name="c")
    e.start("c")
    assert e.kill("c", signal.SIGHUP).state == "running"
    c = e.kill("c")
    assert (c.state, c.exit_code, c.last_signal) == ("stopped", 137, 9)


def test_sigkill_reaches_a_paused_container(e) -> None:
    e.create("busybox", ["sh"], name="c")
    e.start("c")
    e.pause("c")
    assert e.kill("c", signal.SIGHUP).state == "paused"
    assert e.kill("c").state == "stopped"
    assert "c" not in e.runtime.procs


def test_commit_of_a_running_container_freezes_it_meanwhile(e) -> None:
    cid = e.create("busybox", ["touch", "happiness.txt"], name="c")
    e.start("c")
    e.layers.rw[f"rw-{cid}"]["happiness.txt"] = ""
    seen = []
    original = e.layers.commit_rw_layer

    def spy(rw, parent):
        seen.append(e.runtime.procs[cid].frozen)
        return original(rw, parent)

    e.layers.commit_rw_layer = spy
    iid = e.commit("c", "happy:v1", comment="why")
    assert seen == [True]
    assert e.runtime.procs[cid].frozen is False
    image = e.log.image(iid)
    base = e.log.image_tagged("busybox:latest")
    assert image.parent == base.id
    assert image.layers[:-1] == base.layers
    assert image.config["history"][-1] == {"created": image.config["created"],
                                           "created_by": "touch happiness.txt",
                                           "comment": "why"}
    assert e.layers.layers[image.layers[-1]] == {"happiness.txt": ""}
    assert e.container("c").state == "running"


def test_rmi_rules(e) -> None:
    base = e.log.image_tagged("busybox:latest")
    e.create("busybox", ["sh"], name="c")
    child = e.commit("c", "child")
    with pytest.raises(Conflict, match="image has dependent child images"):
        e.rmi("busybox")
    e.create("child", ["sh"], name="user")
    with pytest.raises(Conflict, match="container .* is using its referenced image"):
        e.rmi("child")
    # -f on an image a container uses: untagged, kept, listed as intermediate
    e.rmi("child", force=True)
    kept = e.log.image(child)
    assert kept is not None and kept.removed and kept.tags == ()
    assert all(lid in e.layers.layers for lid in kept.layers)
    # when its last user goes, it goes too (and its own layer, not the base's)
    e.rm("user")
    assert e.log.image(child) is None
    assert kept.layers[-1] not in e.layers.layers
    assert base.layers[0] in e.layers.layers


def test_rmi_force_of_a_parent_keeps_what_children_need(e) -> None:
    base = e.log.image_tagged("busybox:latest")
    e.create("busybox", ["sh"], name="c")
    e.commit("c", "child")
    e.rm("c")
    e.rmi("busybox", force=True)
    kept = e.log.image(base.id)
    assert kept.removed and not kept.tags
    assert base.layers[0] in e.layers.layers
    e.rmi("child")  # the child goes, and the parent kept only for it goes with it
    assert e.log.images() == []
    assert e.layers.layers == {}


def test_rmi_of_one_tag_among_several_only_untags(e) -> None:
    e.tag("busybox", "other:1")
    e.rmi("other:1")
    assert e.log.image_tagged("busybox:latest") is not None
    assert e.log.image_tagged("other:1") is None


def test_exec_records_start_and_exit(e) -> None:
    e.create("busybox", ["sh"], name="c")
    with pytest.raises(IllegalMove, match="not running"):
        e.exec("c", ["true"])
    e.start("c")
    assert e.exec("c", ["false"]) == 1
    types = [r.type for r in e.log.records[-2:]]
    assert types == ["ExecStarted", "ExecExited"]
    assert e.log.records[-1].data["exit_code"] == 1


@pytest.mark.parametrize("stays", [False, True])
def test_an_exec_detached_with_the_keys_records_the_detach_then_its_end(
        e, monkeypatch, stays: bool) -> None:
    """The runtime raises ExecDetached; the engine records it, then its watch records the
    end (here at once): the CLI's leaves (the detach reaches the caller), a server's
    worker stays and returns the code."""
    from core.ports import ExecDetached

    def watch(record):
        record(143)
        return 143 if stays else None

    def detached(*_args, **_kw):
        raise ExecDetached(watch)

    e.create("busybox", ["sh"], name="c")
    e.start("c")
    monkeypatch.setattr(e.runtime, "exec", detached)
    if stays:
        assert e.exec("c", ["cat"]) == 143
    else:
        with pytest.raises(ExecDetached, match="read escape sequence"):
            e.exec("c", ["cat"])
    records = e.log.records[-3:]
    assert [r.type for r in records] == ["ExecStarted", "ExecDetached", "ExecExited"]
    assert {r.data["exec_id"] for r in records} == {records[0].data["exec_id"]}
    assert records[-1].data["exit_code"] == 143


def test_rm_f_takes_the_end_its_kill_gave_a_detached_exec(e, monkeypatch) -> None:
    """-f's kill ends a detached exec, whose watcher records ExecExited while rm holds the
    container's lock: rm takes the version that moved (an exec's records change no state)
    instead of failing with "changed while this command ran"."""
    from core.ports import ExecDetached

    watchers = []

    def detached(*_args, **_kw):
        raise ExecDetached(lambda record: watchers.append(record))

    e.create("busybox", ["sh"], name="c")
    e.start("c")
    monkeypatch.setattr(e.runtime, "exec", detached)
    with pytest.raises(ExecDetached):
        e.exec("c", ["cat"])
    kill = e.runtime.signal

    def kill_ending_the_exec(c, sig):
        kill(c, sig)
        watchers.pop()(137)

    monkeypatch.setattr(e.runtime, "signal", kill_ending_the_exec)
    e.rm("c", force=True)
    assert [r.type for r in e.log.records[-2:]] == ["ExecExited", "ContainerRemoved"]
    assert e.log.container("c") is None and not watchers


def test_restart_and_exit(e) -> None:
    e.create("busybox", ["sh"], name="c")
    e.start("c")
    pid = e.container("c").pid
    c = e.restart("c")
    # RestartCount counts the restart policy's restarts only (docker's): the user's is 0
    assert c.state == "running" and c.pid != pid and c.restart_count == 0
    e.runtime.finish(c.id, 3)
    c = e.exited("c", 3)
    assert (c.state, c.exit_code, c.pid) == ("stopped", 3, 0)


def test_rm_refuses_live_containers_without_force(e) -> None:
    e.create("busybox", ["sh"], name="c")
    e.start("c")
    with pytest.raises(IllegalMove, match="stop the container before removing or force"):
        e.rm("c")
    e.rm("c", force=True)
    assert e.log.containers() == []
    assert e.layers.rw == {}


def test_pause_and_unpause_survive_an_exec_recorded_meanwhile(e, monkeypatch) -> None:
    """An exec appends to the container's stream without its lock: a pause that read the
    version before must still be recorded (append_locked), and a pause whose record fails
    must not leave the host frozen."""
    cid = e.create("busybox", ["sh"], name="p")
    e.start(cid)
    freeze = e.runtime.freeze

    def exec_meanwhile(c):
        freeze(c)
        e.exec(cid, ["true"])  # moves the stream's version, as a concurrent exec would

    monkeypatch.setattr(e.runtime, "freeze", exec_meanwhile)
    assert e.pause(cid).state == "paused"
    monkeypatch.setattr(e.runtime, "freeze", freeze)

    def refuse(*args, **kwargs):
        raise Conflict("the log refused")

    thawed = e.unpause(cid)
    assert thawed.state == "running" and not e.runtime.procs[cid].frozen
    from core import command

    monkeypatch.setattr(command.Command, "append_locked", refuse)
    with pytest.raises(Conflict):
        e.pause(cid)
    assert not e.runtime.procs[cid].frozen  # undone: the log still says running
    assert e.container(cid).state == "running"
