"""What must hold of a lamina root once nobody is working on it, checked from outside.

`problems(root)` returns one line per violation (an empty list is the verdict "consistent"):
- the hash chain verifies (adapters/eventstore/audit.py);
- the log, replayed through the lifecycle from the first event (no stream skipped), holds no
  illegal move and equals the read model, row for row;
- the host matches the projection: a running or paused container has its process (same pid,
  same start time), its cgroup, its union view and, when paused, a frozen cgroup; nothing
  else is mounted under the root, no cgroup of this root's containers is left, no process
  naming the root is alive but the monitors of live containers and the root's DNS resolver
  (adapters/network/resolver.py: it serves while the root has a user-defined network);
- the layer directories are exactly the read model's layers and its containers' read-write
  layers, each registered layer's files still hash to its diff_id (the whole tar is rebuilt),
  and <root>/tmp holds nothing;
- the volume directories are exactly the read model's volumes, each with its `_data`.
"""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path
from typing import Any

LIVE = ("running", "paused")


class _Null:
    def write(self, data: bytes) -> int:
        return len(data)


def problems(root: Path | str) -> list[str]:
    from adapters.bootstrap import build_engine

    root = str(root)
    e = build_engine(root, recover=False)
    try:
        return [*_log(e.log.con), *_host(e, root), *_layers(e), *_volumes(e, root)]
    finally:
        e.log.suspend()


def _log(con: Any) -> list[str]:
    from adapters.eventstore import replay
    from adapters.eventstore.audit import verify
    from core.model import ProjectionError

    out = []
    verdict = verify(con)
    if not verdict.ok:
        out.append(f"hash chain broken at seq {verdict.bad_seq}: {verdict.reason}")
    try:
        world = replay.fold(con)  # every stream, each move judged by the lifecycle again
    except ProjectionError as err:
        return [*out, f"illegal move in the log: {err}"]
    for kind in ("container", "image", "layer", "volume"):
        replayed = {aid: json.loads(_canonical(agg)) for aid, agg in world.table(kind).items()}
        stored = {aid: json.loads(doc) for aid, doc in
                  con.execute(f"SELECT id, doc FROM {kind}s")}
        if replayed != stored:
            diff = sorted(set(replayed) ^ set(stored)) or \
                [k for k in replayed if replayed[k] != stored.get(k)]
            out.append(f"replay differs from the read model in {kind}s: {diff[:3]}")
    return out


def _canonical(agg: Any) -> str:
    from core.model import to_doc
    from events.hashchain import canonical

    return canonical(to_doc(agg))


def _host(e: Any, root: str) -> list[str]:
    from adapters.kernel import proc
    from adapters.kernel.cgroups import Cgroup, CgroupError
    from adapters.storage.overlay import mounts_under

    out = []
    containers = {c.id: c for c in e.log.containers()}
    live = {cid: c for cid, c in containers.items() if c.state in LIVE}
    monitors = set()
    for c in live.values():
        if not proc.is_same(c.pid, c.start_time):
            out.append(f"container {c.name} is {c.state} but its process {c.pid} is not")
        monitors.add(proc.parent(c.pid))
        try:
            frozen = Cgroup.open(c.id).is_frozen()
        except (CgroupError, OSError):
            out.append(f"container {c.name} is {c.state} but has no cgroup")
            continue
        if frozen != (c.state == "paused"):
            out.append(f"container {c.name} is {c.state} but frozen={frozen}")
    merged = {e.layers.merged_dir(c.rw_layer) for c in live.values()}
    out += [f"stray mount {m}" for m in mounts_under(root) if m not in merged]
    out += [f"missing mount {m}" for m in merged if not os.path.ismount(m)]
    for path in glob.glob("/sys/fs/cgroup/*/lamina/*") + glob.glob("/sys/fs/cgroup/lamina/*"):
        cid = os.path.basename(path)
        if not os.path.isdir(path) or cid in live:
            continue
        if cid in containers or next(e.log.read(stream=f"container:{cid}"), None):
            out.append(f"stray cgroup {path}")
    me = os.getpid()
    resolver = _resolver(root)
    if resolver is not None:
        monitors.add(resolver)
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) in monitors or int(pid) == me:
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if root.encode() in f.read():
                    out.append(f"stray process {pid} names the root")
        except OSError:
            continue
    return out


