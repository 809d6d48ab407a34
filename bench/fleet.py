#!/usr/bin/env python3
"""Benchmarks of the fleet's central store: append concurrency, shipping, fleet queries.

    .venv/bin/python bench/fleet.py                      # the default sizes (a few minutes)
    .venv/bin/python bench/fleet.py --quick              # a smoke run
    .venv/bin/python bench/fleet.py --json out.json
    .venv/bin/python bench/fleet.py --scale              # 10/30/100 hosts x 1M events each

A temporary PostgreSQL cluster (tests/pgcluster.py: Debian's binaries, a unix socket in a
temporary directory, fsync on here, unlike the tests') and temporary roots; all removed at
the end. Events come from bench/eventlog.py's Workload (realistic container lifecycles).

1. Appends to one host's chain from T threads at once, each with its own connection:
   `lock` (the host's head row FOR UPDATE) against `serializable` (SERIALIZABLE
   transactions, redone on a serialization failure): appends/s, latency, redone ones.
2. Shipping: one host's log of N events shipped into an empty store (events/s), then three
   hosts' logs shipped at once by three `lamina ship` processes (the central ingest rate).
3. 100 simulated hosts (one generated log shipped under 100 host ids, K events each), then
   the fleet's questions: `fleet ps` (the query, and the CLI end to end), `fleet replay --at`
   one host (with and without a snapshot), `fleet audit verify` one host, `fleet events`.
4. As root: three roots as three real hosts, each running `run --rm --network none busybox
   true` in a loop while `lamina ship --follow` ships: how long after a command ends its
   events are in the store.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
for path in (REPO, REPO / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from eventlog import Workload  # noqa: E402

from adapters.eventstore.fleet import Fleet  # noqa: E402
from adapters.eventstore.postgres import PostgresEventLog  # noqa: E402
from adapters.eventstore.ship import Shipper  # noqa: E402
from adapters.eventstore.sqlite_log import SqliteEventLog  # noqa: E402
from tests.pgcluster import Cluster, pg_bin  # noqa: E402

ROWS: list[list[str]] = []
RESULTS: dict[str, Any] = {}


def row(section: str, what: str, n: int | str, median_ms: float | None, rate: str = "",
        note: str = "") -> None:
    med = "" if median_ms is None else f"{median_ms:,.1f} ms"
    ROWS.append([section, what, f"{n:,}" if isinstance(n, int) else n, med, rate, note])
    print(f"  {what}: n={n} median={med} {rate} {note}".rstrip(), flush=True)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def median_ms(fn: Callable[[], Any], runs: int) -> float:
    return statistics.median(timed(fn)[0] for _ in range(runs)) * 1000


# --- 1. append concurrency ------------------------------------------------------------------


def _appender(log: PostgresEventLog, wl: Workload, appends: int, out: list[float],
              prefix: str) -> None:
    """One thread's appends: its own containers, named apart from the other threads'."""
    for _ in range(appends):
        events, expected, meta = wl.command()
        events = [replace(e, name=f"{prefix}{e.name}") if e.type_name() == "ContainerCreated"
                  else e for e in events]
        t0 = time.perf_counter()
        log.append(events, expected=expected, meta=meta)
        out.append(time.perf_counter() - t0)


def bench_concurrency(cluster: Cluster, threads: int, appends: int) -> None:
    print(f"\n[1] {threads} threads x {appends} appends on one host's chain", flush=True)
    for mode in ("lock", "serializable"):
        url = cluster.new_database()
        logs = [PostgresEventLog(url, "bench", concurrency=mode) for _ in range(threads)]
        loads = [Workload(seed=100 + n) for n in range(threads)]
        for log, wl in zip(logs, loads, strict=True):
            for events, expected, meta in wl.seed(1):
                log.append(events, expected=expected, meta=meta)
        per_thread: list[list[float]] = [[] for _ in logs]
        workers = [threading.Thread(target=_appender, args=(log, wl, appends, out, f"t{n}-"))
                   for n, (log, wl, out) in enumerate(zip(logs, loads, per_thread,
                                                          strict=True))]
        t0 = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        wall = time.perf_counter() - t0
        latencies = [t for out in per_thread for t in out]
        redone = sum(log.retries for log in logs)
        verdict = logs[0].verify()
        for log in logs:
            log.close()
        assert verdict.ok, verdict
        n = threads * appends
        p99 = sorted(latencies)[int(0.99 * (len(latencies) - 1))] * 1000
        row("1", f"append, {mode}", n, statistics.median(latencies) * 1000,
            f"{n / wall:,.0f} appends/s", f"p99 {p99:,.1f} ms; {redone} redone")
        RESULTS[f"append_{mode}"] = {"appends": n, "per_s": n / wall, "redone": redone,
                                     "median_ms": statistics.median(latencies) * 1000,
                                     "p99_ms": p99}


# --- 2. shipping ----------------------------------------------------------------------------


def make_log(root: str, n: int, seed: int, *, keep: float = 0.01, batch: int = 500) -> int:
    """A host's SQLite log of about n events, appended as commands (`batch` events per
    append); `keep`: the share of containers left alive (bench/eventlog.py's Workload)."""
    wl = Workload(seed, keep=keep)
    log = SqliteEventLog(root)
    for events, expected, meta in wl.seed():
        log.append(events, expected=expected, meta=meta)
    while log.last_seq() < n:
        events, expected, meta = wl.batch(min(batch, n - log.last_seq()))
        log.append(events, expected=expected, meta=meta)
    count = log.last_seq()
    log.close()
    return count


def ship_once(root: str, url: str, host: str) -> int:
    shipper = Shipper(root, url, host)
    try:
        return shipper.ship().events
    finally:
        shipper.close()


def bench_ship(cluster: Cluster, tmp: str, n: int) -> None:
    print(f"\n[2] shipping logs of {n:,} events", flush=True)
    roots = [os.path.join(tmp, f"real{i}") for i in range(3)]
    counts = [make_log(r, n, seed=i + 1) for i, r in enumerate(roots)]
    url = cluster.new_database()
    ship_once(roots[0], url, "warm-up")  # the schema made, caches warm
    url = cluster.new_database()
    t, sent = timed(lambda: ship_once(roots[0], url, "real0"))
    row("2", "ship one host's log into the store", sent, None, f"{sent / t:,.0f} events/s",
        f"{t:.1f} s, batches of 2,000")
    RESULTS["ship_one"] = {"events": sent, "seconds": t, "per_s": sent / t}
    url = cluster.new_database()
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "adapters.cli", "--root", root, "ship",
                               "--host", f"real{i}", "--event-store", url],
                              stdout=subprocess.DEVNULL, cwd=REPO)
             for i, root in enumerate(roots)]
    assert all(p.wait() == 0 for p in procs)
    wall = time.perf_counter() - t0
    total = sum(counts)
    row("2", "3 hosts ship at once (3 `lamina ship` processes)", total, None,
        f"{total / wall:,.0f} events/s", f"{wall:.1f} s for the three")
    RESULTS["ship_three"] = {"events": total, "seconds": wall, "per_s": total / wall}


