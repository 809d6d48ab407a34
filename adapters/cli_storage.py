"""CLI commands for images, layers and containers' files: import, create, rm, rmi, commit, tag."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any


def _engine(args: argparse.Namespace) -> Any:
    from adapters.cli import engine

    return engine(args)


def cmd_import(args: argparse.Namespace) -> int:
    e = _engine(args)
    source = sys.stdin.buffer if args.file == "-" else args.file
    iid = e.import_image(source, args.reference, created_by=f"lamina import {args.file}",
                         comment=args.message or "")
    print(f"sha256:{iid}")
    return 0


def create_options(args: argparse.Namespace) -> dict[str, Any]:
    """Run options as recorded in ContainerCreated's config (sizes parsed docker's way)."""
    from adapters.kernel.units import parse_cpus, parse_size
    from core.errors import BadInput

    try:
        memory = parse_size(args.memory) if getattr(args, "memory", None) else None
        cpus = parse_cpus(args.cpus) if getattr(args, "cpus", None) else None
    except ValueError as err:
        raise BadInput(str(err)) from None
    options = {"env": args.env or [], "workdir": args.workdir, "user": args.user,
               "hostname": args.hostname, "network": args.network, "memory": memory,
               "pids": args.pids_limit, "cpus": cpus, "tty": args.tty,
               "interactive": args.interactive,
               "no_new_privs": "no-new-privileges=false" not in (args.security_opt or [])}
    if args.entrypoint is not None:
        options["entrypoint"] = [args.entrypoint] if args.entrypoint else []
    return {k: v for k, v in options.items() if v not in (None, [], False, "")
            or k == "no_new_privs"}


def cmd_create(args: argparse.Namespace) -> int:
    e = _engine(args)
    cid = e.create(args.image, args.cmd, name=args.name, config=create_options(args))
    print(cid)
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    e = _engine(args)
    code = 0
    for ref in args.containers:
        try:
            e.rm(ref, force=args.force)
            print(ref)
        except Exception as err:
            from core.errors import LaminaError

            if not isinstance(err, LaminaError):
                raise
            print(f"lamina: error: {err}", file=sys.stderr)
            code = 1
    return code


def cmd_rmi(args: argparse.Namespace) -> int:
    from core.references import short

    e = _engine(args)
    code = 0
    for ref in args.images:
        try:
            plan = e.rmi(ref, force=args.force)
        except Exception as err:
            from core.errors import LaminaError

            if not isinstance(err, LaminaError):
                raise
            print(f"lamina: error: {err}", file=sys.stderr)
            code = 1
            continue
        for _, tag in plan.untag:
            print(f"Untagged: {tag}")
        for iid, kept in plan.remove:
            if not kept:
                print(f"Deleted: sha256:{iid}")
            else:
                print(f"Kept (still needed): sha256:{short(iid)}")
    return code


def cmd_commit(args: argparse.Namespace) -> int:
    e = _engine(args)
    iid = e.commit(args.container, args.reference, comment=args.message or "",
                   author=args.author or "")
    print(f"sha256:{iid}")
    return 0


def cmd_tag(args: argparse.Namespace) -> int:
    _engine(args).tag(args.image, args.reference)
    return 0


def add_create_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name")
    p.add_argument("-e", "--env", action="append", help="K=V (repeatable)")
    p.add_argument("-w", "--workdir")
    p.add_argument("-u", "--user")
    p.add_argument("--hostname")
    p.add_argument("--entrypoint")
    p.add_argument("--memory", "-m")
    p.add_argument("--pids-limit", type=int)
    p.add_argument("--cpus")
    p.add_argument("--network", choices=["none", "host"], default=None)
    p.add_argument("--security-opt", action="append")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("image")
    p.add_argument("cmd", nargs=argparse.REMAINDER)


def register(sub: Any, fmt: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("import", help="a rootfs tar becomes a one-layer image")
    p.add_argument("file", help="tar file, or - for stdin")
    p.add_argument("reference", nargs="?", help="REPO[:TAG]")
    p.add_argument("-m", "--message")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("create", help="add a read-write layer on top of an image")
    add_create_options(p)
    p.set_defaults(func=cmd_create)

    p = sub.add_parser("rm", help="remove containers (their read-write layers)")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("containers", nargs="+")
    p.set_defaults(func=cmd_rm)

    p = sub.add_parser("rmi", help="remove top-level images")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("images", nargs="+")
    p.set_defaults(func=cmd_rmi)

    p = sub.add_parser("commit", help="a container's read-write layer becomes an image")
    p.add_argument("-m", "--message")
    p.add_argument("-a", "--author")
    p.add_argument("container")
    p.add_argument("reference", nargs="?")
    p.set_defaults(func=cmd_commit)

    p = sub.add_parser("tag", help="give an image another name")
    p.add_argument("image")
    p.add_argument("reference")
    p.set_defaults(func=cmd_tag)
