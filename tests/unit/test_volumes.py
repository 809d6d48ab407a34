"""Volumes on the in-memory engine (core/engine/volumes.py): create, rm, prune, inspect and
list as docker's daemon answers them, each one unit of work in the log, and the order of
writes (the data made before the log says the volume exists, deleted after it says it is
gone).

A container's use of a volume is recorded by its create (VolumeMounted, the container side
of issue 17); here it is appended straight to the log, as that create would."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from core.errors import BadInput, ConcurrencyError, Conflict, NotFound, StoreError
from core.memory import memory_engine
from events import types as ev

CID, OTHER = "c" * 64, "d" * 64
META = {"user": "t"}


@pytest.fixture
def e() -> Any:
    return memory_engine(user="t")


def types(e: Any, after: int = 0) -> list[str]:
    return [r.type for r in list(e.log.read())[after:]]


def rejected(e: Any) -> list[dict]:
    return [r.data for r in e.log.read() if r.type == "CommandRejected"]


def mount(e: Any, name: str, cid: str = CID, target: str = "/data") -> None:
    """What a container's create records for a volume it mounts."""
    v = e.log.volume(name)
    e.log.append([ev.VolumeMounted(id=name, container=cid, target=target)],
                 expected={f"volume:{name}": v.version}, meta=META)


def unmount(e: Any, name: str, cid: str = CID) -> None:
    v = e.log.volume(name)
    e.log.append([ev.VolumeUnmounted(id=name, container=cid)],
                 expected={f"volume:{name}": v.version}, meta=META)


# --- create --------------------------------------------------------------------------------


def test_create_records_the_volume_after_making_its_data(e) -> None:
    assert e.volume_create("data", labels={"tier": "db"}) == "data"
    [rec] = list(e.log.read())
    assert (rec.type, rec.stream, rec.meta["command"]) == \
        ("VolumeCreated", "volume:data", "volume create")
    assert rec.data == {"id": "data", "driver": "local", "labels": {"tier": "db"},
                        "options": {}, "anonymous": False}
    v = e.volume("data")
    assert (v.driver, v.labels, v.anonymous, v.users) == ("local", {"tier": "db"}, False, {})
    assert e.volumes.exists("data") and e.volumes.path("data") == "/memory/volumes/data/_data"


def test_creating_an_existing_name_returns_it_unchanged_and_records_nothing(e) -> None:
    e.volume_create("data", labels={"a": "1"})
    e.volumes.write("data", {"f": "kept"})
    n = len(e.log.records)
    assert e.volume_create("data", labels={"b": "2"}) == "data"
    assert len(e.log.records) == n
    assert e.volume("data").labels == {"a": "1"}
    assert e.volumes.files("data") == {"f": "kept"}


def test_without_a_name_the_volume_is_anonymous_with_a_random_name(e) -> None:
    name = e.volume_create()
    assert len(name) == 64 and all(c in "0123456789abcdef" for c in name)
    v = e.volume(name)
    assert v.anonymous and e.volumes.exists(name)
    assert e.volume_create() != name


@pytest.mark.parametrize(("name", "reason"), [
    ("x", "create x: volume name is too short, names should be at least two alphanumeric "
          "characters"),
    ("a/b", 'create a/b: "a/b" includes invalid characters for a local volume name, only '
            '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
            "directory, use absolute path"),
    ("../etc", None), (".hidden", None), ("-dash", None), ("", None),
])
def test_a_bad_name_is_refused_in_dockers_words(e, name: str, reason: str | None) -> None:
    with pytest.raises(BadInput) as err:
        e.volume_create(name)
    if reason:
        assert str(err.value) == reason
    assert types(e) == ["CommandRejected"] and e.volumes.names() == []
    assert rejected(e)[0]["command"] == "volume create"


def test_a_driver_other_than_local_is_not_found_in_dockers_words(e) -> None:
    with pytest.raises(NotFound) as err:
        e.volume_create("data", driver="nfs-plugin")
    assert str(err.value) == ('create data: error looking up volume plugin nfs-plugin: '
                              'plugin "nfs-plugin" not found')
    assert types(e) == ["CommandRejected"] and e.volumes.names() == []
    assert e.volume_create("data", driver="local") == "data"
    assert e.volume_create("other", driver="") == "other"


