"""`lamina pull`, `push`, `login`, `logout`: images from and to an OCI distribution registry.

Progress: per-layer bars (rich, imported only then) when stderr is a terminal; otherwise
docker's plain lines on stdout (`<layer>: Pulling fs layer`, `Download complete`, ...).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

# Every lamina command imports this module: the registry client (http.client etc.) waits.
from adapters.registry.progress import Progress

COMMANDS = ("pull", "push", "login", "logout")


_INSECURE_ENV = "LAMINA_INSECURE_REGISTRIES"  # comma-separated, like the daemon's list


_BAR_ONLY = ("Downloading", "Extracting", "Pushing")  # docker prints these only as bars


def _short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


class PlainProgress(Progress):
    """docker's non-terminal output: one line per layer per change of status."""

    def __init__(self, out: Any = None) -> None:
        self.out = out or sys.stdout
        self.last: dict[str, str] = {}

    def _line(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def begin(self, title: str, layers: Sequence[tuple[str, int, str]]) -> None:
        self._line(title)
        for digest, _, status in layers:
            self.update(digest, status)

    def update(self, digest: str, status: str, done: int = 0, total: int = 0) -> None:
        if self.last.get(digest) == status or status in _BAR_ONLY:
            return
        self.last[digest] = status
        self._line(f"{_short(digest)}: {status}")

    def end(self) -> None:
        pass


class RichProgress(Progress):
    """A bar per layer on stderr, for a terminal."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TextColumn,
            TransferSpeedColumn,
        )
        from rich.progress import (
            Progress as Bars,
        )

        self.bars = Bars(TextColumn("{task.fields[layer]}"), TextColumn("{task.description}"),
                         BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                         console=Console(file=sys.stderr), transient=False)
        self.tasks: dict[str, Any] = {}

    def begin(self, title: str, layers: Sequence[tuple[str, int, str]]) -> None:
        self.bars.console.print(title)
        self.bars.start()
        for digest, size, status in layers:
            if digest not in self.tasks:
                done = size if status in ("Already exists",) else 0
                self.tasks[digest] = self.bars.add_task(status, total=size or None,
                                                        completed=done, layer=_short(digest))

    def update(self, digest: str, status: str, done: int = 0, total: int = 0) -> None:
        task = self.tasks.get(digest)
        if task is not None:
            self.bars.update(task, description=status, completed=done,
                             total=total or None)

    def end(self) -> None:
        self.bars.stop()


def _progress(quiet: bool) -> Progress:
    if quiet:
        return Progress()
    if sys.stderr.isatty():
        return RichProgress()
    return PlainProgress()


def _insecure(args: argparse.Namespace) -> list[str]:
    env = [h.strip() for h in os.environ.get(_INSECURE_ENV, "").split(",") if h.strip()]
    return [*env, *(args.insecure_registry or [])]


def _registry(args: argparse.Namespace, quiet: bool = False) -> tuple[Any, Any]:
    from adapters.cli.common import engine
    from adapters.cmdline import root_dir
    from adapters.registry.adapter import Registry

    e = engine(args)
    reg = Registry(root_dir(args.root), e.layers, insecure=_insecure(args),
                   progress=_progress(quiet), chunk=getattr(args, "chunk_size", 0) or 0)
    return e, reg


def cmd_pull(args: argparse.Namespace) -> int:
    from core.distribution import pull

    e, reg = _registry(args, args.quiet)
    ref = reg.parse(args.name)
    if not args.quiet and ref.tag == "latest" and ":" not in args.name.rsplit("/", 1)[-1] \
            and "@" not in args.name:
        print("Using default tag: latest")
    result = pull(e, reg, args.name, args.platform)
    if not args.quiet:
        print(f"Digest: {result.manifest_digest}")
        shown = ref.local_tag or args.name
        if result.up_to_date:
            print(f"Status: Image is up to date for {shown}")
        else:
            print(f"Status: Downloaded newer image for {shown}")
    print(result.reference)
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from core.distribution import push

    e, reg = _registry(args, args.quiet)
    ref = reg.parse(args.name)
    outcome = push(e, reg, args.name)
    print(f"{ref.tag}: digest: {outcome.manifest_digest} size: {outcome.size}")
    return 0


def cmd_login(args: argparse.Namespace) -> int:
    from adapters.cmdline import root_dir
    from adapters.registry import auth
    from adapters.registry.client import Client
    from adapters.registry.reference import registry_host
    from core.errors import BadInput

    host = registry_host(args.server or "docker.io")
    path = auth.config_path(root_dir(args.root))
    username, password = args.username, args.password
    if args.password_stdin:
        if args.password:
            raise BadInput("--password and --password-stdin are mutually exclusive")
        password = sys.stdin.readline().rstrip("\r\n")
    if username is None or password is None:
        stored = auth.load(path, host)
        username = username if username is not None else (stored.username if stored else None)
        if username is None:
            username = _ask("Username: ")
        if password is None:
            import getpass

            if not sys.stdin.isatty():
                raise BadInput("cannot read a password: stdin is not a terminal "
                               "(use --password-stdin)")
            password = getpass.getpass("Password: ")
    if not username or not password:
        raise BadInput("username and password are both needed")
    creds = auth.Credentials(username, password)
    api = "registry-1.docker.io" if host == "docker.io" else host
    client = Client(api, "", creds, insecure=host in _insecure(args))
    try:
        client.ping()
    finally:
        client.close()
    auth.store(path, host, creds)
    print("Login Succeeded")
    return 0


def _ask(prompt: str) -> str:
    from core.errors import BadInput

    if not sys.stdin.isatty():
        raise BadInput("cannot ask for a username: stdin is not a terminal (use -u)")
    return input(prompt).strip()


def cmd_logout(args: argparse.Namespace) -> int:
    from adapters.cmdline import root_dir
    from adapters.registry import auth
    from adapters.registry.reference import registry_host

    host = registry_host(args.server or "docker.io")
    if auth.erase(auth.config_path(root_dir(args.root)), host):
        print(f"Removing login credentials for {host}")
    else:
        print(f"Not logged in to {host}")
    return 0


def _insecure_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--insecure-registry", action="append", metavar="HOST[:PORT]",
                   help=f"talk plain HTTP to this registry (repeatable; also ${_INSECURE_ENV})")


def register(sub: Any, fmt: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("pull", help="an image from a registry")
    p.add_argument("--platform", help="os/arch[/variant] (default: this machine's)")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress, only the image's name at the end")
    _insecure_option(p)
    p.add_argument("name", metavar="NAME[:TAG|@DIGEST]", help="the image to pull")
    p.set_defaults(func=cmd_pull)

    p = sub.add_parser("push", help="an image to a registry")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress")
    p.add_argument("--chunk-size", type=int, default=0, metavar="BYTES",
                   help="upload layers bigger than this in chunks (default: in one request)")
    _insecure_option(p)
    p.add_argument("name", metavar="NAME[:TAG]", help="a local image named for its registry")
    p.set_defaults(func=cmd_push)

    p = sub.add_parser("login", help="store credentials for a registry")
    p.add_argument("-u", "--username", help="the account's name (asked when not given)")
    p.add_argument("-p", "--password", help="its password (visible to ps: prefer "
                                            "--password-stdin)")
    p.add_argument("--password-stdin", action="store_true",
                   help="read the password from standard input")
    _insecure_option(p)
    p.add_argument("server", nargs="?", metavar="REGISTRY",
                   help="host[:port] (default: docker.io)")
    p.set_defaults(func=cmd_login)

    p = sub.add_parser("logout", help="forget the credentials for a registry")
    p.add_argument("server", nargs="?", metavar="REGISTRY",
                   help="host[:port] (default: docker.io)")
    p.set_defaults(func=cmd_logout)
