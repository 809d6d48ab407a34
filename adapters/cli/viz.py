"""`lamina viz`: pictures of images, containers, the layer tree, the networks and a
container's history, drawn from the read model now or from any point of the log (`--at`).

Start-up stays lean: graphviz and rich are imported only when a picture is drawn.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

COMMANDS = ("viz",)


def _store(root: str) -> Any:
    from adapters.storage.store import LinuxLayerStore

    return LinuxLayerStore(root)


def _picture(args: argparse.Namespace) -> tuple[Any, str]:
    """(the picture's model, its kind: stack, tree, networks or history) for what the
    arguments ask."""
    from adapters.cmdline import root_dir
    from adapters.viz import model, source
    from core.errors import BadInput

    root = root_dir(args.root)
    src = source.open_source(root, args.at)
    if args.tree:
        return model.tree(src), "tree"
    if args.networks:
        return model.networks(src), "networks"
    if args.history:
        from adapters.viz.history import history

        until = src.seq if args.at is not None else None
        return history(src, args.history, until), "history"
    if not args.object:
        raise BadInput("viz needs IMAGE or CONTAINER, --tree, --networks or --history "
                       "CONTAINER")
    return model.stack(src, args.object, _store(root)), "stack"


def cmd_viz(args: argparse.Namespace) -> int:
    from core.errors import BadInput

    if sum(bool(x) for x in (args.object, args.tree, args.networks, args.history)) > 1:
        raise BadInput("viz draws one picture: IMAGE|CONTAINER, --tree, --networks or "
                       "--history CONTAINER")
    picture, kind = _picture(args)
    if args.format == "json":
        import sys

        from adapters.cli.render import json_line

        json_line(picture.to_json(), sys.stdout)
        return 0
    if args.output:
        from adapters.viz import dot

        dot.render(getattr(dot, f"{kind}_graph")(picture), args.output)
        print(args.output)
        return 0
    from adapters.viz import term

    term.console().print(getattr(term, f"{kind}_renderable")(picture))
    return 0


def register(sub: Any, fmt: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("viz", help="draw an image's or a container's layers, the layer tree, "
                                   "the networks, or a container's history (SVG, PNG or "
                                   "the terminal)")
    p.add_argument("object", nargs="?", metavar="IMAGE|CONTAINER",
                   help="what to draw: its layers (and a container's mounts)")
    p.add_argument("-o", "--output", metavar="FILE.svg|FILE.png",
                   help="write the picture to this file (default: draw it in the terminal)")
    p.add_argument("--at", metavar="SEQ|TIME",
                   help="draw it as it was then (a seq of the log, ISO time, unix time, 10m)")
    p.add_argument("--tree", action="store_true",
                   help="every image and container as one layer tree, shared layers once")
    p.add_argument("--networks", action="store_true",
                   help="every network and the containers on it: their addresses and "
                        "published ports")
    p.add_argument("--history", metavar="CONTAINER",
                   help="the container's path through image/stopped/running/paused")
    fmt(p)
    p.set_defaults(func=cmd_viz)

