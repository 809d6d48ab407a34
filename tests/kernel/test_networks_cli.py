"""`lamina network create|ls|inspect|rm|prune` on a real root, lamina inside a network
namespace the test makes (a `unshare -n sleep` process, entered with `nsenter --net` only,
never `ip netns exec`): docker's output and errors, the bridge and nftables chains made and
removed in that namespace, each change recorded, queries recording nothing, reconciliation of
a bridge the log doesn't own, and the host's links and ruleset unchanged afterwards."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_root
from tests.kernel.runtime_env import LAMINA
from tests.kernel.test_network_plumbing import Box, host_network

pytestmark = pytest.mark.kernel


class NetLamina:
    """lamina on a root, run inside the box's network namespace."""

    def __init__(self, root: Path, box: Box) -> None:
        self.root, self.box = root, box

    def __call__(self, *argv: str, input: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(self.box.argv(LAMINA, "--root", str(self.root), *argv),
                              capture_output=True, text=True, timeout=60, input=input,
                              stdin=None if input is not None else subprocess.DEVNULL)

    def ok(self, *argv: str, **kw) -> str:
        out = self(*argv, **kw)
        assert out.returncode == 0, (argv, out.stdout, out.stderr)
        return out.stdout

    def fails(self, *argv: str) -> str:
        out = self(*argv)
        assert out.returncode == 1, out
        lines = out.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("lamina: error: "), out.stderr
        return lines[0].removeprefix("lamina: error: ")

    def links(self) -> dict[str, dict]:
        return {link["ifname"]: link for link in json.loads(self.box.ok("ip", "-j", "addr"))}

    def tables(self) -> list[str]:
        rules = json.loads(self.box.ok("nft", "-j", "list", "ruleset"))["nftables"]
        return [o["table"]["name"] for o in rules if "table" in o]

    def chains(self) -> set[str]:
        rules = json.loads(self.box.ok("nft", "-j", "list", "ruleset"))["nftables"]
        return {o["chain"]["name"] for o in rules if "chain" in o}

    def types(self) -> list[str]:
        out = self.ok("events", "--format", "json")
        return [json.loads(line)["type"] for line in out.splitlines()]


@pytest.fixture
def lam(tmp_path: Path) -> Iterator[NetLamina]:
    require_root()
    before = host_network()
    box = Box()
    try:
        yield NetLamina(tmp_path / "root", box)
    finally:
        box.close()
    assert host_network() == before, "a network test changed the host's network"


def test_create_inspect_ls_rm_in_the_namespace(lam: NetLamina) -> None:
    nid = lam.ok("network", "create", "front", "--label", "tier=web").strip()
    assert len(nid) == 64
    bridge = f"lm-{nid[:12]}"
    link = lam.links()[bridge]
    assert [(a["local"], a["prefixlen"]) for a in link["addr_info"]] == [("172.18.0.1", 16)]
    assert "lamina" in lam.tables() and f"in-{bridge}" in lam.chains()
    [doc] = json.loads(lam.ok("network", "inspect", "front"))
    assert doc == {
        "Name": "front", "Id": nid, "Created": doc["Created"], "Scope": "local",
        "Driver": "bridge", "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": None,
                 "Config": [{"Subnet": "172.18.0.0/16", "Gateway": "172.18.0.1"}]},
        "Internal": False, "Attachable": False, "Ingress": False,
        "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": {},
        "Options": {}, "Labels": {"tier": "web"}}
    back = lam.ok("network", "create", "--internal", "--subnet", "10.3.0.0/24",
                  "--gateway", "10.3.0.9", "back").strip()
    assert [a["local"] for a in lam.links()[f"lm-{back[:12]}"]["addr_info"]] == ["10.3.0.9"]
    table = lam.ok("network", "ls").splitlines()
    assert table[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    rows = [line.split() for line in table[1:]]
    assert [r[1:] for r in rows] == [["back", "bridge", "local"], ["bridge", "bridge", "local"],
                                     ["front", "bridge", "local"], ["host", "host", "local"],
                                     ["none", "null", "local"]]
    assert lam.ok("network", "ls", "-q", "-f", "label=tier=web") == nid[:12] + "\n"
    assert lam.ok("network", "ls", "-q", "--no-trunc", "-f", "name=back") == back + "\n"
    assert lam.fails("network", "create", "front") == "network with name front already exists"
    assert lam.fails("network", "create", "x", "--subnet", "10.3.0.0/16") == \
        "Pool overlaps with other one on this address space"
    assert "is not supported by lamina yet" in lam.fails("network", "create", "-d", "macvlan",
                                                         "x")
    assert lam.fails("network", "rm", "bridge") == \
        "bridge is a pre-defined network and cannot be removed"
    assert lam.fails("network", "rm", "nothing") == "network nothing not found"
    assert lam.ok("network", "rm", "front", "back") == "front\nback\n"
    assert not any(name.startswith("lm-") for name in lam.links())
    assert "lamina" not in lam.tables()  # the last network's chains took the table with them
    types = lam.types()
    assert types.count("NetworkCreated") == 2 and types.count("NetworkRemoved") == 2
    assert types.count("CommandRejected") == 5


def test_prune_asks_first_and_removes_user_networks(lam: NetLamina) -> None:
    lam.ok("network", "create", "a", "--label", "keep=no")
    lam.ok("network", "create", "b")
    out = lam("network", "prune", input="n\n")
    assert out.returncode == 1 and "WARNING! This will remove all custom networks" in out.stdout
    assert lam.ok("network", "prune", "-f", "--filter", "label=keep=no") == \
        "Deleted Networks:\na\n\n"
    assert lam.ok("network", "prune", "-f") == "Deleted Networks:\nb\n\n"
    assert lam.ok("network", "prune", "-f") == ""
    assert not any(name.startswith("lm-") for name in lam.links())


def test_reconcile_removes_a_bridge_and_chains_the_log_does_not_own(lam: NetLamina) -> None:
    """A bridge made by a create killed before its append is a leftover; the networks of
    the log are left alone."""
    kept = lam.ok("network", "create", "kept").strip()
    lam.box.ok("ip", "link", "add", "lm-0123456789ab", "type", "bridge")
    out = lam("system", "check")
    assert out.returncode == 1, out
    assert "network bridge lm-0123456789ab belongs to no network in the log" in out.stdout
    lam.ok("system", "reconcile")
    ours = sorted(name for name in lam.links() if name.startswith("lm-"))
    assert ours == [f"lm-{kept[:12]}"]
    assert lam("system", "check").returncode == 0
    lam.ok("network", "rm", "kept")


def test_events_by_network_and_replay_at_a_time_it_existed(lam: NetLamina) -> None:
    nid = lam.ok("network", "create", "--subnet", "10.4.0.0/24", "front").strip()
    lam.fails("network", "create", "front")
    seq = max(json.loads(line)["seq"] for line in
              lam.ok("events", "--format", "json").splitlines())
    lam.ok("network", "rm", "front")
    lam.ok("network", "create", "other")
    by_name = [json.loads(line)["type"] for line in
               lam.ok("events", "--format", "json", "--filter", "network=front").splitlines()]
    assert by_name == ["NetworkCreated", "CommandRejected", "NetworkRemoved"]
    by_id = lam.ok("events", "--format", "json", "--filter", f"network={nid[:10]}")
    assert [json.loads(line)["type"] for line in by_id.splitlines()] == \
        ["NetworkCreated", "NetworkRemoved"]
    then = lam.ok("replay", "--at", str(seq))
    assert any(line.split()[:4] == [nid[:12], "front", "10.4.0.0/24", "10.4.0.1"]
               for line in then.splitlines()), then
    assert "front" not in lam.ok("replay", "--at", "2999-01-01T00:00:00Z")
    assert "1 networks" in lam.ok("replay")
