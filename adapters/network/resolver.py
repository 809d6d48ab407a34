"""The embedded DNS responder as a running service: one process per root, serving every
user-defined network of its log on the network's gateway, port 53 (adapters/network/dns.py
has the wire format and why the gateway).

Why a process of its own: lamina has no daemon, and a container's names must resolve for as
long as it runs, whatever command started it. The start of a container with a DNS endpoint
calls `ensure`, which starts the resolver when none runs (and waits until it serves, so the
container can resolve at once); the resolver then follows the log by itself and leaves when
the root has no user-defined network any more (or no log), so nothing stays behind.

What it reads: the root's read model, read-only (`file:...?mode=ro`): the `networks` rows
(gateway, subnet) and the endpoints of the running and paused containers (each endpoint's
`dns_names` -> its address, for the network whose id it names). `PRAGMA data_version` tells
it cheaply whether another connection committed since it last read: it asks when a query
arrives and every POLL seconds, and only then reads the tables again.

Who runs: `<root>/resolver.pid` holds `PID STATE` (STATE: start, ready, leave) and the
resolver holds an flock on it for as long as it lives. `ensure` tries the lock without
waiting: taking it means none runs (it then starts one and hands it the locked file, so a
racing `ensure` finds it taken); finding it taken and the state `ready` is the common case,
a few microseconds. A resolver about to leave says `leave` first and reads the networks once
more: a network recorded before that is seen and it stays; an `ensure` that reads `leave`
waits for it to go and starts another.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import selectors
import signal
import socket
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from typing import Any

from adapters.kernel.proc import close_all_but
from adapters.network import dns
from core.errors import LaminaError

PIDFILE = "resolver.pid"
LOGFILE = "resolver.log"
DB_NAME = "events.db"
POLL = 0.2  # seconds between looks at the log when no query comes
START_TIMEOUT = 10.0  # a resolver not serving by then failed to start
LIVE = ("running", "paused")
STARTING, READY, LEAVING = "start", "ready", "leave"
_STATE_LEN = 17  # "%10d %s\n": every state the same length, so one pwrite replaces it
_MAX_BURST = 64  # queries answered from one socket before the others get a turn


class ResolverError(LaminaError):
    """The root's DNS resolver could not be started."""

    exit_code = 125


# --- the caller's side -------------------------------------------------------------------


