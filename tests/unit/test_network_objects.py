"""Networks on the in-memory engine (core/engine/networks.py): create, rm, prune, inspect and
list as docker's daemon answers them, each one unit of work in the log, and the order of
writes (the bridge made before the log says the network exists, removed after it says it
is gone). Containers join no network yet: every network is empty."""

from __future__ import annotations

from typing import Any

import pytest

from core.engine.networks import PREDEFINED, doc
from core.errors import BadInput, Conflict, NotFound, StoreError
from core.memory import memory_engine


@pytest.fixture
def e() -> Any:
    return memory_engine(user="t")


def types(e: Any) -> list[str]:
    return [r.type for r in e.log.read()]


def rejected(e: Any) -> list[dict]:
    return [r.data for r in e.log.read() if r.type == "CommandRejected"]


def test_create_records_the_network_and_makes_its_bridge(e) -> None:
    nid = e.network_create("front", labels={"tier": "web"})
    assert len(nid) == 64 and all(c in "0123456789abcdef" for c in nid)
    n = e.network("front")
    assert (n.id, n.name, n.driver, n.internal) == (nid, "front", "bridge", False)
    assert n.subnet == "172.18.0.0/16" and n.gateway == "172.18.0.1"  # 172.17 is bridge's
    assert e.networks.names() == [f"lm-{nid[:12]}"]
    rec = [r for r in e.log.read() if r.type == "NetworkCreated"]
    assert [r.stream for r in rec] == [f"network:{nid}"]
    assert rec[0].data["labels"] == {"tier": "web"}
    assert e.network(nid[:5]) == n and e.network(nid) == n


def test_subnets_are_chosen_from_the_pools_and_an_overlap_is_refused(e) -> None:
    e.network_create("a")
    e.network_create("b", subnet="10.10.0.0/24", gateway="10.10.0.254", internal=True)
    b = e.network("b")
    assert (b.subnet, b.gateway, b.internal) == ("10.10.0.0/24", "10.10.0.254", True)
    assert e.network(e.network_create("c")).subnet == "172.19.0.0/16"
    with pytest.raises(Conflict, match="Pool overlaps with other one on this address space"):
        e.network_create("d", subnet="10.10.0.128/25")
    with pytest.raises(Conflict, match="Pool overlaps"):
        e.network_create("d", subnet="172.17.5.0/24")  # the default bridge's
    with pytest.raises(BadInput, match="no matching subnet for gateway 10.0.0.1"):
        e.network_create("d", subnet="10.20.0.0/16", gateway="10.0.0.1")
    with pytest.raises(BadInput, match="invalid subnet"):
        e.network_create("d", subnet="10.20.0.1/16")
    assert len(e.networks.names()) == 3 and len(rejected(e)) == 4


def test_docker_refusals_name_what_was_refused(e) -> None:
    e.network_create("front")
    with pytest.raises(Conflict, match="^network with name front already exists$"):
        e.network_create("front")
    with pytest.raises(BadInput, match="network driver 'overlay' is not supported by lamina"):
        e.network_create("x", driver="overlay")
    with pytest.raises(BadInput, match="operation is not permitted on predefined host"):
        e.network_create("host")
    with pytest.raises(BadInput, match="network option 'com.docker.network.bridge.enable_icc'"):
        e.network_create("x", options={"com.docker.network.bridge.enable_icc": "false"})
    assert len(e.networks.names()) == 1 and len(rejected(e)) == 4
    assert e.network(e.network_create("named", options={
        "com.docker.network.bridge.name": "br-mine"})).options
    assert "br-mine" in e.networks.names()
    with pytest.raises(Conflict, match="bridge name br-mine is already in use"):
        e.network_create("again", options={"com.docker.network.bridge.name": "br-mine"})


def test_rm_removes_the_record_then_the_bridge(e) -> None:
    nid = e.network_create("front")
    remove = e.networks.remove

    def checked(network: Any) -> None:
        assert e.log.network(nid) is None, "the log must say it is gone first"
        remove(network)

    e.networks.remove = checked
    assert e.network_rm(["front"]) == [nid]
    assert e.networks.names() == [] and e.network_list({"type": ["custom"]}) == []
    with pytest.raises(NotFound, match="^network front not found$"):
        e.network_rm("front")
    for name in ("bridge", "host", "none"):
        with pytest.raises(BadInput, match=f"{name} is a pre-defined network and cannot be "
                                           "removed"):
            e.network_rm(name)
    assert types(e)[-4:] == ["CommandRejected"] * 4


