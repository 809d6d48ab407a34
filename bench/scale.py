#!/usr/bin/env python3
"""Scale figures: how lamina's costs grow, at up to 10x the spine's sizes.

    .venv/bin/python bench/scale.py --only log                 # 1M, 3M, 10M events (~1 h)
                                                               # (9 GiB at 10M: --tmp DIR)
    .venv/bin/python bench/scale.py --only log --sizes 100000,300000   # a smoke run
    .venv/bin/python bench/scale.py --only containers          # 10, 100, 1,000 running
    .venv/bin/python bench/scale.py --only layers              # images of 30, 60, 120 layers
    unshare --net -- .venv/bin/python bench/scale.py --only containers,clients
    .venv/bin/python bench/scale.py --only appenders           # the log's write lock (~1 min)

Not part of `make test`. Each section prints a Markdown table of sizes and times:

- log: one log grown to each size in turn, in bulk (BulkLog: the rows an append writes,
  hash chain included, 200,000 to a transaction) but for 10,000 events appended through
  SqliteEventLog.append after a snapshot; at each size a replay with its CPU time, a
  replay from the snapshot, `lamina ps`, `inspect`, `events --since` of the last 1,000
  events and of none, `audit verify`, the ps-style query, the file's size.
- containers: `sleep` containers started with `run -d --network none` through the root's
  fork server (started by the first command), in a network namespace of this run's own;
  at each count, the monitors' memory (their PSS summed: what they cost the machine; RSS
  counts the pages they share with the server), the server's RSS, `lamina ps` and
  `ps -q` wall times. All removed at the end.
- layers: an image of N layers made by N commits, then the time to create and run a
  container of it and to save it.
- clients: 1, 10, 100 threads, each a client of the Docker API running what `docker run
  --rm --network none busybox true` asks (create, start, wait, remove) in a loop, against
  `lamina serve` and against Debian's dockerd (its own socket, data and exec roots,
  --bridge=none --iptables=false), one after the other at each level (--engines: one
  alone, e.g. two builds of lamina in turn from their own venvs): throughput,
  median and p99 latency.

- appenders: N processes at once appending what a `run --rm` records (four appends, 2 ms
  of CPU before each) to one log, each write transaction timed (its wait for the lock,
  its hold); N@CPUS holds them to CPUS CPUs in a cgroup of the run's own (a lock holder
  descheduled as on a loaded machine, without loading this one).

containers and clients: run them in a network namespace of their own (`unshare --net`).

Needs root for containers and layers (overlayfs, namespaces, cgroups).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
for path in (str(REPO), str(REPO / "bench")):
    if path not in sys.path:
        sys.path.insert(0, path)

from eventlog import LIVE, Workload  # noqa: E402

from adapters.eventstore.replay import rebuild, snapshot  # noqa: E402
from adapters.eventstore.sqlite_log import (  # noqa: E402
    EVENT_COLUMNS,
    SqliteEventLog,
    utcnow,
    write_transaction,
)
from events.hashchain import GENESIS, canonical, row_hash  # noqa: E402

LAMINA = str(Path(sys.executable).with_name("lamina"))
ENV = {k: v for k, v in os.environ.items()
       if k not in ("PYTHONDONTWRITEBYTECODE", "LAMINA_ROOT")}
IN_PROCESS = {**ENV, "LAMINA_NO_SERVER": "1"}


def table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---:" for _ in head) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def ms(seconds: float) -> str:
    value = seconds * 1000
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.1f} ms"


def cpu_timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall, CPU of this process, result)."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t0, time.process_time() - c0, out


def wall(argv: list[str], runs: int, env: dict[str, str] = IN_PROCESS) -> float:
    """The median wall time of a command (after one run to warm it up)."""
    subprocess.run(argv, stdout=subprocess.DEVNULL, env=env, check=True)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, env=env, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# --- the log ---------------------------------------------------------------------------------


Encoded = tuple[dict[str, int], str, list[tuple[str, str, int, str]]]


class Feed:
    """The workload of bench/eventlog.py (5,000 events to an append's meta), made and
    encoded in a child process while this one chains, hashes and writes the rows: on two
    cores, the two halves overlap."""

    def __init__(self, wl: Workload) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("fork")  # the child takes `wl` as it is now
        self.requests: Any = ctx.Queue()
        self.out: Any = ctx.Queue(maxsize=16)
        self.child = ctx.Process(target=_produce, args=(wl, self.requests, self.out),
                                 daemon=True)
        self.child.start()

    def batches(self, n: int) -> Iterator[Encoded]:
        """Batches worth exactly `n` events."""
        self.requests.put(n)
        while n > 0:
            batch = self.out.get()
            n -= len(batch[2])
            yield batch

    def close(self) -> None:
        self.requests.put(None)
        self.child.join(30)


def _produce(wl: Workload, requests: Any, out: Any) -> None:
    for n in iter(requests.get, None):
        while n > 0:
            events, expected, meta = wl.batch(min(5000, n))
            n -= len(events)
            out.put((expected, canonical(meta), [
                (e.stream(), e.type_name(), e.SCHEMA, canonical(e.data())) for e in events]))


class BulkLog:
    """Events written straight into a lamina log's events table, as `SqliteEventLog.append`
    writes them (the same canonical texts, the same hash chain: `audit verify` checks it),
    but in transactions of `txn` events, without fsync, and with the events table's
    indexes dropped while it grows and built again (by sorting) before the log is used.
    The read model is left to `rebuild` (a replay), which makes it from the log as a
    migration would. Growing through the log API ran at ~9,900 events/s on an idle machine
    and 1,300-1,650 under load: 10M events took longer than a session could give."""

    def __init__(self, root: str, txn: int = 200_000) -> None:
        log = SqliteEventLog(root)  # creates or migrates the schema
        self.con, self.txn, self.path = log.con, txn, log.path
        self.con.execute("PRAGMA synchronous=OFF")
        self.con.execute("PRAGMA wal_autocheckpoint=1000")  # after each big transaction
        self.con.execute("PRAGMA cache_size=-262144")  # 256 MiB
        self.indexes = self.con.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' "
            "AND sql IS NOT NULL ORDER BY name").fetchall()
        last = self.con.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1"
                                ).fetchone()
        self.seq: int = last[0] if last else 0
        self.prev: str = last[1] if last else GENESIS
        self.versions: dict[str, int] = dict(self.con.execute(
            "SELECT stream, max(version) FROM events GROUP BY stream"))
        self.dropped = False

    def grow(self, feed: Feed, size: int) -> None:
        """Append the workload's events until `size` events."""
        if not self.dropped:
            for name, _ in self.indexes:
                self.con.execute(f"DROP INDEX {name}")
            self.dropped = True
        versions, seq, prev = self.versions, self.seq, self.prev
        sql = f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)"
        batches = feed.batches(size - seq)
        while seq < size:
            rows = []
            end = min(size, seq + self.txn)
            while seq < end:
                expected, meta_text, events = next(batches)
                for stream, want in expected.items():
                    assert versions.get(stream, 0) == want, (stream, want)
                for stream, type_, schema, data in events:
                    version = versions[stream] = versions.get(stream, 0) + 1
                    seq += 1
                    at = utcnow()
                    h = row_hash(prev, seq, stream, version, type_, schema, data, meta_text, at)
                    rows.append((seq, stream, version, type_, schema, data, meta_text, at,
                                 prev, h))
                    prev = h
            with write_transaction(self.con, self.path, sync=False):  # a bench's log
                self.con.executemany(sql, rows)
        self.seq, self.prev = seq, prev

    def index(self) -> None:
        """Build the events table's indexes again (the schema's own statements)."""
        if self.dropped:
            with write_transaction(self.con, self.path, sync=False):  # a bench's log
                for _, sql in self.indexes:
                    self.con.execute(sql)
            self.dropped = False
        self.con.execute("PRAGMA wal_checkpoint(TRUNCATE)")


