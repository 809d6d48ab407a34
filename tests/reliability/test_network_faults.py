"""Fault injection for the network commands, as tests/reliability/test_faults.py does for the
others, with lamina inside a network namespace this module makes (a `unshare -n sleep`
process entered with `nsenter --net`; never the host's): each command is run once with
LAMINA_FAULT_TRACE to learn its fault points and its events, then killed (SIGKILL) at each
point in turn; after `system reconcile` the command has left all of its events or none,
`system check` finds nothing, and the bridges and nftables chains in the namespace are
exactly those of the networks the log holds. The host's links and ruleset are compared
before and after.

The containers on networks too (test_a_crash_wiring_a_container_leaves_nothing_stray):
`run -d --network front -p PORT:80 -p 80` (killed after a veth is on the bridge, after the
DNAT rules are in, around the append, before the start is confirmed), `rm -f` of such a
container (after its ports are unpublished, after its veths go, around the append), and
`network connect` / `network disconnect` on a running container (after the veth is in,
around the append, before the veth goes). After each crash, `system reconcile`, then:
`system check` finds nothing; the root's invariants hold (tests/reliability/invariants.py:
hash chain, replay == read model, no stray mount, cgroup or process); the veths in the
namespace are exactly the running containers' endpoints', its `pub-` chains exactly those
of the running containers that publish, and the read model's leases and bindings exactly
theirs. `make test` kills each command at those points; LAMINA_SOAK=1 at every point it
passes."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import require_root
from tests.kernel.runtime_env import LAMINA, busybox_tar
from tests.kernel.test_network_plumbing import Box, host_network
from tests.reliability.invariants import appended_by, last_seq, settled

SOAK = os.environ.get("LAMINA_SOAK") == "1"
LIVE = ("running", "paused")

# crash points are armed from the environment as lamina loads: commands run in-process
pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("in_process_environment")]


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
    box.ok("ip", "link", "set", "lo", "up")
    root = tmp_path_factory.mktemp("netfaults") / "root"
    try:
        yield NetRoot(root, box)
    finally:
        from adapters.network import resolver

        resolver.stop(str(root))  # crashes may leave networks: its own end never comes
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


@pytest.mark.parametrize("command", list(PREPARE))
def test_a_crash_at_any_step_leaves_no_bridge_or_chain(lam: NetRoot, command: str,
                                                       tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    since = last_seq(lam.root)
    proc = lam.popen(PREPARE[command](lam), {"LAMINA_FAULT_TRACE": str(trace)})
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    complete = appended_by(lam.root, since, proc.pid)
    seen: dict[str, int] = {}
    points = []
    for name in trace.read_text().split():
        seen[name] = seen.get(name, 0) + 1
        points.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    assert any(p.startswith("before:networks.") for p in points), points
    assert complete, f"{command} appended nothing"
    for point in points:
        argv = PREPARE[command](lam)
        since = last_seq(lam.root)
        proc = lam.popen(argv, {"LAMINA_FAULT": point})
        proc.communicate(timeout=120)
        assert proc.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL), \
            f"{command}: {point} was not reached"
        left = appended_by(lam.root, since, proc.pid)
        assert left in ([], complete), f"{command} killed at {point} left {left}"
        lam.ok("system", "reconcile")
        check = lam.popen(["system", "check"], {})
        out, err = check.communicate(timeout=120)
        assert check.returncode == 0, \
            f"{command} at {point}: system check found {out!r}, said {err!r}"
        bridges, chains = lam.on_host()
        recorded = lam.recorded()
        assert bridges == recorded and chains == recorded, \
            f"{command} at {point}: bridges {bridges}, chains {chains}, log {recorded}"


# --- containers on networks ------------------------------------------------------------------


@pytest.fixture(scope="module")
def wired(lam: NetRoot, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetRoot]:
    """The root with busybox and a user network `front`; at the end every container is
    removed, the network too, and nothing of them is left in the namespace."""
    tmp = tmp_path_factory.mktemp("netfaults-image")
    lam.ok("import", str(busybox_tar(tmp)), "busybox")
    lam.ok("network", "create", "front")
    try:
        yield lam
    finally:
        ids = [json.loads(line)["id"] for line in
               lam.ok("ps", "-a", "--format", "json").splitlines()]
        if ids:
            lam.ok("rm", "-f", *ids)
        lam.ok("network", "rm", "front")
        lam.ok("system", "reconcile")
    assert _wiring(lam) == [], "containers removed, their wiring stayed"
    assert settled(lam.root) == []


def _port(lam: NetRoot) -> str:
    """A host port no earlier step asked for (a crash may leave a container running)."""
    return str(20000 + int(lam.unique("")))


def _run_d(lam: NetRoot, *network: str) -> str:
    return lam.ok("run", "-d", *network, "-p", f"{_port(lam)}:80", "-p", "80", "busybox",
                  "sleep", "600").strip()


def _disconnect(lam: NetRoot) -> list[str]:
    cid = _run_d(lam)  # the default bridge publishes; front only joined
    lam.ok("network", "connect", "front", cid)
    return ["network", "disconnect", "front", cid]


WIRED: dict[str, Callable[[NetRoot], list[str]]] = {
    "run -d --network": lambda lam: ["run", "-d", "--network", "front", "-p",
                                     f"{_port(lam)}:80", "-p", "80", "busybox", "sleep",
                                     "600"],
    "rm -f": lambda lam: ["rm", "-f", _run_d(lam, "--network", "front")],
    "network connect": lambda lam: ["network", "connect", "front", _run_d(lam)],
    "network disconnect": _disconnect,
}
# the crash states the issue names, killed in `make test` (every point under LAMINA_SOAK=1)
CHOSEN = {
    "run -d --network": ("endpoints.wired", "endpoints.published", "before:log.append#2",
                         "after:log.append#2", "before:runtime.confirm_start"),
    "rm -f": ("before:log.append", "after:log.append", "endpoints.unpublished",
              "after:runtime.release"),
    "network connect": ("runtime.connected", "after:log.append"),
    "network disconnect": ("before:log.append", "runtime.disconnecting"),
}


def _read_model(lam: NetRoot) -> tuple[dict[str, dict], set[tuple], set[tuple]]:
    """The read model's containers (id -> doc), leases and bindings, read directly."""
    con = sqlite3.connect(f"file:{lam.root}/events.db?mode=ro", uri=True)
    try:
        docs = {cid: json.loads(doc) for cid, doc in con.execute(
            "SELECT id, doc FROM containers")}
        leases = set(con.execute("SELECT container, network, address FROM leases"))
        bindings = set(con.execute("SELECT container, proto, host_ip, host_port FROM bindings"))
    finally:
        con.close()
    return docs, leases, bindings


