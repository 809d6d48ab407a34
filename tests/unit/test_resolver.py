"""adapters/network/resolver.py without a kernel of its own: what it serves from a real read
model (a temp log appended through SqliteEventLog), how it notices changes, and the process
itself (`ensure`, `running`, `stop`) on loopback "gateways" (127.N.0.1) and a high port, so
no root, bridge or port 53 is needed. Every resolver a test starts is stopped in teardown."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import random
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.eventstore.sqlite_log import SqliteEventLog
from adapters.network import dns, resolver
from events import types as ev
from tests.kernel.runtime_env import alive

META = {"uid": 0, "user": "root"}
IMAGE = "e" * 64


class Root:
    """A root whose log the test writes, and the resolver's port for it."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.log = SqliteEventLog(self.path)
        self.port = random.randrange(20000, 60000)
        self._nets: dict[str, str] = {}

    def network(self, name: str, octet: int) -> str:
        """A network 127.<octet>.0.0/16, gateway 127.<octet>.0.1; its id."""
        nid = f"{octet:02x}" * 32
        self.log.append([ev.NetworkCreated(id=nid, name=name, subnet=f"127.{octet}.0.0/16",
                                           gateway=f"127.{octet}.0.1")],
                        expected={f"network:{nid}": 0}, meta=META)
        self._nets[name] = nid
        return nid

    def remove_network(self, name: str) -> None:
        nid = self._nets.pop(name)
        self.log.append([ev.NetworkRemoved(id=nid)], expected={}, meta=META)

    def run(self, cid: str, name: str, net: str, address: str, *aliases: str,
            dns_on: bool = True) -> None:
        """A container created and started with an endpoint on `net` (as attaching.leased
        records it)."""
        ep = {"id": self._nets[net], "address": address, "prefixlen": 16, "dns": dns_on,
              "dns_names": [name, *aliases, cid[:12]] if dns_on else [],
              "gateway": address.rsplit(".", 2)[0] + ".0.1", "aliases": list(aliases)}
        self.log.append([ev.ContainerCreated(id=cid, name=name, image=IMAGE)], expected={},
                        meta=META)
        self.log.append([ev.ContainerStarted(id=cid, pid=1, networks={net: ep})],
                        expected={}, meta=META)

    def event(self, event: ev.Event) -> None:
        self.log.append([event], expected={}, meta=META)

    def ask(self, name: str, octet: int, source: str | None = None,
            timeout: float = 2) -> tuple[int, list[str]]:
        """(rcode, addresses) of an A query to network 127.<octet>'s resolver, sent from
        `source` (default: an address in that network)."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((source or f"127.{octet}.0.99", 0))
            s.settimeout(timeout)
            s.sendto(dns.query(name), (f"127.{octet}.0.1", self.port))
            _, rcode, addresses = dns.parse_reply(s.recv(600))
        return rcode, addresses


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Root]:
    r = Root(tmp_path / "root")
    try:
        yield r
    finally:
        resolver.stop(r.path)
        r.log.close()


def eventually(check, seconds: float = 2.0) -> None:  # noqa: ANN001 - any predicate
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.02)


# --- what it serves ----------------------------------------------------------------------


def test_zones_hold_the_names_of_live_containers_on_each_network(root: Root) -> None:
    front, back = root.network("front", 31), root.network("back", 32)
    root.run("a" * 64, "web", "front", "127.31.0.2", "www")
    root.run("b" * 64, "db", "back", "127.32.0.2", "www")
    root.run("c" * 64, "api", "front", "127.31.0.3", "www")
    root.run("d" * 64, "plain", "front", "127.31.0.4", dns_on=False)
    root.run("f" * 64, "gone", "front", "127.31.0.5")
    root.event(ev.ContainerExited(id="f" * 64, exit_code=0))
    root.event(ev.ContainerPaused(id="c" * 64))
    zones = resolver.zones(resolver.connect(root.path))
    assert set(zones) == {front, back}
    assert zones[front].gateway == "127.31.0.1" and zones[front].subnet == "127.31.0.0/16"
    assert zones[front].records == {"web": ("127.31.0.2",), "aaaaaaaaaaaa": ("127.31.0.2",),
                                    "api": ("127.31.0.3",), "cccccccccccc": ("127.31.0.3",),
                                    "www": ("127.31.0.2", "127.31.0.3")}
    assert zones[back].records == {"db": ("127.32.0.2",), "www": ("127.32.0.2",),
                                   "bbbbbbbbbbbb": ("127.32.0.2",)}


def test_the_view_reads_again_only_after_a_commit(root: Root) -> None:
    root.network("front", 33)
    view = resolver.View(root.path)
    try:
        assert view.changed() and not view.changed()
        root.run("a" * 64, "web", "front", "127.33.0.2")
        assert view.changed()
        assert "web" in next(iter(view.zones.values())).records
        assert not view.changed() and not view.gone()
        os.rename(os.path.join(root.path, "events.db"), os.path.join(root.path, "old.db"))
        assert view.gone()
    finally:
        view.close()


def test_the_view_never_writes_the_log(root: Root) -> None:
    root.network("front", 34)
    view = resolver.View(root.path)
    try:
        with pytest.raises(Exception, match="readonly|read-only|query_only"):
            view.con.execute("DELETE FROM networks")
    finally:
        view.close()


# --- the process -------------------------------------------------------------------------


def test_ensure_starts_one_resolver_that_follows_the_log(root: Root) -> None:
    root.network("front", 35)
    root.run("a" * 64, "web", "front", "127.35.0.2", "www")
    assert not resolver.running(root.path)
    resolver.ensure(root.path, port=root.port)
    assert resolver.running(root.path)
    assert root.ask("web", 35) == (dns.NOERROR, ["127.35.0.2"])
    assert root.ask("WWW.", 35) == (dns.NOERROR, ["127.35.0.2"])
    assert root.ask("nothing", 35) == (dns.NXDOMAIN, [])
    assert root.ask("web", 35, source="127.0.0.1") == (dns.REFUSED, [])  # not on the network
    root.event(ev.ContainerExited(id="a" * 64, exit_code=0))
    assert root.ask("web", 35) == (dns.NXDOMAIN, [])  # a query looks at the log first
    root.network("back", 36)  # a network recorded later gets a socket within a look
    root.run("b" * 64, "db", "back", "127.36.0.2")
    eventually(lambda: _answers(root, "db", 36))
    assert root.ask("web", 36) == (dns.NXDOMAIN, [])
    pid = _pid(root)
    resolver.ensure(root.path, port=root.port)
    assert _pid(root) == pid
    assert resolver.stop(root.path) and not resolver.running(root.path)
    assert not alive(pid)


def test_ensure_is_cheap_when_one_runs(root: Root) -> None:
    root.network("front", 37)
    resolver.ensure(root.path, port=root.port)
    runs = []
    for _ in range(200):
        start = time.perf_counter()
        resolver.ensure(root.path, port=root.port)
        runs.append(time.perf_counter() - start)
    assert sorted(runs)[100] < 0.0005, sorted(runs)[100]


def test_racing_ensures_start_one_resolver(root: Root) -> None:
    root.network("front", 38)
    root.run("a" * 64, "web", "front", "127.38.0.2")
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_ensure_at, args=(barrier, root.path, root.port))
             for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert _resolvers_of(root.path) == [_pid(root)]
    assert root.ask("web", 38) == (dns.NOERROR, ["127.38.0.2"])


def _ensure_at(barrier, path: str, port: int) -> None:  # noqa: ANN001 - a Barrier
    barrier.wait()
    resolver.ensure(path, port=port)


def test_it_leaves_with_the_last_network_and_comes_back(root: Root) -> None:
    root.network("front", 39)
    resolver.ensure(root.path, port=root.port)
    pid = _pid(root)
    root.remove_network("front")
    eventually(lambda: not resolver.running(root.path))
    eventually(lambda: not alive(pid))
    root.network("again", 40)
    root.run("a" * 64, "web", "again", "127.40.0.2")
    resolver.ensure(root.path, port=root.port)
    assert root.ask("web", 40) == (dns.NOERROR, ["127.40.0.2"])


def test_it_leaves_when_the_root_is_deleted(root: Root) -> None:
    root.network("front", 41)
    resolver.ensure(root.path, port=root.port)
    pid = _pid(root)
    root.log.close()
    shutil.rmtree(root.path)
    eventually(lambda: not alive(pid))


def test_ensure_without_a_network_starts_nothing(root: Root) -> None:
    resolver.ensure(root.path, port=root.port)  # the network went before it could start
    assert not resolver.running(root.path)
    assert not resolver.stop(root.path)


def test_it_takes_none_of_the_callers_descriptors(root: Root, tmp_path: Path) -> None:
    root.network("front", 42)
    with open(tmp_path / "mine", "w") as f:
        os.set_inheritable(f.fileno(), True)
        resolver.ensure(root.path, port=root.port)
    pid = _pid(root)
    targets = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(FileNotFoundError):  # closed since the listing: not ours
            targets.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
    assert str(tmp_path / "mine") not in targets
    assert os.readlink(f"/proc/{pid}/fd/0") == os.devnull
    assert os.readlink(f"/proc/{pid}/fd/1").endswith("/resolver.log")
    assert os.readlink(f"/proc/{pid}/cwd") == "/"
    assert os.getsid(pid) != os.getsid(0) and os.getppid() != _ppid(pid)


def test_a_gateway_taken_by_another_is_tried_again(root: Root) -> None:
    """A socket it can't bind (the gateway:port busy: say the resolver of a root deleted and
    made again, not gone yet) is retried at every look, and served once free."""
    root.network("front", 43)
    root.run("a" * 64, "web", "front", "127.43.0.2")
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.bind(("127.43.0.1", root.port))
    try:
        resolver.ensure(root.path, port=root.port)
        assert resolver.running(root.path)
    finally:
        squatter.close()
    eventually(lambda: _answers(root, "web", 43))
    log = (Path(root.path) / resolver.LOGFILE).read_text()
    assert log.count("cannot listen on 127.43.0.1") == 1, log


# --- helpers -----------------------------------------------------------------------------


def _answers(root: Root, name: str, octet: int) -> bool:
    try:
        return root.ask(name, octet, timeout=0.1)[0] == dns.NOERROR
    except OSError:  # no socket there yet: an unconnected socket hears no ICMP, it times out
        return False


def _pid(root: Root) -> int:
    with open(os.path.join(root.path, resolver.PIDFILE)) as f:
        return int(f.read().split()[0])


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def _resolvers_of(path: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"adapters.network.resolver" in argv and path.encode() in argv:
            found.append(int(pid))
    return found