AFTER_SNAPSHOT = 10_000  # events appended through the log API after each snapshot


def bench_log(tmp: str, sizes: list[int], seed: int, txn: int, grow: str | None = None
              ) -> str:
    """`grow`: an existing root's log to grow on (a workload of another seed: new ids).

    At each size: the log is grown in bulk to size - 10,000 events, its indexes built, its
    read model made by a replay; a snapshot is taken; 10,000 events are appended through
    `SqliteEventLog.append` (5,000 an append, the read model kept as a command keeps it);
    then a replay from that snapshot, replays without, the CLI's reads and `audit verify`."""
    root = grow or os.path.join(tmp, "log")
    os.makedirs(root, exist_ok=True)
    wl, direct = Workload(seed + 2), Workload(seed + 1002)  # in bulk; through the API
    direct.containers = 10**9  # its containers' names: bench-1000000000 on
    log = SqliteEventLog(root)
    for events, expected, meta in wl.seed() + direct.seed():
        log.append(events, expected=expected, meta=meta)
    log.close()
    bulk, feed = BulkLog(root, txn), Feed(wl)
    rows = []
    for size in sizes:
        print(f"[log] growing to {size:,} events", flush=True)
        t0, before = time.perf_counter(), bulk.seq
        bulk.grow(feed, size - AFTER_SNAPSHOT)
        t_gen = time.perf_counter() - t0
        t_index, _, _ = cpu_timed(bulk.index)
        rows.append(_log_row(root, bulk.con, direct, size, bulk.seq - before, t_gen, t_index))
        bulk.seq, bulk.prev = bulk.con.execute(
            "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        print("  " + " | ".join(rows[-1]), flush=True)
    feed.close()
    bulk.con.close()
    head = ["events", "file", "bulk write (index build)", "replay, no snapshot", "its CPU",
            "snapshot", "append 5,000 at this size", "replay from the snapshot (10,000 after)",
            "`ps`", "`inspect`", "`events --since` last 1,000", "`events --since` now",
            "`audit verify`", "ps query", "live containers"]
    return table(head, rows)


def _log_row(root: str, con: Any, wl: Workload, size: int, bulk_n: int, t_gen: float,
             t_index: float) -> list[str]:
    """`wl`: a workload of its own for the appends through the API (streams of its own, so
    that the bulk writer's versions stay right)."""
    rebuild(con, use_snapshots=False)  # the read model, as a replay makes it
    t_snap, _, _ = cpu_timed(lambda: snapshot(con))
    log = SqliteEventLog(root)
    appends = []
    while (seq := log.last_seq()) < size:
        events, expected, meta = wl.batch(min(5000, size - seq))
        t0 = time.perf_counter()
        log.append(events, expected=expected, meta=meta)
        appends.append(time.perf_counter() - t0)
    t_from, _, from_snap = cpu_timed(lambda: rebuild(con, use_snapshots=True))
    assert from_snap.events == AFTER_SNAPSHOT, from_snap
    replays = [cpu_timed(lambda: rebuild(con, use_snapshots=False)) for _ in range(3)]
    t_rebuild, c_rebuild, report = sorted(replays, key=lambda r: r[0])[1]
    assert report.events == size, report
    live = log.containers(LIVE)
    name = live[len(live) // 2].name
    since = con.execute("SELECT at FROM events WHERE seq = ?", (size - 999,)).fetchone()[0]
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    lamina = [LAMINA, "--root", root]
    t_ps = wall([*lamina, "ps"], 5)
    t_inspect = wall([*lamina, "inspect", name], 5)
    t_since = wall([*lamina, "events", "--since", since], 5)
    t_now = wall([*lamina, "events", "--since", now], 5)
    t0 = time.perf_counter()
    verdict = subprocess.run([*lamina, "audit", "verify"], capture_output=True, text=True,
                             env=IN_PROCESS)
    t_audit = time.perf_counter() - t0
    assert verdict.returncode == 0 and f" {size} events" in verdict.stdout, verdict
    ps = []
    for _ in range(20):
        t0 = time.perf_counter()
        opened = SqliteEventLog(root, create=False)
        opened.containers(LIVE)
        opened.close()
        ps.append(time.perf_counter() - t0)
    log.close()
    file = sum(os.path.getsize(os.path.join(root, f)) for f in os.listdir(root)
               if f.startswith("events.db"))
    return [f"{size:,}", f"{file / 2**20:,.0f} MiB",
            f"{ms(t_gen)} ({bulk_n / t_gen:,.0f} events/s; {ms(t_index)})",
            f"{ms(t_rebuild)} ({size / t_rebuild:,.0f} events/s)",
            f"{c_rebuild:.2f} s ({size / c_rebuild:,.0f} events/s)", ms(t_snap),
            ms(statistics.median(appends)), ms(t_from), ms(t_ps), ms(t_inspect),
            ms(t_since), ms(t_now), ms(t_audit), ms(statistics.median(ps)),
            f"{len(live):,} of {report.containers:,}"]


# --- running containers ----------------------------------------------------------------------


class Root:
    """A temporary lamina root driven through the CLI (its fork server by default)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def run(self, *argv: str, env: dict[str, str] = ENV) -> str:
        done = subprocess.run([LAMINA, "--root", self.path, *argv], capture_output=True,
                              text=True, env=env, timeout=600)
        if done.returncode != 0:
            raise SystemExit(f"lamina {' '.join(argv[:4])} failed: {done.stderr.strip()}")
        return done.stdout

    def timed(self, *argv: str, runs: int = 5) -> float:
        return wall([LAMINA, "--root", self.path, *argv], runs, ENV)

    def server_pid(self) -> int | None:
        try:
            with open(os.path.join(self.path, "cli.pid")) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        """Remove every container and stop the root's server."""
        ids = self.run("ps", "-aq", "--no-trunc").split()
        for start in range(0, len(ids), 100):
            subprocess.run([LAMINA, "--root", self.path, "rm", "-f", *ids[start:start + 100]],
                           capture_output=True, env=ENV, timeout=600)
        from adapters.fastpath.forkserver import stop_server

        stop_server(self.path)


def _import_busybox(root: Root, tmp: str) -> None:
    from adapters.storage.busybox import write_busybox_rootfs_tar

    tar = os.path.join(tmp, "busybox.tar")
    with open(tar, "wb") as f:
        write_busybox_rootfs_tar(f)
    root.run("import", tar, "busybox", env=IN_PROCESS)


def _kib(pid: int, field: str) -> int:
    """A field of /proc/PID/smaps_rollup (Pss, Rss), in KiB; 0 if the process is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _monitors(root: Root) -> list[int]:
    """The pids of the root's monitors (adapters/runtime/supervise.py, one interpreter per
    running container, its job naming the root)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "adapters.runtime.supervise" in cmd and f"\"{root.path}\"" in cmd:
            found.append(int(entry))
    return found


def bench_containers(tmp: str, counts: list[int]) -> str:
    root = Root(os.path.join(tmp, "containers"))
    _import_busybox(root, tmp)
    rows = []
    started = 0
    try:
        root.run("ps")  # starts the root's server
        for count in counts:
            print(f"[containers] starting up to {count:,}", flush=True)
            t0 = time.perf_counter()
            while started < count:
                root.run("run", "-d", "--network", "none", "busybox", "sleep", "100000")
                started += 1
            rate = time.perf_counter() - t0
            monitors = _monitors(root)
            pss = sum(_kib(pid, "Pss") for pid in monitors)
            rss = sum(_kib(pid, "Rss") for pid in monitors)
            server = root.server_pid()
            rows.append([f"{count:,}", f"{len(monitors):,}", f"{pss / 1024:,.0f} MiB",
                         f"{pss / 1024 / max(len(monitors), 1):.2f} MiB",
                         f"{rss / 1024 / max(len(monitors), 1):.1f} MiB",
                         f"{_kib(server, 'Rss') / 1024:,.0f} MiB" if server else "-",
                         ms(root.timed("ps")), ms(root.timed("ps", "-q")),
                         ms(rate / max(count - (counts[counts.index(count) - 1]
                                                if counts.index(count) else 0), 1))])
            print("  " + " | ".join(rows[-1]), flush=True)
    finally:
        root.stop()
    head = ["running", "monitors", "monitors' PSS", "PSS each", "RSS each", "server RSS",
            "`lamina ps`", "`lamina ps -q`", "`run -d` each"]
    return table(head, rows)


# --- deep images -----------------------------------------------------------------------------


def bench_layers(tmp: str, depths: list[int]) -> str:
    root = Root(os.path.join(tmp, "layers"))
    _import_busybox(root, tmp)
    rows, have, base = [], 1, "busybox"
    try:
        for depth in depths:
            print(f"[layers] committing up to {depth} layers", flush=True)
            t0 = time.perf_counter()
            commits = 0
            while have < depth:
                root.run("run", "--name", "step", "--network", "none", base, "sh", "-c",
                         f"echo {have} > /layer{have}")
                base = f"deep{have}"
                root.run("commit", "step", base)
                root.run("rm", "step")
                have, commits = have + 1, commits + 1
            per_commit = (time.perf_counter() - t0) / max(commits, 1)
            t_run = root.timed("run", "--rm", "--network", "none", base, "true")
            t_create = root.timed("create", "--network", "none", base, "true", runs=3)
            out = os.path.join(tmp, "deep.tar")
            t_save = root.timed("save", "-o", out, base, runs=3)
            size = os.path.getsize(out)
            os.unlink(out)
            rows.append([str(depth), ms(per_commit), ms(t_create), ms(t_run), ms(t_save),
                         f"{size / 1e6:.1f} MB"])
            print("  " + " | ".join(rows[-1]), flush=True)
    finally:
        root.stop()
    head = ["layers", "run + commit + rm of one more", "`create`", "`run --rm true`",
            "`save`", "archive"]
    return table(head, rows)


# --- concurrent API clients ------------------------------------------------------------------


class UnixHTTP(http.client.HTTPConnection):
    """HTTP/1.1 to a Docker API on a unix socket (the same requests to both engines)."""

    def __init__(self, socket_path: str) -> None:
        super().__init__("localhost", timeout=900)
        self.socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self.socket_path)
        self.sock = sock


