"""One `lamina serve` per root: a second one on the same root refuses to start, naming the
first's pid, and never touches the first's sockets; a socket another server answers on is
never taken over; a server killed outright leaves no lock, and the next one replaces its
dead sockets."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.kernel.runtime_env import LAMINA, Lamina, leftovers
from tests.service.conftest import Service

pytestmark = pytest.mark.kernel


def start(root: Path, sock: Path | str | None = None) -> subprocess.Popen:
    argv = [LAMINA, "--root", str(root), "serve"] + (["--socket", str(sock)] if sock else [])
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)


def finish(proc: subprocess.Popen, timeout: float = 20) -> tuple[int, str]:
    """Its exit code and stderr; a server still running after `timeout` is stopped (and
    that is the test's failure)."""
    try:
        _, err = proc.communicate(timeout=timeout)
        return proc.returncode, err
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        return -1, f"still serving after {timeout}s: {err}"


def identity(path: Path | str) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_dev, st.st_ino


def answers(path: Path | str) -> bool:
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


def test_a_second_serve_on_the_same_root_refuses_and_leaves_the_first_alone(
        service: Service, tmp_path: Path) -> None:
    cli_sock = service.root / "cli.sock"
    before = {str(p): identity(p) for p in (service.socket, cli_sock)}
    for other in (tmp_path / "second.sock", None):  # its own socket, or the root's default
        code, err = finish(start(service.root, other))
        assert (code, err) == (1, f"lamina: error: lamina serve is already running for "
                                  f"{service.root}, pid {service.proc.pid}\n")
        assert other is None or not other.exists()
        assert {str(p): identity(p) for p in (service.socket, cli_sock)} == before
    assert not (service.root / "lamina.sock").exists()
    assert service.alive() and "CONTAINER ID" in service.ok("ps")
    assert Lamina(service.root).ok("ps", "-a").startswith("CONTAINER ID")  # via cli.sock
    assert answers(cli_sock) and answers(service.socket)


def test_a_socket_another_root_serves_on_is_never_taken(service: Service,
                                                       tmp_path: Path) -> None:
    before = identity(service.socket)
    code, err = finish(start(tmp_path / "root2", service.socket))
    assert (code, err) == (1, f"lamina: error: {service.socket} is in use by another "
                              "server\n")
    assert identity(service.socket) == before and service.alive()
    assert "CONTAINER ID" in service.ok("ps")


def test_a_killed_server_leaves_no_lock_and_its_dead_sockets_are_replaced(
        tmp_path: Path) -> None:
    root, sock = tmp_path / "root", tmp_path / "api.sock"
    first = start(root, sock)
    try:
        _wait_for(lambda: answers(sock) and answers(root / "cli.sock"), first)
    finally:
        first.kill()
        first.wait(10)
    assert sock.exists() and not answers(sock)  # left behind, dead
    second = start(root, sock)
    try:
        _wait_for(lambda: answers(sock) and answers(root / "cli.sock"), second)
        assert (root / "serve.pid").read_text() == f"{second.pid}\n"
        assert Lamina(root).ok("ps").startswith("CONTAINER ID")
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(20) == 0
    assert not sock.exists() and not (root / "cli.sock").exists()
    assert leftovers(root, []) == []


def _wait_for(ready, proc: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "lamina serve did not come up"
        time.sleep(0.05)