def test_the_local_drivers_options_are_refused_by_name_others_are_invalid(e) -> None:
    for key in ("type", "device", "o", "size"):
        with pytest.raises(BadInput, match=f"volume option '{key}' .* is not supported by "
                                           "lamina yet"):
            e.volume_create("data", options={key: "tmpfs"})
    with pytest.raises(BadInput, match='invalid option: "colour"'):
        e.volume_create("data", options={"colour": "blue", "type": "tmpfs"})
    assert e.volumes.names() == [] and set(types(e)) == {"CommandRejected"}
    assert e.volume_create("data", options={}) == "data"


def test_if_the_append_fails_the_data_made_for_it_goes(e) -> None:
    append = e.log.append

    def failing(*args: Any, **kwargs: Any) -> Any:
        assert e.volumes.exists("data"), "the data must exist before the log says so"
        raise StoreError("events.db is locked")

    e.log.append = failing
    with pytest.raises(StoreError):
        e.volume_create("data")
    e.log.append = append
    assert not e.volumes.exists("data") and e.log.volume("data") is None


def test_a_creator_that_loses_the_race_takes_the_winners_volume(e) -> None:
    """Two creates of one name: the second's append fails (the stream moved), it looks
    again, finds the volume and returns it; the data stays, once."""
    append = e.log.append
    raced = []

    def racing(events: Sequence[ev.Event], *, expected: Mapping[str, int],
               meta: Mapping[str, Any]) -> Any:
        if not raced:
            raced.append(1)
            append([ev.VolumeCreated(id="data", labels={"by": "winner"})],
                   expected={"volume:data": 0}, meta=META)
        return append(events, expected=expected, meta=meta)

    e.log.append = racing
    assert e.volume_create("data", labels={"by": "loser"}) == "data"
    e.log.append = append
    assert e.volume("data").labels == {"by": "winner"} and e.volumes.exists("data")
    assert types(e) == ["VolumeCreated"]


def test_data_a_crashed_rm_left_does_not_come_back_with_the_name(e) -> None:
    """VolumeRemoved is recorded before the data is deleted: a crash between the two leaves
    the data of a volume the log says is gone. A new volume of that name starts empty."""
    e.volume_create("data")
    e.volumes.write("data", {"secret": "old"})
    e.log.append([ev.VolumeRemoved(id="data")], expected={"volume:data": 1}, meta=META)
    assert e.volumes.exists("data")  # the crash: the data is left
    e.volume_create("data")
    assert e.volumes.files("data") == {} and e.volume("data").version == 3


# --- rm ------------------------------------------------------------------------------------


def test_rm_records_then_deletes(e) -> None:
    e.volume_create("data")
    e.volumes.write("data", {"f": "x"})
    append = e.log.append

    def watching(*args: Any, **kwargs: Any) -> Any:
        assert e.volumes.exists("data"), "the data went before the log said the volume did"
        return append(*args, **kwargs)

    e.log.append = watching
    assert e.volume_rm(["data"]) == ["data"]
    e.log.append = append
    assert types(e) == ["VolumeCreated", "VolumeRemoved"]
    assert e.log.volume("data") is None and not e.volumes.exists("data")
    assert list(e.log.read())[-1].meta["command"] == "volume rm"


def test_rm_of_a_missing_volume_is_no_such_volume_unless_forced(e) -> None:
    with pytest.raises(NotFound, match="^get nosuch: no such volume$"):
        e.volume_rm("nosuch")
    assert rejected(e)[0]["target"] == "nosuch"
    n = len(e.log.records)
    assert e.volume_rm(["nosuch"], force=True) == []
    assert len(e.log.records) == n


def test_a_volume_in_use_is_not_removed_even_forced(e) -> None:
    e.volume_create("data")
    e.volumes.write("data", {"f": "x"})
    mount(e, "data", CID)
    mount(e, "data", OTHER, "/backup")
    for force in (False, True):
        with pytest.raises(Conflict) as err:
            e.volume_rm("data", force=force)
        assert str(err.value) == f"remove data: volume is in use - [{CID}, {OTHER}]"
    assert e.volumes.files("data") == {"f": "x"} and e.log.volume("data") is not None
    unmount(e, "data", CID)
    unmount(e, "data", OTHER)
    assert e.volume_rm("data") == ["data"]


