"""rename, update, container/image/system prune and disk usage on in-memory ports: docker's
rules and words, each change one event, refusals recorded, and a replay that agrees."""

from __future__ import annotations

import pytest

from core.errors import BadInput, ConcurrencyError, Conflict, NotFound
from core.memory import memory_engine
from core.model import World
from events import types as ev


@pytest.fixture
def e():
    e = memory_engine(user="t")
    e.import_image({"bin/sh": "x"}, "busybox")
    return e


def rejections(e) -> list[str]:
    return [r.data["reason"] for r in e.log.records if r.type == "CommandRejected"]


def replayed(e) -> World:
    world = World()
    for rec in e.log.records:
        world.apply(rec)
    return world


def test_rename_in_any_state_and_docker_refusals(e) -> None:
    cid = e.create("busybox", ["sh"], name="a")
    e.create("busybox", ["sh"], name="b")
    assert e.rename("a", "c").name == "c"
    assert e.container("c").id == cid and e.log.container_named("a") is None
    e.start("c")
    e.rename(cid[:8], "/d")  # docker takes the name with its slash too
    assert e.container(cid).name == "d" and e.container(cid).state == "running"
    with pytest.raises(Conflict, match='container name "/b" is already in use by container'):
        e.rename("d", "b")
    with pytest.raises(BadInput, match="same name as its current name"):
        e.rename("d", "d")
    with pytest.raises(BadInput, match="Neither old nor new names may be empty"):
        e.rename("d", "")
    with pytest.raises(BadInput, match="invalid container name"):
        e.rename("d", "bad name")
    with pytest.raises(NotFound):
        e.rename("nosuch", "x")
    assert len(rejections(e)) == 5
    renamed = [r for r in e.log.records if r.type == "ContainerRenamed"]
    assert [(r.data["old_name"], r.data["name"]) for r in renamed] == [("a", "c"), ("c", "d")]
    assert replayed(e).containers[cid] == e.log.container(cid)


def test_the_read_model_decides_a_rename_race(e) -> None:
    """Two renames judged against the same read model: the log takes one name once."""
    a = e.log.container(e.create("busybox", ["sh"], name="a"))
    b = e.log.container(e.create("busybox", ["sh"], name="b"))
    e.log.append([ev.ContainerRenamed(id=a.id, name="x", old_name="a")],
                 expected={f"container:{a.id}": a.version}, meta={})
    with pytest.raises(ConcurrencyError):
        e.log.append([ev.ContainerRenamed(id=b.id, name="x", old_name="b")],
                     expected={f"container:{b.id}": b.version}, meta={})
    assert e.log.container(b.id).name == "b"


def test_a_rename_moves_the_names_the_dns_answers() -> None:
    from core.model import Container, evolve
    from events.envelope import Recorded

    c = Container(id="c" * 64, name="web", image="i", state="running", version=3, created="t",
                  endpoints={"net": {"address": "10.0.0.2", "dns_names": ["web", "w", "cc"]}})
    rec = Recorded(seq=9, stream=f"container:{c.id}", version=4, type="ContainerRenamed",
                   schema=1, data={"id": c.id, "name": "api", "old_name": "web"}, meta={},
                   at="t")
    assert evolve(c, rec).endpoints["net"]["dns_names"] == ["api", "w", "cc"]


def test_update_live_and_stopped(e) -> None:
    cid = e.create("busybox", ["sh"], name="a", config={"memory": 64 << 20})
    c = e.update("a", {"memory": 32 << 20, "cpus": 0.5})  # stopped: for the next start
    assert (c.config["memory"], c.config["cpus"]) == (32 << 20, 0.5)
    [rec] = [r for r in e.log.records if r.type == "ContainerUpdated"]
    assert rec.data["changes"] == {"memory": 32 << 20, "cpus": 0.5}
    assert rec.data["applied"] is False
    e.start("a")
    c = e.update("a", {"pids": 50, "memory": -1})  # -1 lifts the limit
    assert c.config["pids"] == 50 and "memory" not in c.config
    assert e.runtime.procs[cid].limits == {"pids": 50, "memory": None}
    assert [r.data["applied"] for r in e.log.records if r.type == "ContainerUpdated"] == \
        [False, True]
    assert replayed(e).containers[cid] == e.log.container(cid)


