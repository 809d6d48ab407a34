"""`lamina volume create|ls|inspect|rm|prune`: volumes as docker's CLI shows them.

create, rm and prune change state (each recorded, core/engine/volumes.py); ls and inspect
are pure queries on the read model and append nothing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

COMMANDS = ("volume",)

_PRUNE_WARNING = ("WARNING! This will remove {what} local volumes not used by at least one "
                  "container.")


def _engine(args: argparse.Namespace) -> Any:
    from adapters.cli.common import engine

    return engine(args)


def _reader(args: argparse.Namespace) -> Any:
    """An engine for the queries: the read model and the volumes' paths, no runtime (None
    when the root has no log yet)."""
    from adapters.bootstrap import open_log
    from adapters.cmdline import root_dir
    from adapters.storage.volumes import LinuxVolumeStore

    root = root_dir(args.root)
    log = open_log(root, create=False)
    if log is None:
        return None
    from adapters.bootstrap import query_engine

    return query_engine(log, volumes=LinuxVolumeStore(root))


def _doc(e: Any, v: Any) -> dict[str, Any]:
    from adapters.storage.volumes import doc

    return doc(v, e.volumes.path(v.id))


def cmd_create(args: argparse.Namespace) -> int:
    from adapters.cli.storage import labels_of
    from core.errors import BadInput

    if args.name and args.positional and args.name != args.positional:
        raise BadInput("conflicting options: either specify --name or provide positional "
                       "arg, not both")
    options = dict(opt.partition("=")[::2] for opt in args.opt or [])
    name = _engine(args).volume_create(args.name or args.positional or None, args.driver,
                                       labels_of([], args.label or []), options)
    print(name)
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    from adapters.cli import render
    from core import filters

    wanted = filters.parse_flags(args.filter or [])
    e = _reader(args)
    if e is None:  # no log yet, so no volume; a bad filter is refused all the same
        from core.engine.volumes import check_list_filters

        check_list_filters(wanted)
    volumes = e.volume_list(wanted) if e is not None else []
    from adapters.cli import formats

    if args.quiet:
        formats.quiet_warning(args.format)
        for v in volumes:
            print(v.id)
    elif args.format == "json":
        for v in volumes:
            render.json_line(_doc(e, v))
    elif formats.is_template(args.format):
        from adapters.cli.rows import VolumeRow

        formats.templated(args.format, (VolumeRow(v, e.volumes.path(v.id)) for v in volumes),
                          VolumeRow.HEADERS)
    else:
        render.table(["DRIVER", "VOLUME NAME"], [[v.driver, v.id] for v in volumes])
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from adapters.cli.formats import inspected
    from core.errors import LaminaError, NotFound

    e = _reader(args)
    docs, code = [], 0
    for name in args.names:
        try:
            if e is None:
                raise NotFound(f"get {name}: no such volume")
            docs.append(_doc(e, e.volume(name)))
        except LaminaError as err:
            print(f"lamina: error: {err}", file=sys.stderr)
            code = 1
    inspected(docs, args.format)
    return code


def cmd_rm(args: argparse.Namespace) -> int:
    from adapters.cli.common import for_each

    e = _engine(args)
    return for_each(args.names, lambda name: e.volume_rm([name], force=args.force))


def cmd_prune(args: argparse.Namespace) -> int:
    from core import filters
    from core.sizes import human_size

    wanted = filters.parse_flags(args.filter or [])
    from adapters.cli.common import confirmed

    if not confirmed(args, _PRUNE_WARNING.format(what="all" if args.all else "anonymous"),
                     "volume prune"):
        return 1
    pruned = _engine(args).volume_prune(wanted, all=args.all)
    if pruned.names:
        print("Deleted Volumes:")
        for name in pruned.names:
            print(name)
        print()
    print(f"Total reclaimed space: {human_size(pruned.reclaimed)}")
    return 0


def register(sub: Any, fmt: Callable[[argparse.ArgumentParser], None]) -> None:
    from adapters.cli.common import add_inspect_format, add_template_format

    p = sub.add_parser("volume", help="manage volumes: data that outlives containers")
    actions = p.add_subparsers(dest="volume_command", metavar="ACTION", required=True)

    a = actions.add_parser("create", help="create a volume (without a name: an anonymous one)")
    a.add_argument("positional", nargs="?", metavar="NAME", help="the volume's name")
    a.add_argument("--name", help="the volume's name")
    a.add_argument("-d", "--driver", default="local",
                   help="the volume driver (only local is here: another is not found)")
    a.add_argument("--label", action="append", metavar="K[=V]",
                   help="a label on the volume (repeatable)")
    a.add_argument("-o", "--opt", action="append", metavar="K=V",
                   help="a driver option (the local driver's are not supported yet)")
    a.set_defaults(func=cmd_create)

    a = actions.add_parser("ls", help="list volumes")
    a.add_argument("-q", "--quiet", action="store_true", help="only the names")
    a.add_argument("-f", "--filter", action="append", metavar="K=V",
                   help="dangling=true|false, name=, label=K[=V], driver= (repeatable)")
    add_template_format(a, "Name, Driver, Scope, Mountpoint, Labels, Label \"K\", Links, Size")
    a.set_defaults(func=cmd_ls)

    a = actions.add_parser("inspect", help="docker's JSON of volumes")
    add_inspect_format(a)
    a.add_argument("names", nargs="+", metavar="NAME", help="the volumes' names")
    a.set_defaults(func=cmd_inspect)

    a = actions.add_parser("rm", help="remove volumes nothing uses")
    a.add_argument("-f", "--force", action="store_true", help="no error for a missing one")
    a.add_argument("names", nargs="+", metavar="NAME", help="the volumes' names")
    a.set_defaults(func=cmd_rm)

    a = actions.add_parser("prune", help="remove unused anonymous volumes (all with -a)")
    a.add_argument("-a", "--all", action="store_true",
                   help="named volumes too, not only anonymous ones")
    a.add_argument("-f", "--force", action="store_true", help="do not ask first")
    a.add_argument("--filter", action="append", metavar="K=V",
                   help="label=K[=V], label!=K[=V] (repeatable)")
    a.set_defaults(func=cmd_prune)
