"""The fast path's client: hand a command line to the fork server that serves its root,
starting one when none does.

Why: a Python process spends ~100 ms importing lamina before it does a command's few
milliseconds of work. `lamina serve` keeps a fork server with everything imported
(forkserver.py); when its socket is there, this module passes it the command line, the
environment, the working directory and our stdin, stdout and stderr (SCM_RIGHTS), so the
command runs in a warm child that writes straight to our terminal, and exits with the
child's exit code. Our signals (Ctrl-C, SIGTERM, window size changes) are forwarded to it.
When no server answers and the root has an event log, the client starts one (start_server:
detached, logging to <root>/serve.log) and runs this command itself while the server warms
up (its imports, its first spare: ~0.6 s, against ~0.15 s for a command in a fresh
interpreter); so the first command of a root starts its server and later ones find it,
and a server that died is replaced by the next command. Without a log yet (the command
will make it), with --no-server or $LAMINA_NO_SERVER, for `serve`, or when the server
answers RUN_HERE (peer.py),
`exit_via_server()` returns and the caller runs the command itself (adapters.cli):
bin/lamina, the script pip installs, does so, as client.c (the native client `make client`
builds) does by exec'ing the interpreter; both start servers the same way.

This module must stay cheap to import, since its start-up is most of a served command's
time: it uses only modules built into the interpreter (`posix`, `_socket`, `_signal`), not
`os` (2 ms under `python -S`: it pulls in collections.abc) nor `socket` (enum and selectors,
~10 ms). bin/lamina runs it under `python -S` (see there).
"""

import posix
import sys

from adapters.cmdline import command_name, no_server, root_dir, root_option

SOCKET_NAME = "cli.sock"
START_LOCK = "cli.start"  # flock: held by whoever starts the root's fork server
CLI_LOCK = "cli.pid"  # record lock: held by the fork server serving the root
SERVER_LOG = "serve.log"
READY_SECONDS = 60  # for a started server to say it listens (a loaded machine is slow)
RUN_HERE, REFUSED = 0, -1  # the server's answers instead of a pid
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


def request_for(argv: list[str], cwd: str, env: dict[str, str]) -> bytes:
    """The request of a command to run as this process would: in `cwd`, with `env` and our
    umask (read by setting it, then set back: there is no other way to read it; owner-only
    meanwhile, so that a file another thread makes then is never the looser for it: the API
    service has threads)."""
    umask = posix.umask(0o077)
    posix.umask(umask)
    return encode_request(argv, cwd, umask, env)


def _recv_int(sock: object) -> int | None:
    data = b""
    while len(data) < 4:
        try:
            chunk = sock.recv(4 - len(data))  # type: ignore[attr-defined]
        except OSError:  # reset: a server that went away with our connection queued
            return None
        if not chunk:
            return None
        data += chunk
    return int.from_bytes(data, "big", signed=True)


def _connect(path: str) -> object | None:
    import _socket

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None  # no socket, or a stale one: nobody serves it
    return sock


STARTED = "started"  # start_server's answer when it started the server: run the command here


def start_server(root: str) -> object | None:
    """A connection to the fork server of `root`, or STARTED when none listened and this
    call started one (the command runs here while it warms up); None when the root has no
    event log yet or none could be started. Under <root>/cli.start's flock, so that of two
    commands that find no server, one starts it and the other finds it."""
    import fcntl

    try:
        posix.stat(f"{root}/events.db")
        lock = posix.open(f"{root}/{START_LOCK}", posix.O_RDWR | posix.O_CREAT | posix.O_CLOEXEC,
                          0o600)
    except OSError:
        return None  # no log yet (the command makes it), or not a root we may use
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = f"{root}/{SOCKET_NAME}"
        sock = _connect(path)
        if sock is None and _spawn(root):
            return STARTED
        return sock
    finally:
        posix.close(lock)