def test_rm_of_several_removes_each_it_can_then_raises_the_first_refusal(e) -> None:
    for name in ("aa", "bb", "cc"):
        e.volume_create(name)
    mount(e, "bb")
    with pytest.raises(Conflict, match="remove bb"):
        e.volume_rm(["aa", "bb", "nosuch", "cc"])
    assert [v.id for v in e.volume_list()] == ["bb"]
    assert [r["target"] for r in rejected(e)] == ["bb", "nosuch"]


def test_a_mount_recorded_while_rm_judged_makes_rm_judge_again(e) -> None:
    """Optimistic concurrency: rm read the volume unused; a container's create mounts it
    before rm appends. rm's append fails on the version, it reads again and refuses."""
    e.volume_create("data")
    append = e.log.append

    def racing(events: Sequence[ev.Event], *, expected: Mapping[str, int],
               meta: Mapping[str, Any]) -> Any:
        if any(isinstance(x, ev.VolumeRemoved) for x in events) and not e.log.volume(
                "data").users:
            mount(e, "data")
        return append(events, expected=expected, meta=meta)

    e.log.append = racing
    with pytest.raises(Conflict, match="volume is in use"):
        e.volume_rm("data")
    e.log.append = append
    assert e.volumes.exists("data") and e.volume("data").users == {CID: ["/data"]}


# --- prune ---------------------------------------------------------------------------------


def test_prune_removes_unused_anonymous_volumes_only_unless_all(e) -> None:
    anon = e.volume_create()
    used = e.volume_create()
    mount(e, used)
    e.volume_create("named")
    e.volumes.write(anon, {"a": "x" * 100, "b": "y" * 20})
    n = len(e.log.records)
    pruned = e.volume_prune()
    assert (pruned.names, pruned.reclaimed) == ([anon], 120)
    assert sorted(v.id for v in e.volume_list()) == sorted([used, "named"])
    assert not e.volumes.exists(anon)
    [rec] = list(e.log.read())[n:]
    assert (rec.type, rec.meta["command"]) == ("VolumeRemoved", "volume prune")
    assert e.volume_prune().names == []
    assert e.volume_prune(all=True).names == ["named"]
    assert [v.id for v in e.volume_list()] == [used]


def test_prune_of_several_is_one_append(e) -> None:
    names = sorted(e.volume_create() for _ in range(3))
    n = len(e.log.records)
    assert e.volume_prune({"all": ["true"]}).names == names
    new = list(e.log.read())[n:]
    assert [r.type for r in new] == ["VolumeRemoved"] * 3
    assert len({r.meta["command_id"] for r in new}) == 1


def test_prune_honours_label_filters_and_the_all_filter(e) -> None:
    e.volume_create("keep", labels={"keep": ""})
    e.volume_create("prod", labels={"env": "prod"})
    e.volume_create("dev", labels={"env": "dev"})
    anon = e.volume_create(labels={"env": "dev"})
    assert e.volume_prune({"label": ["env=dev"]}).names == [anon]
    assert e.volume_prune({"label": ["env=dev"], "all": ["1"]}).names == ["dev"]
    assert e.volume_prune({"label!": ["keep"]}, all=True).names == ["prod"]
    assert [v.id for v in e.volume_list()] == ["keep"]


@pytest.mark.parametrize(("filters", "reason"), [
    ({"dangling": ["true"]}, "invalid filter 'dangling'"),
    ({"all": ["maybe"]}, "invalid filter 'all'"),
    ({"all": ["true", "false"]}, "only one value is expected"),
])
def test_prune_refuses_what_docker_refuses(e, filters: dict, reason: str) -> None:
    e.volume_create()
    with pytest.raises(BadInput, match=reason):
        e.volume_prune(filters)
    assert len(e.volume_list()) == 1 and types(e)[-1] == "CommandRejected"


def test_a_volume_mounted_while_prune_judged_is_kept(e) -> None:
    anon = e.volume_create()
    append = e.log.append

    def racing(events: Sequence[ev.Event], *, expected: Mapping[str, int],
               meta: Mapping[str, Any]) -> Any:
        if any(isinstance(x, ev.VolumeRemoved) for x in events) and not e.log.volume(
                anon).users:
            mount(e, anon)
        return append(events, expected=expected, meta=meta)

    e.log.append = racing
    assert e.volume_prune().names == []
    e.log.append = append
    assert e.volumes.exists(anon)