def ensure(root: str, port: int = dns.PORT) -> None:
    """Make sure one resolver serves `root` (in the caller's network namespace); start it
    and wait until it serves when none does. Cheap when one runs: open, flock, pread."""
    fd = os.open(os.path.join(root, PIDFILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if _try_lock(fd):
                _start(root, fd, port)
                return
            if _state(fd)[1] == READY:
                return
            if time.monotonic() > deadline:  # starting or leaving for too long
                raise ResolverError(f"the DNS resolver of {root} is stuck "
                                    f"({_state(fd)[1] or 'no state'})")
            time.sleep(0.005)
    finally:
        os.close(fd)


def running(root: str) -> bool:
    """Whether a resolver holds the root's pidfile (or one is being started)."""
    try:
        fd = os.open(os.path.join(root, PIDFILE), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        return not _try_lock(fd)
    finally:
        os.close(fd)


def stop(root: str, timeout: float = 5.0) -> bool:
    """End the root's resolver (SIGTERM, then SIGKILL after `timeout`) and wait until it is
    gone; False when none ran."""
    try:
        fd = os.open(os.path.join(root, PIDFILE), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        deadline = time.monotonic() + timeout
        sent: set[int] = set()
        while not _try_lock(fd):
            pid = _state(fd)[0]
            late = time.monotonic() > deadline
            if pid > 0 and (pid not in sent or late):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL if late else signal.SIGTERM)
                sent.add(pid)
            if late and time.monotonic() > deadline + timeout:
                raise ResolverError(f"the DNS resolver of {root} does not go away")
            time.sleep(0.005)
        for pid in sent:  # our own child when this process started it (tests)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        return bool(sent)
    finally:
        os.close(fd)


def _try_lock(fd: int) -> bool:
    """Take the pidfile's lock without waiting; False when another holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _state(fd: int) -> tuple[int, str]:
    """(pid, state) the resolver wrote; (0, "") when it wrote none yet."""
    words = os.pread(fd, _STATE_LEN, 0).decode("ascii", "replace").split()
    if len(words) != 2 or not words[0].isdigit():
        return 0, ""
    return int(words[0]), words[1]


def _write_state(fd: int, pid: int, state: str) -> None:
    os.pwrite(fd, f"{pid:10d} {state}\n".encode(), 0)


def _start(root: str, lock_fd: int, port: int) -> None:
    """Start a resolver holding `lock_fd` (locked by us) and wait until it serves.

    A fresh interpreter (posix_spawn, in a session of its own; only stdio and the two
    descriptors named on its command line are inherited, and it closes anything else), not
    a fork of the caller: the caller may be the fork server's child or an API worker with
    an open log and other state a long-lived process must not carry. The spawned process
    forks once it serves and its parent half exits, which we reap: the resolver is nobody's
    child, so no caller is left with a zombie."""
    _write_state(lock_fd, 0, STARTING)
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    try:
        os.set_inheritable(lock_fd, True)
        os.set_inheritable(ready_w, True)
        log = os.path.join(root, LOGFILE)
        argv = [sys.executable, "-P", "-m", "adapters.network.resolver", "--root", root,
                "--lock-fd", str(lock_fd), "--ready-fd", str(ready_w), "--port", str(port)]
        pid = os.posix_spawn(sys.executable, argv, _env(), setsid=True, file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600),
            (os.POSIX_SPAWN_DUP2, 1, 2)])
    finally:
        os.close(ready_w)
        with contextlib.suppress(OSError):
            os.set_inheritable(lock_fd, False)
    try:
        word = _await(ready_r, pid)
    finally:
        os.close(ready_r)
    if word not in (b"r", b"n"):  # n: nothing to serve (the network went meanwhile)
        raise ResolverError(f"the DNS resolver of {root} failed to start (see {log})")


def _await(ready_r: int, pid: int) -> bytes:
    """The resolver's word on the readiness pipe (b"" when it died first), and its
    spawned half reaped. Killed when it says nothing within START_TIMEOUT."""
    with selectors.DefaultSelector() as sel:
        sel.register(ready_r, selectors.EVENT_READ)
        word = os.read(ready_r, 1) if sel.select(START_TIMEOUT) else b""
    if not word:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return word


def _env() -> dict[str, str]:
    """The caller's environment, with this checkout first on the module path: the resolver
    runs the same code as the engine that started it."""
    import adapters

    here = os.path.dirname(os.path.dirname(os.path.abspath(adapters.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([here, *filter(None, [env.get("PYTHONPATH")])])
    return env


# --- what it serves ----------------------------------------------------------------------


@dataclass(frozen=True)
class Zone:
    """One network as its resolver serves it: where, to whom, and the names it answers."""

    gateway: str
    subnet: str
    records: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # names one member alone resolves (its links' aliases): by its address, then the name
    links: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=dict)

    def lookup(self, name: str, client: str | None = None) -> tuple[str, ...] | None:
        own = self.links.get(client or "", {}).get(name)
        return own if own is not None else self.records.get(name)


def zones(con: sqlite3.Connection) -> dict[str, Zone]:
    """Every user-defined network of the read model (by id) with its containers' names:
    the names of each running or paused container's endpoint on it (core/networks.py
    dns_records folds names and aliases, as docker does), both its addresses on a
    dual-stack network; and each member's links (NAME:ALIAS: ALIAS answers NAME's
    addresses, to that member alone)."""
    marks = ",".join("?" * len(LIVE))
    return zones_of(con.execute("SELECT id, doc FROM networks"),
                    con.execute("SELECT json_extract(doc, '$.endpoints') FROM containers "
                                f"WHERE state IN ({marks})", LIVE))


def zones_of(networks: Iterable[tuple[str, str]], rows: Iterable[tuple[str | None]]
             ) -> dict[str, Zone]:
    """The zones of these networks' (id, doc) rows and the live containers' endpoints
    (JSON texts), whichever store they were read from."""
    from core.networks import dns_records, link_records

    members: dict[str, list[tuple[Sequence[str], str]]] = {}
    linking: dict[str, list[tuple[str, Sequence[str]]]] = {}
    nets: dict[str, tuple[str, str]] = {}
    for nid, doc in networks:
        d = json.loads(doc)
        nets[nid] = (d["gateway"], d["subnet"])
        members[nid], linking[nid] = [], []
    for (endpoints,) in rows:
        for ep in json.loads(endpoints or "{}").values():
            if ep.get("dns") and ep.get("id") in members and ep.get("address"):
                for address in (ep["address"], ep.get("address6")):
                    if address:
                        members[ep["id"]].append((ep.get("dns_names") or (), address))
                if ep.get("links"):
                    linking[ep["id"]].append((ep["address"], ep["links"]))
    out = {}
    for nid, (gw, subnet) in nets.items():
        records = dns_records(members[nid])
        out[nid] = Zone(gw, subnet, records, link_records(linking[nid], records))
    return out


def connect(root: str) -> sqlite3.Connection:
    """The root's log, read-only: the resolver never writes it, not even a WAL checkpoint."""
    path = os.path.join(root, DB_NAME)
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None,
                          check_same_thread=False)
    con.execute("PRAGMA query_only = 1")
    return con