def _wiring(lam: NetRoot) -> list[str]:
    """What of the containers' wiring disagrees with the log: veths, pub- chains, leases
    and bindings of no running container (or a running one's missing)."""
    docs, leases, bindings = _read_model(lam)
    live = {cid: d for cid, d in docs.items() if d["state"] in LIVE}
    want_veths = {ep["veth"] for d in live.values() for ep in d["endpoints"].values()}
    want_pubs = {f"pub-{cid[:12]}" for cid, d in live.items() if d["ports"]}
    want_leases = {(cid, ep["id"], ep["address"]) for cid, d in live.items()
                   for ep in d["endpoints"].values()}
    want_bindings = {(cid, p["proto"], p["host_ip"], p["host_port"]) for cid, d in live.items()
                     for p in d["ports"]}
    links = json.loads(lam.box.ok("ip", "-j", "link"))
    veths = {link["ifname"] for link in links if link["ifname"].startswith("lv")}
    rules = json.loads(lam.box.ok("nft", "-j", "list", "ruleset"))["nftables"]
    pubs = {o["chain"]["name"] for o in rules if "chain" in o
            and o["chain"]["name"].startswith("pub-")}
    out = []
    for what, got, want in (("veths", veths, want_veths), ("pub- chains", pubs, want_pubs),
                            ("leases", leases, want_leases),
                            ("bindings", bindings, want_bindings)):
        if got != want:
            out.append(f"{what}: stray {sorted(got - want)}, missing {sorted(want - got)}")
    return out


def _settled_wiring(lam: NetRoot, timeout: float = 10) -> list[str]:
    """_wiring, given a veth whose namespace just died the moment the kernel takes to
    delete it, and a monitor the moment it takes to record an end and unwire."""
    deadline = time.monotonic() + timeout
    while (found := _wiring(lam)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return found


def _trace(lam: NetRoot, argv: list[str], trace: Path) -> tuple[list[str], list[str], int]:
    """The points a complete run passes (a point passed again is `name#N`), the event types
    it appends, and its pid."""
    since = last_seq(lam.root)
    proc = lam.popen(argv, {"LAMINA_FAULT_TRACE": str(trace)})
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    seen: dict[str, int] = {}
    points = []
    for name in trace.read_text().split():
        seen[name] = seen.get(name, 0) + 1
        points.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return points, appended_by(lam.root, since, proc.pid), proc.pid


@pytest.mark.parametrize("command", list(WIRED))
def test_a_crash_wiring_a_container_leaves_nothing_stray(wired: NetRoot, command: str,
                                                         tmp_path: Path) -> None:
    lam = wired
    points, complete, _ = _trace(lam, WIRED[command](lam), tmp_path / "trace")
    assert complete, f"{command} appended nothing"
    chosen = points if SOAK else [p for p in points if p in CHOSEN[command]]
    assert SOAK or len(chosen) == len(CHOSEN[command]), \
        f"{command} passes {points}: not every point of {CHOSEN[command]}"
    print(f"\n{command}: killed at {len(chosen)} of its {len(points)} points: {chosen}")
    # run is a create's append, then a start's: a crash between them leaves the create's
    partial = [["ContainerCreated"]] if command.startswith("run") else []
    for point in chosen:
        argv = WIRED[command](lam)
        since = last_seq(lam.root)
        proc = lam.popen(argv, {"LAMINA_FAULT": point})
        proc.communicate(timeout=120)
        assert proc.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL), \
            f"{command}: {point} was not reached"
        left = appended_by(lam.root, since, proc.pid)
        assert left in ([], complete, *partial), f"{command} killed at {point} left {left}"
        lam.ok("system", "reconcile")
        check = lam.popen(["system", "check"], {})
        out, err = check.communicate(timeout=120)
        assert check.returncode == 0, \
            f"{command} at {point}: system check found {out!r}, said {err!r}"
        assert _settled_wiring(lam) == [], f"{command} at {point}"
        assert settled(lam.root) == [], f"{command} at {point}"
