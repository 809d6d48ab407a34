"""Aggregates and how events evolve them: the projection, as pure functions.

`evolve(aggregate | None, recorded) -> aggregate | None` is the one definition of what an event
means for its stream. The SQLite read model applies it row by row inside the append's
transaction; replay and time travel fold it over the whole log. Both use this code, which is
why they can't disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, TypedDict, cast

from core import lifecycle
from events.envelope import Recorded


@dataclass(frozen=True, slots=True)
class Container:
    """A container: an image's layers plus one read-write layer, running or not."""

    id: str
    name: str
    image: str
    state: str
    version: int
    created: str
    cmd: tuple[str, ...] = ()
    rw_layer: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    pid: int = 0
    cgroup: str = ""
    exit_code: int | None = None
    oom: bool = False
    ran: bool = False
    started_at: str = ""
    finished_at: str = ""
    restart_count: int = 0
    last_signal: int = 0
    exit_reason: str = ""
    start_time: int = 0  # of the process `pid` (see ContainerStarted); 0 if unknown
    # the current run's leases (ContainerStarted's networks and ports); empty when not running
    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)
    ports: tuple[dict[str, Any], ...] = ()
    # the bridge networks it is a member of, by name, with what it asked there ({"aliases",
    # "ip"}): its --network and what `network connect/disconnect` changed since (each run
    # leases an address on every one of them, in this order)
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)
    # the restart policy's (core/restart.py): a restart scheduled (docker's "restarting"),
    # the last back-off in seconds, the user's stop or kill since the last start, and the
    # pid of the run that ended last (whose monitor applies the policy); `shutdown_stopped`:
    # the host's shutdown ended that run (no policy restarts it until the host starts again)
    restarting: bool = False
    restart_delay: float = 0.0
    manually_stopped: bool = False
    shutdown_stopped: bool = False
    ended_pid: int = 0
    # the current run's last recorded health change (ContainerHealthChanged's status,
    # failing_streak, exit_code, output); empty from each start until its first change
    health: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Image:
    """An image: a config over a stack of read-only layers (bottom first), maybe a parent.

    `removed` marks an image that `rmi -f` took off the top level while a child image or a
    container still needs it: it has no tags and only `images -a` lists it.
    """

    id: str
    parent: str | None
    layers: tuple[str, ...]
    version: int
    created: str
    config: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    created_by: str = ""
    comment: str = ""
    source: str = ""
    removed: bool = False


class BriefRunConfig(TypedDict, total=False):
    """Of an image's run config, what a container listing reads."""

    Healthcheck: dict[str, Any] | None
    ExposedPorts: dict[str, Any] | None


class BriefConfig(TypedDict, total=False):
    config: BriefRunConfig | None


@dataclass(frozen=True, slots=True)
class ImageBrief:
    """What a listing of containers shows of an image: its tags, and of its config (in
    Image.config's shape) the health check and the exposed ports. `ps` of a thousand
    containers reads some six hundred images; decoding them whole took ~8 us each, most
    of it in configs and histories no row shows (EventLog.image_briefs)."""

    id: str
    tags: tuple[str, ...] = ()
    config: BriefConfig = field(default_factory=lambda: BriefConfig())


def brief_of(image: Image) -> ImageBrief:
    """An image's brief, from the image itself (the stores that have it decoded): the same
    as a store's own decoding of the image's document into the brief gives."""
    if "config" not in image.config:
        return ImageBrief(id=image.id, tags=image.tags)
    run = image.config["config"]
    if isinstance(run, dict):
        run = {key: run[key] for key in ("Healthcheck", "ExposedPorts") if key in run}
    return ImageBrief(id=image.id, tags=image.tags, config=cast(BriefConfig, {"config": run}))


class BriefContainerConfig(TypedDict, total=False):
    """Of a container's config, what its row in a listing reads: its network (whether its
    ports are published), its health check, its --expose and -p."""

    network: str | None
    healthcheck: dict[str, Any] | None
    exposed_ports: list[Any] | None
    port_bindings: list[dict[str, Any]] | None


BRIEF_CONTAINER_KEYS = tuple(BriefContainerConfig.__annotations__)


