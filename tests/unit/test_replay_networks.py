"""`replay --at`: who had which address and port then, from a real SQLite log written event
by event (tests/unit/netlog.py). Leases are the runs' (ContainerStarted), released by the
run's end; membership stays."""

from __future__ import annotations

import argparse
import json

import pytest

from adapters.cli.eventlog import cmd_replay
from tests.conftest import require_root
from tests.unit import netlog


@pytest.fixture
def log(tmp_path) -> netlog.NetLog:
    return netlog.write(str(tmp_path))


def _replay(root: str, at: str, fmt: str = "table") -> None:
    assert cmd_replay(argparse.Namespace(root=root, at=at, format=fmt, full=False,
                                         snapshot=False)) == 0


def _members(text: str) -> dict[str, list[str]]:
    """The members table, by container name: its NETWORK, ADDRESS, ALIASES, PORTS cells."""
    head, _, rest = text.partition("NETWORK   CONTAINER ID")
    assert rest, text
    out = {}
    for line in rest.splitlines()[1:]:
        cells = line.split("   ")
        cells = [c.strip() for c in cells if c.strip()]
        out[cells[2]] = [cells[0], *cells[3:]]
    return out


def test_between_start_and_stop_the_lease_and_ports_show(log, tmp_path, capsys) -> None:
    _replay(str(tmp_path), log.ats["api started"])
    out = capsys.readouterr().out
    assert out.startswith(f"state after seq {log.seqs['api started']}")
    assert "bridge    172.17.0.0/16" not in out  # a table, as the other sections
    assert _members(out) == {
        "web": ["front", "172.18.0.2/16", "www", "0.0.0.0:8080->80/tcp"],
        "api": ["bridge", "172.17.0.2/16", "-", "-"]}
    networks = out.split("NETWORK ID")[1].split("\n\n")[0]
    assert "front" in networks and "172.18.0.0/16" in networks
    assert "bridge" in networks and "172.17.0.0/16" in networks  # the predefined one, used


def test_after_the_stop_the_lease_is_gone_and_the_membership_stays(log, tmp_path,
                                                                     capsys) -> None:
    _replay(str(tmp_path), log.ats["web stopped"])
    members = _members(capsys.readouterr().out)
    assert members["web"] == ["front", "- (stopped)", "www", "-"]
    assert members["api"] == ["bridge", "172.17.0.2/16", "-", "-"]
    _replay(str(tmp_path), log.ats["api stopped"])
    out = capsys.readouterr().out
    assert "172.18.0.2" not in out and "172.17.0.2" not in out and "8080" not in out


def test_before_the_start_no_lease_and_before_the_create_no_member(log, tmp_path,
                                                                    capsys) -> None:
    _replay(str(tmp_path), str(log.seqs["created"]))
    out = capsys.readouterr().out
    assert _members(out)["web"] == ["front", "- (stopped)", "www", "-"]
    _replay(str(tmp_path), str(log.seqs["network"]))
    out = capsys.readouterr().out
    assert "front" in out and "CONTAINER ID   NAME   ADDRESS" not in out
    assert "bridge" not in out  # nobody on the default bridge yet: not listed


def test_json_lists_the_leases_then(log, tmp_path, capsys) -> None:
    _replay(str(tmp_path), log.ats["web started"], "json")
    doc = json.loads(capsys.readouterr().out)
    leases = {(x["network"], x["name"]): x for x in doc["leases"]}
    web = leases[("front", "web")]
    assert web["address"] == "172.18.0.2" and web["prefixlen"] == 16
    assert web["container"] == netlog.WEB and web["network_id"] == netlog.FRONT
    assert web["aliases"] == ["www"] and web["ports"] == ["0.0.0.0:8080->80/tcp"]
    assert leases[("bridge", "api")]["address"] == ""  # created, not started yet
    assert [c["name"] for c in doc["containers"]] == ["web", "api"]  # the world, as before
    _replay(str(tmp_path), log.ats["api stopped"], "json")
    doc = json.loads(capsys.readouterr().out)
    assert all(x["address"] == "" and x["ports"] == [] for x in doc["leases"])


def test_a_reconnect_while_running_shows_the_new_lease(log, tmp_path, capsys) -> None:
    """network connect on a running container leases at once; disconnect releases."""
    from events import types as ev

    log.append("restarted", ev.ContainerStarted(id=netlog.API, pid=300,
                                                networks={"bridge": netlog.API_EP}))
    ep = netlog.endpoint(netlog.FRONT, "172.18.0.3", "lm-ffffffff0000", "172.18.0.1",
                         ["db"], "api", netlog.API, slot=1)
    log.append("connected", ev.ContainerConnected(id=netlog.API, network="front",
                                                  network_id=netlog.FRONT, aliases=["db"],
                                                  endpoint=ep))
    log.append("disconnected", ev.ContainerDisconnected(id=netlog.API, network="front",
                                                        network_id=netlog.FRONT))
    _replay(str(tmp_path), str(log.seqs["connected"]))
    out = capsys.readouterr().out
    assert "front     bbbbbbbbbbbb   api    172.18.0.3/16   db" in out
    _replay(str(tmp_path), str(log.seqs["disconnected"]))
    out = capsys.readouterr().out
    assert "172.18.0.3" not in out and "172.17.0.2/16" in out


def test_the_cli_parses_at_a_time(log, tmp_path, capsys) -> None:
    require_root()  # the CLI runs as root only
    from adapters.cli import run

    assert run(["--root", str(tmp_path), "replay", "--at", log.ats["web started"]]) == 0
    out = capsys.readouterr().out
    assert "172.18.0.2/16" in out and "0.0.0.0:8080->80/tcp" in out