def _spawn(root: str) -> bool:
    """Run `python -m adapters.cli.served --root ROOT --ready-fd 3` detached from us (a
    session of its own, stdin /dev/null, stdout and stderr appended to <root>/serve.log,
    no other descriptor of ours, in /) and wait until it says it listens."""
    try:
        log = posix.open(f"{root}/{SERVER_LOG}",
                         posix.O_WRONLY | posix.O_APPEND | posix.O_CREAT | posix.O_CLOEXEC, 0o600)
    except OSError:
        return False
    r, w = posix.pipe()
    pid = posix.fork()
    if pid == 0:
        try:
            posix.setsid()
            if posix.fork() != 0:
                posix._exit(0)  # the server is nobody's child: it can't become our zombie
            posix.chdir("/")
            null = posix.open("/dev/null", posix.O_RDWR)
            posix.dup2(null, 0)
            posix.dup2(log, 1)
            posix.dup2(log, 2)
            posix.dup2(w, 3)
            posix.closerange(4, 1 << 20)
            python = sys.executable
            posix.execv(python, [python, "-P", "-m", "adapters.cli.served", "--root", root,
                                 "--ready-fd", "3"])
        finally:
            posix._exit(127)
    posix.close(w)
    posix.close(log)
    posix.waitpid(pid, 0)
    return _ready(r)


def _ready(fd: int) -> bool:
    """The server's word on the pipe (it writes "ready" once it listens); EOF or silence
    for READY_SECONDS: it did not come up (serve.log says why)."""
    import select

    said = b""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    try:
        while poller.poll(READY_SECONDS * 1000):
            chunk = posix.read(fd, 64)
            if not chunk:
                break
            said += chunk
    finally:
        posix.close(fd)
    return said.startswith(b"ready")


def via_server(argv: list[str], env: dict[str, str]) -> int | None:
    """Run the command in the fork server, started if need be; None when the command is to
    run here (no server, or the server's RUN_HERE). A connection closed before the pid came
    (a server going away: its spare took the connection as it died) ran nothing: the
    command is handed once more, to a server started afresh if need be."""
    import _signal

    root = root_dir(root_option(argv), env)
    sock = _connect(root + "/" + SOCKET_NAME) or start_server(root)
    if sock is None or sock is STARTED:
        if sock is None:
            _could_not_start(root)
        return None
    pending: list[int] = []  # a Ctrl-C before the command's pid is known waits for it
    previous = {sig: _signal.signal(sig, lambda signum, _frame: pending.append(signum))
                for sig in FORWARDED_SIGNALS}
    request = request_for(argv, posix.getcwd(), env)
    pid = _hand_over(sock, request)
    if pid is None:
        sock.close()  # type: ignore[attr-defined]
        sock = start_server(root)
        pid = _hand_over(sock, request) if sock not in (None, STARTED) else None
    if pid is None or pid == RUN_HERE:
        if sock not in (None, STARTED):
            sock.close()  # type: ignore[attr-defined]
        for sig, handler in previous.items():
            _signal.signal(sig, handler)
        for signum in pending:
            posix.kill(posix.getpid(), signum)
        return None
    if pid < 0:
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


def ask(root: str, argv: list[str], env: dict[str, str]) -> int | None:
    """Have the fork server already serving `root` run `argv` (with our stdio, in /) and
    return its exit code; None when no server ran it: none listens (none is started for
    this), it went away before its answer, or it answered RUN_HERE or REFUSED. For
    lamina's own processes that carry on without a server (a container's monitor,
    adapters/runtime/supervise.py), not for a user's command (via_server)."""
    sock = _connect(f"{root}/{SOCKET_NAME}")
    if sock is None:
        return None
    try:
        pid = _hand_over(sock, request_for(argv, "/", env))
        return _recv_int(sock) if pid is not None and pid > 0 else None
    finally:
        sock.close()  # type: ignore[attr-defined]


def _hand_over(sock: object, request: bytes) -> int | None:
    """Send the request with our fds 0, 1, 2; the server's first answer (a pid, RUN_HERE or
    REFUSED), None when it closed without one."""
    import _socket

    fds = b"".join(fd.to_bytes(4, sys.byteorder) for fd in (0, 1, 2))  # a C int[3]
    try:
        sock.sendmsg([request], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])  # type: ignore[attr-defined]
    except OSError:
        return None
    return _recv_int(sock)


def _could_not_start(root: str) -> None:
    if posix.access(root + "/events.db", posix.F_OK):
        print(f"lamina: warning: could not start a server for {root} "
              f"(see {root}/{SERVER_LOG}); running the command here", file=sys.stderr)


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
    command = command_name(argv)
    if not env.get("LAMINA_NO_SERVER") and command is not None \
            and command not in LOCAL_COMMANDS and not no_server(argv):
        code = via_server(argv, env)
        if code is not None:
            sys.stdout.flush()
            posix._exit(code)
    if sys.flags.no_site:  # bin/lamina skipped site
        import site

        site.main()
