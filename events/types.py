"""Event types: what lamina records, one frozen dataclass per fact.

Each type has a schema version (SCHEMA). Old rows are never rewritten: when a type's shape
changes, its SCHEMA goes up and an upcaster (events/upcasting.py) turns older data into the
current shape on read. Every event belongs to one stream, named by its KIND and its `id`:
`container:<id>`, `image:<id>`, `layer:<id>`, `volume:<name>`, `network:<id>`, `command:<id>`,
`root:root`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True, eq=False, repr=False)
class Event:
    """Base of every domain event; `id` names the aggregate (the stream) it belongs to."""

    KIND: ClassVar[str] = ""
    SCHEMA: ClassVar[int] = 1
    id: str

    @classmethod
    def type_name(cls) -> str:
        return cls.__name__

    def stream(self) -> str:
        return f"{self.KIND}:{self.id}"

    def data(self) -> dict[str, Any]:
        names = _FIELD_NAMES.get(type(self))
        if names is None:  # once per class: dataclasses.fields() is slow for every event
            names = _FIELD_NAMES[type(self)] = tuple(f.name for f in dataclasses.fields(self))
        return {name: getattr(self, name) for name in names}


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


# --- containers --------------------------------------------------------------------------


@dataclass(frozen=True, eq=False, repr=False)
class ContainerCreated(Event):
    """A read-write layer was put on top of an image (seed: `docker create`).

    Schema 2: `cmd` is an argv list. Schema 1 stored `command` as one shell string.
    """

    KIND: ClassVar[str] = "container"
    SCHEMA: ClassVar[int] = 2
    name: str
    image: str
    cmd: list[str] = field(default_factory=list)
    rw_layer: str = ""
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False, repr=False)
class ContainerStarted(Event):
    """A process space was made around the union view (seed: `docker start`).

    `start_time` is the init process's start time (/proc/<pid>/stat, clock ticks since boot),
    so that reconciliation can tell the process from a later one that got the same pid; 0 in
    events written before it was recorded (the schema stays 1: the field has a default)."""

    KIND: ClassVar[str] = "container"
    pid: int
    cgroup: str = ""
    start_time: int = 0
    # Its leases for this run, made on the host before this is recorded and released with
    # the run's end (core/networks.py): each network it joined, by name, as
    # {"id", "address", "prefixlen", "gateway", "mac", "bridge", "aliases"}, and each
    # published port as {"proto", "container_port", "host_ip", "host_port"}.
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)
    ports: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, eq=False, repr=False)
class ContainerPaused(Event):
    """Every process of the container was frozen through the cgroup freezer."""

    KIND: ClassVar[str] = "container"


@dataclass(frozen=True, eq=False, repr=False)
class ContainerUnpaused(Event):
    KIND: ClassVar[str] = "container"


@dataclass(frozen=True, eq=False, repr=False)
class ContainerStopped(Event):
    """`stop`: SIGTERM, then SIGKILL after the timeout; `signal` is the one that ended it.

    `shutdown`: the host's shutdown stopped it (`system shutdown`, lamina-shutdown.service),
    not a user: no restart policy fires for this end, and the next host start brings it
    back as its policy says of a container nobody stopped (docker's daemon shutdown). Older
    rows have none: a user's stop (the schema stays 1: the field has a default)."""

    KIND: ClassVar[str] = "container"
    signal: int
    exit_code: int
    shutdown: bool = False


@dataclass(frozen=True, eq=False, repr=False)
class ContainerKilled(Event):
    """`kill` with a signal that ended the container (SIGKILL by default)."""

    KIND: ClassVar[str] = "container"
    signal: int
    exit_code: int


@dataclass(frozen=True, eq=False, repr=False)
class ContainerSignalled(Event):
    """`kill -s SIG` whose signal the process survived: the state stays as it was."""

    KIND: ClassVar[str] = "container"
    signal: int


@dataclass(frozen=True, eq=False, repr=False)
class ContainerExited(Event):
    """The container's process ended by itself (recorded by the monitor or reconciliation)."""

    KIND: ClassVar[str] = "container"
    exit_code: int
    oom: bool = False
    reason: str = ""


@dataclass(frozen=True, eq=False, repr=False)
class ContainerRestarted(Event):
    """`restart` (the user's), or the restart policy's (`automatic`): started again after
    `delay` seconds of back-off for `reason`; `count` is RestartCount from then on (an
    automatic restart's; the user's starts it at 0). Older rows have none: a user's."""

    KIND: ClassVar[str] = "container"
    pid: int
    cgroup: str = ""
    start_time: int = 0  # as ContainerStarted's
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)  # as ContainerStarted's
    ports: list[dict[str, Any]] = field(default_factory=list)
    automatic: bool = False
    reason: str = ""
    count: int = 0
    delay: float = 0.0