class _Following:
    """What the resolver's views share: `zones`, read again only when the log's version
    (whatever tells it in each store) moved since they were read."""

    zones: dict[str, Zone]
    _version: int | None

    def _now(self) -> int:
        raise NotImplementedError

    def _read(self) -> dict[str, Zone]:
        raise NotImplementedError

    def changed(self) -> bool:
        """Read the tables again when the log changed since; whether it did."""
        version = self._now()
        if version == self._version:
            return False
        self.zones = self._read()
        self._version = version
        return True

    def reread(self) -> None:
        """Read the tables now, whatever the version says (before deciding to leave)."""
        self._version = None
        self.changed()


class View(_Following):
    """The read model as the resolver follows it: `zones`, read again only when
    `data_version` says another connection committed; `gone` when the log file was
    removed or replaced (the root was deleted)."""

    def __init__(self, root: str) -> None:
        self.path = os.path.join(root, DB_NAME)
        self.con = connect(root)
        self._file = _identity(self.path)
        self._version: int | None = None
        self.zones: dict[str, Zone] = {}

    def _now(self) -> int:
        return self.con.execute("PRAGMA data_version").fetchone()[0]

    def _read(self) -> dict[str, Zone]:
        return zones(self.con)

    def gone(self) -> bool:
        return _identity(self.path) != self._file

    def close(self) -> None:
        self.con.close()


