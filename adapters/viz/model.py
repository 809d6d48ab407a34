"""What each picture shows, computed from a Source: plain dataclasses, no drawing.

The stack (seed: an image is a stack of read-only layers, a container adds a read-write layer
on top, a running container has a process space around it), the layer tree of everything
(shared layers once), a container's path through the lifecycle's states over time, and the
networks with the containers on them (their addresses and published ports).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from core.model import Container, Image, Layer
from core.references import short


@dataclass(frozen=True)
class LayerBox:
    """One layer as drawn: short id, what made it, its size (bytes)."""

    id: str
    created_by: str
    size: int  # bytes; -1 when not known (a read-write layer in the past)
    rw: bool = False

    @property
    def short(self) -> str:
        return self.id[3:15] if self.id.startswith("rw-") else short(self.id)


@dataclass(frozen=True)
class ProcessSpace:
    """The process space around a running or paused container.

    live: pids, commands and frozen were read from the host now (its cgroup); otherwise they
    are what the log recorded (the first pid, the cgroup) at that point.
    """

    pid: int
    cgroup: str
    frozen: bool
    pids: tuple[int, ...] = ()
    commands: tuple[str, ...] = ()
    live: bool = True


@dataclass(frozen=True)
class MountBox:
    """One of the container's mounts as drawn: data that lives outside the union view."""

    type: str  # bind | volume | tmpfs
    source: str  # the volume's name, the bind's host path, "" for a tmpfs
    target: str
    read_only: bool = False
    anonymous: bool = False

    @property
    def label(self) -> str:
        if self.type == "volume":
            name = short(self.source) if self.anonymous else self.source
            return f"volume {name}" + (" (anonymous)" if self.anonymous else "")
        return f"bind {self.source}" if self.type == "bind" else "tmpfs"


@dataclass(frozen=True)
class Attachment:
    """One of a container's networks as its picture draws it: its address there while it
    runs ("" while stopped), its aliases, and the ports published to it (its first)."""

    network: str
    bridge: str
    cidr: str = ""
    aliases: tuple[str, ...] = ()
    ports: tuple[str, ...] = ()


@dataclass(frozen=True)
class Stack:
    """An image's stack, or a container's: layers bottom first, the rw layer on top."""

    kind: str  # "image" or "container"
    id: str
    label: str  # tags, or the container's name
    state: str  # "image" for an image; the container's lifecycle state
    seq: int
    when: str
    live: bool
    layers: tuple[LayerBox, ...]
    image: str = ""  # the container's image id
    image_label: str = ""
    rw: LayerBox | None = None
    changes: tuple[tuple[str, str], ...] | None = None  # (A|C|D, path); None: not known
    union: tuple[str, ...] = ()  # top-level names of the union view, when the files exist
    process: ProcessSpace | None = None
    mounts: tuple[MountBox, ...] = ()  # volumes, binds, tmpfs: beside the view, not in it
    networks: tuple[Attachment, ...] = ()  # its networks, with its leases while it runs

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# --- layers --------------------------------------------------------------------------------


def _history_by_layer(image: Image) -> list[str]:
    """created_by of each of the image's layers, from its config's history (empty layers
    skipped), for layers that don't carry their own."""
    entries = [h for h in image.config.get("history") or [] if isinstance(h, dict)]
    return [h.get("created_by", "") for h in entries if not h.get("empty_layer")]


def layer_boxes(image: Image, layers: dict[str, Layer]) -> tuple[LayerBox, ...]:
    """The image's layers bottom first, each with the best created_by lamina has."""
    history = _history_by_layer(image)
    boxes = []
    for n, lid in enumerate(image.layers):
        layer = layers.get(lid)
        by = (layer.created_by if layer else "") or (history[n] if n < len(history) else "")
        boxes.append(LayerBox(lid, by or image.created_by, layer.size if layer else 0))
    return tuple(boxes)


