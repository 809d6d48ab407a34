"""One `lamina serve` per test module, on a temporary root and socket, driven by the real
docker CLI and docker-py. Teardown removes every container and checks the host is clean."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import require_root
from tests.kernel.runtime_env import LAMINA, Lamina, busybox_tar, leftovers

DOCKER = shutil.which("docker") or "/usr/local/bin/docker"


@dataclass
class Service:
    root: Path
    socket: str
    log_path: Path
    proc: subprocess.Popen
    started: float

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": f"unix://{self.socket}",
                "DOCKER_CONFIG": str(self.root.parent / "docker-config"),
                "DOCKER_BUILDKIT": "0"}

    def docker(self, *argv: str, input: str | bytes | None = None, timeout: float = 60,
               text: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([DOCKER, *argv], capture_output=True, text=text,
                              input=input, timeout=timeout, env=self.env,
                              stdin=None if input is not None else subprocess.DEVNULL)

    def ok(self, *argv: str, **kw) -> str:
        out = self.docker(*argv, **kw)
        assert out.returncode == 0, f"docker {' '.join(argv)}: {out.stderr}"
        return out.stdout

    def client(self):
        import docker

        return docker.DockerClient(base_url=f"unix://{self.socket}", timeout=60)

    def raw(self, request: bytes, read: int = 65536) -> bytes:
        """One HTTP request by hand; the answer's first bytes."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(20)
            s.connect(self.socket)
            # the server may refuse the rest (413): its answer is still there to read
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                s.sendall(request)
            data = b""
            while len(data) < read:
                chunk = s.recv(read)
                if not chunk:
                    break
                data += chunk
                if b"\r\n\r\n" in data and (b"Content-Length" in data or read < 65536):
                    head, _, body = data.partition(b"\r\n\r\n")
                    length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")]
                    if length and len(body) >= length[0]:
                        break
            return data

    def alive(self) -> bool:
        return self.proc.poll() is None

    def events(self) -> list[dict]:
        out = Lamina(self.root).ok("events", "--format", "json")
        return [json.loads(line) for line in out.splitlines()]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    require_root()
    if not os.path.exists(DOCKER):
        pytest.fail("no docker CLI: make test installs one")
    base = tmp_path_factory.mktemp("svc")
    root, sock, log_path = base / "root", str(base / "lamina.sock"), base / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([LAMINA, "--root", str(root), "--log-format", "json",
                                 "serve", "--socket", sock], stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL)
    svc = Service(root, sock, log_path, proc, time.time())
    deadline = time.monotonic() + 20
    while not os.path.exists(sock):
        assert proc.poll() is None, log_path.read_text()
        assert time.monotonic() < deadline, "lamina serve did not come up"
        time.sleep(0.05)
    svc.ok("import", str(busybox_tar(base)), "busybox")
    try:
        yield svc
    finally:
        lamina = Lamina(root)
        ids = lamina.container_ids()
        for cid in ids:
            lamina("rm", "-f", cid)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        assert not os.path.exists(sock), "serve left its socket behind"
        time.sleep(0.2)
        assert leftovers(root, ids) == []


@pytest.fixture(autouse=True)
def _temporary_files_in_the_tests_own_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docker-py's helpers, kept as they are there, make temporary files and directories
    and never remove them: send them into the test's own directory, which pytest prunes,
    so runs do not pile them up in /tmp."""
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
