"""`events --filter network=NAME|ID`: the network's own events and the container events that
concern it (docker's network filter shows containers joining and leaving), on a real SQLite
log written event by event (tests/unit/netlog.py)."""

from __future__ import annotations

import pytest

from adapters.eventstore.query import select
from events import types as ev
from tests.unit import netlog


@pytest.fixture
def log(tmp_path) -> netlog.NetLog:
    n = netlog.write(str(tmp_path))
    # api joins front while it runs again, leaves it, and stops; web is removed
    n.append("api restarted", ev.ContainerStarted(id=netlog.API, pid=300,
                                                  networks={"bridge": netlog.API_EP}))
    ep = netlog.endpoint(netlog.FRONT, "172.18.0.3", "lm-ffffffff0000", "172.18.0.1", [],
                         "api", netlog.API, slot=1)
    n.append("connected", ev.ContainerConnected(id=netlog.API, network="front",
                                                network_id=netlog.FRONT, endpoint=ep))
    n.append("disconnected", ev.ContainerDisconnected(id=netlog.API, network="front",
                                                      network_id=netlog.FRONT))
    n.append("api stopped again", ev.ContainerStopped(id=netlog.API, signal=15, exit_code=0))
    n.append("web removed", ev.ContainerRemoved(id=netlog.WEB))
    return n


def _seen(n: netlog.NetLog, value: str) -> list[tuple[str, str]]:
    """(type, container name) of each event the filter selects."""
    names = {netlog.WEB: "web", netlog.API: "api"}
    return [(r.type, names.get(r.stream.partition(":")[2], r.stream.partition(":")[0]))
            for r in select(n.log.con, filters=[f"network={value}"])]


def test_a_user_network_shows_who_joined_leased_and_left(log) -> None:
    expected = [("NetworkCreated", "network"),
                ("ContainerCreated", "web"),  # its --network front
                ("ContainerStarted", "web"),  # leased 172.18.0.2
                ("ContainerStopped", "web"),  # released it
                ("ContainerConnected", "api"),
                ("ContainerDisconnected", "api")]
    assert _seen(log, "front") == expected
    assert _seen(log, netlog.FRONT) == expected  # by id
    assert _seen(log, netlog.FRONT[:12]) == expected  # by its prefix


def test_the_default_bridge_shows_its_containers(log) -> None:
    assert _seen(log, "bridge") == [
        ("ContainerCreated", "api"), ("ContainerStarted", "api"), ("ContainerStopped", "api"),
        ("ContainerStarted", "api"), ("ContainerStopped", "api")]


def test_a_stop_after_a_disconnect_is_not_the_network_s(log) -> None:
    seqs = [r.seq for r in select(log.log.con, filters=["network=front"])]
    assert log.seqs["api stopped again"] not in seqs
    assert log.seqs["web removed"] not in seqs  # it held no lease by then


def test_other_filters_still_narrow_it(log) -> None:
    got = [(r.type, r.seq) for r in select(log.log.con,
                                           filters=["network=front", "container=api"])]
    assert got == [("ContainerConnected", log.seqs["connected"]),
                   ("ContainerDisconnected", log.seqs["disconnected"])]
    assert _seen(log, "nothing") == []
    assert [t for t, _ in _seen(log, "host")] == []  # host and none: nobody leases there
