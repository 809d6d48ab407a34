"""The `lamina` command's entry point: hand the command to a running fork server, else run it.

Why: a Python process spends ~100 ms importing lamina before it does a command's few
milliseconds of work. `lamina serve` keeps a fork server with everything imported
(adapters/forkserver.py); when its socket is there, this module passes it the command line,
the environment, the working directory and our stdin, stdout and stderr (SCM_RIGHTS), so
the command runs in a warm child that writes straight to our terminal, and exits with the
child's exit code. Our signals (Ctrl-C, SIGTERM, window size changes) are forwarded to it.

This module must stay cheap to import, since its start-up is most of a served command's
time: it uses only modules built into the interpreter (`posix`, `_socket`, `_signal`), not
`os` (2 ms under `python -S`: it pulls in collections.abc) nor `socket` (enum and selectors,
~10 ms). bin/lamina runs it under `python -S` (see there).
"""

import posix
import sys

SOCKET_NAME = "cli.sock"
DEFAULT_ROOT = "/var/lib/lamina"
GLOBAL_WITH_VALUE = frozenset({"--root", "--log-format", "--log-level"})
FORWARDED_SIGNALS = (1, 2, 3, 10, 12, 15, 28)  # HUP INT QUIT USR1 USR2 TERM WINCH
LOCAL_COMMANDS = frozenset({"serve"})  # never run inside the fork server


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
        elif not word.startswith("--") or "=" not in word:
            return None  # -h and friends
    return None


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


def environment() -> dict[str, str]:
    """The process environment as os.environ decodes it (posix.environ holds bytes)."""
    enc = sys.getfilesystemencoding()
    return {k.decode(enc, "surrogateescape"): v.decode(enc, "surrogateescape")
            for k, v in posix.environ.items()}


def encode_request(argv: list[str], cwd: str, umask: int, env: dict[str, str]) -> bytes:
    """NUL-separated fields: cwd, umask, argc, argv..., then K=V environment entries."""
    fields = [cwd, str(umask), str(len(argv)), *argv, *(f"{k}={v}" for k, v in env.items())]
    payload = "\0".join(fields).encode("utf-8", "surrogateescape")
    return len(payload).to_bytes(4, "big") + payload


def _recv_int(sock: object) -> int | None:
    data = b""
    while len(data) < 4:
        chunk = sock.recv(4 - len(data))  # type: ignore[attr-defined]
        if not chunk:
            return None
        data += chunk
    return int.from_bytes(data, "big", signed=True)


def via_server(argv: list[str], env: dict[str, str]) -> int | None:
    """Run the command in the fork server; None when there is none to ask."""
    import _signal
    import _socket

    path = root_dir(root_option(argv), env) + "/" + SOCKET_NAME
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None  # no socket, or a stale one: nobody serves it
    pending: list[int] = []  # a Ctrl-C before the command's pid is known waits for it
    for sig in FORWARDED_SIGNALS:
        _signal.signal(sig, lambda signum, _frame: pending.append(signum))
    umask = posix.umask(0)
    posix.umask(umask)
    request = encode_request(argv, posix.getcwd(), umask, env)
    fds = b"".join(fd.to_bytes(4, sys.byteorder) for fd in (0, 1, 2))  # a C int[3]
    sock.sendmsg([request], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
    pid = _recv_int(sock)
    if pid is None or pid <= 0:
        print("lamina: error: the fork server refused the command", file=sys.stderr)
        return 125
    for sig in FORWARDED_SIGNALS:
        _signal.signal(sig, lambda signum, _frame: _forward(pid, signum))
    for signum in pending:
        _forward(pid, signum)
    code = _recv_int(sock)
    if code is None:
        print("lamina: error: the fork server went away", file=sys.stderr)
        return 125
    return code


def _forward(pid: int, signum: int) -> None:
    try:  # noqa: SIM105 - contextlib is an import this module does without
        posix.kill(pid, signum)
    except ProcessLookupError:
        pass


def main() -> None:
    argv = sys.argv[1:]
    env = environment()
    if not env.get("LAMINA_NO_SERVER") and command_name(argv) not in LOCAL_COMMANDS:
        code = via_server(argv, env)
        if code is not None:
            sys.stdout.flush()
            posix._exit(code)
    if sys.flags.no_site:  # bin/lamina skipped site; running here needs all of it
        import site

        site.main()
    from adapters.cli import main as run_here

    run_here(argv)


if __name__ == "__main__":
    main()
