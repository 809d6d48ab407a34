"""What a lamina command line names before any parser runs: its command word and its root.

Shared by the fast path's client (adapters/fastpath/client.py), which must find the root's
socket and the command without importing argparse or even `os` (it runs under `python -S`),
and by the CLI and the composition root, which must agree with it on both. So this module
uses only modules built into the interpreter (`posix`).
"""

import posix

DEFAULT_ROOT = "/var/lib/lamina"
GLOBAL_WITH_VALUE = frozenset({"--root", "--log-format", "--log-level", "--event-store"})
GLOBAL_FLAGS = frozenset({"--quiet", "--no-server"})


def command_name(argv: list[str]) -> str | None:
    """The command word in argv, skipping the global options before it."""
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word in GLOBAL_WITH_VALUE:
            skip = True
        elif not word.startswith("-"):
            return word
        elif word not in GLOBAL_FLAGS and (not word.startswith("--") or "=" not in word):
            return None  # -h and friends
    return None


def no_server(argv: list[str]) -> bool:
    """--no-server among the global options (before the command word)."""
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word == "--no-server":
            return True
        elif word in GLOBAL_WITH_VALUE:
            skip = True
        elif not word.startswith("-"):
            return False
    return False


def root_option(argv: list[str]) -> str | None:
    """The value of a --root given before the command word."""
    skip = False
    for i, word in enumerate(argv):
        if skip:
            skip = False
        elif word == "--root":
            return argv[i + 1] if i + 1 < len(argv) else None
        elif word.startswith("--root="):
            return word.partition("=")[2]
        elif word in GLOBAL_WITH_VALUE:
            skip = True
        elif not word.startswith("-"):
            return None
    return None


def root_dir(cli_root: str | None, env: dict[str, str] | None = None) -> str:
    """--root DIR, else $LAMINA_ROOT, else /var/lib/lamina; absolute and normalized, as
    os.path.abspath gives it. `env` defaults to os.environ (the client passes its own,
    read without importing os)."""
    if env is None:
        import os

        env = os.environ  # type: ignore[assignment]
    assert env is not None
    return absolute(cli_root or env.get("LAMINA_ROOT") or DEFAULT_ROOT)


def absolute(path: str) -> str:
    """os.path.abspath without importing os."""
    if not path.startswith("/"):
        path = posix.getcwd() + "/" + path
    parts: list[str] = []
    for part in path.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    lead = "//" if path.startswith("//") and not path.startswith("///") else "/"
    return lead + "/".join(parts)
