"""A real SQLite event log written event by event: a user-defined network `front`, a
container `web` on it (alias `www`, port 8080->80 published) and `api` on the default
bridge, started and then stopped. The tests of `replay --at`, `viz --networks` and
`events --filter network=` read it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from adapters.eventstore.sqlite_log import SqliteEventLog
from core.engine.networks import PREDEFINED
from events import types as ev

FRONT = "f" * 8 + "0" * 56
WEB = "a" * 12 + "1" * 52
API = "b" * 12 + "2" * 52
IMAGE = "c" * 64
BRIDGE = PREDEFINED["bridge"].id


def endpoint(nid: str, address: str, bridge: str, gateway: str, aliases: list[str],
             name: str, cid: str, slot: int = 0) -> dict[str, Any]:
    """As core.engine.networks.endpoint records one."""
    user_defined = nid != BRIDGE
    return {"id": nid, "address": address, "prefixlen": 16, "gateway": gateway,
            "mac": "02:42:ac:12:00:02", "bridge": bridge, "veth": f"lv{cid[:6]}",
            "internal": False, "aliases": aliases, "dns": user_defined, "slot": slot,
            "dns_names": [name, *aliases, cid[:12]] if user_defined else []}


WEB_EP = endpoint(FRONT, "172.18.0.2", "lm-ffffffff0000", "172.18.0.1", ["www"], "web", WEB)
API_EP = endpoint(BRIDGE, "172.17.0.2", "lamina0", "172.17.0.1", [], "api", API)
WEB_PORTS = [{"proto": "tcp", "container_port": 80, "host_ip": "0.0.0.0", "host_port": 8080}]


@dataclass
class NetLog:
    log: SqliteEventLog
    seqs: dict[str, int] = field(default_factory=dict)  # what happened -> its seq
    ats: dict[str, str] = field(default_factory=dict)  # what happened -> its time

    def append(self, what: str, *events: ev.Event) -> None:
        recs = self.log.append(list(events), expected={}, meta={"user": "t"})
        self.seqs[what], self.ats[what] = recs[-1].seq, recs[-1].at
        time.sleep(0.002)  # each step at a time of its own


def write(root: str) -> NetLog:
    n = NetLog(SqliteEventLog(root))
    n.append("network", ev.NetworkCreated(id=FRONT, name="front", subnet="172.18.0.0/16",
                                          gateway="172.18.0.1"))
    n.append("created",
             ev.ContainerCreated(id=WEB, name="web", image=IMAGE, cmd=["sh"],
                                 rw_layer=f"rw-{WEB}", config={
                                     "network": "front",
                                     "endpoints": {"front": {"aliases": ["www"]}},
                                     "port_bindings": [{"proto": "tcp", "container_port": 80,
                                                        "host_ip": "", "host_port": 8080}]}),
             ev.ContainerCreated(id=API, name="api", image=IMAGE, cmd=["sh"],
                                 rw_layer=f"rw-{API}", config={"network": "bridge"}))
    n.append("web started", ev.ContainerStarted(id=WEB, pid=100, networks={"front": WEB_EP},
                                                ports=WEB_PORTS))
    n.append("api started", ev.ContainerStarted(id=API, pid=200, networks={"bridge": API_EP}))
    n.append("web stopped", ev.ContainerStopped(id=WEB, signal=15, exit_code=0))
    n.append("api stopped", ev.ContainerStopped(id=API, signal=15, exit_code=0))
    return n