def api(conn: UnixHTTP, method: str, url: str, body: dict | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    conn.request(method, "/v1.41" + url, body=data,
                 headers={"Content-Type": "application/json"} if data else {})
    reply = conn.getresponse()
    text = reply.read()
    if reply.status >= 300:
        raise RuntimeError(f"{method} {url}: {reply.status} {text[:200]!r}")
    return json.loads(text) if text else None


def run_rm(socket_path: str) -> float:
    """What `docker run --rm --network none busybox true` asks of the API: create, start,
    wait, remove. Returns its wall time."""
    t0 = time.perf_counter()
    conn = UnixHTTP(socket_path)
    try:
        cid = api(conn, "POST", "/containers/create",
                  {"Image": "busybox", "Cmd": ["true"],
                   "HostConfig": {"NetworkMode": "none"}})["Id"]
        api(conn, "POST", f"/containers/{cid}/start")
        code = api(conn, "POST", f"/containers/{cid}/wait")["StatusCode"]
        api(conn, "DELETE", f"/containers/{cid}")
    finally:
        conn.close()
    if code != 0:
        raise RuntimeError(f"true exited {code}")
    return time.perf_counter() - t0


def load(socket_path: str, clients: int, runs: int
         ) -> tuple[float, list[float], list[str]]:
    """`clients` threads, each a client running `run --rm` in a loop, `runs` in all:
    (throughput in runs/s that succeeded, each one's latency, the errors of the others).
    A failed run is counted and said, not the end of the bench: under load a refusal
    (the log locked past its busy timeout) is one of the figures."""
    from concurrent.futures import ThreadPoolExecutor

    def one(_: int) -> float | str:
        try:
            return run_rm(socket_path)
        except (RuntimeError, OSError, http.client.HTTPException) as err:
            return str(err)[:300]

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(one, range(runs)))
    latencies = [r for r in results if isinstance(r, float)]
    errors = [r for r in results if isinstance(r, str)]
    return len(latencies) / (time.perf_counter() - t0), latencies, errors


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def bench_clients(tmp: str, levels: list[int], per_client: int,
                  engines_asked: Collection[str] = ("lamina", "dockerd")) -> str:
    """lamina serve's Docker API and dockerd's, side by side, in this network namespace
    (`engines_asked`: either alone, e.g. to compare two builds of lamina in turn)."""
    from network import Dockerd, peer_paths_before, remove_peer_leftovers

    work = Path(tmp) / "clients"
    work.mkdir()
    tar = work / "busybox.tar"
    from adapters.storage.busybox import write_busybox_rootfs_tar

    with open(tar, "wb") as f:
        write_busybox_rootfs_tar(f)
    root, sock = work / "root", str(work / "lamina.sock")
    log = open(work / "serve.log", "wb")  # noqa: SIM115 - as long as the server runs
    serve = subprocess.Popen([LAMINA, "--root", str(root), "serve", "--socket", sock],
                             stdout=log, stderr=log, env=ENV)
    made = peer_paths_before()
    docker = None
    engines: dict[str, str] = {}
    try:
        deadline = time.monotonic() + 120
        while not os.path.exists(sock):
            if time.monotonic() > deadline or serve.poll() is not None:
                raise SystemExit("lamina serve did not start")
            time.sleep(0.1)
        subprocess.run(["/usr/bin/docker", "-H", f"unix://{sock}", "import", str(tar),
                        "busybox"], check=True, capture_output=True)
        if "lamina" in engines_asked:
            engines["lamina serve"] = sock
        if "dockerd" in engines_asked and shutil.which("dockerd"):
            docker = Dockerd(work, tar, ["--iptables=false", "--bridge=none"], "scale")
            engines["dockerd 20.10"] = docker.sock
        rows = []
        for clients in levels:
            for name, path in engines.items():
                print(f"[clients] {name}: {clients} clients", flush=True)
                load(path, min(clients, 4), min(clients, 4))  # warm up
                rate, lat, errors = load(path, clients, clients * per_client)
                rows.append([str(clients), name, f"{len(lat):,}", f"{len(errors):,}",
                             f"{rate:.1f} runs/s", ms(statistics.median(lat)) if lat else "-",
                             ms(p99(lat)) if lat else "-"])
                print("  " + " | ".join(rows[-1]), flush=True)
                for error in sorted(set(errors)):
                    print(f"  failed: {error}", flush=True)
    finally:
        if docker is not None:
            docker.close()
        serve.terminate()
        serve.wait(60)
        log.close()
        remove_peer_leftovers(made)
    head = ["clients", "engine", "runs", "failed", "throughput", "median latency",
            "p99 latency"]
    return table(head, rows)


