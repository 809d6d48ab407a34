"""`lamina network create|ls|inspect|rm|prune|connect|disconnect`: networks as docker's CLI
shows them.

create, rm, prune, connect and disconnect change state (each recorded,
core/engine/networks.py); ls and inspect are pure queries on the read model and append
nothing (inspect's Containers: the running members, adapters/storage/netsettings.py).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

COMMANDS = ("network",)

_PRUNE_WARNING = ("WARNING! This will remove all custom networks not used by at least one "
                  "container.")


def _engine(args: argparse.Namespace) -> Any:
    from adapters.cli.common import engine

    return engine(args)


def _reader(args: argparse.Namespace) -> Any:
    """An engine for the queries: the read model alone (the predefined networks only when
    the root has no log yet)."""
    from adapters.bootstrap import open_log, query_engine
    from adapters.cmdline import root_dir
    from core.memory import MemoryEventLog

    return query_engine(open_log(root_dir(args.root), create=False) or MemoryEventLog())


def _pairs(items: list[str] | None, what: str) -> dict[str, str]:
    from core.errors import BadInput

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not key:
            raise BadInput(f"invalid {what} {item!r}: it should be KEY=VALUE")
        out[key] = value
    return out


def cmd_create(args: argparse.Namespace) -> int:
    nid = _engine(args).network_create(
        args.name, internal=args.internal, labels=_pairs(args.label, "label"),
        options=_pairs(args.opt, "option"), driver=args.driver, attachable=args.attachable,
        **_ipam(args))
    print(nid)
    return 0


def _ipam(args: argparse.Namespace) -> dict[str, Any]:
    """--subnet/--gateway/--ip-range (one of each family, as docker pairs them: a gateway
    or range goes with the subnet it is in), --aux-address, --ipv6."""
    from core.errors import BadInput

    out: dict[str, Any] = {"ipv6": bool(args.ipv6)}
    subnets = args.subnet or []
    for family, suffix in ((4, ""), (6, "6")):
        mine = [s for s in subnets if _version(s) == family]
        if len(mine) > 1:
            raise BadInput(f"more than one IPv{family} --subnet is not supported by lamina yet")
        if mine:
            out[f"subnet{suffix}"] = mine[0]
    for flag, key in (("gateway", "gateway"), ("ip_range", "ip_range")):
        for value in getattr(args, flag) or []:
            host = value.partition("/")[0]
            suffix = "6" if _version(host) == 6 else ""
            name = f"{key}{suffix}"
            if name in out:
                raise BadInput(f"cannot configure multiple {flag.replace('_', '-')}s for the "
                               "same subnet")
            out[name] = value
    aux = _pairs(args.aux_address, "aux-address")
    if aux:
        out["aux_addresses"] = aux
    return out


def _version(text: str) -> int:
    return 6 if ":" in text else 4


def cmd_ls(args: argparse.Namespace) -> int:
    from adapters.cli import formats, render
    from core import filters
    from core.engine.networks import doc

    networks = _reader(args).network_list(filters.parse_flags(args.filter or []))
    short = (lambda i: i) if args.no_trunc else (lambda i: i[:12])
    if args.quiet:
        formats.quiet_warning(args.format)
        for n in networks:
            print(short(n.id))
    elif args.format == "json":
        for n in networks:
            render.json_line(doc(n))
    elif formats.is_template(args.format):
        from adapters.cli.rows import NetworkRow

        formats.templated(args.format, (NetworkRow(n, trunc=not args.no_trunc)
                                        for n in networks), NetworkRow.HEADERS)
    else:
        render.table(["NETWORK ID", "NAME", "DRIVER", "SCOPE"],
                     [[short(n.id), n.name, n.driver, "local"] for n in networks])
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from adapters.cli.formats import inspected
    from adapters.storage.netsettings import network_doc
    from core.engine.networks import members
    from core.errors import LaminaError

    e = _reader(args)
    docs, code = [], 0
    for ref in args.refs:
        try:
            n = e.network(ref)
            docs.append(network_doc(n, members(e, n)))
        except LaminaError as err:
            print(f"lamina: error: {err}", file=sys.stderr)
            code = 1
    inspected(docs, args.format)
    return code


def cmd_rm(args: argparse.Namespace) -> int:
    from adapters.cli.common import for_each

    e = _engine(args)
    return for_each(args.refs, lambda ref: e.network_rm([ref]))


def cmd_connect(args: argparse.Namespace) -> int:
    _engine(args).network_connect(args.network, args.container, aliases=args.alias or (),
                                  ip=args.ip, ip6=args.ip6, links=args.link or [],
                                  link_local_ips=args.link_local_ip or [],
                                  driver_opts=_pairs(args.driver_opt, "driver option"))
    return 0


def cmd_disconnect(args: argparse.Namespace) -> int:
    _engine(args).network_disconnect(args.network, args.container, force=args.force)
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    from core import filters

    wanted = filters.parse_flags(args.filter or [])
    from adapters.cli.common import confirmed

    if not confirmed(args, _PRUNE_WARNING, "network prune"):
        return 1
    names = _engine(args).network_prune(wanted)
    if names:
        print("Deleted Networks:")
        for name in names:
            print(name)
        print()
    return 0


def register(sub: Any, fmt: Callable[[argparse.ArgumentParser], None]) -> None:
    from adapters.cli.common import add_inspect_format, add_template_format

    p = sub.add_parser("network", help="manage bridge networks")
    actions = p.add_subparsers(dest="network_command", metavar="ACTION", required=True)

    a = actions.add_parser("create", help="create a bridge network")
    a.add_argument("name", metavar="NAME", help="the network's name")
    a.add_argument("-d", "--driver", default="bridge", help="bridge (the only driver)")
    a.add_argument("--subnet", action="append", metavar="CIDR",
                   help="its IPv4 subnet (default: the first free one of docker's pools)")
    a.add_argument("--gateway", action="append", metavar="IP",
                   help="the bridge's address in the subnet (default: its first address)")
    a.add_argument("--ip-range", action="append", metavar="CIDR",
                   help="where containers' addresses come from, inside the subnet")
    a.add_argument("--aux-address", action="append", metavar="NAME=IP",
                   help="an address of the subnet never given to a container (repeatable)")
    a.add_argument("--ipv6", action="store_true",
                   help="dual-stack: an IPv6 subnet too (--subnet, else a unique local /64)")
    a.add_argument("--attachable", action="store_true",
                   help="recorded and shown (docker's; every container may join a local "
                        "network)")
    a.add_argument("--internal", action="store_true", help="no route out of the network")
    a.add_argument("--label", action="append", metavar="K=V",
                   help="a label on the network (repeatable)")
    a.add_argument("-o", "--opt", action="append", metavar="K=V",
                   help="a driver option: com.docker.network.bridge.name, "
                        "com.docker.network.driver.mtu, "
                        "com.docker.network.bridge.enable_ip_masquerade, "
                        "com.docker.network.bridge.host_binding_ipv4, "
                        "com.docker.network.container_iface_prefix")
    a.set_defaults(func=cmd_create)

    a = actions.add_parser("ls", help="list networks")
    a.add_argument("-q", "--quiet", action="store_true", help="only the ids")
    a.add_argument("--no-trunc", action="store_true", help="full ids")
    a.add_argument("-f", "--filter", action="append", metavar="K=V",
                   help="name=, id=, label=K[=V], driver=, type=custom|builtin, scope=, "
                        "dangling= (repeatable)")
    add_template_format(a, "ID, Name, Driver, Scope, IPv6, Internal, Labels, Label \"K\", "
                           "CreatedAt")
    a.set_defaults(func=cmd_ls)

    a = actions.add_parser("inspect", help="docker's JSON of networks")
    add_inspect_format(a)
    a.add_argument("refs", nargs="+", metavar="NETWORK", help="names or ids")
    a.set_defaults(func=cmd_inspect)

    a = actions.add_parser("rm", help="remove user-defined networks")
    a.add_argument("refs", nargs="+", metavar="NETWORK", help="names or ids")
    a.set_defaults(func=cmd_rm)

    a = actions.add_parser("connect", help="put a container on a network (a running one "
                                           "joins at once)")
    a.add_argument("--alias", action="append", help="another name of it there (repeatable)")
    a.add_argument("--ip", help="its IPv4 address there")
    a.add_argument("--ip6", help="its IPv6 address there (an IPv6 network)")
    a.add_argument("--link", action="append", metavar="NAME:ALIAS",
                   help="another container, known as ALIAS to this one there (repeatable)")
    a.add_argument("--link-local-ip", action="append",
                   help="a link-local address of its link there (repeatable)")
    a.add_argument("--driver-opt", action="append", metavar="K=V",
                   help="an endpoint driver option, recorded (repeatable)")
    a.add_argument("network", help="the network's name or id")
    a.add_argument("container", help="the container's name or id")
    a.set_defaults(func=cmd_connect)

    a = actions.add_parser("disconnect", help="take a container off a network")
    a.add_argument("-f", "--force", action="store_true", help="docker's flag (no effect "
                                                              "beyond being recorded)")
    a.add_argument("network", help="the network's name or id")
    a.add_argument("container", help="the container's name or id")
    a.set_defaults(func=cmd_disconnect)

    a = actions.add_parser("prune", help="remove every user-defined network nothing uses")
    a.add_argument("-f", "--force", action="store_true", help="do not ask first")
    a.add_argument("--filter", action="append", metavar="K=V",
                   help="label=K[=V], label!=K[=V] (repeatable)")
    a.set_defaults(func=cmd_prune)
