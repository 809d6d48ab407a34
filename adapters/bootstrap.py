"""The composition root: which adapters the CLI, the service and the exit recorder get, and
the caller's meta. Nothing below it imports it (the runtime's monitor execs the exit recorder,
adapters/record_exit.py, rather than importing this), so the wiring stays on top."""

from __future__ import annotations

import os
import sys
from typing import Any

# Set by the fork server in the child that runs a client's command: the client's uid and
# pid (from SO_PEERCRED), who the audit must name instead of the server's child.
PEER: dict[str, int] = {}


def caller_meta(argv: list[str] | None = None) -> dict[str, Any]:
    """Who is asking: recorded in every event's meta for the audit."""
    import pwd

    uid = PEER.get("uid", os.getuid())
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    return {"uid": uid, "user": user, "pid": PEER.get("pid", os.getpid()),
            "host": os.uname().nodename, "argv": list(sys.argv if argv is None else argv)}


# root -> its event log, opened by the fork server's spare before a client came (prepare).
_PREPARED: dict[str, Any] = {}


def prepare(root: str) -> None:
    """Do ahead of a command what every command of `root` does first: open its event log
    (connect, check the schema) and read the live containers as Engine.recover does. The
    fork server's spare calls this while it waits for a client: the time, and the
    copy-on-write faults of the pages those paths touch, are then not the client's. It
    changes nothing; a root without a log is left alone (a command creates it). The mount
    table the cgroup layout comes from is read ahead too (cgroups.read_mounts_ahead)."""
    from adapters.kernel.cgroups import read_mounts_ahead

    read_mounts_ahead()
    if root in _PREPARED or not os.path.exists(os.path.join(root, "events.db")):
        return  # one kept already (a child that serves another command): checked at use
    import sqlite3

    from adapters.eventstore.sqlite_log import SqliteEventLog
    from core.errors import LaminaError

    try:
        log = SqliteEventLog(root, create=False)
        log.containers(("running", "paused"))
    except (LaminaError, OSError, sqlite3.Error):
        return  # e.g. a log to migrate: the command will say so
    _PREPARED[root] = log


def _prepared(root: str) -> Any:
    log = _PREPARED.pop(root, None)
    if log is not None and not log.still_current():
        log.close()
        return None
    return log


def open_log(root: str, *, create: bool) -> Any:
    """The root's event log, where adapters/eventstore/where.py says it lives: its SQLite
    file (the default) or its host's chain in PostgreSQL; None when reading a root that has
    no log yet. Every component that opens a root's log comes through here."""
    log = _prepared(root)
    if log is not None:
        return log
    if os.path.exists(os.path.join(root, "events.db")) and \
            not os.path.exists(os.path.join(root, "event-store")):
        from adapters.eventstore.sqlite_log import SqliteEventLog  # the fast path: 2 stats

        return SqliteEventLog(root, create=create)
    from adapters.eventstore.where import store_url

    url = store_url(root)
    if url is not None:
        return _postgres_log(root, url, create=create)
    if not create:
        return None  # checked before importing the log: an empty root costs nothing
    from adapters.eventstore.sqlite_log import SqliteEventLog

    return SqliteEventLog(root, create=create)


def _postgres_log(root: str, url: str, *, create: bool) -> Any:
    """The root's host's chain in the PostgreSQL store at `url` (psycopg is imported only
    here); a root that has none yet gets its host id and its mark when it is created."""
    from adapters.eventstore.where import in_postgres, mark

    if not create and not in_postgres(root):
        return None
    from adapters.eventstore.postgres import PostgresEventLog
    from adapters.eventstore.ship import host_id
    from adapters.eventstore.sqlite_log import ensure_root

    ensure_root(root)
    log = PostgresEventLog(url, host_id(root))
    mark(root, url)
    return log


def query_engine(log: Any, *, layers: Any = None, volumes: Any = None) -> Any:
    """An engine for queries only (ls, inspect, viz): the read model, and the layer or
    volume store where a query shows their paths; no runtime, ids or clock, since nothing
    it is used for acts or records."""
    from core.engine import Engine

    return Engine(log=log, layers=layers, runtime=None, ids=None, clock=None,  # type: ignore
                  volumes=volumes, networks=None)  # type: ignore


class RandomIds:
    """64-hex-character ids from the OS's random source, as docker's."""

    def new_id(self) -> str:
        return os.urandom(32).hex()


def build_engine(root: str, monitor: bool = False, recover: bool = True) -> Any:
    """The Engine wired to the real adapters: the root's log (open_log), overlayfs layers,
    Linux runtime, volumes under <root>/volumes, bridge networks in the caller's network namespace.

    A container's monitor records as itself (`lamina-monitor`), not as the command that
    happened to fork it. `recover`: first record the end of live containers whose process
    and monitor are gone (Engine.recover, the cheap start-up check); `system check` turns it
    off, since it must change nothing. $LAMINA_FAULT arms a fault point (adapters/faults.py)."""
    from adapters import shutdown_mark
    from adapters.eventstore.sqlite_log import utcnow
    from adapters.network.host import LinuxNetworkHost
    from adapters.runtime.linux import LinuxRuntime
    from adapters.storage.store import LinuxLayerStore
    from adapters.storage.volumes import LinuxVolumeStore
    from core.engine import Engine

    log = open_log(root, create=True)
    layers = LinuxLayerStore(root)
    runtime = LinuxRuntime(root, layers, log)
    volumes = LinuxVolumeStore(root)
    networks: Any = LinuxNetworkHost()
    env = os.environ
    if "LAMINA_FAULT" in env or "LAMINA_FAULT_TRACE" in env or "adapters.faults" in sys.modules:
        from adapters.faults import wire, wire_networks, wire_volumes

        log, layers, runtime = wire(log, layers, runtime, monitor=monitor)
        volumes = wire_volumes(volumes)
        networks = wire_networks(networks)
    meta = (lambda: caller_meta(["lamina-monitor"])) if monitor else caller_meta
    engine = Engine(log=log, layers=layers, runtime=runtime, ids=RandomIds(), clock=utcnow,
                    volumes=volumes, networks=networks, meta=meta,
                    shutting_down=lambda: shutdown_mark.current(root))
    if recover and not monitor:
        engine.recover()
    return engine
