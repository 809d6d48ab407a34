"""The `lamina` command line: a driving adapter over the core's engine and the event log.

Start-up time matters (every container command pays it), so this module imports only
argparse at load time; each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable, Sequence

from adapters.client import command_name
from core.errors import LaminaError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms)
if TYPE_CHECKING:  # annotations are strings here
    from typing import Any


def _log(args: argparse.Namespace, *, create: bool) -> Any:
    from adapters.compose import open_log, root_dir

    return open_log(root_dir(args.root), create=create)


def engine(args: argparse.Namespace) -> Any:
    """The engine on the real adapters, for commands that change state."""
    from adapters.compose import build_engine, root_dir

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


# --- commands ------------------------------------------------------------------------------


def cmd_version(args: argparse.Namespace) -> int:
    from adapters.eventstore.schema import SCHEMA_VERSION
    from core import __version__

    if args.format == "json":
        from adapters.render import json_line

        json_line({"version": __version__, "schema": SCHEMA_VERSION,
                   "python": sys.version.split()[0]})
    else:
        print(f"lamina {__version__} (event log schema {SCHEMA_VERSION}, "
              f"python {sys.version.split()[0]})")
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    log = _log(args, create=False)
    if log is None:
        return 0
    from adapters.eventstore.query import select
    from adapters.render import event_json, event_line, json_line

    out = sys.stdout
    for rec in select(log.con, args.since, args.until, args.filter or ()):
        if args.format == "json":
            json_line(event_json(rec), out)
        else:
            out.write(event_line(rec) + "\n")
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    log = _log(args, create=False)
    if log is None:
        print("no event log yet: nothing to verify")
        return 0
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
    log = _log(args, create=True)
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
          f"{report.containers} containers, {report.images} images, {report.layers} layers")
    return 0


def _replay_at(args: argparse.Namespace) -> int:
    log = _log(args, create=False)
    from adapters.eventstore import replay
    from adapters.eventstore.query import parse_time
    from adapters.render import json_line
    from core.model import World

    world = World()
    if log is not None:
        at = args.at
        seq = int(at) if at.isdigit() else replay.seq_at_time(log.con, parse_time(at))
        world = replay.state_at(log.con, seq, use_snapshots=not args.full)
    if args.format == "json":
        json_line(world.to_json())
        return 0
    _print_world(world)
    return 0


def _print_world(world: Any) -> None:
    from adapters.render import status, table
    from core.references import short

    print(f"state after seq {world.seq}")
    table(["CONTAINER ID", "NAME", "IMAGE", "STATE"],
          [[short(c.id), c.name, short(c.image), status(c)] for c in world.containers.values()])
    print()
    table(["IMAGE ID", "TAGS", "PARENT", "LAYERS"],
          [[short(i.id), ",".join(i.tags) or "<none>", short(i.parent or "") or "-",
            len(i.layers)] for i in world.images.values()])


def cmd_ps(args: argparse.Namespace) -> int:
    log = _log(args, create=False)
    states = None if args.all or args.filter else ("running", "paused")
    containers = log.containers(states) if log is not None else []
    if args.filter:  # docker's rule, as the API's ps (core/filters.py); oldest first here
        from core import filters

        images = {i.id: i for i in log.images()} if log is not None else {}
        chosen = filters.select(containers, images, filters.parse_flags(args.filter),
                                everything=args.all)
        containers = chosen[::-1]
    from adapters import render

    if args.format == "json":
        from core.model import to_doc

        for c in containers:
            render.json_line(to_doc(c))
        return 0
    images = {i.id: i for i in log.images()} if log is not None else {}
    rows = []
    for c in containers:
        image = images.get(c.image)
        shown = image.tags[0] if image is not None and image.tags else render.short(c.image)
        command = " ".join(c.cmd)
        rows.append([render.short(c.id), shown, f'"{command[:20]}"', render.ago(c.created),
                     render.status(c), c.name])
    render.table(["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES"], rows)
    return 0


def cmd_images(args: argparse.Namespace) -> int:
    log = _log(args, create=False)
    from adapters import render
    from core.images import children

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
                         render.human_size(size)])
        docs.append({"id": i.id, "tags": list(i.tags), "parent": i.parent, "size": size,
                     "created": i.created, "layers": list(i.layers),
                     "intermediate": bool(intermediate)})
    if args.format == "json":
        for d in docs:
            render.json_line(d)
        return 0
    render.table(["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], rows)
    return 0


# --- parser --------------------------------------------------------------------------------


def _format(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=["table", "json"], default="table",
                   help="json: one JSON object per line")


class _Skipped:
    """Stands in for the parser of a command that isn't being run: every call is a no-op."""

    def __getattr__(self, name: str) -> Callable[..., _Skipped]:
        return lambda *args, **kwargs: self


