#!/usr/bin/env python3
"""Benchmarks of lamina's event log: appends, replay, read-model queries and CLI start-up.

    .venv/bin/python bench/eventlog.py               # the full run: a 1,000,000-event log
    .venv/bin/python bench/eventlog.py --quick       # a smoke run: 50,000 events, fewer runs
    .venv/bin/python bench/eventlog.py --events 200000 --json out.json

Every benchmark runs in a fresh temporary root (under --tmp, on the disk being measured) and
prints one markdown table, then each target next to its measured value with PASS/MISS. If the
replay misses its target, a cProfile of one rebuild is printed too. See bench/README.md.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from adapters.eventstore.replay import read_model_rows, rebuild, snapshot, state_at  # noqa: E402
from adapters.eventstore.sqlite_log import ReadModel, SqliteEventLog  # noqa: E402
from events import types as ev  # noqa: E402

# The targets: (key in RESULTS, what, comparison, bound, unit).
TARGETS = [
    ("append_own_ms", "append's own cost on top of the fsync (append − bare, medians)", "<=",
     2.0, "ms"),
    ("append_nosync_ms", "append's own cost, direct (synchronous=OFF, median)", "<=", 2.0, "ms"),
    ("replay_eps", "replay (rebuild, no snapshots)", ">=", 500_000, "events/s"),
    ("ps_ms", "ps-style read-model query (median)", "<=", 10.0, "ms"),
    ("cli_version_ms", "`lamina version` start-up (median)", "<=", 60.0, "ms"),
    ("cli_events_ms", "`lamina --root EMPTY events` start-up (median)", "<=", 60.0, "ms"),
]

Command = tuple[list[ev.Event], dict[str, int], dict[str, Any]]


# --- statistics and formatting -------------------------------------------------------------


def summary(samples: Sequence[float]) -> dict[str, float]:
    """median, p95, min and mean of durations in seconds (returned in ms)."""
    ms = sorted(s * 1000 for s in samples)
    p95 = statistics.quantiles(ms, n=20, method="inclusive")[18] if len(ms) > 1 else ms[0]
    return {"n": len(ms), "median_ms": statistics.median(ms), "p95_ms": p95, "min_ms": ms[0],
            "mean_ms": statistics.fmean(ms)}


def fmt_ms(ms: float | None) -> str:
    if ms is None:
        return ""
    if ms >= 1000:
        return f"{ms / 1000:.2f} s"
    if ms >= 100:
        return f"{ms:.0f} ms"
    if ms >= 10:
        return f"{ms:.1f} ms"
    return f"{ms:.3f} ms"


def fmt_rate(value: float, unit: str) -> str:
    return f"{value:,.0f} {unit}"


@dataclass
class Report:
    rows: list[list[str]] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def row(self, section: str, what: str, n: int | str, stats: dict[str, float] | None = None,
            rate: str = "", note: str = "") -> None:
        med = fmt_ms(stats["median_ms"]) if stats else ""
        p95 = fmt_ms(stats["p95_ms"]) if stats and stats["n"] > 1 else ""
        self.rows.append([section, what, f"{n:,}" if isinstance(n, int) else n, med, p95,
                          rate, note])
        print(f"  {what}: n={n} median={med} p95={p95} {rate} {note}".rstrip(), flush=True)

    def table(self) -> str:
        head = ["#", "benchmark", "n", "median", "p95", "throughput", "notes"]
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        return "\n".join(lines)


# --- a realistic workload --------------------------------------------------------------------

REPOS = ["alpine", "busybox", "debian", "nginx", "redis", "postgres", "python", "node",
         "golang", "registry", "app/web", "app/worker"]
CMDS = [["sh", "-c", "sleep 3600"], ["nginx", "-g", "daemon off;"], ["redis-server"],
        ["python", "-m", "http.server", "8080"], ["/bin/true"], ["top", "-b"],
        ["postgres", "-c", "shared_buffers=128MB"], ["sleep", "infinity"]]
CONFIGS = [{}, {}, {"env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                            "LANG=C.UTF-8"], "workdir": "/"},
           {"env": ["MODE=prod"], "hostname": "web", "memory": 268435456, "cpus": 0.5},
           {"workdir": "/srv", "user": "1000:1000", "labels": {"team": "infra", "tier": "db"}}]
SIGHUP, SIGKILL, SIGTERM = 1, 9, 15


class Workload:
    """A stream of commands as the engine would append them, with correct expected versions.

    Containers run through realistic lifecycles (create, start, pause/unpause, exec, signals,
    restarts, stop/kill/exit, rm), `concurrency` of them interleaved; `keep` of them stop
    short and stay in the read model. With `images`, images are imported (layer, image, tag,
    retag) and unused untagged ones removed; `rejects` of the commands are refused ones.
    """

    def __init__(self, seed: int = 1, *, concurrency: int = 32, keep: float = 0.01,
                 pause: float = 0.3, images: bool = True, rejects: float = 0.02) -> None:
        self.rng = random.Random(seed)
        self.concurrency, self.keep, self.pause = concurrency, keep, pause
        self.images, self.rejects = images, rejects
        self.version: dict[str, int] = {}
        self.active: list[tuple[str, list[ev.Event]]] = []
        self.tags: dict[str, str] = {}          # tag -> image id
        self.layer_of: dict[str, str] = {}      # image id -> its layer
        self.users: dict[str, int] = {}         # image id -> containers on it
        self.image_of: dict[str, str] = {}      # container id -> image id
        self.untagged: set[str] = set()
        self.containers = 0
        self.base_meta = {"uid": 0, "user": "root", "pid": os.getpid(),
                          "host": platform.node() or "bench"}

    def hex64(self) -> str:
        return f"{self.rng.getrandbits(256):064x}"

    def meta(self, command: str, argv: list[str]) -> dict[str, Any]:
        return {**self.base_meta, "argv": ["lamina", *argv], "command": command,
                "command_id": self.hex64()}

    # -- commands --

    def seed(self, images: int = 3) -> list[Command]:
        return [self._import() for _ in range(images)]

    def command(self, max_events: int = 4) -> Command:
        r = self.rng.random()
        if self.images and max_events >= 4 and r < 0.003:
            return self._import()
        removable = [i for i in self.untagged if not self.users.get(i)] if r < 0.005 else []
        if removable and max_events >= 2:
            return self._rmi(self.rng.choice(sorted(removable)))
        if r < 0.005 + self.rejects:
            return self._reject()
        return self._step()

    def batch(self, size: int) -> Command:
        """Commands worth exactly `size` events, as one append (expected: first versions)."""
        events: list[ev.Event] = []
        expected: dict[str, int] = {}
        while len(events) < size:
            more, want, _ = self.command(size - len(events))
            events += more
            for stream, version in want.items():
                expected.setdefault(stream, version)
        return events, expected, self.meta("bench-batch", ["bench", "batch"])

    def _bump(self, stream: str) -> int:
        have = self.version.get(stream, 0)
        self.version[stream] = have + 1
        return have

    def _import(self) -> Command:
        rng = self.rng
        lid, iid = self.hex64(), self.hex64()
        diff_id = f"sha256:{self.hex64()}"
        tag = f"{rng.choice(REPOS)}:{rng.choice(['latest', 'latest', '1', '2.1', 'dev'])}"
        created = "2026-05-09T07:35:25.000000Z"
        config = {"architecture": "amd64", "os": "linux", "created": created,
                  "config": {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin"],
                             "Cmd": rng.choice(CMDS)},
                  "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                  "history": [{"created": created, "created_by": f"lamina import {tag}.tar"}]}
        events: list[ev.Event] = [
            ev.LayerRegistered(id=lid, parent=None, diff_id=diff_id, chain_id=diff_id,
                               size=rng.randint(1 << 20, 1 << 28),
                               created_by=f"lamina import {tag}.tar"),
            ev.ImageCreated(id=iid, parent=None, layers=[lid], config=config,
                            created_by=f"lamina import {tag}.tar", source="import")]
        expected = {f"layer:{lid}": self._bump(f"layer:{lid}"),
                    f"image:{iid}": self._bump(f"image:{iid}")}
        old = self.tags.get(tag)
        if old is not None:
            events.append(ev.ImageUntagged(id=old, tag=tag))
            expected[f"image:{old}"] = self._bump(f"image:{old}")
            self.untagged.add(old)
        events.append(ev.ImageTagged(id=iid, tag=tag))
        self._bump(f"image:{iid}")
        self.tags[tag], self.layer_of[iid], self.users[iid] = iid, lid, 0
        return events, expected, self.meta("import", ["import", f"{tag}.tar", tag])

    def _rmi(self, iid: str) -> Command:
        lid = self.layer_of.pop(iid)
        self.untagged.discard(iid)
        self.users.pop(iid, None)
        events = [ev.ImageRemoved(id=iid), ev.LayerRemoved(id=lid)]
        expected = {f"image:{iid}": self._bump(f"image:{iid}"),
                    f"layer:{lid}": self._bump(f"layer:{lid}")}
        return events, expected, self.meta("rmi", ["rmi", iid[:12]])

    def _reject(self) -> Command:
        what = self.rng.choice([("start", "is already running"), ("rm", "is running"),
                                ("pause", "is not running"), ("stop", "is not running")])
        target = f"bench-{self.rng.randrange(max(self.containers, 1))}"
        meta = self.meta(what[0], [what[0], target])
        event = ev.CommandRejected(id=meta["command_id"], command=what[0], target=target,
                                   reason=f"container {target} {what[1]}")
        return [event], {}, meta

    def _step(self) -> Command:
        if len(self.active) < self.concurrency:
            cid, plan = self._lifecycle()
            self.active.append((cid, plan))
        else:
            cid, plan = self.active[self.rng.randrange(len(self.active))]
        event = plan.pop()
        if not plan:
            self.active.remove((cid, plan))
        if isinstance(event, ev.ContainerRemoved):
            self.users[self.image_of.pop(cid)] -= 1
        stream = f"container:{cid}"
        name = event.type_name().removeprefix("Container").lower()
        return [event], {stream: self._bump(stream)}, self.meta(name, [name, cid[:12]])

    def _lifecycle(self) -> tuple[str, list[ev.Event]]:
        """One container's whole plan of events (reversed: the next one is plan.pop())."""
        rng = self.rng
        cid = self.hex64()
        iid = rng.choice(sorted(set(self.tags.values())))
        self.users[iid] += 1
        self.image_of[cid] = iid
        plan: list[ev.Event] = [ev.ContainerCreated(
            id=cid, name=f"bench-{self.containers}", image=iid, cmd=rng.choice(CMDS),
            rw_layer=f"/var/lib/lamina/containers/{cid}/rw", config=rng.choice(CONFIGS))]
        self.containers += 1
        cgroup = f"/sys/fs/cgroup/lamina/{cid}"
        runs = 0 if rng.random() < 0.05 else 1 + (rng.random() < 0.15)
        for _ in range(runs):
            plan.append(ev.ContainerStarted(id=cid, pid=rng.randint(300, 4_000_000),
                                            cgroup=cgroup))
            for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
                r = rng.random()
                if r < self.pause:
                    plan += [ev.ContainerPaused(id=cid), ev.ContainerUnpaused(id=cid)]
                elif r < self.pause + 0.35:
                    xid = self.hex64()
                    plan += [ev.ExecStarted(id=cid, exec_id=xid, argv=["sh", "-c", "ps"]),
                             ev.ExecExited(id=cid, exec_id=xid, exit_code=0)]
                elif r < self.pause + 0.5:
                    plan.append(ev.ContainerSignalled(id=cid, signal=SIGHUP))
                else:
                    plan.append(ev.ContainerRestarted(id=cid, pid=rng.randint(300, 4_000_000),
                                                      cgroup=cgroup))
            r = rng.random()
            if r < 0.6:
                plan.append(ev.ContainerStopped(id=cid, signal=SIGTERM, exit_code=0))
            elif r < 0.8:
                plan.append(ev.ContainerKilled(id=cid, signal=SIGKILL, exit_code=137))
            else:
                plan.append(ev.ContainerExited(id=cid, exit_code=rng.choice([0, 1, 2]),
                                               oom=rng.random() < 0.05))
        plan.append(ev.ContainerRemoved(id=cid, force=False))
        if rng.random() < self.keep:  # it stays: stop somewhere before the rm
            plan = plan[:rng.randint(1, len(plan) - 1)]
            self.image_of.pop(cid)  # never removed, so never gives its image back
        plan.reverse()
        return cid, plan


