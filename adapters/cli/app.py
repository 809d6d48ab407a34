"""The `lamina` command line's parser and runner: the global options, the command table
(derived from the verb groups' modules), and one command run with lamina's exit codes.

Start-up time matters (every container command pays it), so this module and the command
modules import only argparse at load time; each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable, Sequence

from adapters.cli import (
    build,
    eventlog,
    files,
    fleet,
    listing,
    networks,
    registry,
    runtime,
    serve,
    storage,
    system,
    viz,
    volumes,
)
from adapters.cli.common import add_format
from adapters.cmdline import command_name
from core.errors import LaminaError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms)
if TYPE_CHECKING:  # annotations are strings here
    from typing import Any


# The verb groups, in the order `lamina --help` lists their commands. Each module declares
# the command words it registers (COMMANDS) and has register(subparsers, add_format).
MODULES = (eventlog, listing, storage, volumes, networks, files, runtime, system, viz, registry,
           build, serve, fleet)
# Every command word and the module that registers it: an unknown word is left to argparse
# and its full "invalid choice" message.
OWNER = {word: module for module in MODULES for word in module.COMMANDS}


# --- parser --------------------------------------------------------------------------------


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
        return self.formatter_class(prog=self.prog, width=width - 2)  # type: ignore[call-arg]


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="lamina",
        description="A container engine whose only source of truth is an immutable event log.")
    parser.add_argument("--root", help="state directory (default $LAMINA_ROOT or "
                                       "/var/lib/lamina)")
    parser.add_argument("--log-format", choices=["console", "json"], default="console",
                        help="lamina's own diagnostics on stderr: for people or as JSON")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                        default="warning", help="the least severe diagnostic shown")
    parser.add_argument("--event-store", dest="engine_store", metavar="URL",
                        help="postgresql://...: a new root keeps its event log there, as its "
                             "host's chain, and then always needs it (default "
                             "$LAMINA_EVENT_STORE; without: the root's SQLite file)")
    parser.add_argument("--quiet", dest="no_progress", action="store_true",
                        help="no progress bars (shown on a terminal for work over a second)")
    parser.add_argument("--no-server", action="store_true",
                        help="run the command in this process, not through the root's fork "
                             "server, and start none (also LAMINA_NO_SERVER=1)")
    parser.set_defaults(served=SERVED)  # what `lamina serve` hands its fork server
    real_sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    only = command_name(list(argv)) if argv is not None else None
    owner = OWNER.get(only) if only else None
    if owner is not None and only is not None:  # only the named command's parser: _OnlyOne
        owner.register(_OnlyOne(real_sub, only), add_format)
        return parser
    for module in MODULES:
        module.register(real_sub, add_format)
    return parser


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
    if args.engine_store is not None:
        try:
            engine_store(args)
        except LaminaError as err:
            print(f"lamina: error: {err}", file=sys.stderr)
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


# the commands whose own --event-store names the central store they ship to or read
CENTRAL_STORE = ("ship", "serve", "fleet")


def engine_store(args: argparse.Namespace) -> None:
    """--event-store before the command: $LAMINA_EVENT_STORE for this process and every
    one it starts (the monitors that record exits find the store so); refused where the
    root's log is its SQLite file already, for a command of its engine (it would be
    ignored: adapters/eventstore/where.py)."""
    from adapters.cmdline import root_dir
    from adapters.eventstore.where import ENV, SCHEMES, SQLITE_FILE, in_postgres
    from core.errors import BadInput

    url = args.engine_store
    if not url.startswith(SCHEMES):
        raise BadInput(f"--event-store {url!r}: give a postgresql:// URL")
    root = root_dir(args.root)
    if args.command not in CENTRAL_STORE and not in_postgres(root) and \
            os.path.exists(os.path.join(root, SQLITE_FILE)):
        raise BadInput(f"root {root} keeps its event log in SQLite ({SQLITE_FILE}): "
                       "--event-store makes a new root's log in PostgreSQL; "
                       f"{', '.join(CENTRAL_STORE)} take it as the central store")
    os.environ[ENV] = url


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


# --- this CLI in the fork server ---------------------------------------------------------

WARM_MODULES = (
    "adapters.cli.storage", "adapters.cli.runtime", "adapters.bootstrap", "adapters.cli.render",
    "adapters.runtime.linux", "adapters.runtime.monitor", "adapters.runtime.init",
    "adapters.runtime.exec", "adapters.runtime.terminal", "adapters.storage.store",
    "adapters.storage.overlay", "adapters.kernel.cgroups", "core.engine", "core.lifecycle",
    "core.engine.images", "core.engine.commit", "core.engine.archives", "core.engine.loading",
    "core.images", "core.engine.volumes", "adapters.cli.volumes", "adapters.storage.volumes",
    "core.mounts", "core.engine.mounting", "adapters.kernel.inroot",
    "adapters.eventstore.sqlite_log", "adapters.eventstore.query", "sqlite3", "pwd", "locale",
    "json", "adapters.logs", "core.engine.attaching", "core.networks",
    "adapters.network.endpoints", "adapters.network.bridge", "adapters.network.nat",
    "adapters.storage.netsettings",
    "adapters.network.resolver",
    "adapters.cli.formats", "adapters.cli.templates", "adapters.cli.rows",  # --format TEMPLATE
    # what the everyday commands imported on their first run in a served child (measured:
    # each a cost of every command that needs it: adapters.network.host every engine's)
    "adapters.network.host", "adapters.kernel.idmap", "adapters.kernel.units", "core.health",
    "core.logfilter", "calendar", "adapters.record_exit", "adapters.dockerapi.shapes",
    "core.sizes", "adapters.storage.inspect", "adapters.deferred", "adapters.shutdown_mark",
    "adapters.kernel.readycgroup", "adapters.kernel.rtbudget",  # the server's cgroups
    "adapters.eventstore.peek",  # each monitor's look at the log as its container ends
)

WARM_SAMPLES = (("ps", "-a"), ("run", "--rm", "-e", "A=b", "--name", "x", "image", "true"),
                ("--root", "/r", "pause", "c"), ("version", "--format=json"))


class Served:
    """This CLI as the fork server runs it (adapters/fastpath/forkserver.Commands): what the
    server imports ahead, what its spare does before a client comes, and a command run for
    a client. `lamina serve` gets it from the parsed arguments (`served`, a default of the
    top parser): the serve command's module is one this module imports for its table, so it
    is handed this rather than importing it."""

    serves_again = True  # its children serve command after command (fastpath/reuse.py)

    def warm(self) -> None:
        """Import what commands need, build every parser, fill the lifecycle's caches; and
        keep a container's cgroup ready (adapters/kernel/readycgroup.py) and a monitor
        forked (adapters/runtime/sparemonitor.py)."""
        import importlib

        for name in WARM_MODULES:
            importlib.import_module(name)
        from contextlib import suppress

        from adapters.network import nat

        with suppress(nat.NftablesError):  # none on this host: bridges fail by name later
            nat._library()  # libnftables loaded once here, not by every served start
        from adapters.kernel import seccomp

        with suppress(seccomp.SeccompError):  # none on this host: a start says so by name
            seccomp.libseccomp_version()  # its dlopen (0.6 ms) not by every start and exec
        from adapters.kernel import rootfs

        rootfs.compile_patterns()
        import pwd

        with suppress(KeyError):  # glibc's NSS set up once (nsswitch.conf read, no nscd
            pwd.getpwuid(os.getuid())  # found), not by every command's caller_meta
        from adapters.eventstore.sqlite_log import warm_decoders
        from core import lifecycle

        warm_decoders()
        prebuild(WARM_SAMPLES)
        for state in lifecycle.STATES:
            lifecycle.legal_triggers(state)
        from adapters.kernel import readycgroup
        from adapters.runtime import nativejoin, sparemonitor

        if nativejoin.program() is not None:  # its sealed copy, shared by every child
            nativejoin.sealed()
        sparemonitor.sweep()  # and readycgroup's: of servers killed outright
        sparemonitor.keep()
        readycgroup.sweep()
        readycgroup.keep()

    def prepare(self, root: str) -> None:
        """Open the root's event log and read its live containers (bootstrap.prepare)."""
        from adapters import bootstrap

        bootstrap.prepare(root)

    def run(self, argv: list[str], peer: dict[str, int]) -> int:
        """The command, recorded as the client's (`peer`: its uid and pid), not the child's.
        One request is no command line: a container's monitor asking for its exit to be
        recorded (adapters/record_exit.py for_monitor), which no parser knows, so that a
        server of older code refuses it by name (argparse) and the monitor records it
        itself."""
        from adapters import bootstrap, deferred, logs
        from adapters.runtime.supervise import SERVED_RECORD

        if argv[:1] == [SERVED_RECORD]:
            from adapters.record_exit import for_monitor

            return for_monitor(argv[1:], peer)
        bootstrap.PEER.update(peer)
        logs.configure()  # the command's own --log-* options decide, not the server's
        deferred.enable()  # deletions after the answer (adapters/deferred.py)
        return run(argv)

    def finish(self) -> None:
        """The deletions the command renamed out of sight, now that the client has its
        answer (adapters/deferred.py)."""
        from adapters import deferred

        deferred.run_pending()

    def done(self, pid: int) -> None:
        """A container's cgroup made ready again if the child took it (readycgroup.py),
        and its spare monitor (sparemonitor.py)."""
        from adapters.kernel import readycgroup
        from adapters.runtime import sparemonitor

        sparemonitor.keep()  # first: it is forked and gets ready beside the cgroup's making
        readycgroup.keep()

    def stopped(self) -> None:
        from adapters.kernel import readycgroup
        from adapters.runtime import sparemonitor

        readycgroup.release()
        sparemonitor.release()


SERVED = Served()