class _OnlyOne:
    """Subparsers that build only the named command's parser: argparse spends ~1 ms per
    command building parsers, and a command should not pay for all thirty."""

    def __init__(self, sub: Any, only: str) -> None:
        self.sub, self.only = sub, only

    def add_parser(self, name: str, **kwargs: Any) -> Any:
        return self.sub.add_parser(name, **kwargs) if name == self.only else _Skipped()


# argparse translates every message through gettext, which searches the disk for catalogs
# on each call (~0.1 ms apiece, dozens per command); lamina ships none, so look up once.
argparse._ = functools.cache(argparse._)  # type: ignore[attr-defined]


class _Parser(argparse.ArgumentParser):
    """No abbreviations (`--pid 5` once meant `--pids-limit 5`): every command's parser,
    subcommands included, is one of these. And argparse's formatter asks shutil for the
    terminal width on every add_argument, and importing shutil (with lzma, bz2 and zlib)
    costs a few ms of every command."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:
        """An argument the command doesn't take is reported with that command's usage
        (argparse leaves it to the top parser, whose usage says nothing of the command)."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            command = self._command_parser(getattr(parsed, "command", None))
            command.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed

    def _command_parser(self, name: str | None) -> argparse.ArgumentParser:
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction) and name in action.choices:
                return action.choices[name]
        return self

    def _get_formatter(self) -> argparse.HelpFormatter:
        width = int(os.environ.get("COLUMNS", "0") or 0)
        if not width:
            try:
                width = os.get_terminal_size(sys.stdout.fileno()).columns
            except OSError:
                width = 80
        return self.formatter_class(prog=self.prog, width=width - 2)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="lamina",
        description="A container engine whose only source of truth is an immutable event log.")
    parser.add_argument("--root", help="state directory (default $LAMINA_ROOT or "
                                       "/var/lib/lamina)")
    parser.add_argument("--log-format", choices=["console", "json"], default="console")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                        default="warning")
    parser.add_argument("--quiet", dest="no_progress", action="store_true",
                        help="no progress bars (shown on a terminal for work over a second)")
    real_sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    only = command_name(list(argv)) if argv is not None else None
    sub = _OnlyOne(real_sub, only) if only and only in COMMAND_NAMES else real_sub

    p = sub.add_parser("version", help="show lamina's version")
    _format(p)
    p.set_defaults(func=cmd_version)

    p = sub.add_parser("events", help="print the audit trail")
    p.add_argument("--since", help="ISO time, unix timestamp or duration (10m)")
    p.add_argument("--until", help="ISO time, unix timestamp or duration (10m)")
    p.add_argument("--filter", action="append",
                   help="container=ID|NAME, image=ID|TAG, type=T, user=U (repeatable)")
    _format(p)
    p.set_defaults(func=cmd_events)

    p = sub.add_parser("audit", help="check the log's integrity")
    audit = p.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    a = audit.add_parser("verify", help="recompute the whole hash chain")
    a.set_defaults(func=cmd_audit_verify)

    p = sub.add_parser("replay", help="rebuild the read model from the log, or time-travel")
    p.add_argument("--at", metavar="SEQ|TIME", help="print the state as it was then")
    p.add_argument("--snapshot", action="store_true", help="checkpoint the projection")
    p.add_argument("--full", action="store_true", help="ignore snapshots")
    _format(p)
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("ps", help="list containers")
    p.add_argument("-a", "--all", action="store_true", help="stopped ones too")
    p.add_argument("-f", "--filter", action="append", metavar="K=V",
                   help="docker's: label=K[=V], name, id, status, exited, ancestor, "
                        "before, since, ... (repeatable)")
    _format(p)
    p.set_defaults(func=cmd_ps)

    p = sub.add_parser("images", help="list top-level images")
    p.add_argument("-a", "--all", action="store_true", help="intermediate images too")
    _format(p)
    p.set_defaults(func=cmd_images)
    for module in COMMAND_MODULES:
        import importlib

        importlib.import_module(module).register(sub, _format)
    return parser


