"""Mounts judged at create (core/mounts.py) and recorded with the container's volumes
(core/engine/mounting.py), on the in-memory engine: what each of docker's forms means, the
refusals in docker's words, and the volume events create and rm append."""

from __future__ import annotations

import pytest

from core.errors import BadInput, Conflict, NotFound
from core.memory import memory_engine
from core.mounts import (
    MountPoint,
    from_api_mount,
    inspect_mounts,
    parse_bind,
    parse_mount_flag,
    parse_tmpfs,
    propagation_problem,
    recorded,
)


def test_bind_forms() -> None:
    assert parse_bind("/srv/www:/usr/share/html:ro") == MountPoint(
        "bind", "/usr/share/html", "/srv/www", read_only=True, create_source=True)
    assert parse_bind("data:/var/lib/db") == MountPoint("volume", "/var/lib/db", "data")
    assert parse_bind("data:/d:ro,nocopy") == MountPoint("volume", "/d", "data", True,
                                                         copy=False)
    assert parse_bind("/scratch") == MountPoint("volume", "/scratch", anonymous=True)
    assert parse_bind("/scratch:ro") == MountPoint("volume", "/scratch", read_only=True,
                                                   anonymous=True)
    assert parse_bind("/a/../b/:/c/./d/").target == "/c/d"
    assert parse_bind("/h:/c:rprivate").propagation == "rprivate"
    assert parse_bind("/h:/c:z").read_only is False  # SELinux relabel: no SELinux here


