"""`lamina ship` and `lamina fleet ps / images / hosts / events / audit verify / replay`: a
host's log forwarded to the central PostgreSQL store, and the fleet read back from it.

The central store is `--event-store postgresql://...` or $LAMINA_EVENT_STORE."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

COMMANDS = ("ship", "fleet")


def _store(args: argparse.Namespace) -> str:
    from adapters.eventstore.ship import store_url

    return store_url(args.event_store)


def cmd_ship(args: argparse.Namespace) -> int:
    import os

    from adapters.cmdline import root_dir
    from adapters.eventstore.ship import Shipper, host_id
    from adapters.eventstore.where import in_postgres
    from core.errors import LaminaError

    url = _store(args)
    root = root_dir(args.root)
    if in_postgres(root):  # its commands append to the store already
        raise LaminaError(f"root {root} keeps its event log in PostgreSQL (host "
                          f"{host_id(root)}'s chain there): nothing to ship")
    if not os.path.exists(os.path.join(root, "events.db")):
        raise LaminaError(f"root {root} has no event log yet: nothing to ship")
    shipper = Shipper(root, url, host_id(root, args.host), batch=args.batch)
    try:
        if args.follow:
            return _follow(shipper, args.interval)
        done = shipper.ship()
    finally:
        shipper.close()
    print(f"host {done.host}: shipped {done.events} events; the central store holds seq 1-"
          f"{done.head} of this log's {done.local}")
    return 0


def _follow(shipper: Any, interval: float) -> int:
    """Until SIGTERM or SIGINT, saying each batch shipped and each failure as a log line."""
    import signal

    from adapters import logs
    from adapters.eventstore.ship import follow

    stopping: list[int] = []

    def stop(signum: int, _frame: Any) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    level = {"shipped": "info", "unreachable": "warning", "refused": "error"}
    follow(shipper, interval=interval, stop=lambda: bool(stopping),
           say=lambda what, fields: logs.log(level[what], what, host=shipper.host, **fields))
    return 0


def _fleet(args: argparse.Namespace) -> Any:
    from adapters.eventstore.fleet import Fleet

    return Fleet(_store(args))


def _hosts(fleet: Any, host: str | None) -> list[str]:
    from core.errors import NotFound

    try:
        return list(fleet.known(host))
    except LookupError as err:
        raise NotFound(str(err)) from None


def _listing(args: argparse.Namespace, query: Callable[[Any], list[tuple[str, Any]]],
             headers: list[str], cells: Callable[[Any], list[Any]]) -> int:
    """A read-model listing of every host (or --host's): (host, aggregate) rows, as a table
    whose first column is the host, or one JSON object per aggregate with its host."""
    from adapters.cli.render import json_line, table
    from core.model import to_doc

    fleet = _fleet(args)
    try:
        if args.host is not None:
            _hosts(fleet, args.host)
        rows = query(fleet)
    finally:
        fleet.close()
    if args.format == "json":
        for host, agg in rows:
            json_line({"host": host, **to_doc(agg)})
        return 0
    table(["HOST", *headers], [[host, *cells(agg)] for host, agg in rows])
    return 0


def cmd_fleet_ps(args: argparse.Namespace) -> int:
    from adapters.cli.render import status
    from core.references import short

    return _listing(args, lambda fleet: fleet.containers(args.host, every=args.all),
                    ["CONTAINER ID", "NAME", "IMAGE", "STATUS"],
                    lambda c: [short(c.id), c.name, short(c.image), status(c)])


def cmd_fleet_images(args: argparse.Namespace) -> int:
    from core.references import short

    return _listing(args, lambda fleet: fleet.images(args.host),
                    ["IMAGE ID", "TAGS", "LAYERS"],
                    lambda i: [short(i.id), ",".join(i.tags) or "<none>", len(i.layers)])


def cmd_fleet_hosts(args: argparse.Namespace) -> int:
    """Each host's copy in the store: how far it goes and when it last moved (a host cut
    off from the store shows here as one whose copy stopped)."""
    from adapters.cli.render import json_line, table

    fleet = _fleet(args)
    try:
        heads = fleet.hosts()
    finally:
        fleet.close()
    if args.format == "json":
        for h in heads:
            json_line({"host": h.host, "seq": h.head.seq, "hash": h.head.hash,
                       "last_event_at": h.last_at, "shipped_at": h.updated})
        return 0
    table(["HOST", "EVENTS", "LAST EVENT", "LAST SHIPPED"],
          [[h.host, h.head.seq, h.last_at or "-", h.updated] for h in heads])
    return 0


def cmd_fleet_events(args: argparse.Namespace) -> int:
    from adapters.cli.render import event_json, event_line, json_line
    from adapters.eventstore.query import parse_time

    since = parse_time(args.since) if args.since else None
    until = parse_time(args.until) if args.until else None
    fleet = _fleet(args)
    out = sys.stdout
    try:
        if args.host is not None:
            _hosts(fleet, args.host)
        for host, rec in fleet.events(args.host, since, until):
            if args.format == "json":
                json_line({"host": host, **event_json(rec)}, out)
            else:
                out.write(f"{host} {event_line(rec)}\n")
    finally:
        fleet.close()
    return 0


def cmd_fleet_audit_verify(args: argparse.Namespace) -> int:
    fleet = _fleet(args)
    bad = 0
    try:
        for host in _hosts(fleet, args.host):
            verdict = fleet.verify(host)
            if verdict.ok:
                print(f"host {host}: hash chain intact: {verdict.checked} events verified")
                continue
            bad += 1
            print(f"lamina: error: host {host}: hash chain broken at seq {verdict.bad_seq}: "
                  f"{verdict.reason} ({verdict.checked} events before it verified)",
                  file=sys.stderr)
    finally:
        fleet.close()
    return 1 if bad else 0


def cmd_fleet_replay(args: argparse.Namespace) -> int:
    from adapters.cli.eventlog import print_world
    from adapters.cli.render import json_line
    from adapters.eventstore.query import parse_time

    when = parse_time(args.at) if args.at else None
    fleet = _fleet(args)
    try:
        hosts = _hosts(fleet, args.host)
        if args.snapshot:
            for host in hosts:
                print(f"host {host}: snapshot taken at seq {fleet.snapshot(host)}")
            return 0
        for host in hosts:
            world = fleet.state_at(host, when)
            if args.format == "json":
                json_line({"host": host, **world.to_json()})
                continue
            print(f"== host {host}")
            print_world(world)
            print()
    finally:
        fleet.close()
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--event-store", metavar="URL",
                   help="the central store, postgresql://... (default $LAMINA_EVENT_STORE)")


def _host(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", metavar="HOST", help="only this host (default: every host)")


def register(sub: Any, fmt: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("ship", help="forward this root's event log to the central store")
    _common(p)
    p.add_argument("--host", metavar="ID",
                   help="the host id to ship as (kept in <root>/host-id from the first "
                        "shipping on; default: this machine's name and a random suffix)")
    p.add_argument("--follow", action="store_true",
                   help="keep shipping new events until SIGTERM (what `lamina serve` runs)")
    p.add_argument("--interval", type=float, default=0.5, metavar="SECONDS",
                   help="with --follow: how often to look for new events (default 0.5)")
    p.add_argument("--batch", type=int, default=2000, metavar="N",
                   help="events per transaction on the central store (default 2000)")
    p.set_defaults(func=cmd_ship)

    p = sub.add_parser("fleet", help="every host's containers, events, audit and past, "
                                     "from the central store")
    fleet = p.add_subparsers(dest="fleet_command", metavar="ACTION", required=True)
    q = fleet.add_parser("ps", help="containers of every host (running and paused; -a: all)")
    _common(q)
    _host(q)
    q.add_argument("-a", "--all", action="store_true", help="every container, stopped too")
    fmt(q)
    q.set_defaults(func=cmd_fleet_ps)

    q = fleet.add_parser("images", help="images of every host")
    _common(q)
    _host(q)
    fmt(q)
    q.set_defaults(func=cmd_fleet_images)

    q = fleet.add_parser("hosts", help="every host in the store: its last event and when it "
                                       "last shipped")
    _common(q)
    fmt(q)
    q.set_defaults(func=cmd_fleet_hosts)

    q = fleet.add_parser("events", help="every host's audit trail, in time order")
    _common(q)
    _host(q)
    q.add_argument("--since", help="ISO time, unix timestamp or duration (10m)")
    q.add_argument("--until", help="ISO time, unix timestamp or duration (10m)")
    fmt(q)
    q.set_defaults(func=cmd_fleet_events)

    q = fleet.add_parser("audit", help="check every host's hash chain in the central store")
    audit = q.add_subparsers(dest="fleet_audit_command", metavar="ACTION", required=True)
    v = audit.add_parser("verify", help="recompute each host's chain, naming the first "
                                        "broken seq")
    _common(v)
    _host(v)
    v.set_defaults(func=cmd_fleet_audit_verify)

    q = fleet.add_parser("replay", help="every host's containers, images, volumes and "
                                        "networks as they were at a time")
    _common(q)
    _host(q)
    q.add_argument("--at", metavar="TIME",
                   help="ISO time, unix timestamp or duration ago (10m); default now")
    q.add_argument("--snapshot", action="store_true",
                   help="instead: checkpoint each host's state now (later replays start "
                        "from it)")
    fmt(q)
    q.set_defaults(func=cmd_fleet_replay)