# --- helpers ---------------------------------------------------------------------------------


class Roots:
    """Fresh temporary roots under one directory, removed at the end unless kept."""

    def __init__(self, base: str | None, keep: bool) -> None:
        self.dir = tempfile.mkdtemp(prefix="lamina-bench-", dir=base)
        self.keep = keep

    def new(self, name: str) -> str:
        path = os.path.join(self.dir, name)
        os.makedirs(path)
        return path

    def cleanup(self) -> None:
        if self.keep:
            print(f"\nroots kept under {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def bare_db(root: str) -> sqlite3.Connection:
    con = sqlite3.connect(os.path.join(root, "bare.db"), isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    return con


# --- 1. one command per transaction ----------------------------------------------------------


def bench_single(rep: Report, roots: Roots, n: int, seed: int) -> None:
    print(f"\n[1] {n:,} single-event appends, synchronous=FULL, vs bare fsynced commits",
          flush=True)
    wl = Workload(seed, concurrency=16, keep=0.1, pause=0.5, images=False)
    seed_cmds = wl.seed()
    cmds = [wl.command(1) for _ in range(n)]
    log = SqliteEventLog(roots.new("single"))
    for events, expected, meta in seed_cmds:
        log.append(events, expected=expected, meta=meta)
    bare = bare_db(roots.new("bare"))
    row = "x" * 100
    lat_append: list[float] = []
    lat_bare: list[float] = []
    clock = time.perf_counter
    append = log.append
    # Strictly alternate, so both see the same disk weather (a VM's fsync latency drifts
    # and is often quantized to timer ticks under load).
    for events, expected, meta in cmds:
        t0 = clock()
        append(events, expected=expected, meta=meta)
        t1 = clock()
        bare.execute("BEGIN IMMEDIATE")
        bare.execute("INSERT INTO t (v) VALUES (?)", (row,))
        bare.execute("COMMIT")
        lat_bare.append(clock() - t1)
        lat_append.append(t1 - t0)
    t_append = sum(lat_append)
    bare.close()
    s_append, s_bare = summary(lat_append), summary(lat_bare)
    rep.row("1", "append, 1 event/txn, synchronous=FULL", n, s_append,
            fmt_rate(n / t_append, "appends/s"), "create/start/pause/unpause/stop/rm mix")
    rep.row("1", "bare WAL commit (1 small row), synchronous=FULL", n, s_bare,
            fmt_rate(n / sum(lat_bare), "commits/s"), "the fsync floor, same disk")
    own = s_append["median_ms"] - s_bare["median_ms"]
    own95 = s_append["p95_ms"] - s_bare["p95_ms"]
    own_mean = s_append["mean_ms"] - s_bare["mean_ms"]
    rep.row("1", "append's own cost = append − bare", "", None, "",
            f"medians {fmt_ms(own)}, means {fmt_ms(own_mean)}, p95s {fmt_ms(own95)}")

    # The same commands without the fsync: what append itself costs in CPU and SQLite.
    wl = Workload(seed, concurrency=16, keep=0.1, pause=0.5, images=False)
    seed_cmds = wl.seed()
    cmds = [wl.command(1) for _ in range(n)]
    log2 = SqliteEventLog(roots.new("single-nosync"))
    log2.con.execute("PRAGMA synchronous=OFF")
    for events, expected, meta in seed_cmds:
        log2.append(events, expected=expected, meta=meta)
    lat_off = []
    for events, expected, meta in cmds:
        t0 = clock()
        log2.append(events, expected=expected, meta=meta)
        lat_off.append(clock() - t0)
    s_off = summary(lat_off)
    rep.row("1", "append, 1 event/txn, synchronous=OFF (no fsync)", n, s_off,
            fmt_rate(n / sum(lat_off), "appends/s"), "cross-check of append's own cost")
    rep.results["single"] = {"append": s_append, "bare": s_bare, "append_nosync": s_off,
                             "appends_per_s": n / t_append, "own_median_ms": own,
                             "own_p95_ms": own95, "own_mean_ms": own_mean}
    rep.results["append_own_ms"] = own
    rep.results["append_nosync_ms"] = s_off["median_ms"]
    log.close()
    log2.close()


# --- 2. batched appends ----------------------------------------------------------------------


def bench_batched(rep: Report, roots: Roots, calls: int, size: int, seed: int) -> None:
    print(f"\n[2] {calls:,} appends of {size} events each, synchronous=FULL", flush=True)
    wl = Workload(seed + 1)
    seed_cmds = wl.seed()
    batches = [wl.batch(size) for _ in range(calls)]
    log = SqliteEventLog(roots.new("batched"))
    for events, expected, meta in seed_cmds:
        log.append(events, expected=expected, meta=meta)
    lat = []
    for events, expected, meta in batches:
        t0 = time.perf_counter()
        log.append(events, expected=expected, meta=meta)
        lat.append(time.perf_counter() - t0)
    log.close()
    s = summary(lat)
    total = sum(lat)
    rep.row("2", f"append, {size} events/txn, synchronous=FULL", calls, s,
            fmt_rate(calls * size / total, "events/s"),
            f"{calls / total:,.0f} appends/s; per event {fmt_ms(s['median_ms'] / size)}")
    rep.results["batched"] = {**s, "size": size, "events_per_s": calls * size / total}


# --- 3. generation and replay of a big log ---------------------------------------------------


def generate(rep: Report, root: str, n: int, gen_batch: int, seed: int) -> int:
    """Append n events in big batches; take one snapshot a little before the middle."""
    print(f"\n[3] generating {n:,} events in appends of {gen_batch:,}", flush=True)
    wl = Workload(seed + 2)
    log = SqliteEventLog(root)
    seq, snap_seq, snap_time, t_gen = 0, 0, 0.0, 0.0
    for events, expected, meta in wl.seed():
        log.append(events, expected=expected, meta=meta)
        seq += len(events)
    snap_after = n // 2 - 2 * gen_batch
    while seq < n:
        t0 = time.perf_counter()
        events, expected, meta = wl.batch(min(gen_batch, n - seq))
        log.append(events, expected=expected, meta=meta)
        t_gen += time.perf_counter() - t0
        seq += len(events)
        if not snap_seq and seq >= snap_after:
            snap_time, snap_seq = timed(lambda: snapshot(log.con))
    assert log.last_seq() == seq == n, (log.last_seq(), seq, n)
    log.close()
    size = sum(os.path.getsize(os.path.join(root, f)) for f in os.listdir(root))
    rep.row("3", f"generate the log (append, {gen_batch:,} events/txn)", n, None,
            fmt_rate(n / t_gen, "events/s"),
            f"took {t_gen:.1f} s (incl. building the events); {size / 2**20:,.0f} MiB on disk")
    rep.row("3", "snapshot() near the middle", 1, summary([snap_time]), "",
            f"at seq {snap_seq:,}")
    rep.results["generate"] = {"events": n, "seconds": t_gen, "events_per_s": n / t_gen,
                               "bytes": size, "snapshot_seq": snap_seq,
                               "snapshot_ms": snap_time * 1000, "containers": wl.containers}
    return snap_seq


def reuse(rep: Report, root: str) -> tuple[str, int, int]:
    """An existing root's log in place of a generated one: its size and newest snapshot."""
    log = SqliteEventLog(root)  # migrated to this lamina's schema if it is older
    n = log.last_seq()
    row = log.con.execute("SELECT coalesce(max(seq), 0) FROM snapshots").fetchone()
    log.close()
    rep.row("3", f"the log of {root}", n, None, "", f"snapshot at seq {row[0]:,}")
    return root, n, row[0]


SCAN_SQL = ("SELECT seq, stream, version, type, schema, data, at FROM events WHERE seq > ? "
            "ORDER BY seq")


def bench_replay(rep: Report, root: str, n: int, runs: int, profile: bool) -> None:
    print(f"\n[3] replaying {n:,} events into the read model", flush=True)
    log = SqliteEventLog(root, create=False)
    con = log.con
    before = read_model_rows(con)

    def scan() -> int:
        return sum(1 for _ in con.execute(SCAN_SQL, (0,)))

    def scan_loads() -> int:
        loads = json.loads
        return sum(1 for row in con.execute(SCAN_SQL, (0,)) if loads(row[5]) is not None)

    for label, fn, note in (("floor: SQL scan only", scan, "iterate the fold's cursor"),
                            ("floor: SQL scan + json.loads", scan_loads, "")):
        t, count = timed(fn)
        rep.row("3", label, count, summary([t]), fmt_rate(count / t, "events/s"), note)
        rep.results[f"replay_{'scan' if fn is scan else 'scan_loads'}_eps"] = count / t
    t, world = timed(lambda: state_at(con, None, use_snapshots=False))
    rep.row("3", "fold only (state_at(now), no snapshot)", world.seq, summary([t]),
            fmt_rate(world.seq / t, "events/s"), "no read-model writes")
    rep.results["replay_fold_eps"] = world.seq / t

    times, cpu, report = [], [], None
    for _ in range(runs):
        c0 = time.process_time()
        t, report = timed(lambda: rebuild(con, use_snapshots=False))
        cpu.append(time.process_time() - c0)
        times.append(t)
    assert report is not None and report.events == n, report
    assert read_model_rows(con) == before, "rebuild disagrees with the incremental read model"
    s = summary(times)
    eps = n / (s["median_ms"] / 1000)
    cpu_s = statistics.median(cpu)
    rep.row("3", "replay: rebuild(use_snapshots=False)", runs, s, fmt_rate(eps, "events/s"),
            f"{n:,} events → {report.containers:,} containers, {report.images:,} images, "
            f"{report.layers:,} layers; agrees with the incremental read model; CPU time "
            f"{cpu_s:.2f} s ({n / cpu_s:,.0f} events/s of CPU)")
    rep.results["replay"] = {**s, "events": n, "containers": report.containers,
                             "images": report.images, "layers": report.layers,
                             "cpu_seconds": cpu_s}
    rep.results["replay_eps"] = eps
    if profile or eps < 500_000:
        prof = cProfile.Profile()
        prof.enable()
        rebuild(con, use_snapshots=False)
        prof.disable()
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(18)
        rep.notes.append("cProfile of one rebuild(use_snapshots=False), by tottime:\n\n```\n"
                         + _trim_profile(out.getvalue()) + "\n```")
        rep.results["replay_profile"] = out.getvalue()
    log.close()


def _trim_profile(text: str) -> str:
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if "function calls" in line), 0)
    keep = [line.replace(str(REPO) + "/", "") for line in lines[start:] if line.strip()]
    return "\n".join(keep)


