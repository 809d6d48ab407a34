"""What every verb group's module shares: the engine and the log of `--root`, the `--format`
option, and docker's way with a list of names (each one tried, refusals one line apiece).

Imported by every command module, so by every command: argparse and the standard library's
cheapest modules only; the engine and the log are imported when a command asks for them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from core.errors import LaminaError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms)
if TYPE_CHECKING:  # annotations are strings here
    from typing import Any


def event_log(args: argparse.Namespace, *, create: bool) -> Any:
    """The event log of --root; None when reading a root that has no log yet."""
    from adapters.bootstrap import open_log
    from adapters.cmdline import root_dir

    return open_log(root_dir(args.root), create=create)


def engine(args: argparse.Namespace) -> Any:
    """The engine on the real adapters, for commands that change state."""
    from adapters.bootstrap import build_engine
    from adapters.cmdline import root_dir

    return build_engine(root_dir(args.root))


def for_each(refs: Sequence[str], fn: Callable[[str], object]) -> int:
    """Apply fn to each named object, printing its name; a refusal is one line on stderr
    and the others still go ahead, as docker does. Exit 1 if any was refused."""
    code = 0
    for ref in refs:
        try:
            fn(ref)
            print(ref)
        except LaminaError as err:
            print(f"lamina: error: {err}", file=sys.stderr)
            code = 1
    return code


def add_format(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=["table", "json"], default="table",
                   help="json: one JSON object per line")


def add_template_format(p: argparse.ArgumentParser, fields: str) -> None:
    """--format as docker's list commands take it: table, json, or a Go template
    (adapters/cli/templates.py) on docker's `fields`."""
    p.add_argument("--format", default="table", metavar="FORMAT",
                   help="table (the default), json (one JSON object per line, lamina's "
                        "fields) or a Go template as docker's: '{{.ID}}', "
                        "'{{json .}}', 'table {{.ID}}\\t...' with docker's column heads; "
                        f"its fields: {fields}")


def add_inspect_format(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--format", metavar="TEMPLATE",
                   help="a Go template on each document, as docker's: '{{.Id}}', "
                        "'{{json .Config}}', '{{range .Mounts}}{{.Source}} {{end}}'; json: "
                        "each document on one line")


def confirmed(args: argparse.Namespace, warning: str, what: str) -> bool:
    """docker's prompt (skipped by -f): only y or yes goes ahead."""
    if args.force:
        return True
    sys.stdout.write(warning + "\nAre you sure you want to continue? [y/N] ")
    sys.stdout.flush()
    if sys.stdin.readline().strip().lower() in ("y", "yes"):
        return True
    print(f"\nlamina: error: {what} has been cancelled", file=sys.stderr)
    return False