class PostgresView(_Following):
    """The read model as the resolver follows it for a root whose log is in PostgreSQL
    (adapters/eventstore/where.py): the host's rows, read again when its head moved (one
    indexed row per look); `gone` when the root lost its mark (it was deleted). An
    unreachable store keeps the zones last read and is asked again at the next look."""

    def __init__(self, root: str, url: str) -> None:
        from adapters.eventstore.where import HOST_FILE

        self.root, self.url = root, url
        with open(os.path.join(root, HOST_FILE)) as f:
            self.host = f.read().strip()
        self.con: Any = None
        self._version: int | None = None
        self.zones: dict[str, Zone] = {}

    def changed(self) -> bool:
        import psycopg

        try:
            return super().changed()
        except psycopg.Error as err:
            _say(f"event store: {err}".splitlines()[0])
            self.close()
            return False

    def _now(self) -> int:
        import psycopg

        if self.con is None or self.con.closed:
            self.con = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
        row = self.con.execute("SELECT last_seq FROM hosts WHERE host = %s",
                               (self.host,)).fetchone()
        return row[0] if row else 0

    def _read(self) -> dict[str, Zone]:
        return zones_of(
            self.con.execute("SELECT id, doc FROM aggregates WHERE host = %s AND "
                             "kind = 'network'", (self.host,)).fetchall(),
            self.con.execute("SELECT doc::json ->> 'endpoints' FROM aggregates WHERE "
                             "host = %s AND kind = 'container' AND state = ANY(%s)",
                             (self.host, list(LIVE))).fetchall())

    def gone(self) -> bool:
        from adapters.eventstore.where import in_postgres

        return not in_postgres(self.root)

    def close(self) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None


def view_of(root: str) -> View | PostgresView:
    """The view of wherever the root's log lives."""
    from adapters.eventstore.where import store_url

    url = store_url(root)
    return View(root) if url is None else PostgresView(root, url)


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


# --- the process -------------------------------------------------------------------------


class _Stop(Exception):
    """SIGTERM arrived."""


@dataclass
class _Bound:
    zone: Zone
    sock: socket.socket
    clients: IPv4Network

    def lookup(self, name: str, client: str | None = None) -> tuple[str, ...] | None:
        return self.zone.lookup(name, client)


class Server:
    """One socket per network, all in one selector loop, answering from `view`."""

    def __init__(self, view: View | PostgresView, port: int = dns.PORT) -> None:
        self.view, self.port = view, port
        self.bound: dict[str, _Bound] = {}
        self.sel = selectors.DefaultSelector()
        self._failed: set[tuple[str, str]] = set()  # (network id, gateway) not bindable
        self._error = ""

    def refresh(self) -> None:
        """Follow the log: read it again if it changed, and match the sockets to it. A read
        that fails (the log busy, say) keeps the last answers until the next look."""
        try:
            changed = self.view.changed()
        except sqlite3.Error as err:
            if str(err) != self._error:  # said once, not every look
                _say(f"cannot read the log: {err}")
                self._error = str(err)
            return
        self._error = ""
        if changed or self._failed:  # a socket that could not be bound is tried again
            self.sync()

    def sync(self) -> None:
        """Sockets for exactly the view's networks; each one's records current."""
        zones = self.view.zones
        for nid in [n for n, b in self.bound.items()
                    if n not in zones or zones[n].gateway != b.zone.gateway]:
            self._unbind(nid)
        for nid, zone in zones.items():
            if nid in self.bound:
                self.bound[nid].zone = zone
            else:
                self._bind(nid, zone)

    def _bind(self, nid: str, zone: Zone) -> None:
        try:
            sock = dns.bind(zone.gateway, self.port)
        except OSError as err:
            if (nid, zone.gateway) not in self._failed:  # said once; tried at each change
                _say(f"network {nid[:12]}: cannot listen on {zone.gateway}:{self.port}: {err}")
                self._failed.add((nid, zone.gateway))
            return
        self._failed.discard((nid, zone.gateway))
        self.bound[nid] = _Bound(zone, sock, IPv4Network(zone.subnet))
        self.sel.register(sock, selectors.EVENT_READ, nid)

    def _unbind(self, nid: str) -> None:
        bound = self.bound.pop(nid)
        self.sel.unregister(bound.sock)
        bound.sock.close()

    def answer(self, nid: str) -> None:
        """Answer what waits on one network's socket (a burst at most)."""
        for _ in range(_MAX_BURST):
            bound = self.bound.get(nid)
            if bound is None or not dns.respond(bound.sock, bound.lookup, bound.clients,
                                                bound.lookup):
                return

    def serve(self, stay: Callable[[], bool]) -> None:
        """Answer queries until the log is gone, or it holds no network and `stay` agrees.
        The log is looked at when a query comes (before answering it) and every POLL s."""
        next_look = time.monotonic() + POLL
        while True:
            events = self.sel.select(max(0.0, next_look - time.monotonic()))
            if events:
                self.refresh()
                for key, _ in events:
                    self.answer(key.data)
            if time.monotonic() >= next_look:  # a look also retries what failed to bind
                next_look = time.monotonic() + POLL
                if self.view.gone():
                    return
                self.refresh()
            if not self.view.zones and not stay():
                return

    def close(self) -> None:
        for nid in list(self.bound):
            self._unbind(nid)
        self.sel.close()


