"""The read model's refusal of a lease held twice, on both logs alike.

SQLite's read model (adapters/eventstore/sqlite_log.py write_leases) refuses an append after
which two running containers hold one address on a network, or clashing host ports (same
proto and port, same address or either 0.0.0.0), or an address on a removed network; the
in-memory log the model checkers use must refuse the same appends (core.networks
.lease_clash judges), with a ConcurrencyError that keeps nothing, so that a start racing
another is judged again in both worlds. Each case appends a ContainerStarted by hand,
as a racing start would, holding what another container holds."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from adapters.eventstore.sqlite_log import SqliteEventLog
from core import networks as ipam
from core.errors import ConcurrencyError
from core.memory import MemoryEventLog
from events import types as ev
from tests.model.harness import LIVE, last_seq, live_world, replay, seeded_engine


@pytest.fixture(params=["memory", "sqlite"])
def engine(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "memory":
        yield seeded_engine(MemoryEventLog())[0]
        return
    root = tempfile.mkdtemp(prefix="lamina-leases-")
    log = SqliteEventLog(root)
    try:
        yield seeded_engine(log)[0]
    finally:
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def _racing_start(engine: Any, name: str, *, networks: dict[str, Any],
                  ports: list[dict[str, Any]]) -> None:
    """Record a start of `name` holding `networks` and `ports`, as a start that judged
    before another's append landed would."""
    c = engine.log.container_named(name)
    engine.log.append([ev.ContainerStarted(id=c.id, pid=4242, networks=networks,
                                           ports=ports)],
                      expected={f"container:{c.id}": c.version}, meta={"user": "race"})


def _two(engine: Any, first: list[str], second: list[str], network: str = "bridge") -> Any:
    engine.create("base", ["sh"], "a", config={"network": network, "port_bindings": first})
    engine.create("base", ["sh"], "b", config={"network": network, "port_bindings": second})
    return engine.start("a")


def _refused(engine: Any, **held: Any) -> None:
    seq, before = last_seq(engine.log), live_world(engine.log)
    with pytest.raises(ConcurrencyError):
        _racing_start(engine, "b", **held)
    after = live_world(engine.log)
    assert last_seq(engine.log) == seq and after.containers == before.containers, \
        "a refused append kept something"


def _consistent(engine: Any) -> None:
    """An accepted append: the read model is the log's fold, and no lease is held twice."""
    live = live_world(engine.log)
    assert replay(engine.log.read()).containers == live.containers
    running = [c for c in live.containers.values() if c.state in LIVE]
    assert len(running) == 2 and ipam.lease_clash(running) is None


def _port(host_ip: str, host_port: int, proto: str = "tcp") -> dict[str, Any]:
    return {"proto": proto, "container_port": 80, "host_ip": host_ip, "host_port": host_port}


def test_an_address_held_twice_on_a_network_is_refused(engine: Any) -> None:
    a = _two(engine, [], [])
    ep = dict(a.endpoints["bridge"])
    _refused(engine, networks={"bridge": ep}, ports=[])
    moved = {**ep, "address": "172.17.0.9", "mac": "02:42:ac:11:00:09"}
    _racing_start(engine, "b", networks={"bridge": moved}, ports=[])  # another address: fine
    _consistent(engine)


@pytest.mark.parametrize(("theirs", "clash"), [
    (_port("0.0.0.0", 8080), True),  # the same binding
    (_port("127.0.0.1", 8080), True),  # ANY covers every address
    (_port("0.0.0.0", 8080, "udp"), False),  # another protocol
    (_port("0.0.0.0", 8081), False),  # another port
])
def test_a_host_port_bound_twice_is_refused(engine: Any, theirs: dict[str, Any],
                                            clash: bool) -> None:
    a = _two(engine, ["8080:80"], [])
    assert [p["host_port"] for p in a.ports] == [8080]
    ep = {**a.endpoints["bridge"], "address": "172.17.0.9", "mac": "02:42:ac:11:00:09"}
    if clash:
        _refused(engine, networks={"bridge": ep}, ports=[theirs])
    else:
        _racing_start(engine, "b", networks={"bridge": ep}, ports=[theirs])
        _consistent(engine)


def test_two_addresses_of_the_host_bind_one_port_apart(engine: Any) -> None:
    a = _two(engine, ["127.0.0.1:8080:80"], [])
    assert [p["host_ip"] for p in a.ports] == ["127.0.0.1"]
    ep = {**a.endpoints["bridge"], "address": "172.17.0.9", "mac": "02:42:ac:11:00:09"}
    _racing_start(engine, "b", networks={"bridge": ep}, ports=[_port("127.0.0.2", 8080)])
    _consistent(engine)


def test_an_address_on_a_removed_network_is_refused(engine: Any) -> None:
    engine.network_create("n1")
    engine.create("base", ["sh"], "b", config={"network": "n1"})
    stale = engine.start("b").endpoints["n1"]  # what a start judged...
    engine.stop("b", timeout=0)
    engine.network_rm("n1")  # ...before the network went
    c = engine.log.container_named("b")
    with pytest.raises(ConcurrencyError):
        engine.log.append([ev.ContainerStarted(id=c.id, pid=4242, networks={"n1": stale})],
                          expected={f"container:{c.id}": c.version}, meta={"user": "race"})