@dataclass(frozen=True, eq=False, repr=False)
class ContainerRestartScheduled(Event):
    """The restart policy will start the stopped container again after `delay` seconds
    (docker's "restarting"): recorded with the exit, in the same append (older logs: by
    its monitor right after it), `count` being the RestartCount that restart will make,
    `reason` why (core/restart.py)."""

    KIND: ClassVar[str] = "container"
    delay: float
    count: int
    reason: str = ""


@dataclass(frozen=True, eq=False, repr=False)
class ContainerRestartCancelled(Event):
    """A scheduled restart that won't happen: a user's `stop` or `kill` during the back-off
    (the container counts as stopped by the user), the host's shutdown (`reason`, not
    `by_user`: the next host start brings it back; also a restart the policy wanted after
    an end while the host is shutting down, never scheduled), or the restart failed."""

    KIND: ClassVar[str] = "container"
    reason: str = ""
    by_user: bool = False


@dataclass(frozen=True, eq=False, repr=False)
class ContainerConnected(Event):
    """`network connect`: the container is a member of the network `network` (its name;
    `network_id` its id) with `aliases` and a fixed `ip` if asked. On a running container,
    `endpoint` is the lease made on the host before this was recorded (as ContainerStarted's
    networks hold them); empty on a stopped one, which leases at its next start."""

    KIND: ClassVar[str] = "container"
    network: str
    network_id: str
    aliases: list[str] = field(default_factory=list)
    ip: str = ""
    endpoint: dict[str, Any] = field(default_factory=dict)
    # the endpoint's other settings as asked: ip6, mac, links, link_local_ips, driver_opts
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False, repr=False)
class ContainerDisconnected(Event):
    """`network disconnect`: the container leaves the network (a running one's veth is
    removed after this is recorded, and its address released)."""

    KIND: ClassVar[str] = "container"
    network: str
    network_id: str
    force: bool = False


@dataclass(frozen=True, eq=False, repr=False)
class ContainerUnlinked(Event):
    """docker's `rm --link PARENT/ALIAS`: the container no longer links to `link`
    (`name:alias`) on `network`. Its next start makes no hosts line, variables or name of
    it; a running one keeps what its start made, as docker's. No lifecycle move."""

    KIND: ClassVar[str] = "container"
    network: str
    link: str


@dataclass(frozen=True, eq=False, repr=False)
class ContainerHealthChanged(Event):
    """The container's health status changed (docker's `health_status: healthy|unhealthy`
    event): `status` after the probe that changed it, the failing streak then, and that
    probe's exit code and output (cut at 4096 bytes, as docker keeps it). Recorded by its
    health process (adapters/runtime/health.py) for the run of init `pid`; only changes are
    recorded, not every probe (core/health.py): the state does not move."""

    KIND: ClassVar[str] = "container"
    status: str
    pid: int = 0
    failing_streak: int = 0
    exit_code: int = 0
    output: str = ""


@dataclass(frozen=True, eq=False, repr=False)
class ContainerRemoved(Event):
    """The read-write layer and its files are gone; what remains is the image."""

    KIND: ClassVar[str] = "container"
    force: bool = False


@dataclass(frozen=True, eq=False, repr=False)
class ContainerCommitted(Event):
    """The read-write layer was burnt into a new read-only layer and image."""

    KIND: ClassVar[str] = "container"
    image: str


@dataclass(frozen=True, eq=False, repr=False)
class ContainerAttached(Event):
    """A client attached to the running container (docker's attach): which of its streams
    it takes. Audit only: the meta names who; the state does not move."""

    KIND: ClassVar[str] = "container"
    stdin: bool = False
    stdout: bool = False
    stderr: bool = False


@dataclass(frozen=True, eq=False, repr=False)
class ContainerDetached(Event):
    """An attached client let go with the detach keys (docker's detach); the container
    runs on. Audit only."""

    KIND: ClassVar[str] = "container"


@dataclass(frozen=True, eq=False, repr=False)
class ExecStarted(Event):
    KIND: ClassVar[str] = "container"
    exec_id: str
    argv: list[str]
    user: str = ""


@dataclass(frozen=True, eq=False, repr=False)
class ExecDetached(Event):
    """The exec's client typed the detach keys and let go; the process runs on (its end
    is an ExecExited later, recorded by whoever waits for it)."""

    KIND: ClassVar[str] = "container"
    exec_id: str


