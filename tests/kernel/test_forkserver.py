"""The CLI through the fork server (`lamina serve`'s warm process) behaves as without it.

Each test runs real commands through adapters/fastpath/client.py against a fork server bound to a
temporary root: output, exit codes, stdin, the working directory, signals, and the audit
naming the client (not the server's child) as the caller.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_root
from tests.kernel.runtime_env import LAMINA, Lamina, Served, busybox_tar, leftovers

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("served_environment")]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lamina]:
    require_root()
    root = tmp_path_factory.mktemp("fs") / "root"
    root.mkdir()
    lamina = Lamina(root)
    lamina.ok("import", str(busybox_tar(root.parent)), "busybox")
    server = subprocess.Popen([sys.executable, "-m", "adapters.cli.served", "--root",
                               str(root)], stderr=subprocess.PIPE)
    sock = root / "cli.sock"
    deadline = time.monotonic() + 20
    while not sock.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sock.exists(), "the fork server did not come up"
    yield lamina
    for cid in lamina.container_ids():
        lamina("rm", "-f", cid)
    server.send_signal(signal.SIGTERM)
    assert server.wait(10) == 0
    assert not sock.exists(), "the socket outlived its server"
    assert leftovers(root, []) == []


def state(lamina: Lamina, cid: str) -> str:
    rows = [json.loads(line) for line in lamina.ok("ps", "-a", "--format", "json").splitlines()]
    return next(r["state"] for r in rows if r["id"] == cid)


def test_output_and_exit_codes_pass_through(served: Lamina) -> None:
    out = served("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (out.returncode, out.stdout, out.stderr) == (7, "out\n", "err\n")
    bad = served("stop", "no-such-container")
    assert bad.returncode == 1 and "no such container" in bad.stderr
    usage = served("run")
    assert usage.returncode == 2 and "arguments are required" in usage.stderr


def test_stdin_and_working_directory_are_the_clients(served: Lamina, tmp_path: Path) -> None:
    assert served.ok("run", "--rm", "-i", "busybox", "cat", input="piped\n") == "piped\n"
    out = subprocess.run([LAMINA, "--root", str(served.root), "save", "-o", "saved.tar",
                          "busybox"], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "saved.tar").stat().st_size > 100_000


def test_the_audit_names_the_client(served: Lamina) -> None:
    proc = subprocess.Popen([LAMINA, "--root", str(served.root), "create", "--name",
                             "audited", "busybox", "true"], stdout=subprocess.PIPE, text=True)
    cid = proc.communicate(timeout=30)[0].strip()
    assert proc.returncode == 0
    events = [json.loads(line) for line in served.ok(
        "events", "--format", "json", "--filter", f"container={cid}").splitlines()]
    meta = events[0]["meta"]
    assert meta["pid"] == proc.pid and meta["uid"] == os.getuid()
    served.ok("rm", cid)


def test_a_container_ending_at_once_is_recorded_and_removed_as_its_monitor(
        served: Lamina) -> None:
    """`run -d --rm` of a container that ends within the monitor's warm window: the
    monitor, a fork of the server's child, records the end and removes the container in
    its own process (adapters/record_exit.py in_monitor), as `lamina-monitor`, not as the
    client the child served, and its deletions are done, not deferred to an answer it never
    gives (nothing renamed is left under <root>/tmp)."""
    proc = subprocess.Popen([LAMINA, "--root", str(served.root), "run", "-d", "--rm",
                             "--network", "none", "busybox", "true"], stdout=subprocess.PIPE,
                            text=True)
    cid = proc.communicate(timeout=30)[0].strip()
    assert proc.returncode == 0 and cid
    deadline = time.monotonic() + 15
    while cid in served.container_ids() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cid not in served.container_ids()
    events = {e["type"]: e["meta"] for e in served.events(f"container={cid}")}
    for kind in ("ContainerExited", "ContainerRemoved"):
        assert events[kind]["argv"] == ["lamina-monitor"], kind
        assert events[kind]["pid"] != proc.pid, kind
    tmp = served.root / "tmp"
    assert not tmp.exists() or [p.name for p in tmp.iterdir() if cid in p.name] == []


def test_pause_unpause_and_a_forwarded_signal(served: Lamina) -> None:
    cid = served.ok("run", "-d", "busybox", "sleep", "60").strip()
    served.ok("pause", cid)
    assert state(served, cid) == "paused"
    served.ok("unpause", cid)
    assert state(served, cid) == "running"
    script = 'trap "echo got TERM; exit 3" TERM; echo ready; while :; do sleep 0.1; done'
    attached = subprocess.Popen([LAMINA, "--root", str(served.root), "run", "--rm", "busybox",
                                 "sh", "-c", script], stdout=subprocess.PIPE, text=True)
    assert attached.stdout.readline() == "ready\n"
    attached.send_signal(signal.SIGTERM)  # client -> command's child -> the container
    assert attached.wait(20) == 3
    assert attached.stdout.read() == "got TERM\n"
    served.ok("rm", "-f", cid)


def test_run_rm_answers_removed_and_releases_the_run_after(served: Lamina) -> None:
    """A served `run --rm` records the exit and the removal before it answers, and leaves
    the run's release (cgroups, view, layer, files) to its child after the answer: the
    name is free at once, the events are the four of a run, and the host ends clean."""
    for _ in range(3):
        out = served("run", "--rm", "--name", "again", "--network", "none", "busybox",
                     "sh", "-c", "exit 4")
        assert out.returncode == 4, out.stderr
    cid = served.events("type=ContainerRemoved")[-1]["data"]["id"]
    assert [e["type"] for e in served.events(f"container={cid}")] == [
        "ContainerCreated", "ContainerStarted", "ContainerExited", "ContainerRemoved"]
    deadline = time.monotonic() + 10
    while (left := _run_of(served.root, cid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert left == []
    assert served.ok("system", "check").startswith("the log and the host agree")


def _run_of(root: Path, cid: str) -> list[str]:
    """What of container `cid`'s run is still on the host: its cgroups, view, layer and
    files (renamed ones too: <root>/tmp)."""
    import glob

    with open("/proc/self/mountinfo") as f:
        found = [line.split()[4] for line in f if cid in line.split()[4]]
    found += glob.glob(f"/sys/fs/cgroup/*/lamina/{cid}")
    found += glob.glob(f"{root}/layers/rw-{cid}") + glob.glob(f"{root}/containers/{cid}")
    return found + glob.glob(f"{root}/tmp/*")


def test_the_python_client_through_the_server(served: Lamina) -> None:
    """LAMINA is the native client `make` builds; pip installs bin/lamina, the Python one.
    Its requests match the native one's (tests/unit/test_client_contract.py); here it
    drives the real server: output, exit code, and the audit naming it."""
    python_client = [sys.executable, "-S", str(Path(__file__).parents[2] / "bin" / "lamina")]
    out = subprocess.run([*python_client, "--root", str(served.root), "run", "--rm", "busybox",
                          "sh", "-c", "echo py; exit 5"], capture_output=True, text=True,
                         timeout=60)
    assert (out.returncode, out.stdout) == (5, "py\n"), out.stderr
    proc = subprocess.Popen([*python_client, "--root", str(served.root), "create", "busybox",
                             "true"], stdout=subprocess.PIPE, text=True)
    cid = proc.communicate(timeout=60)[0].strip()
    assert proc.returncode == 0
    meta = served.events(f"container={cid}")[0]["meta"]
    assert meta["pid"] == proc.pid and meta["argv"][1:] == ["--root", str(served.root),
                                                            "create", "busybox", "true"]
    served.ok("rm", cid)


def test_a_stale_socket_falls_back_to_running_here(tmp_path: Path) -> None:
    import socket

    require_root()

    root = tmp_path / "root"
    root.mkdir()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(root / "cli.sock"))
    stale.close()  # bound, never listening: connect() is refused
    out = subprocess.run([LAMINA, "--root", str(root), "version"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.startswith("lamina ")


def test_lamina_serve_runs_the_fork_server_and_takes_it_down(tmp_path: Path) -> None:
    require_root()
    root = tmp_path / "root"
    root.mkdir()
    serve = subprocess.Popen([LAMINA, "--root", str(root), "serve"],
                             stderr=subprocess.DEVNULL)
    sock = root / "cli.sock"
    deadline = time.monotonic() + 30
    while not (sock.exists() and (root / "lamina.sock").exists()) \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sock.exists(), "lamina serve did not start the fork server"
    proc = subprocess.Popen([LAMINA, "--root", str(root), "events"], stdout=subprocess.PIPE)
    proc.communicate(timeout=30)
    assert proc.returncode == 0
    serve.send_signal(signal.SIGTERM)
    assert serve.wait(20) == 0
    deadline = time.monotonic() + 10
    while sock.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not sock.exists(), "the fork server outlived lamina serve"
    assert leftovers(root, []) == []


def _spares_of(server: int) -> list[int]:
    """The server's live children (its spares, when no command runs)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == server and fields[0] != "Z":
            out.append(int(name))
    return sorted(out)


def _settled_spares(server: int, timeout: float = 20) -> list[int]:
    """The server's children once the same for 0.2 s (its spare monitor's child between
    lives for a moment, commands' children for a little longer)."""
    deadline = time.monotonic() + timeout
    last = _spares_of(server)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = _spares_of(server)
        if now == last and now:
            return now
        last = now
    return last


def test_the_server_keeps_spares_forked_ahead_of_back_to_back_commands(tmp_path: Path) -> None:
    """SPARES children wait for commands: one that follows another at once finds one ready
    while the one forked for it is still getting ready. A child whose command is over comes
    back as one more (adapters/fastpath/reuse.py), never more than that."""
    require_root()
    from adapters.fastpath.forkserver import SPARES

    it = Served(tmp_path)
    try:
        before = _settled_spares(it.server.pid)
        assert SPARES == 2 and len(before) == SPARES
        for _ in range(2):  # back to back: each taken by a spare forked before it came
            it.run("ps")
        after = _settled_spares(it.server.pid)
        assert SPARES <= len(after) <= SPARES + 1 and set(after) - set(before)
    finally:
        it.stop()
