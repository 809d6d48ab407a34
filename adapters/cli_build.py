"""The `build` command: an image from a Dockerfile, step by step (core/build.py)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from core.errors import BadInput


def parse_build_args(items: list[str] | None) -> dict[str, str]:
    """`--build-arg K=V`; a bare `K` takes K's value from our environment, as docker's."""
    import os

    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not key:
            raise BadInput(f"invalid --build-arg {item!r}: use KEY=VALUE")
        if not sep:
            if key not in os.environ:
                continue
            value = os.environ[key]
        out[key] = value
    return out


def cmd_build(args: argparse.Namespace) -> int:
    import os

    from adapters.build_host import build
    from adapters.cli import engine

    def out(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    # docker's CLI reads -f relative to the working directory; the build host, as docker's
    # API, within the context: an absolute path means the same to both
    dockerfile = os.path.abspath(args.file) if args.file else None
    iid = build(engine(args), args.context, dockerfile, args.tag or [],
                parse_build_args(args.build_arg), args.no_cache, args.target,
                (lambda _t: None) if args.only_id else out)
    if args.only_id:
        print(f"sha256:{iid}")
    return 0


def register(sub: Any, fmt: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("build", help="build an image from a Dockerfile (step by step, cached)")
    p.add_argument("-t", "--tag", action="append", metavar="REPO[:TAG]",
                   help="name the result (repeatable)")
    p.add_argument("-f", "--file", metavar="DOCKERFILE",
                   help="the Dockerfile (default CONTEXT_DIR/Dockerfile)")
    p.add_argument("--build-arg", action="append", metavar="K=V",
                   help="a value for an ARG (repeatable)")
    p.add_argument("--no-cache", action="store_true", help="reuse no earlier step")
    p.add_argument("--target", metavar="STAGE", help="build up to this stage")
    p.add_argument("-q", "--quiet", dest="only_id", action="store_true",
                   help="print only the image id")
    p.add_argument("context", metavar="CONTEXT_DIR")
    p.set_defaults(func=cmd_build)