# --- queries -------------------------------------------------------------------------------


def test_inspect_of_a_missing_volume_is_no_such_volume_and_records_nothing(e) -> None:
    with pytest.raises(NotFound, match="^get nope: no such volume$"):
        e.volume("nope")
    assert types(e) == []


def test_list_filters_as_docker_does(e) -> None:
    e.volume_create("web-data", labels={"app": "web", "tier": "front"})
    e.volume_create("web-logs", labels={"app": "web"})
    e.volume_create("db-data", labels={"app": "db"})
    mount(e, "db-data")

    def names(**filters: list[str]) -> list[str]:
        return [v.id for v in e.volume_list(filters)]

    assert names() == ["db-data", "web-data", "web-logs"]
    assert names(dangling=["true"]) == ["web-data", "web-logs"]
    assert names(dangling=["0"]) == ["db-data"]
    assert names(name=["web"]) == ["web-data", "web-logs"]
    assert names(name=["^db"]) == ["db-data"]
    assert names(name=["data$", "logs"]) == ["db-data", "web-data", "web-logs"]
    assert names(driver=["local"]) == ["db-data", "web-data", "web-logs"]
    assert names(driver=["other"]) == []
    assert names(label=["app=web"]) == ["web-data", "web-logs"]
    assert names(label=["app=web", "tier"]) == ["web-data"]
    assert names(label=["tier=back"]) == []
    for bad, reason in ((dict(colour=["x"]), "invalid filter 'colour'"),
                        (dict(dangling=["maybe"]), "invalid filter 'dangling=maybe'"),
                        (dict(dangling=["true", "false"]), "invalid filter"),
                        ({"label!": ["x"]}, "invalid filter 'label!'")):
        with pytest.raises(BadInput, match=reason):
            e.volume_list(bad)
    assert "CommandRejected" not in types(e)


def test_an_anonymous_volume_shows_dockers_anonymous_label(e) -> None:
    from core.engine.volumes import ANONYMOUS_LABEL, shown_labels

    anon = e.volume_create(labels={"a": "b"})
    assert shown_labels(e.volume(anon)) == {"a": "b", ANONYMOUS_LABEL: ""}
    assert [v.id for v in e.volume_list({"label": [ANONYMOUS_LABEL]})] == [anon]
    e.volume_create("named")
    assert shown_labels(e.volume("named")) == {}


def test_a_concurrency_error_twice_is_raised_and_recorded(e) -> None:
    """Command.retrying runs an attempt once more, not forever."""
    e.volume_create("data")

    def always(*args: Any, **kwargs: Any) -> Any:
        if any(isinstance(x, ev.VolumeRemoved) for x in args[0]):
            raise ConcurrencyError("volume:data moved")
        return append(*args, **kwargs)

    append = e.log.append
    e.log.append = always
    with pytest.raises(ConcurrencyError):
        e.volume_rm("data")
    e.log.append = append
    assert rejected(e)[-1]["reason"] == "volume:data moved" and e.volumes.exists("data")


def test_data_a_crashed_create_left_is_not_the_new_volumes(e) -> None:
    """A create that died after making the data and before its record: a later create of
    that name gets an empty volume, not what a container may have put there meanwhile."""
    e.volumes.create("data")
    e.volumes.write("data", {"stale": "x"})
    e.volume_create("data")
    assert e.volumes.files("data") == {}


# --- reconcile -----------------------------------------------------------------------------


def test_reconcile_finds_and_removes_volume_data_the_log_does_not_own(e) -> None:
    e.volume_create("kept")
    e.volumes.write("kept", {"f": "x"})
    e.volumes.create("orphan")  # made, never recorded (a crash before the append)
    e.volume_create("lost")
    e.volumes.remove("lost")  # recorded, its data gone (nothing brings it back)
    expected = ["volume directory orphan belongs to no volume in the log",
                "volume lost is in the log but its data is missing"]
    assert e.reconcile(repair=False) == expected
    assert e.volumes.exists("orphan")
    assert e.reconcile(repair=True) == expected
    assert e.volumes.names() == ["kept"] and e.volumes.files("kept") == {"f": "x"}
    assert e.reconcile(repair=False) == ["volume lost is in the log but its data is missing"]
    checked = [r for r in e.log.read() if r.type == "HostChecked"]
    assert [r.data["repaired"] for r in checked] == [False, True, False]