@dataclass(frozen=True, slots=True)
class ContainerBrief:
    """What `ps`'s table shows of a container, under Container's own field names: its name,
    image, command, state and exit, health and ports. A listing of the 784 live containers
    of a 1M-event log decoded them whole in 4-9 ms, most of it in fields no row shows
    (EventLog.container_briefs)."""

    id: str
    name: str
    image: str
    state: str
    created: str
    cmd: tuple[str, ...] = ()
    config: BriefContainerConfig = field(default_factory=lambda: BriefContainerConfig())
    exit_code: int | None = None
    ran: bool = False
    restarting: bool = False
    ports: tuple[dict[str, Any], ...] = ()
    health: dict[str, Any] = field(default_factory=dict)


def container_brief_of(c: Container) -> ContainerBrief:
    """A container's brief, from the container itself: the same as a store's own decoding
    of the container's document into the brief gives."""
    config = {key: c.config[key] for key in BRIEF_CONTAINER_KEYS if key in c.config}
    return ContainerBrief(id=c.id, name=c.name, image=c.image, state=c.state,
                          created=c.created, cmd=c.cmd,
                          config=cast(BriefContainerConfig, config), exit_code=c.exit_code,
                          ran=c.ran, restarting=c.restarting, ports=c.ports, health=c.health)


_BRIEF_FIELDS = tuple(f.name for f in fields(ContainerBrief))