@dataclass(frozen=True, eq=False, repr=False)
class ExecExited(Event):
    KIND: ClassVar[str] = "container"
    exec_id: str
    exit_code: int


# --- layers and images -------------------------------------------------------------------


@dataclass(frozen=True, eq=False, repr=False)
class LayerRegistered(Event):
    """A read-only layer is in the store: its files, digest and parent pointer."""

    KIND: ClassVar[str] = "layer"
    parent: str | None
    diff_id: str
    chain_id: str
    size: int
    created_by: str = ""
    comment: str = ""


@dataclass(frozen=True, eq=False, repr=False)
class LayerRemoved(Event):
    KIND: ClassVar[str] = "layer"


@dataclass(frozen=True, eq=False, repr=False)
class ImageCreated(Event):
    """An image: a config over a stack of layers (`layers` bottom first), maybe a parent image."""

    KIND: ClassVar[str] = "image"
    parent: str | None
    layers: list[str]
    config: dict[str, Any] = field(default_factory=dict)
    created_by: str = ""
    comment: str = ""
    source: str = ""


@dataclass(frozen=True, eq=False, repr=False)
class ImageTagged(Event):
    KIND: ClassVar[str] = "image"
    tag: str


@dataclass(frozen=True, eq=False, repr=False)
class ImageUntagged(Event):
    KIND: ClassVar[str] = "image"
    tag: str


@dataclass(frozen=True, eq=False, repr=False)
class ImageRemoved(Event):
    """The image is no longer a top-level image. With force, its layers may stay for children."""

    KIND: ClassVar[str] = "image"
    force: bool = False
    kept: bool = False


# --- commands ----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False, repr=False)
class CommandRejected(Event):
    """A command that was refused: it changes no state, but the audit shows it was tried."""

    KIND: ClassVar[str] = "command"
    command: str
    target: str
    reason: str



@dataclass(frozen=True, eq=False, repr=False)
class HostChecked(Event):
    """`system check` or `system reconcile` compared the log with the host.

    `findings` are the differences seen (one line each); `repaired` says whether they were
    repaired (reconcile) or only reported (check). Stream `system:host`."""

    KIND: ClassVar[str] = "system"
    findings: list[str]
    repaired: bool = False


# --- the root: settings every container of the root runs under (stream `root:root`) ---------


@dataclass(frozen=True, eq=False, repr=False)
class RootConfigured(Event):
    """`system configure` (or `serve --userns-remap`) chose the root's user-namespace
    remapping. Recorded only while the root has no container, so every container of a root
    ran under the setting its start read. `userns_remap` is as given ("" is off, "default",
    or USER[:GROUP]); `user` the user whose subordinate ids it uses; `uid_map`/`gid_map` the
    maps resolved then ([inside, outside, count] rows), so that no later command reads
    /etc/subuid on its way to a container; `storage` how layers reach a remapped container
    ("idmapped": idmapped mounts of the unshifted layers); `source` the directory whose
    etc/subuid and etc/subgid the ids were read from ("/", or a test's prefix), for the
    audit and `system check`."""

    KIND: ClassVar[str] = "root"
    userns_remap: str = ""
    user: str = ""
    uid_map: list[list[int]] = field(default_factory=list)
    gid_map: list[list[int]] = field(default_factory=list)
    storage: str = ""
    source: str = ""


# --- archives: who took what out, and what came in -----------------------------------------


@dataclass(frozen=True, eq=False, repr=False)
class ImageSaved(Event):
    """`save` wrote the image into an archive: `file` ("-" for stdout), the tags it went
    under, and the archive's digest and size. The image itself is unchanged."""

    KIND: ClassVar[str] = "image"
    file: str
    tags: list[str] = field(default_factory=list)
    digest: str = ""
    size: int = 0


@dataclass(frozen=True, eq=False, repr=False)
class ImageLoaded(Event):
    """`load` read the image from an archive (after its ImageCreated, if it was new).

    `config` is an OCI descriptor of the config with its bytes embedded (`data`, base64):
    the exact bytes the image id is the sha256 of, which `save` writes back."""

    KIND: ClassVar[str] = "image"
    file: str
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False, repr=False)
class ContainerExported(Event):
    """`export` wrote the container's filesystem (its union view) as a flat tar to `file`
    ("-" for stdout). The container's state does not move."""

    KIND: ClassVar[str] = "container"
    file: str
    digest: str = ""
    size: int = 0