# --- concurrent appenders --------------------------------------------------------------------

APPENDER_WORK = 0.002  # CPU seconds an appender spends between its appends (its command)


def _appender(root: str, index: int, runs: int, out: str) -> None:
    """One process appending what a `run --rm` records (created, started, exited, removed:
    four appends) `runs` times, each write transaction timed: its wait for the lock
    (BEGIN IMMEDIATE, and the writers' queue before it where there is one) and its hold
    (to the end of COMMIT)."""
    from contextlib import contextmanager

    from adapters.eventstore import sqlite_log
    from core.errors import StoreError
    from events import types as ev

    waits: list[float] = []
    holds: list[float] = []
    plain = sqlite_log.write_transaction

    @contextmanager
    def timed(con: Any, path: str, sync: bool = True) -> Iterator[None]:
        t0 = time.perf_counter()
        with plain(con, path, sync):
            t1 = time.perf_counter()
            waits.append(t1 - t0)
            yield
        holds.append(time.perf_counter() - t1)

    sqlite_log.write_transaction = timed
    log = sqlite_log.SqliteEventLog(root)
    refused = 0
    meta = {"uid": 0, "user": "root", "argv": ["run", "--rm", "busybox", "true"]}
    for run in range(runs):
        cid = f"{index:032x}{run:032x}"
        stream = f"container:{cid}"
        steps = [ev.ContainerCreated(id=cid, name=f"a{index}-{run}", image="i" * 64,
                                     cmd=["true"]),
                 ev.ContainerStarted(id=cid, pid=1000 + run),
                 ev.ContainerExited(id=cid, exit_code=0), ev.ContainerRemoved(id=cid)]
        for version, event in enumerate(steps):
            end = time.process_time() + APPENDER_WORK
            while time.process_time() < end:
                pass
            try:
                log.append([event], expected={stream: version}, meta=meta)
            except StoreError:
                refused += 1
                break
    with open(out, "w") as f:
        json.dump({"waits": waits, "holds": holds, "refused": refused}, f)


