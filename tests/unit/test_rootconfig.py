"""The root's --userns-remap as the core judges it (core/rootconfig.py, Engine.configure_root),
on in-memory ports: the setting's syntax, the event, the refusals and what they record."""

from __future__ import annotations

import pytest

from core import rootconfig
from core.errors import BadInput, ConcurrencyError, Conflict
from core.memory import memory_engine
from core.rootconfig import RootConfig
from events import types as ev

REMAPPED = RootConfig(userns_remap="default", user="laminaremap",
                      uid_map=((0, 100000, 65536),), gid_map=((0, 100000, 65536),),
                      storage="idmapped", source="/")


@pytest.fixture
def e():
    e = memory_engine(user="t")
    e.import_image({"bin/sh": "x"}, "busybox")
    return e


def resolved(setting: str) -> RootConfig:
    return REMAPPED if setting == "default" else RootConfig()


def rejections(e) -> list[tuple[str, str]]:
    return [(r.data["command"], r.data["reason"]) for r in e.log.records
            if r.type == "CommandRejected"]


def configured(e) -> list[dict]:
    return [r.data for r in e.log.records if r.type == "RootConfigured"]


@pytest.mark.parametrize(("given", "recorded"), [
    ("off", ""), ("", ""), ("OFF", ""), ("false", ""), ("default", "default"),
    ("alice", "alice"), ("alice:staff", "alice:staff"), ("svc-1.x", "svc-1.x")])
def test_settings_as_recorded(given: str, recorded: str) -> None:
    assert rootconfig.setting(given) == recorded


@pytest.mark.parametrize("bad", ["1000", "alice:", ":staff", "a b", "alice:1000", "-x", "a/b"])
def test_settings_refused_in_one_line(bad: str) -> None:
    with pytest.raises(BadInput, match=r"^invalid --userns-remap .*: use default, off, or a "):
        rootconfig.setting(bad)


def test_a_root_never_configured_is_plain(e) -> None:
    assert rootconfig.read(e.log) == (RootConfig(), 0)
    assert not rootconfig.current(e.log).remapped
    assert RootConfig().describe() == "userns-remap: off"


def test_configure_records_the_resolved_maps_once(e) -> None:
    got = e.configure_root("default", resolved)
    assert got == REMAPPED
    assert configured(e) == [{"id": "root", **REMAPPED.data()}]
    assert configured(e)[0]["uid_map"] == [[0, 100000, 65536]]
    assert RootConfig.from_data(configured(e)[0]) == REMAPPED
    assert e.configure_root("default", lambda s: pytest.fail("resolved again")) == REMAPPED
    assert len(configured(e)) == 1  # the same setting again records nothing
    assert rootconfig.current(e.log).describe() == (
        "userns-remap: default (user laminaremap: container root is host 100000:100000, "
        "65536 ids, idmapped layers)")
    e.configure_root("off", resolved)
    assert [c["userns_remap"] for c in configured(e)] == ["default", ""]
    assert rootconfig.read(e.log) == (RootConfig(), 2)


def test_a_change_with_containers_is_refused_and_recorded(e) -> None:
    cid = e.create("busybox", ["sh"])
    with pytest.raises(Conflict, match=r"^this root has 1 container: remove them before "
                                       r"changing --userns-remap$"):
        e.configure_root("default", lambda s: pytest.fail("resolved before refusing"))
    assert rejections(e) == [("system configure", "this root has 1 container: remove them "
                                                   "before changing --userns-remap")]
    e.rm(cid)
    e.configure_root("default", resolved)
    assert rootconfig.current(e.log) == REMAPPED


@pytest.mark.parametrize(("options", "flag"), [
    ({"privileged": True}, "--privileged"), ({"pid": "host"}, "--pid host"),
    ({"network": "host"}, "--network host")])
def test_options_a_remapped_container_cannot_have(e, options: dict, flag: str) -> None:
    e.create("busybox", ["sh"], config=dict(options))  # a plain root takes them
    e.rm(e.log.containers()[0].id)
    e.configure_root("default", resolved)
    with pytest.raises(BadInput, match=f"^{flag} is incompatible with this root's "
                                       r"--userns-remap \(default\)"):
        e.create("busybox", ["sh"], config=dict(options))
    assert rejections(e)[-1][0] == "create"
    e.create("busybox", ["sh"], config={"uts": "host", "ipc": "host"})  # these work


def test_a_create_judged_under_the_old_setting_does_not_land(e) -> None:
    """The create's append expects the root stream's version it judged by: a configure
    appended in between makes it fail, as a concurrent change of any stream does."""
    log = e.log
    real_append = log.append

    def append(events, *, expected, meta):
        if any(isinstance(x, ev.ContainerCreated) for x in events):
            real_append([ev.RootConfigured(id="root", **REMAPPED.data())],
                        expected={}, meta={})
        return real_append(events, expected=expected, meta=meta)

    log.append = append
    with pytest.raises(ConcurrencyError):
        e.create("busybox", ["sh"], config={"privileged": True})
    log.append = real_append
    assert e.log.containers() == []


def test_start_judges_the_setting_again(e) -> None:
    """A container created before a configure that raced it is refused at its start."""
    cid = e.create("busybox", ["sh"], config={"network": "host"})
    e.log.append([ev.RootConfigured(id="root", **REMAPPED.data())], expected={}, meta={})
    with pytest.raises(BadInput, match="^--network host is incompatible"):
        e.start(cid)
    assert e.container(cid).state == "stopped"