@dataclass(frozen=True, eq=False, repr=False)
class ContainerCopiedTo(Event):
    """`cp SRC CONTAINER:PATH` (or the API's PUT archive) extracted a tar into the directory
    `path` of the container's files (its union view, volumes, binds and tmpfs as the
    container sees them). Recorded because it changes the container's files behind its back,
    as an exec could: an audit must show who put what where. `digest` is the sha256 of the
    tar as it was received (compressed or not), `size` its bytes; `copy_uid_gid` says the
    files were given the container's user (-a) rather than the tar's owners. The state does
    not move."""

    KIND: ClassVar[str] = "container"
    path: str
    size: int = 0
    digest: str = ""
    copy_uid_gid: bool = False


@dataclass(frozen=True, eq=False, repr=False)
class ContainerCopiedFrom(Event):
    """`cp CONTAINER:PATH DEST` (or the API's GET archive) wrote the files at `path` as a tar
    (`size` bytes, sha256 `digest`): data left the engine, so an audit must show who took
    what, as for export. A stat (HEAD) is a read and records nothing. The state does not
    move."""

    KIND: ClassVar[str] = "container"
    path: str
    size: int = 0
    digest: str = ""


# --- volumes: data that outlives a container (stream `volume:<name>`) -----------------------


@dataclass(frozen=True, eq=False, repr=False)
class VolumeCreated(Event):
    """A volume (`id` is its name): a directory of the root, outside every union view, that
    containers mount and that outlives them. `anonymous` marks one made for a container
    (`-v /path`, an image's VOLUME) with a random name; `rm -v` removes only those."""

    KIND: ClassVar[str] = "volume"
    driver: str = "local"
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    anonymous: bool = False


@dataclass(frozen=True, eq=False, repr=False)
class VolumeMounted(Event):
    """A container (created in the same append) mounts the volume at `target`. It stays
    the volume's user until VolumeUnmounted, running or not, as docker counts use."""

    KIND: ClassVar[str] = "volume"
    container: str
    target: str
    read_only: bool = False


@dataclass(frozen=True, eq=False, repr=False)
class VolumeUnmounted(Event):
    """The container was removed: it no longer uses the volume."""

    KIND: ClassVar[str] = "volume"
    container: str


@dataclass(frozen=True, eq=False, repr=False)
class VolumeRemoved(Event):
    """`volume rm`, `volume prune` or `rm -v` (an anonymous one): its data is deleted
    after this is recorded."""

    KIND: ClassVar[str] = "volume"


# --- networks: user-defined bridge networks (stream `network:<id>`, 64 hex) ------------------


@dataclass(frozen=True, eq=False, repr=False)
class NetworkCreated(Event):
    """`network create`: a bridge network, its bridge and lamina's nftables chains for it
    made on the host before this is recorded. `name` is unique among live networks;
    `subnet` in CIDR form, `gateway` the bridge's own address in it; `internal`: no route
    out. The predefined networks (bridge, host, none) are not recorded (core/networks.py)."""

    KIND: ClassVar[str] = "network"
    name: str
    subnet: str
    gateway: str
    driver: str = "bridge"
    internal: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    # IPAM beyond the subnet: dynamic addresses from `ip_range`, `aux_addresses` held and
    # never leased; `attachable` as asked (docker's); an IPv6 subnet makes it dual-stack
    ip_range: str = ""
    aux_addresses: dict[str, str] = field(default_factory=dict)
    attachable: bool = False
    subnet6: str = ""
    gateway6: str = ""
    ip_range6: str = ""


@dataclass(frozen=True, eq=False, repr=False)
class NetworkRemoved(Event):
    """`network rm` or `network prune`: its bridge and chains are removed after this is
    recorded."""

    KIND: ClassVar[str] = "network"


# --- a container's name and resources: rename, update (stream `container:<id>`) --------------


@dataclass(frozen=True, eq=False, repr=False)
class ContainerRenamed(Event):
    """`rename`: the container is called `name` from now on (`old_name` before). No
    lifecycle move: any state may be renamed, as docker's. The read model's UNIQUE name
    refuses a name another container took meanwhile (the append fails, the rename is judged
    again)."""

    KIND: ClassVar[str] = "container"
    name: str
    old_name: str = ""


@dataclass(frozen=True, eq=False, repr=False)
class ContainerUpdated(Event):
    """`update`: run options changed, by the key ContainerCreated's config records them
    under (`memory`, `cpus`, `pids`; None: no limit any more). `applied`: written to the
    running (or paused) container's cgroup before this was recorded; otherwise recorded for
    its next start. No lifecycle move."""

    KIND: ClassVar[str] = "container"
    changes: dict[str, Any] = field(default_factory=dict)
    applied: bool = False


