"""`lamina version`, `events`, `audit verify` and `replay`: the commands about the event log
itself (its schema, its trail, its integrity, rebuilding and time travel)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from adapters.cli.common import event_log

COMMANDS = ("version", "events", "audit", "replay")


def cmd_version(args: argparse.Namespace) -> int:
    from adapters.eventstore.schema import SCHEMA_VERSION
    from core import __version__

    if args.format == "json":
        from adapters.cli.render import json_line

        json_line({"version": __version__, "schema": SCHEMA_VERSION,
                   "python": sys.version.split()[0]})
    else:
        print(f"lamina {__version__} (event log schema {SCHEMA_VERSION}, "
              f"python {sys.version.split()[0]})")
    return 0


def _in_postgres(log: Any) -> bool:
    """A root whose log is its host's chain in PostgreSQL (adapters/eventstore/where.py)
    rather than its SQLite file: the same questions, asked through its own SQL."""
    return getattr(log, "host", None) is not None


def cmd_events(args: argparse.Namespace) -> int:
    log = event_log(args, create=False)
    if log is None:
        return 0
    if _in_postgres(log):
        return _postgres_events(args, log)
    from adapters.cli.render import event_json, event_line, json_line
    from adapters.eventstore.query import select

    out = sys.stdout
    from adapters.cli.formats import is_template

    if is_template(args.format):
        return _templated_events(args, log, select(log.con, args.since, args.until,
                                                   args.filter or ()))
    for rec in select(log.con, args.since, args.until, args.filter or ()):
        if args.format == "json":
            json_line(event_json(rec), out)
        else:
            out.write(event_line(rec) + "\n")
    return 0


def _postgres_events(args: argparse.Namespace, log: Any) -> int:
    """`events` of a root whose log is in PostgreSQL: --since, --until, --filter
    container/type/event/user (PostgresEventLog.select); the other filters and a template
    (docker's messages) are SQLite's queries so far, refused by name."""
    from adapters.cli.formats import is_template
    from adapters.cli.render import event_json, event_line, json_line
    from adapters.eventstore.query import parse_time
    from core.errors import BadInput

    if is_template(args.format):
        raise BadInput("events --format TEMPLATE: not available for a root whose log is in "
                       "PostgreSQL (--format json is)")
    since = parse_time(args.since) if args.since else None
    until = parse_time(args.until) if args.until else None
    for rec in log.select(since, until, args.filter or ()):
        if args.format == "json":
            json_line(event_json(rec), sys.stdout)
        else:
            sys.stdout.write(event_line(rec) + "\n")
    return 0


def _templated_events(args: argparse.Namespace, log: Any, records: Any) -> int:
    """events --format TEMPLATE: each event as docker's messages (one lamina event may be
    several: a stop is docker's `die` and `stop`), through the template."""
    from adapters.cli.formats import templated
    from adapters.cli.rows import EventRow
    from adapters.dockerapi.shapes import docker_events
    from adapters.eventstore.query import ContainerNames

    names = ContainerNames(log.con)  # containers' names, removed ones too
    # a run's network connect/disconnect messages have the network as their actor: docker's
    # container filter doesn't show them
    con = None if any(f.startswith("container=") for f in args.filter or ()) else log.con
    templated(args.format, (EventRow(m) for rec in records
                            for m in docker_events(rec, names, con)), {})
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    log = event_log(args, create=False)
    if log is None:
        print("no event log yet: nothing to verify")
        return 0
    if _in_postgres(log):
        verdict = log.verify()
    else:
        from adapters.eventstore.audit import verify

        verdict = verify(log.con)
    if verdict.ok:
        print(f"hash chain intact: {verdict.checked} events verified")
        return 0
    print(f"lamina: error: hash chain broken at seq {verdict.bad_seq}: {verdict.reason} "
          f"({verdict.checked} events before it verified)", file=sys.stderr)
    return 1


def cmd_replay(args: argparse.Namespace) -> int:
    from adapters import logs

    if args.at is not None:
        return _replay_at(args)
    log = event_log(args, create=True)
    if _in_postgres(log):
        return _postgres_replay(args, log)
    from adapters.eventstore import replay

    if args.snapshot:
        seq = replay.snapshot(log.con)
        logs.log("info", "snapshot", seq=seq)
        print(f"snapshot taken at seq {seq}")
        return 0
    import time

    t0 = time.perf_counter()
    report = replay.rebuild(log.con, use_snapshots=not args.full)
    ms = (time.perf_counter() - t0) * 1000
    logs.log("info", "replayed", events=report.events, from_snapshot=report.from_snapshot)
    origin = f"snapshot at seq {report.from_snapshot}" if report.from_snapshot else "the start"
    print(f"replayed {report.events} events from {origin} in {ms:.1f} ms: "
          f"{report.containers} containers, {report.images} images, {report.layers} layers, "
          f"{report.volumes} volumes, {report.networks} networks")
    return 0


def _postgres_replay(args: argparse.Namespace, log: Any) -> int:
    """`replay` (a snapshot, or the read model rebuilt) of a root whose log is in
    PostgreSQL: the same as SQLite's, through the host's chain there."""
    from adapters import logs

    if args.snapshot:
        seq = log.snapshot()
        logs.log("info", "snapshot", seq=seq)
        print(f"snapshot taken at seq {seq}")
        return 0
    import time

    t0 = time.perf_counter()
    world = log.rebuild()
    ms = (time.perf_counter() - t0) * 1000
    print(f"replayed {world.seq} events from the start in {ms:.1f} ms: "
          f"{len(world.containers)} containers, {len(world.images)} images, "
          f"{len(world.layers)} layers, {len(world.volumes)} volumes, "
          f"{len(world.networks)} networks")
    return 0


def _replay_at(args: argparse.Namespace) -> int:
    log = event_log(args, create=False)
    from adapters.cli.render import json_line
    from adapters.eventstore import replay
    from adapters.eventstore.query import parse_time
    from core.model import World

    world = World()
    if log is not None:
        at = args.at
        if _in_postgres(log):
            seq = int(at) if at.isdigit() else log.seq_at_time(parse_time(at))
            world = log.state_at(seq, use_snapshots=not args.full)
        else:
            seq = int(at) if at.isdigit() else replay.seq_at_time(log.con, parse_time(at))
            world = replay.state_at(log.con, seq, use_snapshots=not args.full)
    if args.format == "json":
        json_line({**world.to_json(), "leases": _leases(world)}, sys.stdout)
        return 0
    print_world(world)
    return 0


def _net_map(world: Any) -> Any:
    from adapters.viz.model import network_map

    return network_map(world.containers.values(), world.networks.values(), world.seq)


def _leases(world: Any) -> list[dict[str, Any]]:
    """Who was on which network then: one entry per member, with its address (none when it
    was stopped) and the ports published to it."""
    return [{"network": n.name, "network_id": n.id, "container": m.container,
             "name": m.name, "state": m.state, "address": m.address,
             "prefixlen": m.prefixlen, "mac": m.mac, "aliases": list(m.aliases),
             "ports": list(m.ports)}
            for n in _net_map(world).networks for m in n.members]


def print_world(world: Any) -> None:
    from adapters.cli.render import status, table
    from core.references import short

    out = sys.stdout  # now (render's default is the one at its import)
    print(f"state after seq {world.seq}")
    table(["CONTAINER ID", "NAME", "IMAGE", "STATE"],
          [[short(c.id), c.name, short(c.image), status(c)]
           for c in world.containers.values()], out)
    print()
    table(["IMAGE ID", "TAGS", "PARENT", "LAYERS"],
          [[short(i.id), ",".join(i.tags) or "<none>", short(i.parent or "") or "-",
            len(i.layers)] for i in world.images.values()], out)
    if world.volumes:
        print()
        table(["VOLUME NAME", "USED BY"],
              [[v.id, ", ".join(f"{short(c)} at {', '.join(targets)}"
                                for c, targets in v.users.items()) or "-"]
               for v in world.volumes.values()], out)
    nets = _net_map(world).networks
    if nets:
        print()
        table(["NETWORK ID", "NAME", "SUBNET", "GATEWAY", "INTERNAL"],
              [[short(n.id), n.name, n.subnet, n.gateway, "yes" if n.internal else "no"]
               for n in nets], out)
    members = [(n, m) for n in nets for m in n.members]
    if members:
        print()
        table(["NETWORK", "CONTAINER ID", "NAME", "ADDRESS", "ALIASES", "PORTS"],
              [[n.name, short(m.container), m.name, m.cidr or f"- ({m.state})",
                ",".join(m.aliases) or "-", ", ".join(m.ports) or "-"]
               for n, m in members], out)


def register(sub: Any, fmt: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("version", help="show lamina's version")
    fmt(p)
    p.set_defaults(func=cmd_version)

    p = sub.add_parser("events", help="print the audit trail")
    p.add_argument("--since", help="ISO time, unix timestamp or duration (10m)")
    p.add_argument("--until", help="ISO time, unix timestamp or duration (10m)")
    p.add_argument("--filter", action="append",
                   help="container=ID|NAME, image=ID|TAG, volume=NAME, network=NAME|ID, "
                        "type=KIND|TYPE, event=ACTION (docker's: start, die, rename...), "
                        "label=KEY[=VALUE], user=U; repeatable: a key's values are "
                        "alternatives, different keys must all hold")
    p.add_argument("--format", default="table", metavar="FORMAT",
                   help="table (the default: a line per event), json (lamina's records, "
                        "one a line) or a Go template on docker's event messages: "
                        "'{{.Type}} {{.Action}} {{.Actor.ID}} {{.Actor.Attributes.name}}', "
                        "'{{json .}}' (fields Type, Action, Actor, Scope, Time, TimeNano, "
                        "Status, ID, From)")
    p.set_defaults(func=cmd_events)

    p = sub.add_parser("audit", help="check the log's integrity")
    audit = p.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    a = audit.add_parser("verify", help="recompute the whole hash chain")
    a.set_defaults(func=cmd_audit_verify)

    p = sub.add_parser("replay", help="rebuild the read model from the log, or time-travel")
    p.add_argument("--at", metavar="SEQ|TIME", help="print the state as it was then")
    p.add_argument("--snapshot", action="store_true", help="checkpoint the projection")
    p.add_argument("--full", action="store_true", help="ignore snapshots")
    fmt(p)
    p.set_defaults(func=cmd_replay)