def _say(text: str) -> None:
    """A line in the resolver's log (its stderr: <root>/resolver.log)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    print(f"{stamp} lamina resolver[{os.getpid()}]: {text}", file=sys.stderr, flush=True)


def _stay(server: Server, lock_fd: int) -> Callable[[], bool]:
    """Whether a resolver that saw no network should stay after all: it says `leave` first
    and then reads the log once more, so a network recorded before an `ensure` read the
    state is seen here (stay: `ready` again), and an `ensure` after it waits for us to go."""
    def stay() -> bool:
        _write_state(lock_fd, os.getpid(), LEAVING)
        server.view.reread()
        server.sync()
        if server.view.zones:
            _write_state(lock_fd, os.getpid(), READY)
            return True
        return False
    return stay


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Stop


def main(argv: Sequence[str] | None = None) -> int:
    """The resolver process (`python -m adapters.network.resolver --root ROOT --lock-fd N
    --ready-fd M`), as `ensure` spawns it: detach, then serve until there is nothing to."""
    import argparse

    parser = argparse.ArgumentParser(prog="lamina-resolver")
    parser.add_argument("--root", required=True)
    parser.add_argument("--lock-fd", type=int, required=True)
    parser.add_argument("--ready-fd", type=int, required=True)
    parser.add_argument("--port", type=int, default=dns.PORT)
    args = parser.parse_args(argv)
    lock_fd, ready_fd = args.lock_fd, args.ready_fd
    os.chdir("/")
    os.umask(0o077)
    close_all_but({0, 1, 2, lock_fd, ready_fd})
    for fd in (lock_fd, ready_fd):
        os.set_inheritable(fd, False)
    signal.signal(signal.SIGTERM, _on_sigterm)
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    if os.fork():  # the spawned half ends at once and is reaped by `ensure`
        os._exit(0)
    return _serve(os.path.abspath(args.root), lock_fd, ready_fd, args.port)


def _serve(root: str, lock_fd: int, ready_fd: int, port: int) -> int:
    """Open the log (here, after the fork: SQLite's locks don't cross one), bind, say
    ready, serve; `leave` is written on the way out, whatever the way."""
    _write_state(lock_fd, os.getpid(), STARTING)
    view: View | PostgresView | None = None
    server: Server | None = None
    try:
        view = view_of(root)
        server = Server(view, port)
        server.refresh()
        if not view.zones:  # gone before we came: leave, and let go first (the lock)
            _write_state(lock_fd, os.getpid(), LEAVING)
            os.close(lock_fd)
            lock_fd = -1
            os.write(ready_fd, b"n")
            return 0
        _write_state(lock_fd, os.getpid(), READY)
        os.write(ready_fd, b"r")
        os.close(ready_fd)
        ready_fd = -1
        server.serve(_stay(server, lock_fd))
        return 0
    except _Stop:
        return 0
    except Exception as err:  # noqa: BLE001 - said in the log; the exit code says the rest
        _say(f"stopped: {err!r}")
        return 1
    finally:
        if lock_fd >= 0:
            with contextlib.suppress(OSError):
                _write_state(lock_fd, os.getpid(), LEAVING)
        if server is not None:
            server.close()
        if view is not None:
            view.close()


if __name__ == "__main__":
    sys.exit(main())