# --- 4. read-model queries and time travel ---------------------------------------------------


LIVE = ("running", "paused")


def bench_queries(rep: Report, root: str, n: int, snap_seq: int, runs: int,
                  travel_runs: int) -> None:
    print("\n[4] ps-style query and time travel on the big log", flush=True)

    def ps() -> Sequence[Any]:
        log = SqliteEventLog(root, create=False)
        try:
            return log.container_briefs(LIVE)  # what `lamina ps`'s table (and -q) asks
        finally:
            log.close()

    ps()
    times = []
    for _ in range(runs):
        t, running = timed(ps)
        times.append(t)
    log = SqliteEventLog(root, create=False)
    total = len(log.containers())
    s = summary(times)
    rep.row("4", "ps: SqliteEventLog(root).container_briefs(running, paused)", runs, s, "",
            f"{len(running):,} live of {total:,} rows; includes opening the log")
    rep.results["ps"] = {**s, "running": len(running), "rows": total}
    rep.results["ps_ms"] = s["median_ms"]
    on_open_log: list[tuple[str, Callable[[], Any], str, str]] = [
        ("ps_open", lambda: ReadModel.containers(log, LIVE),  # past the kept listing
         "ps: containers(running, paused), log already open",
         "the query and decoding whole containers (filters, json, templates)"),
        ("ps_briefs_open", lambda: log.container_briefs(LIVE),  # none of these kept yet
         "ps: container_briefs(running, paused), log already open",
         "the query and decoding briefs (the table)"),
        ("ps_kept", lambda: log.containers(LIVE),
         "ps: containers(running, paused), listing kept",
         "unchanged since the last call (a served command after its spare's)")]
    for key, query, what, note in on_open_log:
        s = summary([timed(query)[0] for _ in range(runs)])
        rep.row("4", what, runs, s, "", note)
        rep.results[key] = s

    mid = n // 2
    con = log.con
    worlds = {}
    for label, use, count in (("without snapshot", False, max(1, travel_runs // 3)),
                              ("with snapshot", True, travel_runs)):
        times = []
        for _ in range(count):
            t, worlds[use] = timed(lambda use=use: state_at(con, mid, use_snapshots=use))
            times.append(t)
        s = summary(times)
        folded = mid - (snap_seq if use else 0)
        rep.row("4", f"state_at(seq {mid:,}) {label}", count, s,
                fmt_rate(folded / (s["median_ms"] / 1000), "events/s"),
                f"snapshot at seq {snap_seq:,}, folds {folded:,} events" if use else
                f"folds {folded:,} events")
        rep.results[f"state_at_{'snapshot' if use else 'full'}"] = {**s, "folded": folded}
    assert worlds[True].to_json() == worlds[False].to_json(), "snapshot changes the state"
    rep.notes.append(f"state_at({mid:,}) with and without the snapshot give the same World.")
    log.close()


# --- 5. CLI start-up -------------------------------------------------------------------------


def bench_cli(rep: Report, roots: Roots, big_root: str | None, runs: int) -> None:
    print(f"\n[5] CLI start-up, {runs} runs each", flush=True)
    bindir = Path(sys.executable).parent
    lamina = bindir / "lamina"
    if not lamina.exists():
        found = shutil.which("lamina")
        if found is None:
            rep.row("5", "lamina console script not found", "", None, "", str(lamina))
            return
        lamina = Path(found)
    empty = roots.new("empty")
    # the in-process path: what a command costs when no server runs for the root
    env = {k: v for k, v in os.environ.items() if k != "LAMINA_ROOT"}
    env["LAMINA_NO_SERVER"] = "1"
    cases = [("python -c pass (the floor)", "python_ms", [sys.executable, "-c", "pass"]),
             ("lamina version", "cli_version_ms", [str(lamina), "version"]),
             ("lamina --root EMPTY events", "cli_events_ms",
              [str(lamina), "--root", empty, "events"])]
    if big_root:
        cases.append(("lamina --root BIG ps (the 3. log)", "cli_ps_ms",
                      [str(lamina), "--root", big_root, "ps"]))
        cases += _by_length(str(lamina), roots.new("small"), big_root)
    for label, key, argv in cases:
        for _ in range(3):  # warm the page cache and the bytecode
            subprocess.run(argv, stdout=subprocess.DEVNULL, env=env, check=True)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            subprocess.run(argv, stdout=subprocess.DEVNULL, env=env, check=True)
            times.append(time.perf_counter() - t0)
        s = summary(times)
        rep.row("5", label, runs, s, "", "subprocess.run, wall time")
        rep.results[key] = s["median_ms"]
        rep.results[key.removesuffix("_ms")] = s
        if shutil.which("hyperfine"):
            _hyperfine(rep, label, key, argv, runs, env)
    rep.notes.append(f"CLI: {lamina} on {sys.executable}")


def _by_length(lamina: str, small: str, big: str) -> list[tuple[str, str, list[str]]]:
    """The same commands on a log of 20,000 events and on the big one: what a command
    costs must not grow with the log (only with what it lists)."""
    wl = Workload(3)  # the big log's workload (generate's seed + 2), its first commands
    log = SqliteEventLog(small)
    for events, expected, meta in wl.seed():
        log.append(events, expected=expected, meta=meta)
    while log.last_seq() < 20_000:
        events, expected, meta = wl.batch(1000)
        log.append(events, expected=expected, meta=meta)
    cases = []
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")  # after both logs' last events
    for label, root in (("SMALL", small), ("BIG", big)):
        opened = SqliteEventLog(root, create=False)
        name = opened.containers(LIVE)[0].name
        opened.close()
        key = label.lower()
        cases += [(f"lamina --root {label} inspect {name}", f"cli_inspect_{key}_ms",
                   [lamina, "--root", root, "inspect", name]),
                  (f"lamina --root {label} events --since NOW", f"cli_since_{key}_ms",
                   [lamina, "--root", root, "events", "--since", now]),
                  (f"lamina --root {label} ps -a --filter name={name}", f"cli_psname_{key}_ms",
                   [lamina, "--root", root, "ps", "-a", "--filter", f"name={name}"])]
    return cases


def _hyperfine(rep: Report, label: str, key: str, argv: list[str], runs: int,
               env: dict[str, str]) -> None:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = " ".join(f"'{a}'" for a in argv)
        done = subprocess.run(["hyperfine", "-N", "--warmup", "3", "--runs", str(runs),
                               "--export-json", out.name, cmd], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if done.returncode != 0:
            return
        with open(out.name) as f:
            res = json.load(f)["results"][0]
    s = summary(res["times"])
    rep.row("5", f"{label} (hyperfine -N)", len(res["times"]), s, "",
            f"mean {fmt_ms(res['mean'] * 1000)} ± {fmt_ms(res['stddev'] * 1000)}")
    rep.results[f"{key.removesuffix('_ms')}_hyperfine"] = s


# --- main ------------------------------------------------------------------------------------


def environment(tmp: str) -> str:
    disk = subprocess.run(["df", "-hT", tmp], capture_output=True, text=True).stdout
    fs = disk.splitlines()[-1].split() if disk else ["?"] * 3
    return (f"python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
            f"{os.cpu_count()} CPUs, {platform.system()} {platform.release()}; "
            f"temp roots under {tmp} ({fs[1]} on {fs[0]}); load average at start "
            f"{os.getloadavg()[0]:.2f}")


def verdicts(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    out = []
    for key, what, op, bound, unit in TARGETS:
        value = results.get(key)
        if value is None:
            out.append((what, f"{op} {bound:,g} {unit}", "not measured", "—"))
            continue
        ok = value <= bound if op == "<=" else value >= bound
        shown = f"{value:,.0f} {unit}" if unit == "events/s" else f"{value:.3f} {unit}"
        out.append((what, f"{op} {bound:,g} {unit}", shown, "PASS" if ok else "MISS"))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, help="events in the replay log (default 1,000,000)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 50,000 events and fewer runs of everything")
    p.add_argument("--json", metavar="FILE", help="also write every result as JSON")
    p.add_argument("--appends", type=int, help="single-event appends (default 2,000)")
    p.add_argument("--batch-calls", type=int, help="batched appends (default 200)")
    p.add_argument("--batch-size", type=int, default=100, help="events per batched append")
    p.add_argument("--gen-batch", type=int, default=5000,
                   help="events per append when generating the replay log")
    p.add_argument("--replay-runs", type=int, help="rebuilds to time (default 3)")
    p.add_argument("--cli-runs", type=int, help="runs of each CLI command (default 30)")
    p.add_argument("--profile", action="store_true", help="profile the replay even if it passes")
    p.add_argument("--tmp", help="where to make the temp roots (default: $TMPDIR or /tmp)")
    p.add_argument("--keep", action="store_true", help="keep the temp roots")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--log", metavar="ROOT",
                   help="sections 3-5 on this root's log (one an earlier --keep run made) "
                        "instead of generating one")
    p.add_argument("--only", metavar="1,2,...", help="run only these sections (1-5; 4 needs 3)")
    args = p.parse_args(argv)
    quick = args.quick
    n = args.events or (50_000 if quick else 1_000_000)
    appends = args.appends or (500 if quick else 2000)
    batch_calls = args.batch_calls or (50 if quick else 200)
    replay_runs = args.replay_runs or (1 if quick else 3)
    cli_runs = args.cli_runs or (10 if quick else 30)
    travel_runs = 3 if quick else 9
    only = set((args.only or "1,2,3,4,5").replace(" ", "").split(","))

    roots = Roots(args.tmp, args.keep)
    rep = Report()
    print(f"lamina event-log benchmarks: {environment(roots.dir)}")
    cmdline = " ".join([os.path.relpath(sys.executable), "bench/eventlog.py",
                        *(argv if argv is not None else sys.argv[1:])])
    rep.results["command"] = cmdline
    rep.results["environment"] = environment(roots.dir)
    t_all = time.perf_counter()
    try:
        if "1" in only:
            bench_single(rep, roots, appends, args.seed)
        if "2" in only:
            bench_batched(rep, roots, batch_calls, args.batch_size, args.seed)
        big = None
        if "3" in only or "4" in only:
            if args.log:
                big, n, snap_seq = reuse(rep, args.log)
            else:
                big = roots.new("big")
                snap_seq = generate(rep, big, n, args.gen_batch, args.seed)
        if "3" in only:
            bench_replay(rep, big, n, replay_runs, args.profile)
        if "4" in only:
            bench_queries(rep, big, n, snap_seq, 50, travel_runs)
        if "5" in only:
            bench_cli(rep, roots, big, cli_runs)
    finally:
        roots.cleanup()
    rep.results["total_seconds"] = time.perf_counter() - t_all
    rep.results["load_average_end"] = os.getloadavg()[0]
    if max(rep.results["load_average_end"], os.getloadavg()[1]) > 0.5 * (os.cpu_count() or 1):
        rep.notes.append(f"Other work was running (load average {os.getloadavg()[0]:.2f} at "
                         f"the end, {os.getloadavg()[1]:.2f} over 5 min, {os.cpu_count()} "
                         "CPUs): the timings are pessimistic; rerun on an idle machine.")

    print(f"\n## Results\n\n`{cmdline}`  \n{rep.results['environment']}\n")
    print(rep.table())
    print("\n## Targets\n")
    print("| target | bound | measured | verdict |\n|---|---|---|---|")
    checks = verdicts(rep.results)
    for row in checks:
        print("| " + " | ".join(row) + " |")
    rep.results["targets"] = [dict(zip(("target", "bound", "measured", "verdict"), row,
                                       strict=True)) for row in checks]
    for note in rep.notes:
        print(f"\n{note}")
    print(f"\n(total {rep.results['total_seconds']:.0f} s)")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(rep.results, out, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
