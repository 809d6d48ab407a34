"""What the host holds that the log doesn't account for, and how to clean it (reconcile).

The log is the truth; the host is made to match it. Each check yields Findings: one line for
`system check` and the repair `system reconcile` runs. What is looked at:

- cgroups of this root's containers that aren't running or paused (killed, thawed, removed),
  and the one its fork server kept ready for its starts, once that server is gone;
- union views mounted under <root>/layers for containers that aren't running or paused;
- a running container whose cgroup is frozen, or a paused one whose cgroup is not (a pause,
  unpause or commit that died between the freezer and the log): the freezer is set back to
  what the log says;
- layer directories no event accounts for: a read-only layer the read model doesn't hold
  (written but never registered, or removed from the log but not from the disk) and a
  read-write layer of no container; and every layer the read model holds must be on disk
  with the digest it was registered with (checked from its tar-split header or layer.json:
  cheap; reported, since nothing on this host can bring its files back);
- the files of a removed container under <root>/containers;
- staging leftovers under <root>/tmp;
- on a --userns-remap root, subordinate ranges that are no longer the ones it recorded.

In-flight work is never taken for a leftover: a container whose lock (`Runtime.ending`) is
held is being worked on (start, pause, commit, export, stop, rm all hold it; the rm of a
served `run --rm` until its release after the answer is done), so what it has on the host
is neither listed nor repaired, and a layer or staging directory stamped with a live
writer's pid and start time is still being written.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from core.model import Container

LIVE = ("running", "paused")
STAGING_AGE = 60.0  # seconds; for staging entries that carry no owner stamp
_STAMP = re.compile(r"^(?:[a-z]+-)?(\d+\.\d+)-")
_RESERVED = frozenset({"l", "empty"})


@dataclass
class Finding:
    text: str
    repair: Callable[[], object]


@contextlib.contextmanager
def idle(runtime: Any, cid: str) -> Iterator[bool]:
    """Try the container's lock without waiting: yields False if someone holds it."""
    path = os.path.join(runtime.container_dir(cid), "lock")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        yield True  # never locked by anyone: no command is working on it
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def findings(runtime: Any, known: Mapping[str, Container]) -> list[Finding]:
    return [*_cgroups(runtime, known), *_ready(runtime), *_mounts(runtime, known),
            *_views(runtime, known), *_freezer(runtime, known),
            *_layers(runtime), *_container_dirs(runtime), *_staging(runtime),
            *_remap(runtime), *_wiring(runtime, known)]


def _remap(runtime: Any) -> Iterator[Finding]:
    """A --userns-remap root whose recorded ranges are no longer its user's alone in
    /etc/subuid and /etc/subgid (moved, shrunk, or also handed to another user): its
    containers could then share host ids with someone else's. Reported; the repair is the
    administrator's (lamina never edits ranges it did not make)."""
    from core.rootconfig import current

    config = current(runtime.log)
    if not config.remapped:
        return
    from adapters.remap import check

    for line in check(config):
        yield Finding(line, lambda: None)


# --- network wiring ----------------------------------------------------------------------------

def _wiring(runtime: Any, known: Mapping[str, Container]) -> Iterator[Finding]:
    """A container's veth or published ports (adapters/network/endpoints.py) that its run
    doesn't account for: while it doesn't run (left by a run whose end was recorded by a
    process that died before unwiring, or by a start that died after wiring), once it is
    removed (an rm that died between its record and unwiring), or, while it runs, a veth on
    a network it is not connected to (a `network connect` that died between the veth and
    its record, a `network disconnect` between its record and the veth). A veth's name is
    derived from its container's and network's ids and a publication's from its
    container's: one that no container of this log (running, stopped, or removed with its
    files still here) can own is another root's or an older one's. Repaired under the
    container's lock, judged again there (a start or connect wires before it records)."""
    yield from _legacy_table()
    gone = _removed(runtime, known)
    if not gone and not any(c.endpoints or c.config.get("network") not in
                            (None, "none", "host") for c in known.values()):
        return  # nothing of this root was ever on a bridge: don't load netlink for nothing
    from adapters.network import bridge, endpoints
    from adapters.network.host import _nftables
    from core import networks as ipam

    network_ids = {n.id for n in runtime.log.networks()}
    network_ids.add(ipam.DEFAULT_NETWORK_ID)
    for c in known.values():
        network_ids |= {ep["id"] for ep in c.endpoints.values()}
    owners = [*known, *gone]
    owner = {ipam.veth_name(cid, nid): cid for cid in owners for nid in network_ids}
    for name, kind in bridge.links().items():
        cid = owner.get(name)
        if kind != "veth" or cid is None or _wired(known.get(cid), veth=name):
            continue
        yield from _stray(runtime, cid,
                          f"veth {name} of container {cid[:12]}, {_unwired(known.get(cid))}",
                          partial(_unless_wired, runtime, cid, partial(bridge.detach, name),
                                  veth=name))
    if not _nftables():
        return
    from adapters.network import nat

    keys = {endpoints.publication_key(cid): cid for cid in owners}
    for key in nat.owned().publications:
        holder = keys.get(key) or _former(runtime, key)
        if holder is None or _wired(known.get(holder), veth=None):
            continue
        held = known.get(holder)
        why = _unwired(held) if held is None or held.state not in LIVE else "which has none"
        yield from _stray(runtime, holder, f"published ports of container {holder[:12]}, {why}",
                          partial(_unless_wired, runtime, holder, partial(nat.unpublish, key),
                                  veth=None))


