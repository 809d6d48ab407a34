"""The fast path by default: the first command of a root starts its fork server, detached,
and every command goes through it, with the same outcome and the same audit as in-process.

Real clients (the native one `make client` builds, and the Python one pip installs) against
real servers they start; each test stops what it started (tests/servers.py), and the run's
end checks that no server is left (tests/conftest.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.fastpath.forkserver import WATCH_EVERY, holder
from tests.conftest import require_root
from tests.kernel.runtime_env import LAMINA, Lamina, busybox_tar, leftovers
from tests.servers import servers_under, stop_servers_of

pytestmark = pytest.mark.kernel

PYTHON_CLIENT = [sys.executable, "-S", str(Path(__file__).parents[2] / "bin" / "lamina")]
CLIENTS = {"native": [LAMINA], "python": PYTHON_CLIENT}


def served_env() -> dict[str, str]:
    """The test run's environment without LAMINA_NO_SERVER (tests/conftest.py sets it)."""
    return {k: v for k, v in os.environ.items() if k != "LAMINA_NO_SERVER"}


class Root(Lamina):
    """A root whose commands may start its server (the environment a user has)."""

    def __init__(self, root: Path, client: list[str] | None = None) -> None:
        super().__init__(root)
        self.client = client or [LAMINA]

    def __call__(self, *argv: str, check: bool = False, timeout: float = 60,
                 input: str | None = None, env: dict[str, str] | None = None,
                 prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
        out = subprocess.run([*prefix, *self.client, "--root", str(self.root), *argv],
                             capture_output=True, text=True, timeout=timeout, input=input,
                             env=env or served_env(),
                             stdin=None if input is not None else subprocess.DEVNULL)
        if check and out.returncode != 0:
            raise AssertionError(f"lamina {' '.join(argv)} exited {out.returncode}: "
                                 f"{out.stderr}{out.stdout}")
        return out

    def server(self) -> int | None:
        return holder(str(self.root))

    def wait_no_server(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while servers_under(str(self.root)):
            assert time.monotonic() < deadline, "the server did not stop"
            time.sleep(0.05)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A root with busybox, imported in-process: no server yet."""
    require_root()
    path = tmp_path_factory.mktemp("auto") / "root"
    Lamina(path).ok("import", str(busybox_tar(path.parent)), "busybox")
    yield path
    stop_servers_of(str(path))
    assert leftovers(path, []) == []


@pytest.fixture(params=sorted(CLIENTS))
def root(request: pytest.FixtureRequest, base: Path) -> Iterator[Root]:
    """The module's root through one client, with no server at the start nor the end."""
    stop_servers_of(str(base))
    yield Root(base, CLIENTS[request.param])
    stop_servers_of(str(base))


def test_the_first_command_starts_a_detached_server_that_later_ones_use(root: Root) -> None:
    assert root.server() is None
    first = subprocess.Popen([*root.client, "--root", str(root.root), "create", "busybox",
                              "true"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=served_env())
    out, err = first.communicate(timeout=60)  # returns: the server holds none of our pipes
    assert first.returncode == 0, err
    pid = root.server()
    assert pid is not None and servers_under(str(root.root)) == [(pid, str(root.root))]
    assert os.getsid(pid) not in (os.getsid(0), pid)  # a session of its own, not a leader
    with open(f"/proc/{pid}/stat") as f:
        assert f.read().rpartition(")")[2].split()[4] == "0"  # no controlling terminal
    assert [os.readlink(f"/proc/{pid}/fd/{n}") for n in (0, 1, 2)] == \
        ["/dev/null", str(root.root / "serve.log"), str(root.root / "serve.log")]
    assert os.readlink(f"/proc/{pid}/cwd") == "/"
    assert f"lamina fork server {pid}: serving {root.root}/cli.sock" in \
        (root.root / "serve.log").read_text()
    # the audit names the client, as in-process
    cid = out.strip()
    meta = root.events(f"container={cid}")[0]["meta"]
    assert (meta["pid"], meta["uid"], meta["host"]) == (first.pid, os.getuid(), os.uname()[1])
    # later commands go through the same server, with the command's own outcome
    done = root("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (done.returncode, done.stdout, done.stderr) == (7, "out\n", "err\n")
    assert root.server() == pid
    check = root.ok("system", "check").splitlines()
    assert check[-1] == f"server: running, pid {pid}, socket {root.root}/cli.sock"
    root.ok("rm", cid)


def test_two_commands_at_once_start_one_server(root: Root) -> None:
    procs = [subprocess.Popen([*client, "--root", str(root.root), "ps", "-a", "-q"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=served_env())
             for client in (*CLIENTS.values(), *CLIENTS.values())]
    for proc in procs:
        assert proc.wait(60) == 0, proc.stderr.read() if proc.stderr else ""
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
    assert len(servers_under(str(root.root))) == 1


def test_a_dead_server_is_replaced_by_the_next_command(root: Root) -> None:
    root.ok("ps")
    first = root.server()
    assert first is not None
    os.kill(first, 9)
    root.wait_no_server(10)
    assert root.ok("run", "--rm", "busybox", "echo", "back") == "back\n"
    assert root.server() not in (None, first)


def test_a_stop_that_waits_for_the_server_to_be_gone(root: Root) -> None:
    """stop_server returns once the socket is let go; with gone=True only once the server
    has exited, its commands reaped: a caller may then remove the root (tools/docs.py did,
    and a server still stopping wrote events.db-shm into it again)."""
    from adapters.fastpath.forkserver import stop_server
    from tests.kernel.runtime_env import alive

    root.ok("ps")
    pid = root.server()
    assert pid is not None
    assert stop_server(str(root.root), gone=True) == pid
    assert not alive(pid)
    assert stop_server(str(root.root), gone=True) is None


def test_without_a_server_when_asked(root: Root) -> None:
    root.ok("--no-server", "ps", "-a")
    root.ok("ps", "-a", env={**served_env(), "LAMINA_NO_SERVER": "1"})
    assert root.server() is None
    assert root.ok("--no-server", "system", "check").splitlines()[-1] == \
        "server: none (the next command starts one)"


def test_a_server_leaves_when_its_socket_or_its_code_changes(base: Path) -> None:
    root = Root(base)
    root.ok("ps")
    (base / "cli.sock").unlink()  # as when the root is removed
    root.wait_no_server(WATCH_EVERY * 3 + 5)
    root.ok("ps")
    module = Path(__file__).parents[2] / "adapters" / "fastpath" / "peer.py"
    st = module.stat()
    try:
        os.utime(module, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        root.wait_no_server(WATCH_EVERY * 3 + 5)
    finally:
        os.utime(module, ns=(st.st_atime_ns, st.st_mtime_ns))
    log = (base / "serve.log").read_text()
    assert "stopping: its socket" in log and "stopping: lamina's code changed on disk" in log


def test_a_client_the_server_cannot_stand_in_for_runs_its_command_itself(base: Path) -> None:
    """Another UTS namespace (the audit records the host name), a resource limit the
    server can't take (a hard limit above its own): the command runs in the client, as it
    would without a server; a lower limit is taken, and the command runs in the server."""
    root = Root(base)
    root.ok("ps", prefix=("prlimit", "--nofile=512:512"))  # the server starts with these
    server = root.server()
    assert server is not None
    # lower than the server's: taken by its child, and the container inherits it
    assert root.ok("run", "--rm", "busybox", "sh", "-c", "ulimit -n",
                   prefix=("prlimit", "--nofile=100:200")) == "100\n"
    # higher than the server's hard limit: run here, with the client's own limits
    soft = os.sysconf("SC_OPEN_MAX")
    assert soft > 512
    assert root.ok("run", "--rm", "busybox", "sh", "-c", "ulimit -n") == f"{soft}\n"
    # another UTS namespace: run here (the audit's host is the client's)
    cid = root.ok("create", "busybox", "true",
                  prefix=("unshare", "--uts", "sh", "-c",
                          'hostname lamina-elsewhere && exec "$0" "$@"')).strip()
    assert root.events(f"container={cid}")[0]["meta"]["host"] == "lamina-elsewhere"
    assert root.server() == server
    root.ok("rm", cid)


def test_lamina_serve_takes_over_from_a_started_server(base: Path) -> None:
    root = Root(base)
    root.ok("ps")
    started = root.server()
    api = base.parent / "api.sock"
    serve = subprocess.Popen([LAMINA, "--root", str(base), "serve", "--socket", str(api)],
                             stderr=subprocess.DEVNULL, env=served_env())
    try:
        deadline = time.monotonic() + 60
        while root.server() in (None, started) or not api.exists():
            assert time.monotonic() < deadline, "lamina serve did not take over"
            assert serve.poll() is None, "lamina serve exited"
            time.sleep(0.05)
        root.wait_no_server(10)  # the started one left (lamina serve's is not a started one)
        assert root.ok("run", "--rm", "busybox", "echo", "served") == "served\n"
        assert root.server() not in (None, started)
    finally:
        serve.terminate()
        assert serve.wait(30) == 0
    assert root.server() is None
    assert json.loads(root.ok("version", "--format", "json"))
    stop_servers_of(str(base))
