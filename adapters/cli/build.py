"""The `build` command: an image from a Dockerfile, step by step (core/build.py)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from core.errors import BadInput

COMMANDS = ("build",)


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
    from adapters.cli.common import engine

    def out(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    # docker's CLI reads -f relative to the working directory; the build host, as docker's
    # API, within the context: an absolute path means the same to both
    dockerfile = os.path.abspath(args.file) if args.file else None
    bar = StepBar(quiet=not args.only_id or args.no_progress)
    e = engine(args)
    try:
        iid = build(e, args.context, dockerfile, args.tag or [],
                    parse_build_args(args.build_arg), args.no_cache, args.target,
                    bar.update if args.only_id else out,
                    extras=_extras(e, args.network, args.squash))
    finally:
        bar.close()
    if args.only_id:
        print(f"sha256:{iid}")
    return 0


def _extras(e: Any, network: str | None, squash: bool = False) -> Any:
    """--network for the RUN steps: host unless asked, but none on a --userns-remap root,
    whose containers can't share the host's network namespace (core/rootconfig.py);
    --squash."""
    from core.build import Extras
    from core.rootconfig import current

    if network is None and current(e.log).remapped:
        network = "none"
    return Extras(run_options={"network": network} if network else {}, squash=squash)


class StepBar:
    """`build -q` on a terminal: a bar of the steps done, once the build takes over a
    second (without -q the step lines are the progress, as docker's classic builder prints
    them). Drawn from the build's own output, never from a thread: build forks the step
    containers' monitors, and fork() is only safe in a process with one thread."""

    def __init__(self, quiet: bool, delay: float | None = None, stream: Any = None) -> None:
        import os
        import time

        from adapters.cli.progress import DELAY, wanted

        self.stream = stream or sys.stderr
        self.on = wanted(quiet, self.stream)
        self.delay = float(os.environ.get("LAMINA_PROGRESS_DELAY") or DELAY) \
            if delay is None else delay
        self.start = time.monotonic()
        self.bars: Any = None
        self.task: Any = None
        self.step, self.total = 0, 0

    def update(self, text: str) -> None:
        import re
        import time

        found = re.match(r"Step (\d+)/(\d+) : (.*)", text)
        if found:
            self.step, self.total = int(found[1]) - 1, int(found[2])
            self.what = found[3][:60]
        elif text.startswith(" ---> ") and self.total:
            self.step += 1
        if not self.on or not self.total or time.monotonic() - self.start < self.delay:
            return
        if self.bars is None:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self.bars = Progress(TextColumn("building"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.description}"), auto_refresh=False,
                                 transient=True, console=Console(file=self.stream))
            self.bars.start()
            self.task = self.bars.add_task("", total=self.total)
        self.bars.update(self.task, completed=self.step, description=self.what)
        self.bars.refresh()

    def close(self) -> None:
        if self.bars is not None:
            self.bars.stop()


def register(sub: Any, fmt: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("build", help="build an image from a Dockerfile (step by step, cached)")
    p.add_argument("-t", "--tag", action="append", metavar="REPO[:TAG]",
                   help="name the result (repeatable)")
    p.add_argument("-f", "--file", metavar="DOCKERFILE",
                   help="the Dockerfile (default CONTEXT_DIR/Dockerfile)")
    p.add_argument("--build-arg", action="append", metavar="K=V",
                   help="a value for an ARG (repeatable)")
    p.add_argument("--no-cache", action="store_true", help="reuse no earlier step")
    p.add_argument("--network", choices=["host", "none"],
                   help="the RUN steps' network (default: host; none on a --userns-remap "
                        "root, whose containers can't share the host's)")
    p.add_argument("--target", metavar="STAGE", help="build up to this stage")
    p.add_argument("--squash", action="store_true",
                   help="merge the layers the build makes into one over its base's")
    p.add_argument("-q", "--quiet", dest="only_id", action="store_true",
                   help="print only the image id")
    p.add_argument("context", metavar="CONTEXT_DIR",
                   help="the directory COPY and ADD read from (.dockerignore honoured)")
    p.set_defaults(func=cmd_build)