def _legacy_table() -> Iterator[Finding]:
    """An earlier lamina's IPv4-only `ip lamina` table (its chains would DNAT for runs the
    log has ended): removed. libnftables is loaded for it (~3 ms), on a check only."""
    from adapters.network.host import _nftables

    if not _nftables():
        return
    from adapters.network import nat

    if nat.legacy_table():
        yield Finding("nftables table ip lamina of an earlier lamina (IPv4 only; lamina's "
                      "rules are in inet lamina now)", nat.remove_legacy)


def _wired(c: Container | None, veth: str | None) -> bool:
    """Whether a running container's run accounts for the veth `veth` (one of its
    endpoints'), or with None for a publication (it publishes ports)."""
    if c is None or c.state not in LIVE:
        return False
    if veth is None:
        return bool(c.ports)
    return any(ep.get("veth") == veth for ep in c.endpoints.values())


def _unwired(c: Container | None) -> str:
    if c is None:
        return "which is removed"
    if c.state not in LIVE:
        return "which is not running"
    return "on a network it is not connected to"


def _unless_wired(runtime: Any, cid: str, repair: Callable[[], object],
                  veth: str | None) -> None:
    """The repair, unless the container's run accounts for it by now (read again under
    its lock: a start or connect that recorded since the finding was made)."""
    if not _wired(runtime.log.container(cid), veth):
        repair()


def _removed(runtime: Any, known: Mapping[str, Container]) -> list[str]:
    """The containers this log removed whose files are still here (an rm that died after
    its record): their wiring may be left too."""
    try:
        names = os.listdir(os.path.join(runtime.root, "containers"))
    except FileNotFoundError:
        return []
    return [cid for cid in names if cid not in known
            and next(runtime.log.read(stream=f"container:{cid}"), None) is not None]


def _former(runtime: Any, key: str) -> str | None:
    """The id of a container of this log whose publication key (12 hex) is `key`, removed
    since (its files gone too): by its stream in the log."""
    con = getattr(runtime.log, "con", None)
    if con is None or not re.fullmatch(r"[0-9a-f]{12}", key):
        return None
    row = con.execute("SELECT stream FROM events WHERE stream >= ? AND stream < ? LIMIT 1",
                      (f"container:{key}", f"container:{key}g")).fetchone()
    return row[0].removeprefix("container:") if row is not None else None


# --- cgroups, mounts, the freezer ------------------------------------------------------------

def _ours(runtime: Any, cid: str, known: Mapping[str, Container]) -> bool:
    """A cgroup id is this root's if its log knows the container (other roots' are not ours
    to judge)."""
    return cid in known or next(runtime.log.read(stream=f"container:{cid}"), None) is not None


def _cgroups(runtime: Any, known: Mapping[str, Container]) -> Iterator[Finding]:
    """Under lamina's own parent and every --cgroup-parent the log's containers name (a
    parent's other cgroups are not ours: the log knows no container of that id)."""
    from adapters.kernel.cgroups import list_lamina_cgroups
    from core import cgroupparent

    parents = {cgroupparent.DEFAULT, *(cgroupparent.of(c.config) for c in known.values())}
    for parent in sorted(parents):
        for cid in list_lamina_cgroups(parent=parent):
            if not _ours(runtime, cid, known) or (cid in known and known[cid].state in LIVE):
                continue
            where = f"{parent}/{cid[:12]}".lstrip("/")
            yield from _stray(runtime, cid, f"cgroup {where} belongs to no running container",
                              partial(_remove_cgroup, cid, parent))


