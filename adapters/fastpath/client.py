"""The fast path's client: hand a command line to the fork server that serves its root.

Why: a Python process spends ~100 ms importing lamina before it does a command's few
milliseconds of work. `lamina serve` keeps a fork server with everything imported
(forkserver.py); when its socket is there, this module passes it the command line, the
environment, the working directory and our stdin, stdout and stderr (SCM_RIGHTS), so the
command runs in a warm child that writes straight to our terminal, and exits with the
child's exit code. Our signals (Ctrl-C, SIGTERM, window size changes) are forwarded to it.
When no server answers, `exit_via_server()` returns and the caller runs the command itself
(adapters.cli): bin/lamina, the script pip installs, does so, as client.c (the native
client `make client` builds) does by exec'ing the interpreter.

This module must stay cheap to import, since its start-up is most of a served command's
time: it uses only modules built into the interpreter (`posix`, `_socket`, `_signal`), not
`os` (2 ms under `python -S`: it pulls in collections.abc) nor `socket` (enum and selectors,
~10 ms). bin/lamina runs it under `python -S` (see there).
"""

import posix
import sys

from adapters.cmdline import command_name, root_dir, root_option

SOCKET_NAME = "cli.sock"
FORWARDED_SIGNALS = (1, 2, 3, 10, 12, 15, 28)  # HUP INT QUIT USR1 USR2 TERM WINCH
LOCAL_COMMANDS = frozenset({"serve"})  # never run inside the fork server


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


def exit_via_server() -> None:
    """Run this process's command line in the fork server of its root and exit with the
    command's code. Return when there is none to ask (or $LAMINA_NO_SERVER is set, or the
    command is one that never runs there), with site's work done: the caller then runs the
    command here, and that needs all of it."""
    argv = sys.argv[1:]
    env = environment()
    if not env.get("LAMINA_NO_SERVER") and command_name(argv) not in LOCAL_COMMANDS:
        code = via_server(argv, env)
        if code is not None:
            sys.stdout.flush()
            posix._exit(code)
    if sys.flags.no_site:  # bin/lamina skipped site
        import site

        site.main()