# --- builds: `lamina build`, step by step (stream `build:<id>`, audit only) ---------------------


@dataclass(frozen=True, eq=False, repr=False)
class BuildStarted(Event):
    """A build began: the Dockerfile judged, its base images found, nothing run yet."""

    KIND: ClassVar[str] = "build"
    context: str
    dockerfile: str
    tags: list[str] = field(default_factory=list)
    build_args: dict[str, str] = field(default_factory=dict)
    target: str = ""
    no_cache: bool = False
    steps: int = 0


@dataclass(frozen=True, eq=False, repr=False)
class StepCompleted(Event):
    """One Dockerfile step done: its image made (`container` ran or copied it) or, with
    `cached`, an existing child image of the same parent reused."""

    KIND: ClassVar[str] = "build"
    step: int
    instruction: str
    cached: bool
    image: str
    container: str = ""
    seconds: float = 0.0


@dataclass(frozen=True, eq=False, repr=False)
class BuildFinished(Event):
    KIND: ClassVar[str] = "build"
    image: str
    tags: list[str] = field(default_factory=list)
    cached_steps: int = 0
    seconds: float = 0.0


@dataclass(frozen=True, eq=False, repr=False)
class BuildFailed(Event):
    """A step failed; the images of the steps before it stay, its container is gone."""

    KIND: ClassVar[str] = "build"
    step: int
    instruction: str
    reason: str


# --- registries: pull and push (issue 9) -------------------------------------------------------
# The image and layer records of a pull come from the events `load` uses (LayerRegistered,
# ImageCreated, ImageTagged, ImageLoaded); these only record the registry side, in streams the
# read model does not fold: `pull:<command id>` for one pull's progress, `registry:<image id>`
# for where an image came from and went to.


@dataclass(frozen=True, eq=False, repr=False)
class PullStarted(Event):
    """A pull began: the reference as resolved (registry/repository:tag or @digest)."""

    KIND: ClassVar[str] = "pull"
    reference: str
    platform: str = ""


@dataclass(frozen=True, eq=False, repr=False)
class LayerFetched(Event):
    """One layer of a pull: its blob digest and size, and whether it was already here."""

    KIND: ClassVar[str] = "pull"
    digest: str
    size: int = 0
    diff_id: str = ""
    cached: bool = False


@dataclass(frozen=True, eq=False, repr=False)
class ImagePulled(Event):
    """The image (`id`) came from this registry's manifest `manifest_digest`."""

    KIND: ClassVar[str] = "registry"
    reference: str
    registry: str = ""
    repository: str = ""
    tag: str = ""
    manifest_digest: str = ""
    uncompressed: bool = False


@dataclass(frozen=True, eq=False, repr=False)
class Pushed(Event):
    """The image (`id`) was pushed: the manifest's digest and size, and for each layer
    whether the registry had it, mounted it from another repository or received it."""

    KIND: ClassVar[str] = "registry"
    reference: str
    registry: str = ""
    repository: str = ""
    tag: str = ""
    manifest_digest: str = ""
    size: int = 0
    layers: list[dict[str, Any]] = field(default_factory=list)


EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        ContainerCreated, ContainerStarted, ContainerPaused, ContainerUnpaused,
        ContainerStopped, ContainerKilled, ContainerSignalled, ContainerExited,
        ContainerRestarted, ContainerRemoved, ContainerCommitted, ExecStarted, ExecDetached,
        ExecExited, ContainerAttached, ContainerDetached,
        LayerRegistered, LayerRemoved, ImageCreated, ImageTagged, ImageUntagged, ImageRemoved,
        CommandRejected, ImageSaved, ImageLoaded, ContainerExported, HostChecked, RootConfigured,
        PullStarted, LayerFetched, ImagePulled, Pushed,
        BuildStarted, StepCompleted, BuildFinished, BuildFailed,
        VolumeCreated, VolumeMounted, VolumeUnmounted, VolumeRemoved,
        ContainerCopiedTo, ContainerCopiedFrom, ContainerHealthChanged,
        NetworkCreated, NetworkRemoved, ContainerConnected, ContainerDisconnected,
        ContainerRestartScheduled, ContainerRestartCancelled,
        ContainerRenamed, ContainerUpdated,
    )
}

CURRENT_SCHEMA: dict[str, int] = {name: cls.SCHEMA for name, cls in EVENT_TYPES.items()}

