"""Fault injection for the network commands, as tests/reliability/test_faults.py does for the
others, with lamina inside a network namespace this module makes (a `unshare -n sleep`
process entered with `nsenter --net`; never the host's): each command is run once with
LAMINA_FAULT_TRACE to learn its fault points and its events, then killed (SIGKILL) at each
point in turn; after `system reconcile` the command has left all of its events or none,
`system check` finds nothing, and the bridges and nftables chains in the namespace are
exactly those of the networks the log holds. The host's links and ruleset are compared
before and after."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import require_root
from tests.kernel.runtime_env import LAMINA
from tests.kernel.test_network_plumbing import Box, host_network

pytestmark = pytest.mark.kernel


class NetRoot:
    def __init__(self, root: Path, box: Box) -> None:
        self.root, self.box, self.n = root, box, 0

    def unique(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def popen(self, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        return subprocess.Popen(self.box.argv(LAMINA, "--root", str(self.root), *argv),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, env={**os.environ, **env})

    def ok(self, *argv: str) -> str:
        proc = self.popen(list(argv), {})
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, (argv, err)
        return out.decode()

    def events(self) -> list[dict]:
        return [json.loads(line) for line in self.ok("events", "--format", "json").splitlines()]

    def on_host(self) -> tuple[set[str], set[str]]:
        """The bridges lamina's names have in the namespace, and the bridges lamina's table
        has chains for."""
        links = json.loads(self.box.ok("ip", "-j", "link"))
        bridges = {link["ifname"] for link in links if link["ifname"].startswith("lm-")}
        rules = json.loads(self.box.ok("nft", "-j", "list", "ruleset"))["nftables"]
        chains = {o["chain"]["name"][3:] for o in rules
                  if "chain" in o and o["chain"]["name"].startswith("in-")
                  and o["chain"]["name"] != "in-"}
        return bridges, chains

    def recorded(self) -> set[str]:
        out = self.ok("network", "ls", "-q", "--no-trunc", "--filter", "type=custom")
        return {f"lm-{nid[:12]}" for nid in out.split()}


@pytest.fixture(scope="module")
def lam(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetRoot]:
    require_root()
    before = host_network()
    box = Box()
    try:
        yield NetRoot(tmp_path_factory.mktemp("netfaults") / "root", box)
    finally:
        box.close()
    assert host_network() == before, "a network test changed the host's network"


def _prune(lam: NetRoot) -> list[str]:
    label = lam.unique("run")
    lam.ok("network", "create", "--label", label, lam.unique("p"))
    lam.ok("network", "create", "--label", label, lam.unique("p"))
    return ["network", "prune", "-f", "--filter", f"label={label}"]


PREPARE: dict[str, Callable[[NetRoot], list[str]]] = {
    "network create": lambda lam: ["network", "create", "--internal", lam.unique("net")],
    "network rm": lambda lam: ["network", "rm",
                               lam.ok("network", "create", lam.unique("net")).strip()],
    "network prune": _prune,
}


def _by(lam: NetRoot, since: int, pid: int) -> list[str]:
    return sorted(e["type"] for e in lam.events()[since:] if e["meta"].get("pid") == pid
                  and e["type"] != "HostChecked")


@pytest.mark.parametrize("command", list(PREPARE))
def test_a_crash_at_any_step_leaves_no_bridge_or_chain(lam: NetRoot, command: str,
                                                       tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    since = len(lam.events())
    proc = lam.popen(PREPARE[command](lam), {"LAMINA_FAULT_TRACE": str(trace)})
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    complete = _by(lam, since, proc.pid)
    seen: dict[str, int] = {}
    points = []
    for name in trace.read_text().split():
        seen[name] = seen.get(name, 0) + 1
        points.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    assert any(p.startswith("before:networks.") for p in points), points
    assert complete, f"{command} appended nothing"
    for point in points:
        argv = PREPARE[command](lam)
        since = len(lam.events())
        proc = lam.popen(argv, {"LAMINA_FAULT": point})
        proc.communicate(timeout=120)
        assert proc.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL), \
            f"{command}: {point} was not reached"
        left = _by(lam, since, proc.pid)
        assert left in ([], complete), f"{command} killed at {point} left {left}"
        lam.ok("system", "reconcile")
        check = lam.popen(["system", "check"], {})
        out, _ = check.communicate(timeout=120)
        assert check.returncode == 0, f"{command} at {point}: system check found {out!r}"
        bridges, chains = lam.on_host()
        recorded = lam.recorded()
        assert bridges == recorded and chains == recorded, \
            f"{command} at {point}: bridges {bridges}, chains {chains}, log {recorded}"
