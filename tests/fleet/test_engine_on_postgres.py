"""A root whose engine keeps its log in PostgreSQL (`lamina --event-store postgresql://...`):
containers run, stop, end by themselves (the monitor records the exit) and are removed,
every event lands in the store as the root's host's chain and nothing in a SQLite file;
`ps`, `inspect`, `events`, `audit verify` and `replay --at` answer from there, and a second
root on the same database is another host. Real processes, a real cluster (tests/pgcluster.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adapters.eventstore.fleet import Fleet
from tests.conftest import require_root
from tests.fleet.test_fleet_cli import one_line_error
from tests.kernel.runtime_env import busybox_tar, leftovers

pytestmark = pytest.mark.kernel

LAMINA = str(Path(sys.executable).with_name("lamina"))


def lamina(root: Path, *argv: str, url: str | None = None, env_url: str = ""
           ) -> subprocess.CompletedProcess:
    """`--event-store url` before the command when given; $LAMINA_EVENT_STORE = env_url."""
    env = {**os.environ, "LAMINA_EVENT_STORE": env_url}
    store = ["--event-store", url] if url else []
    return subprocess.run([LAMINA, "--root", str(root), *store, *argv], capture_output=True,
                          text=True, timeout=120, env=env, stdin=subprocess.DEVNULL)


def ok(root: Path, *argv: str, **kw: str) -> str:
    out = lamina(root, *argv, **kw)
    assert out.returncode == 0, out
    return out.stdout


def test_the_engine_runs_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    require_root()
    a, b = tmp_path / "a", tmp_path / "b"
    tar = str(busybox_tar(tmp_path))
    ok(a, "import", tar, "busybox", url=pg_url)
    assert not (a / "events.db").exists() and (a / "event-store").exists()
    host = (a / "host-id").read_text().strip()
    ids: list[str] = []
    try:
        ids.append(ok(a, "run", "-d", "--name", "web", "--network", "none", "busybox",
                      "sleep", "300", url=pg_url).strip())
        # the monitor records this one's end by itself, into PostgreSQL ($LAMINA_EVENT_STORE)
        ids.append(ok(a, "run", "-d", "--name", "quick", "--network", "none", "busybox",
                      "sh", "-c", "exit 3", env_url=pg_url).strip())
        deadline = time.monotonic() + 60
        while "stopped (3)" not in ok(a, "ps", "-a", env_url=pg_url):
            assert time.monotonic() < deadline, "the monitor recorded no exit"
            time.sleep(0.2)
        ps = ok(a, "ps", url=pg_url).splitlines()
        assert len(ps) == 2 and ps[1].split()[-1] == "web" and "running" in ps[1]
        assert ok(a, "inspect", "-f", "{{.State.Status}} {{.Name}}", "web",
                  url=pg_url).split() == ["running", "/web"]
        ok(a, "stop", "-t", "0", "web", url=pg_url)
        ok(a, "rm", "web", "quick", url=pg_url)
        assert ok(a, "ps", "-a", url=pg_url).splitlines()[1:] == []

        events = [json.loads(line) for line in
                  ok(a, "events", "--format", "json", url=pg_url).splitlines()]
        types = [e["type"] for e in events]
        assert types.count("ContainerRemoved") == 2 and "ContainerStopped" in types
        exited = [e for e in events if e["type"] == "ContainerExited"]
        assert [e["meta"]["argv"] for e in exited] == [["lamina-monitor"]]
        def selected(*filters: str) -> list[tuple[str, str]]:
            argv = [w for f in filters for w in ("--filter", f)]
            out = ok(a, "events", "--format", "json", *argv, url=pg_url)
            return [(e["stream"], e["type"]) for e in map(json.loads, out.splitlines())]

        web = f"container:{ids[0]}"  # by name, then by id prefix, as SQLite's filters
        assert selected("container=web") == [(e["stream"], e["type"]) for e in events
                                             if e["stream"] == web]
        assert selected(f"container={ids[0][:8]}") == selected("container=web")
        assert selected("event=die", "container=web") == [(web, "ContainerStopped")]
        assert "filter network=" in one_line_error(
            lamina(a, "events", "--filter", "network=x", url=pg_url))
        assert ok(a, "audit", "verify", url=pg_url).strip() == \
            f"hash chain intact: {len(events)} events verified"
        fleet = Fleet(pg_url)
        try:  # the store's own view of it: the host's chain, whole and verified
            verdict = fleet.verify(host)
            assert verdict.ok and verdict.checked == len(events)
            assert [rec.seq for _, rec in fleet.events(host)] == [e["seq"] for e in events]
        finally:
            fleet.close()
        started = next(e["seq"] for e in events if e["type"] == "ContainerStarted")
        then = json.loads(ok(a, "replay", "--at", str(started), "--format", "json",
                             url=pg_url))
        assert [c["name"] for c in then["containers"]] == ["web"]
        assert not (a / "events.db").exists()

        # a second root on the same database is another host, with a chain of its own
        ok(b, "import", tar, "busybox", env_url=pg_url)
        assert (b / "host-id").read_text().strip() != host
        assert ok(b, "ps", "-a", env_url=pg_url).splitlines()[1:] == []
        hosts = ok(a, "fleet", "hosts", "--format", "json", env_url=pg_url).splitlines()
        assert len(hosts) == 2
    finally:
        for cid in ids:
            lamina(a, "rm", "-f", cid, url=pg_url)
    assert leftovers(a, ids) == []


def test_refusals_name_where_the_log_is(tmp_path: Path, pg_url: str) -> None:
    require_root()
    pg, lite = tmp_path / "pg", tmp_path / "lite"
    ok(pg, "volume", "create", "vol", url=pg_url)
    assert "nothing to ship" in one_line_error(lamina(pg, "ship", env_url=pg_url))
    assert "keeps its event log in PostgreSQL" in one_line_error(lamina(pg, "volume", "ls"))
    assert "the API server reads SQLite's log" in one_line_error(
        lamina(pg, "serve", "--socket", str(tmp_path / "api.sock"), env_url=pg_url))
    ok(lite, "volume", "create", "vol")
    assert (lite / "events.db").exists()
    assert "keeps its event log in SQLite" in one_line_error(
        lamina(lite, "volume", "ls", url=pg_url))
    assert "postgresql://" in one_line_error(lamina(lite, "ps", url="/tmp/x"))
    # $LAMINA_EVENT_STORE names the central store for a SQLite root: its log stays local
    assert ok(lite, "volume", "ls", env_url=pg_url).split()[-1] == "vol"


def test_the_resolver_follows_a_root_whose_log_is_in_postgresql(
        tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The DNS resolver's view of such a root: the same zones as from a SQLite log holding
    the same events, read again only when the host's head moved, gone with the root's mark."""
    from adapters.eventstore.postgres import PostgresEventLog
    from adapters.eventstore.where import mark
    from adapters.network import resolver
    from tests.unit.test_resolver import Root

    monkeypatch.setenv("LAMINA_EVENT_STORE", pg_url)
    lite = Root(tmp_path / "lite")
    pg = Root.__new__(Root)
    pg.path, pg._nets = str(tmp_path / "pg"), {}
    os.makedirs(pg.path)
    (tmp_path / "pg" / "host-id").write_text("dns-host\n")
    pg.log = PostgresEventLog(pg_url, "dns-host")
    mark(pg.path, pg_url)
    view = resolver.view_of(pg.path)
    try:
        assert isinstance(view, resolver.PostgresView)
        for r in (lite, pg):
            r.network("front", 41)
            r.run("a" * 64, "web", "front", "127.41.0.2", "www")
        assert view.changed() and not view.changed()
        assert view.zones == resolver.zones(resolver.connect(lite.path))
        pg.run("b" * 64, "api", "front", "127.41.0.3")
        assert view.changed() and "api" in next(iter(view.zones.values())).records
        assert not view.gone()
        os.unlink(os.path.join(pg.path, "event-store"))
        assert view.gone()
    finally:
        view.close()
        pg.log.close()
        lite.log.close()