def image_label(image: Image | None) -> str:
    if image is None:
        return "<gone>"
    return ", ".join(image.tags) or f"<none> {short(image.id)}"


# --- files on the host (live pictures only) ----------------------------------------------------


def union_entries(dirs_top_first: list[str], limit: int = 24) -> tuple[str, ...]:
    """Top-level names of the union of overlay directories: whiteouts hide what is below."""
    from adapters.storage.store import is_whiteout

    seen: dict[str, bool] = {}
    hidden: set[str] = set()
    for d in dirs_top_first:
        try:
            entries = list(os.scandir(d))
        except FileNotFoundError:
            continue
        for entry in entries:
            if entry.name in seen or entry.name in hidden:
                continue
            st = entry.stat(follow_symlinks=False)
            if is_whiteout(st):
                hidden.add(entry.name)
            else:
                seen[entry.name] = entry.is_dir(follow_symlinks=False)
    names = sorted(f"/{n}/" if is_dir else f"/{n}" for n, is_dir in seen.items())
    return tuple(names[:limit]) + ((f"… {len(names) - limit} more",) if len(names) > limit
                                   else ())


def tree_size(top: str) -> int:
    """Bytes of regular files below top (a read-write layer's size, docker's SizeRw)."""
    total = 0
    for dirpath, _, files in os.walk(top):
        for name in files:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if not os.path.islink(os.path.join(dirpath, name)):
                total += st.st_size
    return total


def short_cgroup(path: str) -> str:
    """lamina/<64 hex> is too wide for a label: lamina/<12 hex>…"""
    head, _, tail = path.rpartition("/")
    return f"{head}/{tail[:12]}…" if len(tail) > 12 else path


def process_space(c: Container, live: bool) -> ProcessSpace | None:
    """pids, cgroup and freezer state of a running or paused container."""
    if c.state not in ("running", "paused"):
        return None
    if not live:
        return ProcessSpace(c.pid, c.cgroup, c.state == "paused", (c.pid,) if c.pid else (),
                            live=False)
    from adapters.kernel.cgroups import Cgroup, CgroupError
    from core import cgroupparent

    try:
        cgroup = Cgroup.open(c.id, parent=cgroupparent.of(c.config))
        pids, frozen = tuple(sorted(cgroup.pids())), cgroup.is_frozen()
    except (CgroupError, OSError, ValueError):
        pids, frozen = (), c.state == "paused"
    return ProcessSpace(c.pid, c.cgroup or f"lamina/{c.id}", frozen, pids,
                        tuple(_comm(p) for p in pids))


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        return " ".join(a.decode(errors="replace") for a in argv if a)[:40]
    except OSError:
        return "?"


# --- the stack ---------------------------------------------------------------------------------


def image_stack(source: Any, ref: str, store: Any) -> Stack:
    image = source.image(ref)
    layers = {la.id: la for la in source.reader.layers()}
    boxes = layer_boxes(image, layers)
    union = union_entries([store.diff_dir(b.id) for b in reversed(boxes)]) if store else ()
    return Stack("image", image.id, image_label(image), "image", source.seq, source.when,
                 source.live, boxes, union=union)


def container_stack(source: Any, c: Container, store: Any) -> Stack:
    image = source.reader.image(c.image)
    layers = {la.id: la for la in source.reader.layers()}
    boxes = layer_boxes(image, layers) if image else ()
    lowers = [store.diff_dir(b.id) for b in reversed(boxes)] if store else []
    rw = LayerBox(c.rw_layer, f"read-write layer of {c.name}", -1, rw=True)  # -1: unknown
    changes = None
    union: tuple[str, ...] = ()
    if source.live and store is not None:
        from adapters.storage import inspect

        upper = store.diff_dir(c.rw_layer)
        own = [upper, *store.bases(c.rw_layer)]  # a commit by rename's lowers (store.py)
        changes = tuple(inspect.changes(own if len(own) > 1 else upper,
                                        [store.init_dir(c.rw_layer), *lowers]))
        rw = LayerBox(c.rw_layer, rw.created_by, sum(map(tree_size, own)), rw=True)
        union = union_entries([*own, store.init_dir(c.rw_layer), *lowers])
    elif store is not None:
        union = union_entries(lowers)
    return Stack("container", c.id, c.name, c.state, source.seq, source.when, source.live,
                 boxes, image=c.image, image_label=image_label(image), rw=rw, changes=changes,
                 union=union, process=process_space(c, source.live), mounts=mount_boxes(c),
                 networks=attachments(c))