def brief_doc(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Of a container's document (to_doc's), the brief's fields: what a store keeps beside
    it for listings, and decodes into a ContainerBrief as it would the whole document."""
    brief = {name: doc[name] for name in _BRIEF_FIELDS if name in doc}
    config = doc.get("config") or {}
    brief["config"] = {key: config[key] for key in BRIEF_CONTAINER_KEYS if key in config}
    return brief


def brief_from_doc(doc: Mapping[str, Any]) -> ContainerBrief:
    """A ContainerBrief from brief_doc's dict (or a whole container's document)."""
    brief = brief_doc(doc)
    return ContainerBrief(**{**brief, "cmd": tuple(brief.get("cmd") or ()),
                             "ports": tuple(brief.get("ports") or ())})


@dataclass(frozen=True, slots=True)
class Layer:
    """A read-only layer: its digest, size and the layer below it."""

    id: str
    parent: str | None
    diff_id: str
    chain_id: str
    size: int
    version: int
    created: str
    created_by: str = ""
    comment: str = ""


@dataclass(frozen=True, slots=True)
class Volume:
    """A volume: a directory outside every union view that containers mount and outlive.

    `id` is its name (docker's volumes have no other id). `users` maps each container that
    mounts it, running or not, to the paths it mounts it at: a volume with users can't be
    removed.
    """

    id: str
    version: int
    created: str
    driver: str = "local"
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    anonymous: bool = False
    users: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Network:
    """A user-defined bridge network (`id` 64 hex; `name` unique among live networks).
    Members (containers on it, their addresses) come with a later slice."""

    id: str
    version: int
    created: str
    name: str
    subnet: str
    gateway: str
    driver: str = "bridge"
    internal: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    ip_range: str = ""
    aux_addresses: dict[str, str] = field(default_factory=dict)
    attachable: bool = False
    subnet6: str = ""
    gateway6: str = ""
    ip_range6: str = ""


Aggregate = Container | Image | Layer | Volume | Network


def _replacer(cls: type) -> Callable[..., Any]:
    """`dataclasses.replace` for one class, generated once: replace() looks up the fields
    and builds a kwargs dict on every call, the fold's top cost."""
    names = [f.name for f in fields(cls)]
    params = ", ".join(f"{n}=_KEEP" for n in names)
    args = ", ".join(f"obj.{n} if {n} is _KEEP else {n}" for n in names)
    scope: dict[str, Any] = {"cls": cls, "_KEEP": object()}
    exec(f"def replace(obj, *, {params}):\n    return cls({args})", scope)
    return scope["replace"]


_replace_container = _replacer(Container)
_replace_image = _replacer(Image)

# Which lifecycle trigger each container event is the record of.
TRIGGER_OF: dict[str, str] = {
    "ContainerCreated": "create",
    "ContainerStarted": "start",
    "ContainerPaused": "pause",
    "ContainerUnpaused": "unpause",
    "ContainerStopped": "stop",
    "ContainerKilled": "kill",
    "ContainerSignalled": "signal",
    "ContainerExited": "exit",
    "ContainerRestarted": "restart",
    "ContainerRemoved": "rm_force",
    "ContainerCommitted": "commit",
    "ExecStarted": "exec",
    "ExecExited": "exec",
    "ContainerConnected": "connect",
    "ContainerDisconnected": "disconnect",
}


class ProjectionError(ValueError):
    """The log holds a move the lifecycle forbids: it was written by a broken or newer lamina."""


def _moved(c: Container, rec: Recorded, trigger: str = "", **changes: Any) -> Container:
    trigger = trigger or TRIGGER_OF[rec.type]
    dest = lifecycle.destination(c.state, trigger)
    if dest is None and rec.type in ("ExecExited",):
        dest = c.state  # an exec may end after the container stopped
    if dest is None:
        raise ProjectionError(
            f"seq {rec.seq}: {rec.type} is not a legal move from {c.state!r} for {c.id[:12]}")
    return _replace_container(c, state=dest, version=rec.version, **changes)


def _container_created(_: Container | None, rec: Recorded) -> Container:
    d = rec.data
    config = d.get("config") or {}
    return Container(
        id=d["id"], name=d["name"], image=d["image"], state="stopped", version=rec.version,
        created=rec.at, cmd=tuple(d.get("cmd") or ()), rw_layer=d.get("rw_layer", ""),
        config=config, networks=membership(config),
    )


def membership(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The networks a create put a container on: its --network when that is a bridge
    network (not none, host, or a container's), with its endpoint settings."""
    mode = config.get("network") or "none"
    if mode in ("none", "host") or mode.startswith("container:"):
        return {}
    return {mode: dict((config.get("endpoints") or {}).get(mode) or {})}


def in_member_order(config: dict[str, Any],
                    networks: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """A container's networks in the order a start leases them (slot 0 is eth0 and holds
    the published ports): its --network first, as docker's, then the others by name.

    The order is a rule rather than the order of the connects because the read model and
    snapshots keep an aggregate as canonical JSON, whose keys are sorted: an order that
    lived only in a dict would differ between a container folded from its events and one
    read back, and so would which network its ports are published on."""
    primary = config.get("network")
    names = sorted(networks, key=lambda n: (n != primary, n))
    return {n: networks[n] for n in names}


def settled(c: Container) -> Container:
    """`c` read back from its text: networks in member order, endpoints in slot order (the
    canonical JSON it was kept in sorted both by name)."""
    if len(c.networks) < 2 and len(c.endpoints) < 2:
        return c
    return replace(c, networks=in_member_order(c.config, c.networks),
                   endpoints=by_slot(c.endpoints))


def by_slot(endpoints: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Endpoints in the order of their interfaces (eth0 first), whatever a text kept."""
    return dict(sorted(endpoints.items(), key=lambda kv: kv[1].get("slot", 0)))


def _connected(c: Container, rec: Recorded) -> Container:
    d = rec.data
    settings = {k: v for k, v in (("aliases", d.get("aliases")), ("ip", d.get("ip"))) if v}
    settings.update(d.get("settings") or {})
    endpoints = {**c.endpoints, d["network"]: d["endpoint"]} if d.get("endpoint") \
        else c.endpoints
    return _moved(c, rec, networks=in_member_order(c.config, {**c.networks,
                                                              d["network"]: settings}),
                  endpoints=endpoints)


def _disconnected(c: Container, rec: Recorded) -> Container:
    """Off a network; leaving the one its ports are published on (its first endpoint's)
    releases the ports too, as docker releases an endpoint's port mappings with it."""
    name = rec.data["network"]
    return _moved(c, rec, networks={k: v for k, v in c.networks.items() if k != name},
                  endpoints={k: v for k, v in c.endpoints.items() if k != name},
                  ports=() if publishing_network(c) == name else c.ports)


def _unlinked(c: Container, rec: Recorded) -> Container:
    """A link taken off a network's endpoint settings (no lifecycle move)."""
    name, link = rec.data["network"], rec.data["link"]
    settings = dict(c.networks.get(name) or {})
    settings["links"] = [x for x in settings.get("links") or () if x != link]
    if not settings["links"]:
        del settings["links"]
    return _replace_container(c, networks={**c.networks, name: settings},
                              version=rec.version)


def publishing_network(c: Container) -> str | None:
    """The network a running container's published ports are on: its first endpoint's
    (None when it publishes nothing)."""
    if not c.ports or not c.endpoints:
        return None
    return min(c.endpoints, key=lambda n: c.endpoints[n].get("slot", 0))


def _started(c: Container, rec: Recorded) -> Container:
    """The user's start: RestartCount and the back-off start over (docker's)."""
    return _moved(c, rec, pid=rec.data["pid"], cgroup=rec.data.get("cgroup", ""), ran=True,
                  started_at=rec.at, exit_code=None, oom=False, exit_reason="", last_signal=0,
                  start_time=rec.data.get("start_time", 0), restart_count=0,
                  restart_delay=0.0, restarting=False, manually_stopped=False,
                  shutdown_stopped=False, health={}, **_leases(rec))


def _leases(rec: Recorded) -> dict[str, Any]:
    return {"endpoints": by_slot(rec.data.get("networks") or {}),
            "ports": tuple(rec.data.get("ports") or ())}


def _restarted(c: Container, rec: Recorded) -> Container:
    """The restart policy's restart counts (RestartCount, as docker's) and keeps its
    back-off; the user's starts both over, as a start does."""
    d = rec.data
    automatic = bool(d.get("automatic"))
    return _moved(c, rec, pid=d["pid"], cgroup=d.get("cgroup", ""), ran=True,
                  started_at=rec.at, exit_code=None, oom=False, exit_reason="",
                  restart_count=int(d.get("count", c.restart_count + 1)) if automatic else 0,
                  restart_delay=float(d.get("delay") or 0) if automatic else 0.0,
                  restarting=False, manually_stopped=False, shutdown_stopped=False,
                  start_time=d.get("start_time", 0), health={}, **_leases(rec))


def _ended(c: Container, rec: Recorded) -> Container:
    """A run's end: by the user (stop, kill: docker's "manually stopped"), by the host's
    shutdown (a stop with `shutdown`), or by itself (an exit)."""
    d = rec.data
    shutdown = bool(d.get("shutdown"))
    return _moved(c, rec, pid=0, cgroup="", start_time=0, endpoints={}, ports=(),
                  exit_code=d["exit_code"],
                  finished_at=rec.at,
                  oom=bool(d.get("oom", False)), exit_reason=d.get("reason", ""),
                  last_signal=d.get("signal", c.last_signal), ended_pid=c.pid,
                  restarting=False, shutdown_stopped=shutdown,
                  manually_stopped=rec.type != "ContainerExited" and not shutdown)


def _restart_scheduled(c: Container, rec: Recorded) -> Container:
    """docker's "restarting": still stopped (no lifecycle move), a restart due."""
    if c.state != "stopped":
        raise ProjectionError(f"seq {rec.seq}: a restart scheduled for {c.id[:12]}, which "
                              f"is {c.state}")
    return _replace_container(c, version=rec.version, restarting=True,
                              restart_delay=float(rec.data.get("delay") or 0))


def _restart_cancelled(c: Container, rec: Recorded) -> Container:
    return _replace_container(c, version=rec.version, restarting=False,
                              manually_stopped=c.manually_stopped
                              or bool(rec.data.get("by_user")))


def _signalled(c: Container, rec: Recorded) -> Container:
    return _moved(c, rec, last_signal=rec.data["signal"])


def _plain(c: Container, rec: Recorded) -> Container:
    return _moved(c, rec)


def _container_removed(c: Container, rec: Recorded) -> None:
    _moved(c, rec, trigger="rm_force" if rec.data.get("force") else "rm")
    return None


def _image_created(_: Image | None, rec: Recorded) -> Image:
    d = rec.data
    return Image(
        id=d["id"], parent=d.get("parent"), layers=tuple(d["layers"]), version=rec.version,
        created=rec.at, config=d.get("config") or {}, created_by=d.get("created_by", ""),
        comment=d.get("comment", ""), source=d.get("source", ""),
    )


def _image_tagged(i: Image, rec: Recorded) -> Image:
    tags = i.tags if rec.data["tag"] in i.tags else (*i.tags, rec.data["tag"])
    return _replace_image(i, tags=tags, removed=False, version=rec.version)  # top-level again


def _image_untagged(i: Image, rec: Recorded) -> Image:
    return _replace_image(i, tags=tuple(t for t in i.tags if t != rec.data["tag"]),
                          version=rec.version)


def _image_removed(i: Image, rec: Recorded) -> Image | None:
    if rec.data.get("kept"):
        return _replace_image(i, tags=(), removed=True, version=rec.version)
    return None


def _layer_registered(_: Layer | None, rec: Recorded) -> Layer:
    d = rec.data
    return Layer(
        id=d["id"], parent=d.get("parent"), diff_id=d["diff_id"], chain_id=d["chain_id"],
        size=d["size"], version=rec.version, created=rec.at,
        created_by=d.get("created_by", ""), comment=d.get("comment", ""),
    )


def _layer_removed(_: Layer, rec: Recorded) -> None:
    return None


def _volume_created(_: Volume | None, rec: Recorded) -> Volume:
    d = rec.data
    return Volume(id=d["id"], version=rec.version, created=rec.at,
                  driver=d.get("driver") or "local", labels=d.get("labels") or {},
                  options=d.get("options") or {}, anonymous=bool(d.get("anonymous")))


def _volume_mounted(v: Volume, rec: Recorded) -> Volume:
    cid, target = rec.data["container"], rec.data["target"]
    users = {**v.users, cid: [*v.users.get(cid, ()), target]}
    return replace(v, version=rec.version, users=users)


def _volume_unmounted(v: Volume, rec: Recorded) -> Volume:
    users = {k: t for k, t in v.users.items() if k != rec.data["container"]}
    return replace(v, version=rec.version, users=users)


def _volume_removed(v: Volume, rec: Recorded) -> None:
    if v.users:
        raise ProjectionError(f"seq {rec.seq}: volume {v.id} removed while containers "
                              f"{', '.join(c[:12] for c in v.users)} use it")
    return None


def _network_created(_: Network | None, rec: Recorded) -> Network:
    d = rec.data
    return Network(id=d["id"], version=rec.version, created=rec.at, name=d["name"],
                   subnet=d["subnet"], gateway=d["gateway"], driver=d.get("driver") or "bridge",
                   internal=bool(d.get("internal")), labels=d.get("labels") or {},
                   options=d.get("options") or {}, ip_range=d.get("ip_range") or "",
                   aux_addresses=d.get("aux_addresses") or {},
                   attachable=bool(d.get("attachable")), subnet6=d.get("subnet6") or "",
                   gateway6=d.get("gateway6") or "", ip_range6=d.get("ip_range6") or "")


def _network_removed(_: Network, rec: Recorded) -> None:
    return None


def _health_changed(c: Container, rec: Recorded) -> Container:
    """A health status change: recorded, no lifecycle move."""
    d = rec.data
    return _replace_container(c, version=rec.version, health={
        "status": d["status"], "failing_streak": d.get("failing_streak", 0),
        "exit_code": d.get("exit_code", 0), "output": d.get("output", "")})


def _renamed(c: Container, rec: Recorded) -> Container:
    """`rename`: a new name, no lifecycle move (the read model's UNIQUE name judges); a
    running container's names on its networks follow (the embedded DNS answers the new)."""
    old, new = c.name, rec.data["name"]
    endpoints = {net: {**ep, "dns_names": [new if n == old else n for n in ep["dns_names"]]}
                 if ep.get("dns_names") else ep for net, ep in c.endpoints.items()}
    return _replace_container(c, name=new, endpoints=endpoints, version=rec.version)


def _updated(c: Container, rec: Recorded) -> Container:
    """`update`: the run options it changed, as create records them (None: the limit is
    gone); the next start applies them, a running container's cgroup already has them."""
    config = dict(c.config)
    for key, value in (rec.data.get("changes") or {}).items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    return _replace_container(c, config=config, version=rec.version)


def _recorded_only(agg: Any, rec: Recorded) -> Any:
    """An audit event (save, load, export): the stream's version moves, nothing else does
    (no lifecycle move: a container's state stays what it was)."""
    return replace(agg, version=rec.version)


EVOLVERS: dict[str, Callable[[Any, Recorded], Any]] = {
    "ContainerCreated": _container_created,
    "ContainerStarted": _started,
    "ContainerRestarted": _restarted,
    "ContainerPaused": _plain,
    "ContainerUnpaused": _plain,
    "ContainerStopped": _ended,
    "ContainerKilled": _ended,
    "ContainerExited": _ended,
    "ContainerSignalled": _signalled,
    "ContainerCommitted": _plain,
    "ContainerRemoved": _container_removed,
    "ContainerConnected": _connected,
    "ContainerDisconnected": _disconnected,
    "ContainerUnlinked": _unlinked,
    "ExecStarted": _plain,
    "ExecDetached": _recorded_only,
    "ContainerAttached": _recorded_only,
    "ContainerDetached": _recorded_only,
    "ExecExited": _plain,
    "ImageCreated": _image_created,
    "ImageTagged": _image_tagged,
    "ImageUntagged": _image_untagged,
    "ImageRemoved": _image_removed,
    "LayerRegistered": _layer_registered,
    "LayerRemoved": _layer_removed,
    "ImageSaved": _recorded_only,
    "ImageLoaded": _recorded_only,
    "ContainerExported": _recorded_only,
    "VolumeCreated": _volume_created,
    "VolumeMounted": _volume_mounted,
    "VolumeUnmounted": _volume_unmounted,
    "VolumeRemoved": _volume_removed,
    "NetworkCreated": _network_created,
    "NetworkRemoved": _network_removed,
    "ContainerCopiedTo": _recorded_only,
    "ContainerCopiedFrom": _recorded_only,
    "ContainerRenamed": _renamed,
    "ContainerUpdated": _updated,
    "ContainerHealthChanged": _health_changed,
    "ContainerRestartScheduled": _restart_scheduled,
    "ContainerRestartCancelled": _restart_cancelled,
}

CREATORS = frozenset({"ContainerCreated", "ImageCreated", "LayerRegistered", "VolumeCreated",
                       "NetworkCreated"})


def evolve(agg: Any, rec: Recorded) -> Any:
    """The aggregate after `rec`; None when the event removes it. Pure."""
    fn = EVOLVERS.get(rec.type)
    if fn is None:
        return agg  # CommandRejected and other events that change no state
    if agg is None and rec.type not in CREATORS:
        raise ProjectionError(f"seq {rec.seq}: {rec.type} for unknown {rec.stream}")
    if agg is not None and rec.type in CREATORS:
        raise ProjectionError(f"seq {rec.seq}: {rec.type} for existing {rec.stream}")
    return fn(agg, rec)


KINDS: dict[str, type] = {"container": Container, "image": Image, "layer": Layer,
                          "volume": Volume, "network": Network}
_FIELDS = {cls: tuple(f.name for f in fields(cls)) for cls in KINDS.values()}
_TABLES = {"container": "containers", "image": "images", "layer": "layers",
           "volume": "volumes", "network": "networks"}


def to_doc(agg: Aggregate) -> dict[str, Any]:
    """The aggregate as plain JSON-able data (the read model's and the snapshot's form)."""
    return {name: getattr(agg, name) for name in _FIELDS[type(agg)]}


def from_doc(kind: str, doc: dict[str, Any]) -> Aggregate:
    cls = KINDS[kind]
    if kind == "container":
        doc = {**doc, "cmd": tuple(doc.get("cmd") or ()), "ports": tuple(doc.get("ports") or ())}
        return settled(cls(**doc))
    if kind == "image":
        doc = {**doc, "layers": tuple(doc["layers"]), "tags": tuple(doc.get("tags") or ())}
    return cls(**doc)


@dataclass
class World:
    """Every live aggregate, by kind then id: what replay and time travel fold the log into."""

    containers: dict[str, Container] = field(default_factory=dict)
    images: dict[str, Image] = field(default_factory=dict)
    layers: dict[str, Layer] = field(default_factory=dict)
    volumes: dict[str, Volume] = field(default_factory=dict)
    networks: dict[str, Network] = field(default_factory=dict)
    seq: int = 0

    def table(self, kind: str) -> dict[str, Any]:
        return getattr(self, _TABLES[kind])

    def apply(self, rec: Recorded) -> None:
        """Fold one event in (the dict is the accumulator; the aggregates stay immutable)."""
        self.seq = rec.seq
        kind, _, target = rec.stream.partition(":")
        if kind not in KINDS:
            return
        table = getattr(self, _TABLES[kind])
        new = evolve(table.get(target), rec)
        if new is None:
            table.pop(target, None)
        else:
            table[target] = new

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "containers": [to_doc(c) for c in self.containers.values()],
            "images": [to_doc(i) for i in self.images.values()],
            "layers": [to_doc(la) for la in self.layers.values()],
            "volumes": [to_doc(v) for v in self.volumes.values()],
            "networks": [to_doc(n) for n in self.networks.values()],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> World:
        w = cls(seq=data["seq"])
        for kind, key in _TABLES.items():
            table = w.table(kind)
            for doc in data.get(key, ()):  # older snapshots lack the newer kinds
                table[doc["id"]] = from_doc(kind, doc)
        return w
