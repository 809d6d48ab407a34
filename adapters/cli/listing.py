"""`lamina ps`, `lamina images` and `lamina port`: the read model's containers, images and
published ports, as docker lists them."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from adapters.cli.common import event_log

COMMANDS = ("ps", "images", "port")


def cmd_ps(args: argparse.Namespace) -> int:
    log = event_log(args, create=False)
    states = None if args.all or args.filter else ("running", "paused")
    containers = log.containers(states) if log is not None else []
    if args.filter:  # docker's rule, as the API's ps (core/filters.py); oldest first here
        from core import filters

        images = {i.id: i for i in log.images()} if log is not None else {}
        chosen = filters.select(containers, images, filters.parse_flags(args.filter),
                                everything=args.all)
        containers = chosen[::-1]
    from adapters.cli import render

    if args.format == "json":
        from core.model import to_doc

        for c in containers:
            render.json_line(to_doc(c))
        return 0
    from adapters.storage.netsettings import ports_text, summary_ports

    images = {i.id: i for i in log.images()} if log is not None else {}
    rows = []
    for c in containers:
        image = images.get(c.image)
        shown = image.tags[0] if image is not None and image.tags else render.short(c.image)
        command = " ".join(c.cmd)
        rows.append([render.short(c.id), shown, f'"{command[:20]}"', render.ago(c.created),
                     render.status(c), ports_text(summary_ports(c, image)), c.name])
    render.table(["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"],
                 rows)
    return 0


def cmd_port(args: argparse.Namespace) -> int:
    """docker port: a container's published ports (`80/tcp -> 0.0.0.0:8080`), or one
    port's host addresses (`0.0.0.0:8080`)."""
    from adapters.bootstrap import query_engine
    from adapters.storage.netsettings import port_lines
    from core.errors import BadInput, NotFound

    log = event_log(args, create=False)
    if log is None:
        raise NotFound(f"No such container: {args.container}")
    c = query_engine(log).container(args.container)
    try:
        lines = port_lines(c, log.image(c.image), args.port)
    except ValueError as err:
        raise BadInput(str(err)) from None
    for line in lines:
        print(line)
    return 0


def cmd_images(args: argparse.Namespace) -> int:
    log = event_log(args, create=False)
    from adapters.cli import render
    from core.images import children
    from core.sizes import human_size

    images = log.images() if log is not None else []
    layers = {la.id: la for la in log.layers()} if log is not None else {}
    rows, docs = [], []
    for i in images:
        intermediate = i.removed or (not i.tags and children(i.id, images))
        if intermediate and not args.all:
            continue
        size = sum(layers[lid].size for lid in i.layers if lid in layers)
        for tag in i.tags or ["<none>:<none>"]:
            repo, _, name = tag.rpartition(":")
            created = i.config.get("created") or i.created  # docker shows the config's
            rows.append([repo, name, render.short(i.id), render.ago(created),
                         human_size(size)])
        docs.append({"id": i.id, "tags": list(i.tags), "parent": i.parent, "size": size,
                     "created": i.created, "layers": list(i.layers),
                     "intermediate": bool(intermediate)})
    if args.format == "json":
        for d in docs:
            render.json_line(d)
        return 0
    render.table(["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], rows)
    return 0


def register(sub: Any, fmt: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("ps", help="list containers")
    p.add_argument("-a", "--all", action="store_true", help="stopped ones too")
    p.add_argument("-f", "--filter", action="append", metavar="K=V",
                   help="docker's: label=K[=V], name, id, status, exited, ancestor, "
                        "before, since, ... (repeatable)")
    fmt(p)
    p.set_defaults(func=cmd_ps)

    p = sub.add_parser("port", help="a container's published ports")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("port", metavar="PORT[/PROTO]", nargs="?", help="one port (tcp by default)")
    p.set_defaults(func=cmd_port)

    p = sub.add_parser("images", help="list top-level images")
    p.add_argument("-a", "--all", action="store_true", help="intermediate images too")
    fmt(p)
    p.set_defaults(func=cmd_images)
