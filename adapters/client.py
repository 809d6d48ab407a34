"""The `lamina` command's entry point: hand the command to a running fork server, else run it.

Why: a Python process spends ~100 ms importing lamina before it does a command's few
milliseconds of work. `lamina serve` keeps a fork server with everything imported
(adapters/forkserver.py); when its socket is there, this module passes it the command line,
the environment, the working directory and our stdin, stdout and stderr (SCM_RIGHTS), so
the command runs in a warm child that writes straight to our terminal, and exits with the
child's exit code. Our signals (Ctrl-C, SIGTERM, window size changes) are forwarded to it.

This module must stay cheap to import: it uses only the interpreter's built-in modules
(`_socket`, `_struct`, `_signal`; `socket` itself pulls in enum and selectors, ~10 ms).
"""

from __future__ import annotations

import os
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
    for i, word in enumerate(argv):
        if not word.startswith("-"):
            return None
        if word == "--root" and i + 1 < len(argv):
            return argv[i + 1]
        if word.startswith("--root="):
            return word.partition("=")[2]
    return None


def root_dir(cli_root: str | None) -> str:
    """--root DIR, else $LAMINA_ROOT, else /var/lib/lamina."""
    return os.path.abspath(cli_root or os.environ.get("LAMINA_ROOT") or DEFAULT_ROOT)


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


def via_server(argv: list[str]) -> int | None:
    """Run the command in the fork server; None when there is none to ask."""
    path = os.path.join(root_dir(root_option(argv)), SOCKET_NAME)
    if not os.path.exists(path):
        return None
    import _signal
    import _socket
    import _struct

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None  # a stale socket: nobody serves it
    pending: list[int] = []  # a Ctrl-C before the command's pid is known waits for it
    for sig in FORWARDED_SIGNALS:
        _signal.signal(sig, lambda signum, _frame: pending.append(signum))
    umask = os.umask(0)
    os.umask(umask)
    request = encode_request(argv, os.getcwd(), umask, dict(os.environ))
    fds = _struct.pack("3i", 0, 1, 2)
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
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def main() -> None:
    argv = sys.argv[1:]
    if not os.environ.get("LAMINA_NO_SERVER") and command_name(argv) not in LOCAL_COMMANDS:
        code = via_server(argv)
        if code is not None:
            sys.stdout.flush()
            os._exit(code)
    from adapters.cli import main as run_here

    run_here(argv)


if __name__ == "__main__":
    main()