# --- 3. 100 simulated hosts -----------------------------------------------------------------


def bench_fleet(cluster: Cluster, tmp: str, hosts: int, k: int, runs: int) -> None:
    print(f"\n[3] {hosts} simulated hosts x {k:,} events", flush=True)
    template = os.path.join(tmp, "template")
    k = make_log(template, k, seed=42)
    url = cluster.new_database()
    ship_once(template, url, "warm-up-sim")
    names = [f"sim{i:03d}" for i in range(hosts)]
    t0 = time.perf_counter()
    jobs = 4  # four shippers at a time, as hosts would ship in parallel
    chunks = [names[i::jobs] for i in range(jobs)]
    workers = [threading.Thread(target=lambda c=chunk: [ship_once(template, url, h) for h in c])
               for chunk in chunks]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.perf_counter() - t0
    row("3", f"ingest {hosts} hosts' logs (4 shippers at a time)", hosts * k, None,
        f"{hosts * k / wall:,.0f} events/s", f"{wall:.1f} s")
    RESULTS["ingest_sim"] = {"hosts": hosts, "events_per_host": k, "seconds": wall,
                             "per_s": hosts * k / wall}
    fleet = Fleet(url)
    try:
        live = len(fleet.containers())
        ms = median_ms(lambda: fleet.containers(), runs)
        row("3", "fleet ps: the query (every host's live containers)", runs, ms, "",
            f"{live:,} containers on {hosts + 1} hosts")
        RESULTS["fleet_ps_query_ms"] = ms
        ms_all = median_ms(lambda: fleet.containers(every=True), runs)
        row("3", "fleet ps -a: the query", runs, ms_all, "",
            f"{len(fleet.containers(every=True)):,} containers")
        env = {**os.environ, "LAMINA_EVENT_STORE": url}
        cli = [sys.executable, "-m", "adapters.cli", "--root", os.path.join(tmp, "cli"),
               "fleet", "ps"]
        ms_cli = median_ms(lambda: subprocess.run(cli, env=env, cwd=REPO, check=True,
                                                  stdout=subprocess.DEVNULL), runs)
        row("3", "`lamina fleet ps` end to end (a fresh interpreter)", runs, ms_cli)
        RESULTS["fleet_ps_cli_ms"] = ms_cli
        host = names[hosts // 2]
        events = list(fleet.events(host))
        middle = events[len(events) // 2][1].at
        ms_replay = median_ms(lambda: fleet.state_at(host, middle), max(3, runs // 3))
        row("3", "fleet replay --at (the middle) --host, no snapshot", k // 2, ms_replay)
        fleet.snapshot(host)
        ms_now = median_ms(lambda: fleet.state_at(host, None), runs)
        row("3", "fleet replay --host now, from a snapshot at the end", 1, ms_now)
        RESULTS["replay_mid_ms"], RESULTS["replay_snapshot_ms"] = ms_replay, ms_now
        ms_verify = median_ms(lambda: fleet.verify(host), max(3, runs // 3))
        row("3", "fleet audit verify --host (one host's chain)", k, ms_verify,
            f"{k / ms_verify * 1000:,.0f} events/s")
        RESULTS["verify_ms"] = ms_verify
        ms_events = median_ms(lambda: sum(1 for _ in fleet.events(host, since=middle)),
                              max(3, runs // 3))
        row("3", "fleet events --host --since (the middle): read and decoded", k // 2,
            ms_events)
        RESULTS["events_half_ms"] = ms_events
        size = fleet.con.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        RESULTS["db_bytes"] = size
        print(f"  the database: {size / 2**20:,.0f} MiB for {(hosts + 1) * k:,} events")
    finally:
        fleet.close()


# --- 4. three real hosts running containers ---------------------------------------------------


def _lamina(root: str, *argv: str) -> None:
    env = {**os.environ, "LAMINA_NO_SERVER": "1"}
    subprocess.run([sys.executable, "-m", "adapters.cli", "--root", root, *argv], env=env,
                   cwd=REPO, check=True, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)


def _head(con: Any, host: str) -> int:
    row = con.execute("SELECT last_seq FROM hosts WHERE host = %s", (host,)).fetchone()
    return row[0] if row else 0


def _real_host(root: str, url: str, host: str, runs: int, lags: list[float]) -> None:
    """`run --rm --network none busybox true` again and again; after each, how long from
    the run's last event's time (`at`, this machine's clock) until the store holds it (the
    follower polls every 0.1 s)."""
    import sqlite3
    from datetime import datetime

    import psycopg

    local = sqlite3.connect(os.path.join(root, "events.db"))
    with psycopg.connect(url, autocommit=True) as con:
        for _ in range(runs):
            _lamina(root, "run", "--rm", "--network", "none", "busybox", "true")
            want, at = local.execute("SELECT seq, at FROM events ORDER BY seq DESC "
                                     "LIMIT 1").fetchone()
            while _head(con, host) < want:
                time.sleep(0.002)
            recorded = datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()
            lags.append(time.time() - recorded)
    local.close()


def bench_real(cluster: Cluster, tmp: str, runs: int) -> None:
    """Three roots as three hosts, each running containers while `lamina ship --follow`
    ships: the lag from a command's end to its events in the store."""
    print(f"\n[4] 3 real hosts, {runs} containers each, shipping as they run", flush=True)
    from adapters.storage.busybox import write_busybox_rootfs_tar

    tar = os.path.join(tmp, "busybox.tar")
    with open(tar, "wb") as f:
        write_busybox_rootfs_tar(f)
    url = cluster.new_database()
    roots = [os.path.join(tmp, f"host{n}") for n in range(3)]
    for n, root in enumerate(roots):
        _lamina(root, "import", tar, "busybox")
        _lamina(root, "ship", "--host", f"host{n}", "--event-store", url)
    shippers = [subprocess.Popen([sys.executable, "-m", "adapters.cli", "--root", root,
                                  "ship", "--follow", "--interval", "0.1", "--event-store",
                                  url], cwd=REPO, stdin=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL) for root in roots]
    lags: list[list[float]] = [[], [], []]
    try:
        t0 = time.perf_counter()
        workers = [threading.Thread(target=_real_host, args=(root, url, f"host{n}", runs,
                                                             lags[n]))
                   for n, root in enumerate(roots)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        wall = time.perf_counter() - t0
    finally:
        for proc in shippers:
            proc.terminate()
            proc.wait(30)
    every = sorted(x for lag in lags for x in lag)
    fleet = Fleet(url)
    try:
        events = sum(h.head.seq for h in fleet.hosts())
        assert all(fleet.verify(f"host{n}").ok for n in range(3))
    finally:
        fleet.close()
    p95 = every[int(0.95 * (len(every) - 1))] * 1000
    row("4", "a `run --rm`'s last event recorded, to the store (3 hosts at once)", len(every),
        statistics.median(every) * 1000, f"{3 * runs / wall:,.1f} runs/s",
        f"p95 {p95:,.0f} ms; {events:,} events shipped; follower polls every 0.1 s")
    RESULTS["real_lag_ms"] = {"median": statistics.median(every) * 1000, "p95": p95}


def table() -> str:
    head = ["#", "benchmark", "n", "median", "throughput", "notes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in ROWS])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--appends", type=int, default=250)
    ap.add_argument("--events", type=int, default=50_000, help="each real host's log")
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--host-events", type=int, default=5_000, help="each simulated host's")
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--real-runs", type=int, default=20,
                    help="containers each of the 3 real hosts runs (root; 0: skip)")
    ap.add_argument("--scale", action="store_true",
                    help="only the fleet's questions at 10/30/100 hosts of --scale-events "
                         "each (bench/fleet_scale.py)")
    ap.add_argument("--scale-events", type=int, default=1_000_000)
    ap.add_argument("--scale-steps", default="10,30,100")
    ap.add_argument("--keep-free", type=float, default=12.0, help="GB left free on the disk")
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.scale:
        return scale(args)
    if args.quick:
        args.appends, args.events, args.hosts, args.host_events, args.runs = \
            50, 5_000, 10, 1_000, 5
        args.real_runs = min(args.real_runs, 5)
    bindir = pg_bin()
    if bindir is None:
        print("needs Debian's postgresql (make deb)", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the cleanup below still runs
    tmp = tempfile.mkdtemp(prefix="lamina-bench-fleet-")
    cluster = Cluster(bindir, durable=True)
    try:
        cluster.init()
        cluster.start()
        bench_concurrency(cluster, args.threads, args.appends)
        bench_ship(cluster, tmp, args.events)
        bench_fleet(cluster, tmp, args.hosts, args.host_events, args.runs)
        if os.geteuid() == 0 and args.real_runs:
            bench_real(cluster, tmp, args.real_runs)
    finally:
        cluster.remove()
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n" + table())
    if args.json:
        with open(args.json, "w") as f:
            json.dump(RESULTS, f, indent=2)
    return 0


def scale(args: argparse.Namespace) -> int:
    import fleet_scale

    bindir = pg_bin()
    if bindir is None:
        print("needs Debian's postgresql (make deb)", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = tempfile.mkdtemp(prefix="lamina-bench-scale-")
    cluster = Cluster(bindir)  # fsync off: a load bench, not a durability one
    results: list[dict[str, Any]] = []
    try:
        cluster.init()
        cluster.start()
        steps = [int(s) for s in args.scale_steps.split(",")]
        results = fleet_scale.run(cluster, tmp, str(REPO), args.scale_events, steps,
                                  lambda root, n: make_log(root, n, 7, keep=0.0005,
                                                           batch=2000),
                                  max(1, args.runs // 5), args.keep_free,
                                  lambda line: print(line, flush=True))
    finally:
        cluster.remove()
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n" + fleet_scale.table(results, args.scale_events))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