def _resolver(root: str) -> int | None:
    """The pid of the root's DNS resolver while one holds its pidfile (`PID STATE`)."""
    from adapters.network import resolver

    if not resolver.running(root):
        return None
    try:
        with open(os.path.join(root, resolver.PIDFILE)) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _layers(e: Any) -> list[str]:
    from adapters.storage import layertar

    store = e.layers
    layers = {la.id: la for la in e.log.layers()}
    wanted = set(layers) | {c.rw_layer for c in e.log.containers()}
    on_disk = set(os.listdir(store.layers_dir)) - {"l", "empty"} \
        if os.path.isdir(store.layers_dir) else set()
    out = [f"layer directory {n[:15]} belongs to nothing" for n in sorted(on_disk - wanted)]
    out += [f"layer {n[:15]} is in the log but not on disk" for n in sorted(wanted - on_disk)]
    for la in layers.values():
        if la.id not in on_disk:
            continue
        try:
            if os.path.exists(os.path.join(store.layer_dir(la.id), "tar-split.gz")):
                digest, _ = store.layer_tar(la.id, _Null())
            else:
                digest, _ = layertar.write_layer_tar(store.diff_dir(la.id), _Null())
        except Exception as err:  # noqa: BLE001 - any failure to rebuild it is the finding
            out.append(f"layer {la.id[:12]} cannot be read back: {err}")
            continue
        if digest != la.diff_id:
            out.append(f"layer {la.id[:12]} hashes to {digest}, registered {la.diff_id}")
    cdirs = os.path.join(os.path.dirname(store.layers_dir), "containers")
    ids = {c.id for c in e.log.containers()}
    if os.path.isdir(cdirs):
        out += [f"files of removed container {n[:12]}" for n in os.listdir(cdirs)
                if n not in ids]
    if os.path.isdir(store.tmp_dir) and os.listdir(store.tmp_dir):
        out.append(f"staging leftovers: {sorted(os.listdir(store.tmp_dir))}")
    return out


def _volumes(e: Any, root: str) -> list[str]:
    wanted = {v.id for v in e.log.volumes()}
    top = os.path.join(root, "volumes")
    on_disk = set(os.listdir(top)) if os.path.isdir(top) else set()
    out = [f"volume directory {n[:15]} belongs to no volume" for n in sorted(on_disk - wanted)]
    out += [f"volume {n[:15]} is in the log but not on disk" for n in sorted(wanted)
            if not os.path.isdir(os.path.join(top, n, "_data"))]
    return out


def last_seq(root: Path | str) -> int:
    """The log's last sequence number, read from its SQLite file (a `lamina events` dump
    of the whole log per question cost ~0.2 s, growing with the log); 0 before the root
    has a log."""
    import sqlite3

    if not os.path.exists(os.path.join(root, "events.db")):
        return 0
    con = sqlite3.connect(f"file:{root}/events.db?mode=ro", uri=True, timeout=10)
    try:
        return con.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
    finally:
        con.close()


def appended_by(root: Path | str, since: int, pid: int) -> list[str]:
    """Sorted types of the events the process `pid` appended after sequence number `since`
    (its HostChecked aside: a command's host check is not its work)."""
    import sqlite3

    con = sqlite3.connect(f"file:{root}/events.db?mode=ro", uri=True, timeout=10)
    try:
        rows = con.execute("SELECT type, meta FROM events WHERE seq > ?", (since,)).fetchall()
    finally:
        con.close()
    return sorted(t for t, meta in rows if json.loads(meta).get("pid") == pid
                  and t != "HostChecked")


def settled(root: Path | str, timeout: float = 10) -> list[str]:
    """`problems`, given the monitors of containers that just ended the moment they need to
    finish recording (a monitor's last step is a short process of its own)."""
    import time

    deadline = time.monotonic() + timeout
    while (found := problems(root)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return found