def attachments(c: Container) -> tuple[Attachment, ...]:
    """The container's networks at the source's point: its run's endpoints first (in the
    order it leased them), then the networks it is a member of without a lease."""
    out = []
    for slot, name in enumerate([*c.endpoints, *(n for n in c.networks
                                                  if n not in c.endpoints)]):
        ep = c.endpoints.get(name) or {}
        m = _member(c, name, slot == 0)
        out.append(Attachment(name, ep.get("bridge", ""), m.cidr, m.aliases, m.ports))
    return tuple(out)


def mount_boxes(c: Container) -> tuple[MountBox, ...]:
    """The container's mounts as its create recorded them (so, at any seq, as they were)."""
    if not c.config.get("mount_points"):
        return ()
    from core.mounts import recorded

    return tuple(MountBox(m.type, m.source, m.target, m.read_only, m.anonymous)
                 for m in recorded(c.config))


def stack(source: Any, ref: str, store: Any = None) -> Stack:
    """A container's picture if ref names one (docker's order), else an image's."""
    from core.errors import NotFound

    try:
        c = source.container(ref)
    except NotFound:
        try:
            return image_stack(source, ref, store)
        except NotFound:
            when = "" if source.live else f" at seq {source.seq}"
            raise NotFound(f"no such container or image{when}: {ref}") from None
    return container_stack(source, c, store)


# --- the tree ----------------------------------------------------------------------------------


@dataclass
class Tree:
    """Every layer once, with the images on them and the containers on the images."""

    seq: int
    when: str
    layers: dict[str, LayerBox] = field(default_factory=dict)
    parents: dict[str, str | None] = field(default_factory=dict)  # layer -> the one below
    images: dict[str, tuple[str, str]] = field(default_factory=dict)  # image -> (label, top)
    containers: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # name,state,img

    def children(self, lid: str | None) -> list[str]:
        return sorted(k for k, p in self.parents.items() if p == lid)

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "when": self.when,
                "layers": [{**asdict(b), "parent": self.parents[b.id]}
                           for b in self.layers.values()],
                "images": [{"id": i, "label": lab, "top_layer": top}
                           for i, (lab, top) in self.images.items()],
                "containers": [{"id": c, "name": n, "state": s, "image": i}
                               for c, (n, s, i) in self.containers.items()]}


def tree(source: Any) -> Tree:
    """The whole layer tree at the source's point (shared base layers drawn once)."""
    out = Tree(source.seq, source.when)
    layers = {la.id: la for la in source.reader.layers()}
    for image in sorted(source.reader.images(), key=lambda i: i.created):
        below: str | None = None
        for box in layer_boxes(image, layers):
            out.layers.setdefault(box.id, box)
            out.parents.setdefault(box.id, below)
            below = box.id
        out.images[image.id] = (image_label(image), below or "")
    for c in sorted(source.reader.containers(), key=lambda c: c.created):
        out.containers[c.id] = (c.name, c.state, c.image)
    return out


