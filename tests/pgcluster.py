"""A throwaway PostgreSQL cluster for tests, from Debian's `postgresql` binaries.

initdb into a fresh temporary directory, the server listening on no TCP address at all
(`listen_addresses=''`) and on a unix socket in that directory only, run as the `postgres`
user when the tests run as root (postgres refuses root); stopped and removed afterwards.
Never a system-wide cluster. Each pytest-xdist worker makes its own directory (mkdtemp), so
parallel workers never share a cluster or a socket.

fsync=off: the tests kill the server with SIGKILL, never the machine, and what a killed
process wrote is in the kernel's page cache already; a real deployment keeps fsync on.
"""

from __future__ import annotations

import ctypes
import glob
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

BIN_GLOB = "/usr/lib/postgresql/*/bin"


def pg_bin() -> str | None:
    """The newest installed server's bin directory, or None without Debian's postgresql."""
    found = sorted(glob.glob(BIN_GLOB), key=lambda p: int(p.split("/")[-2]))
    return found[-1] if found and os.path.exists(os.path.join(found[-1], "initdb")) else None


@dataclass
class Cluster:
    """One temporary cluster: start(), url(db), kill(), stop(), remove()."""

    bindir: str
    durable: bool = False  # fsync on (the benchmarks'); the tests' clusters skip it
    top: str = ""
    process: subprocess.Popen | None = None
    _names: itertools.count = field(default_factory=lambda: itertools.count(1))

    @property
    def data(self) -> str:
        return os.path.join(self.top, "data")

    def _user(self) -> dict:
        return {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}

    def init(self) -> None:
        # /tmp as root: the postgres user must reach the directory ($TMPDIR may be root's),
        # and a unix socket's path must stay short
        self.top = tempfile.mkdtemp(prefix="lamina-pg-", dir="/tmp" if os.geteuid() == 0
                                    else None)
        if os.geteuid() == 0:
            shutil.chown(self.top, "postgres", "postgres")
        subprocess.run([os.path.join(self.bindir, "initdb"), "-D", self.data, "-U", "postgres",
                        "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions"],
                       check=True, capture_output=True, cwd=self.top, **self._user())

    def start(self) -> None:
        """Start the server and wait until it accepts connections on its socket."""
        settings = [] if self.durable else ["-c", "fsync=off", "-c", "full_page_writes=off"]
        with open(os.path.join(self.top, "server.log"), "ab") as log:
            self.process = subprocess.Popen(
                [os.path.join(self.bindir, "postgres"), "-D", self.data,
                 "-c", "listen_addresses=", "-c", f"unix_socket_directories={self.top}",
                 "-c", "max_connections=200", *settings],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd=self.top,
                start_new_session=True, preexec_fn=_shut_down_with_parent, **self._user())
        self.wait_ready()

    def wait_ready(self, timeout: float = 30.0) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited ({self.process.returncode}): "
                                   f"{self.server_log()[-2000:]}")
            try:
                psycopg.connect(self.url("postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@/{dbname}?host={self.top}"

    def new_database(self) -> str:
        """A fresh, empty database's URL (each test gets its own)."""
        import psycopg

        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as con:
            con.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def kill(self) -> None:
        """SIGKILL the postmaster, as a crash would, and wait until its backends are gone
        too (they notice the postmaster's death) so that it can start again."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()
        deadline = time.monotonic() + 30
        while _backends(self.data) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in _backends(self.data):
            os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None

    def remove(self) -> None:
        self.stop()
        for pid in _backends(self.data):
            os.kill(pid, signal.SIGKILL)
        if self.top:
            shutil.rmtree(self.top, ignore_errors=True)

    def server_log(self) -> str:
        try:
            with open(os.path.join(self.top, "server.log"), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""


PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded here: the child must not import


def _shut_down_with_parent() -> None:
    """In the server's child before exec (after its user is set, which would clear it): a
    fast shutdown when the test run that started it dies without stopping it."""
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGINT, 0, 0, 0)


def _backends(data: str) -> list[int]:
    """Processes still running with this cluster's data directory (its orphaned backends)."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if b"postgres" in cmd and (cwd == data or cwd.startswith(data + "/")):
            out.append(int(pid))
    return out
