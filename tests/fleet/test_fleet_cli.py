"""`lamina ship` and `lamina fleet ps / events / audit verify / replay --at` as a user runs
them: real processes against the run's PostgreSQL, one-line errors, exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from tests.fleet.rows import local_rows
from tests.sessions import engine, session

pytestmark = pytest.mark.usefixtures("root_required")  # the CLI is root's only

LAMINA = str(Path(sys.executable).with_name("lamina"))


def lamina(root: Path, *argv: str, store: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "LAMINA_EVENT_STORE": store}
    return subprocess.run([LAMINA, "--root", str(root), *argv], capture_output=True,
                          text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)


def ok(root: Path, *argv: str, store: str = "") -> str:
    out = lamina(root, *argv, store=store)
    assert out.returncode == 0, out
    return out.stdout


def one_line_error(out: subprocess.CompletedProcess) -> str:
    assert out.returncode != 0, out
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("lamina: error: "), out.stderr
    return lines[0]


def test_ship_then_ask_the_fleet(tmp_path: Path, pg_url: str) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    session(str(a))
    session(str(b))
    engine(str(b), ids_from=500).start("web")
    n_a, n_b = (len(local_rows(r)) for r in (a, b))
    assert f"shipped {n_a} events" in ok(a, "ship", "--host", "alpha", store=pg_url)
    assert ok(a, "ship", store=pg_url).startswith("host alpha: shipped 0 events")
    ok(b, "ship", "--event-store", pg_url, "--host", "beta")
    ps = ok(a, "fleet", "ps", store=pg_url).splitlines()
    assert ps[0].split() == ["HOST", "CONTAINER", "ID", "NAME", "IMAGE", "STATUS"]
    assert [line.split()[::2] for line in ps[1:]] == [["beta", "web", "running"]]
    every = [json.loads(line) for line in ok(a, "fleet", "ps", "-a", "--host", "alpha",
                                             "--format", "json", store=pg_url).splitlines()]
    assert sorted((c["host"], c["name"]) for c in every) == [("alpha", "db"), ("alpha", "web")]
    images = ok(a, "fleet", "images", store=pg_url).splitlines()
    assert images[0].split() == ["HOST", "IMAGE", "ID", "TAGS", "LAYERS"]
    assert sorted((line.split()[0], line.split()[2]) for line in images[1:]) == [
        ("alpha", "busybox:latest"), ("alpha", "web:v1"), ("beta", "busybox:latest"),
        ("beta", "web:v1")]
    heads = [json.loads(line) for line in ok(a, "fleet", "hosts", "--format", "json",
                                             store=pg_url).splitlines()]
    assert [(h["host"], h["seq"]) for h in heads] == [("alpha", n_a), ("beta", n_b)]
    events = ok(a, "fleet", "events", "--host", "beta", store=pg_url).splitlines()
    assert len(events) == n_b and all(line.startswith("beta ") for line in events)
    assert "ContainerStarted" in events[-1]
    verified = ok(a, "fleet", "audit", "verify", store=pg_url).splitlines()
    assert verified == [f"host alpha: hash chain intact: {n_a} events verified",
                        f"host beta: hash chain intact: {n_b} events verified"]
    worlds = [json.loads(line) for line in ok(a, "fleet", "replay", "--format", "json",
                                              store=pg_url).splitlines()]
    assert [(w["host"], w["seq"]) for w in worlds] == [("alpha", n_a), ("beta", n_b)]
    [then] = [json.loads(line) for line in ok(a, "fleet", "replay", "--host", "beta",
                                              "--at", "1970-01-02T00:00:00Z", "--format",
                                              "json", store=pg_url).splitlines()]
    assert (then["seq"], then["containers"]) == (0, [])
    text = ok(a, "fleet", "replay", "--host", "beta", store=pg_url)
    assert text.startswith(f"== host beta\nstate after seq {n_b}\n")


def test_refusals_are_one_line(tmp_path: Path, pg_url: str) -> None:
    a = tmp_path / "a"
    assert "no central event store" in one_line_error(lamina(a, "fleet", "ps"))
    assert "only postgresql://" in one_line_error(lamina(a, "ship", store="/var/x"))
    assert "no event log yet" in one_line_error(lamina(a, "ship", store=pg_url))
    assert not a.exists()
    session(str(a))
    assert "no host 'nobody'" in one_line_error(
        lamina(a, "fleet", "ps", "--host", "nobody", store=pg_url))
    ok(a, "ship", "--host", "alpha", store=pg_url)
    assert "ships as host 'alpha'" in one_line_error(
        lamina(a, "ship", "--host", "beta", store=pg_url))
    with psycopg.connect(pg_url, autocommit=True) as con:  # break the stored chain
        con.execute("ALTER TABLE events DISABLE TRIGGER events_append_only")
        con.execute("UPDATE events SET data = '{}' WHERE host = 'alpha' AND seq = 4")
    out = lamina(a, "fleet", "audit", "verify", store=pg_url)
    assert out.returncode == 1
    assert out.stderr.startswith("lamina: error: host alpha: hash chain broken at seq 4: ")


def _shippers_of(root: Path) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except (OSError, ValueError):
            continue
        if b"ship" in argv and str(root).encode() in argv:
            found.append(int(pid))
    return found


def _wait(what, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.mark.kernel
def test_serve_ships_in_the_background_and_stops_its_shipper(tmp_path: Path,
                                                             pg_url: str) -> None:
    root = tmp_path / "r"
    session(str(root))
    proc = subprocess.Popen([LAMINA, "--root", str(root), "serve", "--no-cli-server",
                             "--socket", str(tmp_path / "api.sock"), "--event-store", pg_url],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        _wait(lambda: (root / "host-id").exists())
        host = (root / "host-id").read_text().strip()

        def shipped() -> bool:
            with psycopg.connect(pg_url) as con:
                if con.execute("SELECT to_regclass('hosts')").fetchone() == (None,):
                    return False  # the shipper has not made the schema yet
                row = con.execute("SELECT last_seq FROM hosts WHERE host = %s",
                                  (host,)).fetchone()
            return bool(row) and row[0] == len(local_rows(root))

        _wait(shipped)
        engine(str(root), ids_from=700).create("busybox", ["sh"], name="later")
        _wait(shipped)  # what a command records later follows
        assert _shippers_of(root)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    _wait(lambda: not _shippers_of(root), 10)