def _ready(runtime: Any) -> Iterator[Finding]:
    """A cgroup set this root's fork server kept ready for its starts (adapters/kernel/
    readycgroup.py) and left when it was killed outright: the server <root>/cli.pid names
    last. Another root's is not this root's to list: its check would fail on what another
    root's killed server left (the next fork server to start, whichever its root, sweeps
    them all). A live server's is its own, passed over."""
    from adapters.fastpath.client import CLI_LOCK
    from adapters.kernel import readycgroup

    try:
        with open(os.path.join(runtime.root, CLI_LOCK)) as f:
            last = f.read().strip()
    except OSError:
        return
    for name in readycgroup.orphans():
        if readycgroup.stamp_of(name).partition(".")[0] == last:
            yield Finding(f"cgroup lamina/{name} was kept ready by this root's fork server, "
                          "which is gone", partial(readycgroup.remove, name))


def _remove_cgroup(cid: str, parent: str) -> None:
    from adapters.kernel.cgroups import Cgroup, CgroupError

    try:
        cgroup = Cgroup.open(cid, parent=parent)
        if cgroup.is_frozen():
            cgroup.thaw()
        if cgroup.pids():
            cgroup.kill(signal.SIGKILL)
        cgroup.remove()
    except CgroupError:
        pass


def _locked(runtime: Any, cid: str, fn: Callable[[], object]) -> None:
    """Run a repair only while nobody works on the container (else it is not stray)."""
    with idle(runtime, cid) as free:
        if free:
            fn()


def _stray(runtime: Any, cid: str, text: str, repair: Callable[[], object]
           ) -> Iterator[Finding]:
    """What the container `cid` left on the host, or a state of its own there that the log
    doesn't account for (a freezer, an unmounted view, a half-done rebase), as a finding,
    unless someone works on it now (_busy): a pause or commit in flight sets its freezer, a
    start mounts its view, a commit rebases its layer. Its repair runs under the
    container's lock, only if nobody holds it then (_locked). Every finding about a
    container is judged this way."""
    if not _busy(runtime, cid):
        yield Finding(text, partial(_locked, runtime, cid, repair))


def _busy(runtime: Any, cid: str) -> bool:
    """Someone works on the container now (holds its lock): what it has on the host is
    theirs to finish, not a leftover to list."""
    with idle(runtime, cid) as free:
        return not free


def _mounts(runtime: Any, known: Mapping[str, Container]) -> Iterator[Finding]:
    from adapters.storage.overlay import mounts_under, unmount

    layers_dir = runtime.layers.layers_dir
    running = {runtime.layers.merged_dir(c.rw_layer) for c in known.values()
               if c.state in LIVE}
    for m in reversed(mounts_under(layers_dir)):
        if m in running:
            continue
        top = os.path.relpath(m, layers_dir).split(os.sep)[0]
        cid = top.removeprefix("rw-")
        yield from _stray(runtime, cid, f"{m} is mounted but its container isn't running",
                          partial(unmount, m))


def _views(runtime: Any, known: Mapping[str, Container]) -> Iterator[Finding]:
    """A live container's union view must be mounted on the host (its MergedDir, as
    docker's): export, diff and commit read it there. Someone unmounted it (the process
    keeps its own copy in its mount namespace): mount it again."""
    for c in known.values():
        merged = runtime.layers.merged_dir(c.rw_layer)
        if c.state not in LIVE or os.path.ismount(merged):
            continue
        yield from _stray(runtime, c.id, f"container {c.id[:12]} ({c.name}) is {c.state} but "
                          f"its union view {merged} is not mounted on the host",
                          partial(_remount, runtime, c.id))


def _remount(runtime: Any, cid: str) -> None:
    """Mount the view again if the log still says the container runs (read again under
    its lock: a stop may have recorded since the finding) and nobody mounted it since."""
    c = runtime.log.container(cid)
    if c is None or c.state not in LIVE or os.path.ismount(
            runtime.layers.merged_dir(c.rw_layer)):
        return
    image = runtime.log.image(c.image)
    if image is not None:
        runtime.layers.mount(c.rw_layer, image.layers, idmap=runtime.idmap())


def _freezer(runtime: Any, known: Mapping[str, Container]) -> Iterator[Finding]:
    from adapters.kernel.cgroups import Cgroup, CgroupError
    from core import cgroupparent

    for c in known.values():
        if c.state not in LIVE:
            continue
        try:
            frozen = Cgroup.open(c.id, parent=cgroupparent.of(c.config)).is_frozen()
        except (CgroupError, OSError):
            continue  # no cgroup: the lost-process check speaks for this container
        if frozen == (c.state == "paused"):
            continue
        yield from _stray(runtime, c.id, f"container {c.id[:12]} ({c.name}) is {c.state} in "
                          f"the log but {'frozen' if frozen else 'not frozen'} on the host",
                          partial(_set_freezer, runtime, c.id))