# --- the networks ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """A container on a network: its lease there while it runs (address, mac, the names its
    DNS answers), none while it is stopped (a member still: it leases again at its next
    start). `ports` are its published ports in docker's words, on the network they are
    routed to (its first one); empty on its other networks."""

    container: str  # id
    name: str
    state: str
    address: str = ""  # "" when it holds no lease (stopped)
    prefixlen: int = 0
    aliases: tuple[str, ...] = ()
    mac: str = ""
    ports: tuple[str, ...] = ()

    @property
    def cidr(self) -> str:
        return f"{self.address}/{self.prefixlen}" if self.address else ""


@dataclass(frozen=True)
class NetBox:
    """One network as drawn: the recorded ones, and the predefined bridge when a container
    was on it."""

    id: str
    name: str
    subnet: str
    gateway: str
    bridge: str  # its interface on the host (lamina0, lm-<12 hex>)
    internal: bool = False
    predefined: bool = False
    members: tuple[Member, ...] = ()


@dataclass(frozen=True)
class NetMap:
    """The networks at a point of the log and who was on them with which address and port."""

    seq: int
    when: str
    live: bool
    networks: tuple[NetBox, ...]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def docker_ports(ports: Any) -> tuple[str, ...]:
    """A run's port bindings as docker's CLI writes them: `0.0.0.0:8080->80/tcp`."""
    if not ports:
        return ()
    from adapters.storage.netsettings import ports_text

    text = ports_text([{"PrivatePort": p["container_port"], "PublicPort": p["host_port"],
                        "Type": p["proto"], "IP": p["host_ip"]} for p in ports])
    return tuple(text.split(", ")) if text else ()


def _member(c: Container, name: str, first: bool) -> Member:
    ep = c.endpoints.get(name)
    wanted = c.networks.get(name) or {}
    if not ep:
        return Member(c.id, c.name, c.state, aliases=tuple(wanted.get("aliases") or ()))
    return Member(c.id, c.name, c.state, ep.get("address", ""), int(ep.get("prefixlen") or 0),
                  tuple(ep.get("aliases") or ()), ep.get("mac", ""),
                  docker_ports(c.ports) if first else ())


def network_map(containers: Any, networks: Any, seq: int = 0, when: str = "",
                live: bool = False) -> NetMap:
    """Each network with its members, from the aggregates at one point: a container's
    endpoints (its leases, by network id) while it runs, its membership (by network name)
    while it doesn't."""
    from core.engine.networks import PREDEFINED, bridge_of

    nets = sorted(networks, key=lambda n: (n.created, n.name))
    by_id: dict[str, Any] = {n.id: n for n in nets}
    by_name: dict[str, Any] = {n.name: n for n in nets}
    bridge = PREDEFINED["bridge"]
    members: dict[str, list[Member]] = {}
    extra: dict[str, NetBox] = {}  # an endpoint on a network the fold no longer has
    for c in sorted(containers, key=lambda c: (c.created, c.id)):
        for slot, (name, ep) in enumerate(c.endpoints.items()):
            nid = ep.get("id", "")
            net = by_id.get(nid) or (bridge if nid == bridge.id or name == "bridge" else None)
            if net is None:
                extra.setdefault(nid, NetBox(nid, name, "", ep.get("gateway", ""),
                                             ep.get("bridge", "")))
            members.setdefault(net.id if net else nid, []).append(_member(c, name, slot == 0))
        for name in c.networks:
            if name in c.endpoints:
                continue
            net = by_name.get(name) or (bridge if name == "bridge" else None)
            if net is not None:
                members.setdefault(net.id, []).append(_member(c, name, False))
    boxes = []
    if bridge.id in members:
        nets.insert(0, bridge)
    for n in nets:
        boxes.append(NetBox(n.id, n.name, n.subnet, n.gateway, bridge_of(n), n.internal,
                            n is bridge, tuple(members.get(n.id, ()))))
    boxes += [replace(b, members=tuple(members[nid])) for nid, b in extra.items()]
    return NetMap(seq, when, live, tuple(boxes))


def networks(source: Any) -> NetMap:
    """The network picture at the source's point."""
    return network_map(source.reader.containers(), source.reader.networks(), source.seq,
                       source.when, source.live)