class CpuLimit:
    """A cgroup of this run's own holding its processes to `cpus` CPUs (cgroup v1's cpu
    controller or v2's cpu.max): a holder of the lock is then descheduled as on a machine
    loaded far past its cores, without loading this one. Removed by close()."""

    def __init__(self, cpus: float) -> None:
        v1 = "/sys/fs/cgroup/cpu"
        self.base = v1 if os.path.exists(f"{v1}/cpu.cfs_quota_us") else "/sys/fs/cgroup"
        self.path = f"{self.base}/lamina-bench-{os.getpid()}"
        os.mkdir(self.path)
        quota = str(int(cpus * 100_000))
        if self.base == v1:
            Path(self.path, "cpu.cfs_period_us").write_text("100000")
            Path(self.path, "cpu.cfs_quota_us").write_text(quota)
        else:
            Path(self.path, "cpu.max").write_text(f"{quota} 100000")
        Path(self.path, "cgroup.procs").write_text(str(os.getpid()))

    def close(self) -> None:
        Path(self.base, "cgroup.procs").write_text(str(os.getpid()))
        os.rmdir(self.path)


def bench_appenders(tmp: str, levels: list[str], runs: int) -> str:
    """`levels`: N or N@CPUS, N processes appending at once (held to CPUS CPUs)."""
    rows = []
    for level in levels:
        n, _, cpus = level.partition("@")
        procs = int(n)
        root = os.path.join(tmp, f"appenders-{level}")
        SqliteEventLog(root).close()
        print(f"[appenders] {procs} processes" + (f" on {cpus} CPU" if cpus else ""),
              flush=True)
        limit = CpuLimit(float(cpus)) if cpus else None
        try:
            t0 = time.perf_counter()
            pids = []
            for index in range(procs):
                pid = os.fork()
                if pid == 0:
                    try:
                        _appender(root, index, runs, f"{root}/out.{index}")
                    finally:
                        os._exit(0)
                pids.append(pid)
            for pid in pids:
                os.waitpid(pid, 0)
            elapsed = time.perf_counter() - t0
        finally:
            if limit is not None:
                limit.close()
        waits: list[float] = []
        holds: list[float] = []
        refused = 0
        for index in range(procs):
            with open(f"{root}/out.{index}") as f:
                done = json.load(f)
            waits += done["waits"]
            holds += done["holds"]
            refused += done["refused"]
        rows.append([str(procs), cpus or "2 (all)", f"{len(holds):,}", str(refused),
                     f"{len(holds) / elapsed:,.0f}/s", ms(statistics.median(waits)),
                     ms(p99(waits)), ms(max(waits)), ms(statistics.median(holds)),
                     ms(p99(holds)), ms(max(holds)), f"{sum(holds) / elapsed:.0%}"])
        print("  " + " | ".join(rows[-1]), flush=True)
    head = ["appenders", "CPUs", "appends", "refused", "rate", "wait median", "wait p99",
            "wait max", "hold median", "hold p99", "hold max", "lock busy"]
    return table(head, rows)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="log,containers,layers,appenders,clients")
    p.add_argument("--sizes", default="1000000,3000000,10000000", help="log sizes")
    p.add_argument("--counts", default="10,100,1000", help="running containers")
    p.add_argument("--depths", default="30,60,120", help="image depths")
    p.add_argument("--clients", default="1,10,100", help="concurrent API clients")
    p.add_argument("--per-client", type=int, default=3, help="run --rm each client does")
    p.add_argument("--engines", default="lamina,dockerd", help="clients: whose API to load")
    p.add_argument("--appenders", default="20,100@0.3",
                   help="appenders: N processes at once, or N@CPUS held to CPUS CPUs")
    p.add_argument("--txn", type=int, default=200_000, help="log: events per bulk transaction")
    p.add_argument("--grow", metavar="ROOT",
                   help="log: grow this root's log (kept) instead of a new one; with a "
                        "--seed other than the one that wrote it")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--tmp", help="where to make the temp roots (default: $TMPDIR or /tmp)")
    args = p.parse_args(argv)
    only = set(args.only.split(","))
    if only - {"log"} and os.geteuid() != 0:
        raise SystemExit("containers and layers need root")
    tmp = tempfile.mkdtemp(prefix="lamina-scale-", dir=args.tmp)
    out = []
    try:
        if "log" in only:
            sizes = [int(s) for s in args.sizes.split(",")]
            out.append(("The log", bench_log(tmp, sizes, args.seed, args.txn, args.grow)))
        if "containers" in only:
            counts = [int(s) for s in args.counts.split(",")]
            out.append(("Running containers", bench_containers(tmp, counts)))
        if "layers" in only:
            depths = [int(s) for s in args.depths.split(",")]
            out.append(("Deep images", bench_layers(tmp, depths)))
        if "appenders" in only:
            out.append(("Concurrent appenders to one log",
                        bench_appenders(tmp, args.appenders.split(","), args.per_client)))
        if "clients" in only:
            levels = [int(s) for s in args.clients.split(",")]
            out.append(("Concurrent API clients running `docker run --rm`",
                        bench_clients(tmp, levels, args.per_client,
                                      set(args.engines.split(",")))))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load = os.getloadavg()
    print(f"\n`{' '.join(['bench/scale.py', *(argv or sys.argv[1:])])}`: {os.cpu_count()} "
          f"CPUs, load average {load[0]:.2f} / {load[1]:.2f} (1 / 5 min) at the end\n")
    for title, text in out:
        print(f"### {title}\n\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