def _set_freezer(runtime: Any, cid: str) -> None:
    """The freezer set to what the log says now (read again under the container's lock: a
    pause or unpause may have recorded since the finding was made)."""
    from adapters.kernel.cgroups import Cgroup, CgroupError
    from core import cgroupparent

    c = runtime.log.container(cid)
    if c is None or c.state not in LIVE:
        return
    with contextlib.suppress(CgroupError, OSError):
        cgroup = Cgroup.open(cid, parent=cgroupparent.of(c.config))
        if c.state == "paused":
            cgroup.freeze()
        else:
            cgroup.thaw()


# --- layers and staging ----------------------------------------------------------------------

def _owner_alive(path: str) -> bool:
    """Whether the process that wrote this layer directory still runs (it may be about to
    register it). Read-only layers keep the stamp in layer.json, read-write ones in `owner`."""
    from adapters.kernel.proc import stamp_alive

    try:
        with open(os.path.join(path, "layer.json")) as f:
            text = str(json.load(f).get("owner") or "")
    except (OSError, ValueError):
        try:
            with open(os.path.join(path, "owner")) as f:
                text = f.read()
        except OSError:
            return False
    return stamp_alive(text)


def _layers(runtime: Any) -> Iterator[Finding]:
    store = runtime.layers
    try:
        on_disk = sorted(set(os.listdir(store.layers_dir)) - _RESERVED)
    except FileNotFoundError:
        on_disk = []
    # read the log after listing the disk: a layer renamed in later is not looked at, and one
    # registered in between is known
    layers = {la.id: la for la in runtime.log.layers()}
    rw = {c.rw_layer for c in runtime.log.containers()}
    for name in on_disk:
        path = store.layer_dir(name)
        if name in layers or name in rw or not os.path.isdir(path) or _owner_alive(path):
            continue
        if name.startswith("rw-"):
            yield from _stray(runtime, name[3:],
                              f"read-write layer {name[:15]} belongs to no container",
                              partial(store.remove_rw_layer, name))
        else:
            yield Finding(f"layer {name[:12]} on disk is in no image the log knows "
                          "(half-written or half-removed)",
                          partial(store.remove_layer, name))
    for name in rw:
        if name and store.unsettled(name):  # killed inside a commit's rebase (store.py)
            yield from _stray(runtime, name[3:], f"read-write layer {name[:15]} was left "
                              "between two steps of a commit (its fresh upper not in place)",
                              partial(store.settle, name))
    for la in layers.values():
        problem = _layer_problem(store, la.id, la.diff_id)
        if problem:
            yield Finding(f"layer {la.id[:12]} {problem}", lambda: None)


def _layer_problem(store: Any, layer_id: str, diff_id: str) -> str:
    """Why a registered layer is not what the log says ('' if it is): cheap checks only."""
    path = store.layer_dir(layer_id)
    if not os.path.isdir(os.path.join(path, "diff")):
        return "is in the log but missing on disk"
    split = os.path.join(path, "tar-split.gz")
    try:
        if os.path.exists(split):
            from adapters.storage.archive import read_split_header

            recorded = read_split_header(split)[0]
        else:
            with open(os.path.join(path, "layer.json")) as f:
                recorded = json.load(f)["diff_id"]
    except (OSError, ValueError, KeyError) as err:
        return f"has unreadable metadata on disk ({err})"
    if recorded != diff_id:
        return f"on disk is {recorded}, but the log registered {diff_id}"
    return ""


def _container_dirs(runtime: Any) -> Iterator[Finding]:
    """<root>/containers/<id> (logs, exit record, lock) of a container the log removed: an
    rm that died between its append and deleting them."""
    parent = os.path.join(runtime.root, "containers")
    try:
        names = sorted(os.listdir(parent))
    except FileNotFoundError:
        return
    ids = {c.id for c in runtime.log.containers()}  # read after listing, as for layers
    for cid in names:
        if cid in ids or next(runtime.log.read(stream=f"container:{cid}"), None) is None:
            continue  # known, or never recorded (a create may be about to record it)
        yield from _stray(runtime, cid,
                          f"files of removed container {cid[:12]} are left in {parent}",
                          partial(shutil.rmtree, os.path.join(parent, cid), ignore_errors=True))


def _staging(runtime: Any) -> Iterator[Finding]:
    from adapters.kernel.proc import stamp_alive

    tmp = runtime.layers.tmp_dir
    try:
        names = sorted(os.listdir(tmp))
    except FileNotFoundError:
        return
    now = time.time()
    for name in names:
        path = os.path.join(tmp, name)
        owner = _STAMP.match(name)
        if owner is not None:
            if stamp_alive(owner.group(1)):
                continue
        else:
            try:
                if now - os.lstat(path).st_mtime <= STAGING_AGE:
                    continue
            except FileNotFoundError:
                continue
        yield Finding(f"staging leftover {path}", partial(_remove_path, path))


def _remove_path(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
