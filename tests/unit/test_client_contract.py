"""Both `lamina` clients hold to one contract with the fork server.

The native client (adapters/fastpath/client.c, which `make` builds into the venv's bin/lamina) and
the Python one (bin/lamina, run under `python -S` as pip installs it) talk to a fake fork
server on a temporary root that parses requests with the real server's own reader
(forkserver._receive). Each must send the same request for the same command line,
environment, directory and umask, pass its own fds 0-2, exit with the code the server
sends, forward its signals to the command's process (also those that came before that
process was known), and run the command itself when no server answers.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.fastpath.forkserver import Request, _receive
from tests.conftest import require_root

REPO = Path(__file__).resolve().parents[2]
NATIVE = Path(sys.executable).with_name("lamina")
CLIENTS = {
    "native": [str(NATIVE)],
    "python": [sys.executable, "-S", str(REPO / "bin" / "lamina")],
}
ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8",
       "LAMINA_X": "é=ü", "EMPTY": ""}


def _native_built() -> bool:
    try:
        with open(NATIVE, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


@pytest.fixture(params=sorted(CLIENTS))
def client(request: pytest.FixtureRequest) -> list[str]:
    if request.param == "native" and not _native_built():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{NATIVE} is not the native client: `make client` builds it")
        pytest.skip(f"{NATIVE} is not the native client (run `make client`)")
    return CLIENTS[request.param]


class FakeServer:
    """Accepts one connection on root/cli.sock, reads the request as the fork server does,
    then answers `pid` once `started` is set (at once by default) and `code` once `release`
    is set; None for either: hang up instead."""

    def __init__(self, root: Path, pid: int | None, code: int | None) -> None:
        self.pid, self.code = pid, code
        self.started = threading.Event()
        self.started.set()
        self.release = threading.Event()
        self.received = threading.Event()
        self.request: Request | None = None
        self.fd_inodes: list[tuple[int, int]] = []
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(root / "cli.sock"))
        self.listener.listen(1)
        self.listener.settimeout(0.05)
        self.closing = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.closing:
            try:
                conn, _ = self.listener.accept()
                break
            except TimeoutError:
                continue
        else:
            return
        conn.settimeout(None)
        with conn:
            self.request, fds = _receive(conn)
            for fd in fds:
                st = os.fstat(fd)
                self.fd_inodes.append((st.st_dev, st.st_ino))
                os.close(fd)
            self.received.set()
            self.started.wait(30)
            if self.pid is None:
                return
            conn.sendall(self.pid.to_bytes(4, "big", signed=True))
            self.release.wait(30)
            if self.code is not None:
                conn.sendall(self.code.to_bytes(4, "big", signed=True))

    def close(self) -> None:
        self.closing = True
        self.started.set()
        self.release.set()
        self.thread.join(10)
        self.listener.close()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    return path


@pytest.fixture
def serve(root: Path) -> Iterator[type[FakeServer]]:
    servers: list[FakeServer] = []

    def start(pid: int | None = 4242, code: int | None = 0) -> FakeServer:
        servers.append(FakeServer(root, pid, code))
        return servers[-1]

    yield start  # type: ignore[misc]
    for server in servers:
        server.close()


def _inode(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_dev, st.st_ino


def test_the_request_reaches_the_server_whole(client: list[str], root: Path, tmp_path: Path,
                                              serve) -> None:
    server = serve(code=42)
    server.release.set()
    argv = ["--log-level", "info", "--root", str(root), "ps", "-a", "ünïcode", ""]
    out, err = tmp_path / "out", tmp_path / "err"
    with open(out, "w") as o, open(err, "w") as e:
        done = subprocess.run([*client, *argv], env=ENV, cwd=tmp_path, umask=0o027,
                              stdin=subprocess.DEVNULL, stdout=o, stderr=e, timeout=30)
    assert done.returncode == 42, err.read_text()
    assert server.request == Request(argv=argv, cwd=str(tmp_path), umask=0o027, env=ENV)
    assert server.fd_inodes == [_inode(Path(os.devnull)), _inode(out), _inode(err)]


def test_the_root_comes_from_the_environment_too(client: list[str], root: Path,
                                                  serve) -> None:
    server = serve(code=3)
    server.release.set()
    done = subprocess.run([*client, "ps"], env={**ENV, "LAMINA_ROOT": str(root)},
                          capture_output=True, timeout=30)
    assert done.returncode == 3 and server.request is not None
    assert server.request.argv == ["ps"]


@pytest.mark.parametrize(("pid", "code", "message"), [
    (-1, None, "the fork server refused the command"),
    (4242, None, "the fork server went away"),
])
def test_a_server_that_fails_gives_one_line_and_125(client: list[str], root: Path, serve,
                                                    pid: int | None, code: int | None,
                                                    message: str) -> None:
    server = serve(pid=pid, code=code)
    server.release.set()
    done = subprocess.run([*client, "--root", str(root), "ps"], env=ENV,
                          capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stderr) == (125, f"lamina: error: {message}\n")


@pytest.mark.parametrize(("sig", "early"), [(signal.SIGTERM, False), (signal.SIGUSR1, True)])
def test_signals_reach_the_command(client: list[str], root: Path, serve, sig: int,
                                   early: bool) -> None:
    """A signal to the client goes to the command's process; one that came before the
    server said which process that is (`early`) is held back, then follows it."""
    command = subprocess.Popen(["sleep", "60"])
    server = serve(pid=command.pid, code=128 + sig)
    if early:
        server.started.clear()
    proc = subprocess.Popen([*client, "--root", str(root), "stop", "x"], env=ENV)
    try:
        assert server.received.wait(30)  # sent after the client's handlers were in place
        proc.send_signal(sig)
        if early:
            with pytest.raises(subprocess.TimeoutExpired):
                command.wait(0.3)  # nobody to give it to yet
            server.started.set()
        assert command.wait(10) == -sig
        server.release.set()
        assert proc.wait(10) == 128 + sig
    finally:
        command.kill()
        proc.kill()


def test_without_a_server_the_command_runs_here(client: list[str], root: Path) -> None:
    require_root()  # the command runs here: the CLI is root's only
    done = subprocess.run([*client, "--root", str(root), "version"], env=ENV,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("lamina "), done.stderr
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(root / "cli.sock"))
    stale.close()  # the file stays, nobody listens
    done = subprocess.run([*client, "--root", str(root), "version"], env=ENV,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("lamina "), done.stderr


def test_a_server_that_hangs_up_before_the_pid_ran_nothing(client: list[str], root: Path,
                                                           serve) -> None:
    """No pid: nothing ran (a server going away as it took the connection). The client
    hands the command once more to a server started afresh; a root without a log has
    none, so the command runs here."""
    require_root()  # the command runs here: the CLI is root's only
    server = serve(pid=None, code=None)
    done = subprocess.run([*client, "--root", str(root), "version"], env=ENV,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("lamina "), done.stderr
    assert server.received.is_set()


def test_run_here_means_the_client_runs_the_command(client: list[str], root: Path,
                                                    serve) -> None:
    """RUN_HERE (0) instead of a pid: the server can't stand in for this client (peer.py)."""
    require_root()  # the command runs here: the CLI is root's only
    server = serve(pid=0, code=None)
    done = subprocess.run([*client, "--root", str(root), "version"], env=ENV,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("lamina "), done.stderr
    assert server.received.is_set()


@pytest.mark.parametrize("argv", [["serve", "--help"], ["version"], ["--no-server", "version"],
                                  ["--quiet", "--no-server", "version"]])
def test_serve_and_no_server_stay_here(client: list[str], root: Path, serve,
                                       argv: list[str]) -> None:
    require_root()  # one of the two runs the command here: the CLI is root's only
    server = serve()
    env = {**ENV, "LAMINA_NO_SERVER": "1"} if argv == ["version"] else ENV
    done = subprocess.run([*client, "--root", str(root), *argv], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert not server.received.is_set()