@pytest.mark.parametrize("spec, message", [
    ("", "invalid volume specification"),
    ("a:b:c:d", "invalid volume specification"),
    ("/h:/c:bogus", "invalid mode: bogus"),
    ("/h:/c:ro,rw", "invalid mode"),
    ("/h:/", "destination can't be '/'"),
    ("/h:relative", "invalid mode: relative"),
    ("name:relative", "not an absolute path"),
    ("./here:/c", "includes invalid characters for a local volume name"),
    ("/h:/c:rshared,bogus", "invalid mode: rshared,bogus"),
    ("data:/c:rslave", "propagation applies to bind mounts"),
    ("/h:/c:nocopy", "nocopy applies to volumes"),
])
def test_bad_binds_are_refused_in_dockers_words(spec: str, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        parse_bind(spec)


def test_mount_flag_becomes_the_apis_mount_and_means_the_same() -> None:
    m = parse_mount_flag("type=bind,src=/srv,dst=/www,readonly,bind-propagation=rprivate")
    assert m == {"Type": "bind", "Source": "/srv", "Target": "/www", "ReadOnly": True,
                 "BindOptions": {"Propagation": "rprivate"}}
    assert from_api_mount(m) == MountPoint("bind", "/www", "/srv", True, "rprivate")
    v = from_api_mount(parse_mount_flag("source=cache,target=/c,volume-nocopy,"
                                        "volume-label=team=a"))
    assert v == MountPoint("volume", "/c", "cache", copy=False,
                           volume_labels={"team": "a"})
    t = from_api_mount(parse_mount_flag("type=tmpfs,dst=/t,tmpfs-size=64m,tmpfs-mode=1770"))
    assert (t.type, t.target, t.options) == ("tmpfs", "/t", f"size={64 << 20},mode=1770")
    anon = from_api_mount({"Type": "volume", "Target": "/x"})
    assert anon.anonymous and anon.source == ""


@pytest.mark.parametrize("mount, message", [
    ({"Type": "bind", "Target": "/x"}, "field Source must not be empty"),
    ({"Type": "bind", "Source": "rel", "Target": "/x"}, "mount path must be absolute"),
    ({"Type": "tmpfs", "Source": "/a", "Target": "/x"}, "Source must be empty"),
    ({"Type": "volume", "Target": "/x",
      "VolumeOptions": {"DriverConfig": {"Options": {"type": "nfs"}}}},
     "DriverConfig.Options"),
    ({"Type": "npipe", "Target": "/x"}, "not supported by lamina yet"),
    ({"Type": "weird", "Target": "/x"}, "mount type unknown"),
    ({"Type": "bind", "Source": "/a", "Target": "/x",
      "BindOptions": {"NonRecursive": True}}, "NonRecursive is not supported"),
])
def test_bad_api_mounts_are_refused(mount: dict, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        from_api_mount(mount)


def test_tmpfs_options() -> None:
    t = parse_tmpfs("/run", "size=64m,mode=1777,exec")
    assert (t.target, t.options, t.read_only) == ("/run", "exec,size=64m,mode=1777", False)
    with pytest.raises(BadInput, match="invalid tmpfs option 'bogus'"):
        parse_tmpfs("/run", "bogus")


def _engine():
    e = memory_engine(user="test")
    iid = e.import_image({"/bin/sh": "busybox", "/etc/conf/a": "1", "/etc/conf/b": "2"},
                         "img")
    return e, iid


def _volume_events(e, cid: str | None = None) -> list[tuple[str, str]]:
    return [(r.type, r.stream) for r in e.log.read() if r.type.startswith("Volume")]


def test_create_records_mounts_and_the_volumes_they_use() -> None:
    e, _ = _engine()
    e.volumes.host.add("/srv")
    cid = e.create("img", ["sh"], config={
        "binds": ["/srv:/www:ro", "data:/var/lib/db"], "volumes": ["/scratch"],
        "tmpfs": {"/run": "size=1m"}})
    c = e.log.container(cid)
    points = recorded(c.config)
    assert [(m.type, m.target) for m in points] == [
        ("bind", "/www"), ("volume", "/var/lib/db"), ("tmpfs", "/run"), ("volume", "/scratch")]
    anon = points[3].source
    assert len(anon) == 64 and e.log.volume(anon).anonymous
    data = e.log.volume("data")
    assert data.users == {cid: ["/var/lib/db"]} and not data.anonymous
    assert e.volumes.exists("data") and e.volumes.exists(anon)
    types = [r.type for r in e.log.read() if r.data.get("id") in (cid, "data", anon)]
    created_at = types.index("ContainerCreated")
    assert types[created_at:] == ["ContainerCreated", "VolumeCreated", "VolumeMounted",
                                  "VolumeCreated", "VolumeMounted"]
    assert len({r.meta["command_id"] for r in e.log.read()
                if r.data.get("id") in (cid, "data", anon)}) == 1  # one append
    shown = inspect_mounts(points, e.volumes.path)
    assert shown[0] == {"Type": "bind", "Source": "/srv", "Destination": "/www", "Mode": "ro",
                        "RW": False, "Propagation": "rprivate"}
    assert shown[1]["Name"] == "data" and shown[1]["Source"].endswith("/data/_data")


def test_a_new_volume_is_filled_from_the_image_and_an_existing_one_is_not() -> None:
    e, _ = _engine()
    e.create("img", ["sh"], config={"binds": ["conf:/etc/conf"]})
    assert e.layers.copied[e.volumes.path("conf")] == {"a": "1", "b": "2"}
    e.layers.copied.clear()
    e.volumes.write("conf", {"mine": "x"})
    e.create("img", ["sh"], config={"binds": ["conf:/etc/conf"]})
    assert e.layers.copied == {}  # not empty: docker copies into empty volumes only
    e.create("img", ["sh"], config={"binds": ["fresh:/etc/conf:nocopy"]})
    assert e.layers.copied == {}


def test_image_volumes_become_anonymous_volumes_unless_mounted() -> None:
    e, _ = _engine()
    iid = e.import_image({"/bin/sh": "busybox"}, "withvol",
                         config={"Volumes": {"/data": {}, "/logs": {}}})
    assert e.log.image(iid).config["config"]["Volumes"]
    cid = e.create("withvol", ["sh"], config={"binds": ["keep:/data"]})
    points = recorded(e.log.container(cid).config)
    assert [(m.target, m.anonymous) for m in points] == [("/data", False), ("/logs", True)]


def test_refusals_record_nothing_but_the_rejection() -> None:
    e, _ = _engine()
    before = len(list(e.log.read()))
    for config, error, message in [
        ({"binds": ["/a:/x", "/b:/x"]}, BadInput, "Duplicate mount point: /x"),
        ({"mounts": [{"Type": "bind", "Source": "/nope", "Target": "/x"}]}, BadInput,
         "bind source path does not exist: /nope"),
        ({"volumes_from": ["ghost"]}, NotFound, "no such container: ghost"),
        ({"volume_driver": "nfs", "binds": ["/x"]}, NotFound,
         'error looking up volume plugin nfs: plugin "nfs" not found'),
        ({"mount_points": [{"type": "bind", "target": "/x", "source": "/"}]}, BadInput,
         "recorded by lamina"),
    ]:
        with pytest.raises(error, match=message):
            e.create("img", ["sh"], config=config)
    recs = list(e.log.read())[before:]
    assert [r.type for r in recs] == ["CommandRejected"] * 5
    assert e.volumes.names() == [] and e.log.volumes() == []


def test_volumes_from_shares_the_same_volumes() -> None:
    e, _ = _engine()
    e.volumes.host.add("/srv")
    first = e.create("img", ["sh"], config={"binds": ["/srv:/www", "data:/d"],
                                            "volumes": ["/anon"], "tmpfs": {"/t": ""}})
    second = e.create("img", ["sh"], config={"volumes_from": [f"{first}:ro"]})
    points = recorded(e.log.container(second).config)
    assert sorted((m.type, m.target, m.read_only) for m in points) == [
        ("bind", "/www", True), ("volume", "/anon", True), ("volume", "/d", True)]
    anon = next(m.source for m in points if m.target == "/anon")
    assert set(e.log.volume(anon).users) == {first, second}


def test_rm_unmounts_and_rm_v_removes_only_unshared_anonymous_volumes() -> None:
    e, _ = _engine()
    a = e.create("img", ["sh"], config={"binds": ["data:/d"], "volumes": ["/anon"]})
    b = e.create("img", ["sh"], config={"volumes_from": [a]})
    anon = next(m.source for m in recorded(e.log.container(a).config) if m.target == "/anon")
    e.rm(a, volumes=True)
    assert e.log.volume(anon).users.keys() == {b}  # b still uses it: kept
    e.rm(b, volumes=True)
    assert e.log.volume(anon) is None and not e.volumes.exists(anon)
    assert e.log.volume("data").users == {} and e.volumes.exists("data")  # named: kept
    c = e.create("img", ["sh"], config={"volumes": ["/other"]})
    other = recorded(e.log.container(c).config)[0].source
    e.rm(c)
    assert e.log.volume(other) is not None  # without -v every volume stays


def test_a_volume_in_use_cannot_be_removed() -> None:
    e, _ = _engine()
    cid = e.create("img", ["sh"], config={"binds": ["data:/d"]})
    with pytest.raises(Conflict, match=f"volume is in use - \\[{cid}\\]"):
        e.volume_rm(["data"])
    assert e.volumes.exists("data")


def test_volume_subpaths() -> None:
    m = from_api_mount(parse_mount_flag("source=vol,target=/m,volume-subpath=a/./b/"))
    assert (m.subpath, m.copy) == ("a/b", False)
    for bad in ("/abs", "../up", "a/../../b"):
        with pytest.raises(BadInput, match="subpath must be a relative path"):
            from_api_mount(parse_mount_flag(f"source=vol,target=/m,volume-subpath={bad}"))
    with pytest.raises(BadInput, match="a subpath needs a named volume"):
        from_api_mount(parse_mount_flag("type=volume,target=/m,volume-subpath=a"))


def test_rm_v_spares_a_volume_the_container_named_even_an_anonymous_one() -> None:
    """docker decides by how the container mounted it: `-v /path` is removed with the
    container, `-v NAME:/path` never, whoever made NAME."""
    e, _ = _engine()
    first = e.create("img", ["sh"], config={"volumes": ["/anon"]})
    anon = recorded(e.log.container(first).config)[0].source
    e.rm(first)  # without -v: the anonymous volume stays, unused
    second = e.create("img", ["sh"], config={"binds": [f"{anon}:/again"]})
    e.rm(second, volumes=True)
    assert e.log.volume(anon) is not None and e.volumes.exists(anon)


def test_a_volume_driver_is_recorded_and_judged_where_docker_judges_it() -> None:
    """docker's create (20.10, seen here): a VolumeDriver no volume uses is recorded and
    inspect shows it; -v's volumes (anonymous, named, existing) and Config.Volumes/image
    VOLUMEs take it and fail the create with 404 `error looking up volume plugin`; a
    --mount volume takes only its own DriverConfig; a host path bind never asks."""
    e, _ = _engine()
    e.volumes.host.add("/srv")
    cid = e.create("img", ["sh"], config={"volume_driver": "foo", "binds": ["/srv:/www"]})
    assert e.log.container(cid).config["volume_driver"] == "foo"
    e.create("img", ["sh"], config={"volume_driver": "foo",
                                    "mounts": [{"Type": "volume", "Target": "/d"}]})
    e.create("img", ["sh"], config={"volume_driver": "local", "binds": ["/x"]})
    e.volume_create("kept")
    before = len(list(e.log.read()))
    for config, name in [
        ({"binds": ["/data"]}, r"[0-9a-f]{64}"), ({"binds": ["newv:/data"]}, "newv"),
        ({"binds": ["kept:/data"]}, "kept"), ({"volumes": ["/v"]}, r"[0-9a-f]{64}"),
    ]:
        with pytest.raises(NotFound, match=f'^create {name}: error looking up volume plugin '
                                           'foo: plugin "foo" not found$'):
            e.create("img", ["sh"], config={"volume_driver": "foo", **config})
    with pytest.raises(NotFound, match='create [0-9a-f]{64}: error looking up volume plugin '
                                       'bar: plugin "bar" not found'):
        e.create("img", ["sh"], config={"mounts": [{
            "Type": "volume", "Target": "/d", "VolumeOptions": {"DriverConfig": {
                "Name": "bar"}}}]})
    recs = list(e.log.read())[before:]
    assert [r.type for r in recs] == ["CommandRejected"] * 5
    assert sorted(e.volumes.names()) == sorted(v.id for v in e.log.volumes())


MOUNTINFO = """\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
40 27 0:40 / /srv rw,relatime shared:12 - tmpfs tmpfs rw
41 40 0:41 / /srv/slave rw,relatime master:12 - tmpfs tmpfs rw
42 27 0:42 / /with\\040space rw shared:13 master:2 - tmpfs tmpfs rw
"""


@pytest.mark.parametrize("source, mode, problem", [
    ("/srv/a", "rshared", None), ("/srv", "shared", None), ("/srv/a", "rslave", None),
    ("/srv/slave/x", "rslave", None), ("/with space/x", "rshared", None),
    ("/srv/slave/x", "rshared",
     "path /srv/slave/x is mounted on /srv/slave but it is not a shared mount"),
    ("/home/x", "slave", "path /home/x is mounted on / but it is not a shared or slave mount"),
    ("/home/x", "rprivate", None), ("/home/x", "", None),
])
def test_shared_and_slave_binds_need_such_a_mount_as_docker_checks(
        source: str, mode: str, problem: str | None) -> None:
    m = MountPoint("bind", "/c", source, propagation=mode)
    assert propagation_problem(m, MOUNTINFO) == problem


def test_the_check_uses_the_resolved_source_and_names_the_given_one() -> None:
    m = MountPoint("bind", "/c", "/link", propagation="rshared")
    assert propagation_problem(m, MOUNTINFO, resolved="/srv/x") is None
    assert propagation_problem(m, MOUNTINFO, resolved="/home") == \
        "path /link is mounted on / but it is not a shared mount"


def test_every_propagation_mode_is_taken_from_v_and_mount() -> None:
    for mode in ("shared", "rshared", "slave", "rslave", "private", "rprivate"):
        assert parse_bind(f"/h:/c:ro,{mode}").propagation == mode
        assert from_api_mount({"Type": "bind", "Source": "/h", "Target": "/c", "BindOptions": {
            "Propagation": mode}}).propagation == mode
    with pytest.raises(BadInput, match="invalid propagation mode: sideways"):
        from_api_mount({"Type": "bind", "Source": "/h", "Target": "/c",
                        "BindOptions": {"Propagation": "sideways"}})
    shown = inspect_mounts([parse_bind("/h:/c:rslave"), parse_bind("/h:/d"),
                            parse_bind("/h:/e:ro,rshared")], str)
    assert [m["Propagation"] for m in shown] == ["rslave", "rprivate", "rshared"]
    assert [m["Mode"] for m in shown] == ["rslave", "", "ro,rshared"]  # dockerd 20.10's
