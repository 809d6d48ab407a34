"""`bench/fleet.py --scale`: the fleet's questions with many hosts of long logs each.

One host's log of K events is generated (bench/eventlog.py's Workload: realistic container
lifecycles, few containers left alive) and shipped once as host h000; every further host is
a copy made by the database itself, one statement per host:

    INSERT INTO events (host, ...) SELECT 'hNNN', ... FROM events WHERE host = 'h000'

The chain's hash covers the rows' contents but not their host, so each copy is a valid chain
of its own, and the store's statement trigger checks it as it checks any append (every
row's seq, prev_hash and sha256 recomputed by PostgreSQL): the bulk path keeps the check.
The host's read model is copied the same way (it is what folding the same events gives).
Each host's times coincide with h000's: `fleet events --since T` returns each host's events
after T, hosts times as many as one host's.

At each step (10, 30, 100 hosts by default) it measures `fleet ps` (the query, and the CLI
end to end), `fleet events --since` (the last 1% of the time span, all hosts), `fleet audit
verify --host` (one whole chain) and `fleet replay --at` (the middle of one host's log, no
snapshot, then from a snapshot). Before each host it checks the disk: it stops, saying so,
when the next host would leave less than --keep-free GB free.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from adapters.eventstore.fleet import Fleet
from adapters.eventstore.ship import Shipper
from adapters.eventstore.sqlite_log import EVENT_COLUMNS

GB = 1e9


def clone_host(con: Any, source: str, host: str) -> None:
    """`host` as a copy of `source`'s chain and read model, checked by the store's trigger."""
    with con.transaction():
        con.execute("INSERT INTO hosts (host) VALUES (%s)", (host,))
        con.execute(f"INSERT INTO events (host, {EVENT_COLUMNS}) SELECT %s, {EVENT_COLUMNS} "
                    "FROM events WHERE host = %s ORDER BY seq", (host, source))
        con.execute("INSERT INTO aggregates (host, kind, id, version, name, state, subnet, "
                    "tags, doc) SELECT %s, kind, id, version, name, state, subnet, tags, doc "
                    "FROM aggregates WHERE host = %s ORDER BY ord", (host, source))


def _one(con: Any, sql: str, args: tuple = ()) -> Any:
    row = con.execute(sql, args).fetchone()
    assert row is not None
    return row[0] if len(row) == 1 else row


def _timed(fn: Callable[[], Any], runs: int = 1) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def measure(url: str, repo: str, tmp: str, hosts: int, runs: int) -> dict[str, Any]:
    """The four questions at this size; times in seconds."""
    fleet = Fleet(url)
    try:
        fleet.con.execute("ANALYZE")
        out: dict[str, Any] = {"hosts": hosts}
        out["db_bytes"] = _one(fleet.con, "SELECT pg_database_size(current_database())")
        out["events"] = int(_one(fleet.con, "SELECT sum(last_seq) FROM hosts"))
        out["ps_s"], live = _timed(lambda: len(fleet.containers()), runs)
        out["live"] = live
        env = {**os.environ, "LAMINA_EVENT_STORE": url}
        cli = [sys.executable, "-m", "adapters.cli", "--root", os.path.join(tmp, "cli"),
               "fleet", "ps"]
        out["ps_cli_s"], _ = _timed(lambda: subprocess.run(
            cli, env=env, cwd=repo, check=True, stdout=subprocess.DEVNULL), runs)
        first, last = _one(fleet.con, "SELECT min(at), max(at) FROM events WHERE host = "
                                      "'h000'")
        since = _one(fleet.con, "SELECT at FROM events WHERE host = 'h000' ORDER BY seq DESC "
                                "OFFSET (SELECT last_seq / 100 FROM hosts WHERE host = 'h000') "
                                "LIMIT 1")
        out["since_s"], out["since_rows"] = _timed(
            lambda: sum(1 for _ in fleet.events(None, since=since)))
        host = f"h{hosts - 1:03d}"
        out["verify_s"], verdict = _timed(lambda: fleet.verify(host))
        out["verify_ok"], out["verified"] = verdict.ok, verdict.checked
        middle = _one(fleet.con, "SELECT at FROM events WHERE host = %s AND seq = (SELECT "
                                 "last_seq / 2 FROM hosts WHERE host = %s)", (host, host))
        out["replay_mid_s"], _ = _timed(lambda: fleet.state_at(host, middle))
        fleet.snapshot(host)
        out["replay_snap_s"], _ = _timed(lambda: fleet.state_at(host, last), runs)
        out["span"] = (first, last)
        return out
    finally:
        fleet.close()


def run(cluster: Any, tmp: str, repo: str, per_host: int, steps: list[int],
        make_log: Callable[[str, int], int], runs: int, keep_free: float,
        say: Callable[[str], None]) -> list[dict[str, Any]]:
    """Load step by step, measuring at each; returns the measurements (and why it stopped).
    make_log(root, n): the first host's SQLite log of about n events (bench/fleet.py's,
    few containers left alive)."""
    import psycopg

    template = os.path.join(tmp, "template")
    t0 = time.perf_counter()
    k = make_log(template, per_host)
    say(f"template log: {k:,} events generated in {time.perf_counter() - t0:.0f} s")
    url = cluster.new_database()
    with psycopg.connect(url, autocommit=True) as con:
        for setting in ("max_wal_size = '4GB'", "checkpoint_timeout = '30min'",
                        "work_mem = '256MB'", "maintenance_work_mem = '512MB'"):
            con.execute(f"ALTER SYSTEM SET {setting}")
        con.execute("SELECT pg_reload_conf()")
    t0 = time.perf_counter()
    shipper = Shipper(template, url, "h000", batch=20_000)
    try:
        shipper.ship()
    finally:
        shipper.close()
    say(f"h000 shipped in {time.perf_counter() - t0:.0f} s")
    shutil.rmtree(template, ignore_errors=True)
    results: list[dict[str, Any]] = []
    con = psycopg.connect(url, autocommit=True)
    try:
        size = _one(con, "SELECT pg_database_size(current_database())")
        per_row = size / k
        say(f"one host: {size / GB:.2f} GB, {per_row:,.0f} bytes per event all included")
        loaded, target = 1, max(steps)
        while loaded < target:
            need = per_row * k * 1.1
            free = shutil.disk_usage(cluster.top).free
            if free - need < keep_free * GB:
                results.append({"stopped": f"after {loaded} hosts: the next would leave "
                                f"{(free - need) / GB:.0f} GB free (< {keep_free:.0f} GB)"})
                say(results[-1]["stopped"])
                break
            t0 = time.perf_counter()
            clone_host(con, "h000", f"h{loaded:03d}")
            loaded += 1
            say(f"h{loaded - 1:03d} copied and checked in {time.perf_counter() - t0:.1f} s "
                f"({free / GB:.0f} GB free before)")
            if loaded in steps:
                results.append(measure(url, repo, tmp, loaded, runs))
                say(repr(results[-1]))
        if loaded not in steps:
            results.append(measure(url, repo, tmp, loaded, runs))
            say(repr(results[-1]))
    finally:
        con.close()
    return results


def table(results: list[dict[str, Any]], per_host: int) -> str:
    head = ["hosts", "events", "database", "`fleet ps` query / CLI", "`fleet events --since`",
            "`fleet audit verify --host`", "`fleet replay --at` mid / snapshot"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in results:
        if "stopped" in r:
            continue
        lines.append(
            f"| {r['hosts']} | {r['events']:,} | {r['db_bytes'] / GB:.1f} GB | "
            f"{r['ps_s'] * 1000:,.0f} / {r['ps_cli_s'] * 1000:,.0f} ms ({r['live']:,} live) | "
            f"{r['since_s']:.1f} s ({r['since_rows']:,} events) | "
            f"{r['verify_s']:.1f} s ({r['verified']:,} events) | "
            f"{r['replay_mid_s']:.1f} s / {r['replay_snap_s'] * 1000:,.0f} ms |")
    return "\n".join(lines)