# Every command word, so that an unknown one still gets argparse's full "invalid choice".
COMMAND_NAMES = frozenset({
    "version", "events", "audit", "replay", "ps", "images", "import", "create", "rm", "rmi",
    "commit", "tag", "history", "inspect", "diff", "export", "save", "load", "run", "start",
    "stop", "restart", "kill", "pause", "unpause", "wait", "exec", "logs", "stats", "system",
    "viz",
})

# Modules that add their own commands: each has register(subparsers, add_format_option).
COMMAND_MODULES: tuple[str, ...] = ("adapters.cli_storage", "adapters.cli_runtime")
COMMAND_MODULES += ("adapters.cli_viz",)  # lamina viz: pictures (issue 8)
COMMAND_NAMES |= {"pull", "push", "login", "logout"}  # registries (issue 9)
COMMAND_MODULES += ("adapters.cli_registry",)  # pull, push, login, logout
COMMAND_NAMES |= {"build"}  # lamina build (issue 6)
COMMAND_MODULES += ("adapters.cli_build",)
COMMAND_NAMES |= {"serve"}  # the Docker Engine API service (issue 7)
COMMAND_MODULES += ("adapters.cli_service",)


# The whole parser, built once by a process that runs many commands (the fork server):
# each command then only parses.
PREBUILT: argparse.ArgumentParser | None = None


def prebuild(samples: Sequence[Sequence[str]] = ()) -> None:
    """Build every command's parser now and parse the sample command lines (argparse
    compiles its regular expressions on first use)."""
    global PREBUILT
    PREBUILT = build_parser()
    for sample in samples:
        PREBUILT.parse_args(list(sample))


def run(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = (PREBUILT or build_parser(argv)).parse_args(argv)
    if os.geteuid() != 0:  # the log is root's alone (0600), and so are the kernel's verbs
        print("lamina: error: lamina must run as root", file=sys.stderr)
        return 1
    if args.log_format != "console" or args.log_level != "warning":
        from adapters import logs

        logs.configure(args.log_format, args.log_level)
    try:
        code = args.func(args)
        _log_outcome(args, code)
        return code
    except LaminaError as err:
        print(f"lamina: error: {err}", file=sys.stderr)
        _log_outcome(args, err.exit_code, str(err))
        return err.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 141
    except OSError as err:
        print(f"lamina: error: {err.strerror or err}: {err.filename or ''}".rstrip(": "),
              file=sys.stderr)
        return 1
    except Exception as err:
        sqlite3 = sys.modules.get("sqlite3")
        if sqlite3 is None or not isinstance(err, sqlite3.Error):
            raise
        print(f"lamina: error: event log: {err}", file=sys.stderr)
        return 1


def _log_outcome(args: argparse.Namespace, code: int, error: str = "") -> None:
    """One structured line per command at info level (nothing is imported when it's off)."""
    from adapters import logs

    if logs.enabled("info"):
        fields = {"command": args.command, "exit_code": code}
        if error:
            fields["error"] = error
        logs.log("warning" if error else "info", "command", **fields)


def main(argv: Sequence[str] | None = None) -> None:
    code = run(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # skip interpreter teardown: ~5 ms of every command


if __name__ == "__main__":
    main()