def test_update_refuses_by_name(e) -> None:
    e.create("busybox", ["sh"], name="a")
    with pytest.raises(BadInput, match=r"CpuShares \(-c, --cpu-shares\) is not supported"):
        e.update("a", {"unsupported": ["HostConfig.CpuShares"]})
    with pytest.raises(BadInput, match="Minimum memory limit allowed is 6MB"):
        e.update("a", {"memory": 1024})
    with pytest.raises(BadInput, match="Range of CPUs"):
        e.update("a", {"cpus": 0.001})
    before = e.container("a").version
    with pytest.raises(BadInput):  # core/restart.py judges a policy (for_update)
        e.update("a", {"restart": {"Name": "sometimes"}})
    assert e.container("a").version == before
    assert len(rejections(e)) == 4
    c = e.update("a", {"restart": {"Name": "on-failure", "MaximumRetryCount": 3}})
    assert c.config["restart"] == {"Name": "on-failure", "MaximumRetryCount": 3}


def test_container_prune(e) -> None:
    a = e.create("busybox", ["sh"], name="a", config={"labels": {"keep": "1"}})
    b = e.create("busybox", ["sh"], name="b")
    e.start(e.create("busybox", ["sh"], name="c"))
    e.layers.rw[e.container("b").rw_layer] = {"/f": "hello"}
    with pytest.raises(BadInput, match="invalid filter 'nope'"):
        e.container_prune({"nope": ["x"]})
    assert e.container_prune({"until": ["2000-01-01"]}).ids == []
    pruned = e.container_prune({"label!": ["keep"]})
    assert pruned.ids == [b] and pruned.reclaimed == 5
    assert e.container_prune({"label": ["keep=1"]}).ids == [a]
    assert [c.name for c in e.log.containers()] == ["c"]


def test_image_prune_dangling_then_all(e) -> None:
    base = e.image("busybox").id
    e.create("busybox", ["sh"], name="user")  # busybox is in use: never pruned
    e.create("busybox", ["sh"], name="x")
    kept = e.commit("x", "kept:1")
    dangling = e.commit("x")
    pruned = e.image_prune()
    assert pruned.deleted == [{"Deleted": f"sha256:{dangling}"}]
    assert e.log.image(dangling) is None and e.log.image(kept) is not None
    pruned = e.image_prune(all=True)
    assert pruned.deleted == [{"Untagged": "kept:1"}, {"Deleted": f"sha256:{kept}"}]
    assert e.log.image(base) is not None
    assert e.image_prune({"dangling": ["false"]}).deleted == []
    with pytest.raises(BadInput, match="invalid filter 'until2'"):
        e.image_prune({"until2": ["1h"]})


def test_system_prune_and_disk_usage(e) -> None:
    e.create("busybox", ["sh"], name="gone")
    e.start(e.create("busybox", ["sh"], name="live"))
    e.volume_create()
    usage = e.disk_usage()
    assert [c.container.name for c in usage.containers] == ["live", "gone"]
    assert usage.container_line()[:2] == (2, 1)
    assert usage.volume_line()[:2] == (1, 0)
    assert usage.image_line()[:2] == (1, 1)
    with pytest.raises(BadInput, match='"until" filter is not supported with "--volumes"'):
        e.system_prune({"until": ["1h"]}, volumes=True)
    pruned = e.system_prune(volumes=True)
    assert [e.log.container(cid) for cid in pruned.containers.ids] == [None]
    assert len(pruned.volumes) == 1 and pruned.images.deleted == []
    assert [c.name for c in e.log.containers()] == ["live"]


def test_sqlites_unique_name_refuses_the_second_rename(tmp_path) -> None:
    from adapters.eventstore.sqlite_log import SqliteEventLog

    log = SqliteEventLog(str(tmp_path))
    a, b = "a" * 64, "b" * 64
    for cid, name in ((a, "a"), (b, "b")):
        log.append([ev.ContainerCreated(id=cid, name=name, image="i" * 64)],
                   expected={f"container:{cid}": 0}, meta={})
    log.append([ev.ContainerRenamed(id=a, name="x", old_name="a")],
               expected={f"container:{a}": 1}, meta={})
    with pytest.raises(ConcurrencyError, match="UNIQUE"):
        log.append([ev.ContainerRenamed(id=b, name="x", old_name="b")],
                   expected={f"container:{b}": 1}, meta={})
    assert log.container(b).name == "b" and log.container_named("x").id == a
    log.close()