def test_rm_of_several_removes_the_others_then_raises_the_first_refusal(e) -> None:
    e.network_create("a")
    e.network_create("b")
    with pytest.raises(NotFound, match="network missing not found"):
        e.network_rm(["a", "missing", "b"])
    assert [n.name for n in e.network_list()] == ["bridge", "host", "none"]


def test_if_the_append_fails_the_bridge_made_for_it_goes(e) -> None:
    append = e.log.append

    def failing(*args: Any, **kwargs: Any) -> Any:
        assert e.networks.names(), "the bridge must exist before the log says so"
        raise StoreError("events.db is locked")

    e.log.append = failing
    with pytest.raises(StoreError):
        e.network_create("front")
    e.log.append = append
    assert e.networks.names() == [] and e.log.network_named("front") is None


def test_prune_removes_user_networks_the_label_filters_select(e) -> None:
    e.network_create("a", labels={"env": "test"})
    e.network_create("b", labels={"env": "prod"})
    e.network_create("c")
    assert e.network_prune({"label": ["env=test"]}) == ["a"]
    assert e.network_prune({"label!": ["env"]}) == ["c"]
    with pytest.raises(BadInput, match="invalid filter 'name'"):
        e.network_prune({"name": ["b"]})
    assert e.network_prune() == ["b"] and e.networks.names() == []
    assert e.network_prune() == []
    assert [r.type for r in e.log.read()].count("NetworkRemoved") == 3


def test_ls_lists_the_predefined_networks_as_docker_does_and_filters(e) -> None:
    e.network_create("front", labels={"tier": "web"})
    e.network_create("back", internal=True)
    assert [(n.name, n.driver) for n in e.network_list()] == [
        ("back", "bridge"), ("bridge", "bridge"), ("front", "bridge"), ("host", "host"),
        ("none", "null")]
    assert [n.name for n in e.network_list({"type": ["builtin"]})] == ["bridge", "host", "none"]
    assert [n.name for n in e.network_list({"type": ["custom"]})] == ["back", "front"]
    assert [n.name for n in e.network_list({"name": ["fro"]})] == ["front"]
    assert [n.name for n in e.network_list({"label": ["tier=web"]})] == ["front"]
    assert [n.name for n in e.network_list({"driver": ["null"]})] == ["none"]
    fid = e.network("front").id
    assert [n.name for n in e.network_list({"id": [fid[:6]]})] == ["front"]
    with pytest.raises(BadInput, match="invalid filter 'colour'"):
        e.network_list({"colour": ["red"]})
    assert "CommandRejected" not in types(e)  # queries record nothing


def test_inspect_is_dockers_json(e) -> None:
    nid = e.network_create("front", subnet="10.5.0.0/16", labels={"a": "b"}, internal=True)
    d = doc(e.network("front"))
    assert d == {
        "Name": "front", "Id": nid, "Created": d["Created"], "Scope": "local",
        "Driver": "bridge", "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": None,
                 "Config": [{"Subnet": "10.5.0.0/16", "Gateway": "10.5.0.1"}]},
        "Internal": True, "Attachable": False, "Ingress": False,
        "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": {},
        "Options": {}, "Labels": {"a": "b"}}
    bridge = doc(e.network("bridge"))
    assert bridge["IPAM"]["Config"] == [{"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}]
    assert bridge["Options"]["com.docker.network.bridge.name"] == "lamina0"
    assert doc(PREDEFINED["host"])["IPAM"]["Config"] == []
    with pytest.raises(NotFound, match="network nothing not found"):
        e.network("nothing")


def test_reconcile_finds_and_removes_bridges_the_log_does_not_own(e) -> None:
    from core import networks as ipam

    e.network_create("kept")
    orphan = ipam.new_network("x", "e" * 64, in_use=["172.18.0.0/16"])
    e.networks.create(orphan)  # made, never recorded (a crash before the append)
    e.networks.create(ipam.new_network("bridge", "f" * 64, subnet="172.17.0.0/16"))  # lamina0
    expected = ["network bridge lm-eeeeeeeeeeee belongs to no network in the log"]
    assert e.reconcile(repair=False) == expected
    assert "lm-eeeeeeeeeeee" in e.networks.names()
    assert e.reconcile(repair=True) == expected
    assert e.reconcile(repair=False) == []
    kept = e.network("kept")
    assert e.networks.names() == sorted(["lamina0", f"lm-{kept.id[:12]}"])


def test_a_network_and_its_name_come_back_after_rm_with_a_new_id(e) -> None:
    first = e.network_create("front")
    e.network_rm("front")
    second = e.network_create("front")
    assert first != second and e.network("front").id == second
