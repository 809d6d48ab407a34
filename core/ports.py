"""Ports: the Protocols through which the pure core (and the driving adapters) talk to the world.

The core never opens a file or starts a process itself. Real adapters (SQLite log, overlayfs,
cgroups, a registry over HTTP) and the in-memory ones in core/memory.py both implement these,
and one abstract contract suite per port (tests/contracts/) runs against each implementation.
Each Protocol declares exactly what its callers use: the engine, build and distribution in
core/, and the CLI and Docker API adapters for the runtime's attach and logs.

    EventLog     the append-only log and its read model
    LayerStore   read-only and read-write layers
    Archive      images and filesystems as archives: save, load (open_archive), export
    ImageStore   both in one object: what Engine.layers is
    Runtime      processes in namespaces and cgroups, their stdio and logs
    Registry     pull and push (core/distribution.py)
    BuildHost    a build's files and processes (core/build.py), and CopySource, what COPY reads
    Ids          fresh ids
    VolumeStore  volumes' data: one directory per volume, outside every union view
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, TypedDict

from core.model import Container, ContainerBrief, Image, ImageBrief, Layer, Network, Volume
from events.envelope import Recorded

if TYPE_CHECKING:
    from core import networks as ipam
    from events.types import Event


class EventLog(Protocol):
    """The append-only log and the read model kept in step with it."""

    def append(self, events: Sequence[Event], *, expected: Mapping[str, int],
               meta: Mapping[str, Any]) -> list[Recorded]:
        """Append all or nothing; `expected[stream]` is the version the caller last saw
        (0 for a new stream). A mismatch raises ConcurrencyError and appends nothing."""
        ...

    def read(self, *, after: int = 0, stream: str | None = None) -> Iterator[Recorded]: ...

    def container(self, cid: str) -> Container | None: ...

    def containers(self, states: Sequence[str] | None = None) -> list[Container]: ...

    def container_briefs(self, states: Sequence[str] | None = None
                         ) -> Sequence[Container | ContainerBrief]:
        """What a listing's table shows of the containers of `containers(states)`, in the
        same order (core/model.py ContainerBrief); a store that has them decoded whole
        already may return those: they hold every field of a brief."""
        ...

    def container_named(self, name: str) -> Container | None: ...

    def container_ids(self, prefix: str, limit: int = 2) -> list[str]: ...

    def image(self, iid: str) -> Image | None: ...

    def images(self, ids: Collection[str] | None = None) -> list[Image]:
        """Every image, or those of `ids` that exist (in the order they were made)."""
        ...

    def image_briefs(self, ids: Collection[str]) -> list[ImageBrief]:
        """The briefs of the images of `ids` that exist, in the order they were made: what
        a container listing shows of each (core/model.py ImageBrief)."""
        ...

    def image_ids(self, prefix: str, limit: int = 2) -> list[str]: ...

    def image_tagged(self, tag: str) -> Image | None: ...

    def layer(self, lid: str) -> Layer | None: ...

    def layers(self) -> list[Layer]: ...

    def volume(self, name: str) -> Volume | None: ...

    def volumes(self) -> list[Volume]: ...

    def network(self, nid: str) -> Network | None: ...

    def network_named(self, name: str) -> Network | None: ...

    def networks(self) -> list[Network]: ...


# --- layers --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LayerInfo:
    """What the layer store reports about a read-only layer it has written."""

    id: str
    diff_id: str
    size: int


# What import_layer reads a layer from: a path or a binary stream of a layer tar (maybe
# compressed) on disk; in memory, a dict of files or a stream of the memory store's blob.
LayerSource = str | BinaryIO | Mapping[str, str]
# Where an archive is written to (save, export) or read from (load): a binary stream, or a
# path for a store that has files (the Linux one writes a temp file and renames it).
ArchiveTarget = str | BinaryIO


class StagedLayer(Protocol):
    """A layer extracted and checked outside the store (its diff_id verified), not in it
    yet: LayerStore.install_layer moves it in. What an ImageSource's stage() gives."""

    diff_id: str
    size: int


class LayerBlob(Protocol):
    """A stored layer as the exact bytes its diff_id is the sha256 of: `size` bytes with
    digest `digest` (equal to the diff_id), known before a byte is written."""

    digest: str
    size: int

    def write_to(self, out: BinaryIO) -> object: ...

    def cleanup(self) -> None:
        """Free what producing the bytes held (a spool file); call once done."""
        ...


class LayerStore(Protocol):
    """Read-only layers, read-write layers and the union view.

    Order of writes: a layer appears in the store complete (staged, then installed by one
    move) before the log registers it, and the engine removes it only after the log says it
    is gone; so every method here either completes or leaves nothing the store shows.
    """

    def import_layer(self, source: LayerSource, parent: str | None) -> LayerInfo:
        """A layer read from `source` (BadInput if it is not one), installed."""
        ...

    def install_layer(self, staged: StagedLayer, parent: str | None) -> LayerInfo:
        """Move a staged layer (from an ImageSource) into the store, under a fresh id."""
        ...

    def create_rw_layer(self, container_id: str, layers: Sequence[str]) -> str:
        """A container's empty read-write layer over `layers` (bottom first); its name."""
        ...

    def commit_rw_layer(self, rw_layer: str, parent: str | None) -> LayerInfo:
        """The read-write layer's changes copied into a new read-only layer; the read-write
        layer stays as it was."""
        ...

    def squash_layers(self, layers: Sequence[str], below: Sequence[str],
                      parent: str | None) -> LayerInfo:
        """One new installed layer amounting to `layers` (bottom first) applied over
        `below` (the base's layers): `build --squash`. What was added and deleted within
        them leaves nothing; a deletion of a base's file stays one."""
        ...

    def remove_rw_layer(self, rw_layer: str) -> None:
        """Delete a read-write layer (unmounting its view first); gone already is fine."""
        ...

    def remove_layer(self, layer_id: str) -> None:
        """Delete a read-only layer; gone already is fine. The caller (the log) decides that
        nothing uses it any more: the store does not know its users."""
        ...

    def layer_blob(self, layer_id: str) -> LayerBlob:
        """The layer as the bytes its diff_id names (push, save)."""
        ...

    def rw_size(self, rw_layer: str) -> int:
        """Bytes of the files a container's read-write layer holds (docker's SizeRw): what
        `container prune` reclaims, what `system df` counts."""
        ...

    def changes(self, rw_layer: str, layers: Sequence[str]) -> list[tuple[str, str]]:
        """`docker diff`: what the read-write layer changed over `layers`, as (kind, path)
        sorted by path; kind A (added), C (changed) or D (deleted), and a directory holding
        an added or deleted entry is C."""
        ...

    def copy_out(self, rw_layer: str, layers: Sequence[str], path: str, dest: str) -> None:
        """Copy the contents of the directory `path` of the container's union view (resolved
        inside the view: no symlink leads out of it) into the directory `dest`, keeping
        owners, modes, links and times: how a new volume gets the image's files at its
        mount point. Nothing when the view has no directory there."""
        ...


# --- archives --------------------------------------------------------------------------------


class SaveEntry(TypedDict):
    """One image for Archive.save_images: its id, the config bytes the id is the sha256 of,
    its tags, its layers (ids, bottom first) with their diff_ids, and its parent if that
    image is saved too (else None)."""

    id: str
    config: bytes
    tags: list[str]
    layers: list[str]
    diff_ids: list[str]
    parent: str | None


class ArchiveImage(Protocol):
    """One image an ImageSource holds, checked: `id` is the sha256 of its config's bytes,
    `diff_ids` are the config's (bottom first), `tags` what the source names it, `parent`
    what a docker archive says its parent is (judged by the engine before it is kept)."""

    id: str
    config: dict[str, Any]
    diff_ids: list[str]
    tags: list[str]
    parent: str | None

    def descriptor(self) -> dict[str, Any]:
        """The config as an OCI descriptor with its exact bytes embedded (recorded in
        ImageLoaded, so that save and push write back the bytes the id is the digest of)."""
        ...


class ImageSource(Protocol):
    """Where `load` takes images from: an archive (Archive.open_archive) or what a pull
    fetched (Registry.fetch). core.engine.loading.load_archive asks it for its images, then
    for the layers it lacks, each staged and checked against its diff_id (BadInput if it does
    not match)."""

    def images(self) -> list[ArchiveImage]: ...

    def stage(self, image: ArchiveImage, index: int) -> StagedLayer: ...


class Archive(Protocol):
    """Images and filesystems as archives: `save`, `load` and `export`.

    The formats belong to the implementation (Linux: one tar that is both a docker archive
    and an OCI layout; in memory: a JSON document); what every implementation promises is
    that what save_images writes, open_archive reads back into the same images and layers.
    """

    def save_images(self, images: Sequence[SaveEntry], output: ArchiveTarget) -> tuple[str, int]:
        """Write the images (and their layers) as one archive; its (sha256 digest, size).
        A layer whose bytes no longer match its image's diff_id is refused (BadInput)."""
        ...

    def open_archive(self, source: ArchiveTarget) -> AbstractContextManager[ImageSource]:
        """An archive opened for load (BadInput if it is none); whatever is staged from it
        and not installed by the end of the block is removed."""
        ...

    def export(self, rw_layer: str, layers: Sequence[str],
               output: ArchiveTarget) -> tuple[str, int]:
        """A container's filesystem (its layers with the read-write layer on top) as one
        flat archive; its (sha256 digest, size)."""
        ...


class ImageStore(LayerStore, Archive, Protocol):
    """A layer store that also writes and reads archives: what Engine.layers is. Both
    implementations (adapters/storage/store.py, core/memory.py) are one object."""


# --- the runtime -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Started:
    pid: int
    cgroup: str
    start_time: int = 0  # the process's start time, which tells it from a reused pid


@dataclass(frozen=True, slots=True)
class Ended:
    """How a process ended: the signal that ended it (0 if none) and its exit code."""

    signal: int
    exit_code: int


class LogEntry(TypedDict):
    """One line of a container's output, as docker's json-file log has it."""

    log: str
    stream: str  # "stdout" or "stderr"
    time: str


class Attachment(Protocol):
    """A started container's stdio stream, handed to whoever attaches (a foreground `run`,
    `start -a`, the API's attach). On Linux it is the monitor's socket, which the CLI and
    the Docker API pump with their Linux helpers (adapters/runtime/terminal.pump_attach,
    adapters/dockerapi/streams); closing it hangs up."""

    def close(self) -> None: ...


class Runtime(Protocol):
    """Processes in namespaces and cgroups.

    Who records a process's end: the command that ends it (stop, kill, rm -f, restart) holds
    `ending(container)` while it signals and appends; the monitor, which sees every exit,
    takes the same guard and records `exit` only if nobody else did. A start is confirmed
    only after ContainerStarted is in the log, so an exit is never recorded before its start.
    """

    def start(self, container: Container, image: Image) -> Started: ...

    def confirm_start(self, container: Container) -> None:
        """ContainerStarted is in the log: the monitor may now record the exit."""
        ...

    def abort_start(self, container: Container) -> None:
        """ContainerStarted could not be appended: undo the start."""
        ...

    def attach(self, container_id: str) -> Attachment | None:
        """The stdio stream of a container this runtime object started (or restarted),
        handed over once; None if it was not started here, or was taken or let go."""
        ...

    def detach(self, container_id: str) -> None:
        """Let go of a container started here without attaching: its monitor records its
        end itself (and removes it, with --rm). Nothing to let go of is fine."""
        ...

    def ending(self, container: Container) -> AbstractContextManager[None]:
        """Exclusive right to record how the container's current process ends: a second
        holder waits until the first lets go."""
        ...

    def signal(self, container: Container, sig: int) -> Ended | None:
        """Send sig; return how the process ended if it did, None if it survived."""
        ...

    def stop(self, container: Container, timeout: float | None, sig: int = 15) -> Ended:
        """`sig` (the container's stop signal, SIGTERM by default), then SIGKILL after
        `timeout` seconds (None: never); how the process ended."""
        ...

    def freeze(self, container: Container) -> None: ...

    def thaw(self, container: Container) -> None: ...

    def limit(self, container: Container, limits: Mapping[str, Any]) -> None:
        """`update` of a running or paused container: write new resource limits into its
        cgroup (`memory` bytes, `cpus`, `pids`; None: no limit). Only the keys given."""
        ...

    def exec(self, container: Container, argv: Sequence[str], user: str,
             options: Mapping[str, Any]) -> int:
        """Run argv in the running container's namespaces and cgroup; its exit code.
        Raises ExecDetached when its client types the detach keys (the process runs on)."""
        ...

    def ahead_of_exec(self) -> AbstractContextManager[None]:
        """Held around an exec's whole command, from before its first read: the runtime may
        start there what the exec's process would otherwise wait for when it joins the
        container (on Linux, the grace period of the kernel's first cgroup migration), so
        the wait overlaps the command's record; it tidies up when the block ends. Changes
        nothing a caller can see."""
        ...

    def release(self, container: Container) -> None:
        """Free what a stopped container's process left (cgroup, mounts kept by the runtime)."""
        ...

    def connect(self, container: Container, endpoint: Mapping[str, Any]) -> None:
        """Join a running container to one more network: `endpoint` is its lease there (as
        core/engine/attaching.endpoint decides it), made real before it is recorded."""
        ...

    def disconnect(self, container: Container, endpoint: Mapping[str, Any]) -> None:
        """Take a running container off one network (after that is recorded); idempotent."""
        ...

    def remove(self, container: Container) -> None:
        """The container is gone: delete its runtime files (logs, exit records)."""
        ...

    def alive(self, container: Container) -> bool:
        """Whether the container's recorded process is still there (and still its own)."""
        ...

    def last_exit(self, container: Container) -> int | None:
        """The exit code the monitor saw for the recorded process, if it wrote one."""
        ...

    def oom_killed(self, container: Container) -> bool:
        """Whether the kernel's OOM killer killed a process of the container (its cgroup's
        count; False once the cgroup is gone)."""
        ...

    def watched(self, container: Container, settle: float = 0) -> bool:
        """Whether the process's monitor still lives (and so will record its end itself);
        `settle`: wait up to that many seconds for a monitor to finish first."""
        ...

    def logs(self, container_id: str, offset: int = 0) -> Iterator[tuple[int, LogEntry]]:
        """The container's output from `offset` on, line by line: (offset after the line,
        the line). Only complete lines; nothing for a container without output."""
        ...

    def log_end(self, container_id: str) -> int:
        """The offset the next line of output will start at (follow from there)."""
        ...

    def orphans(self, known: Mapping[str, Container]) -> list[str]:
        """What the host holds that the log doesn't account for, one line each."""
        ...

    def clean_orphans(self, known: Mapping[str, Container]) -> None: ...

    # What `cp` and the archive endpoints need (core/engine/files.py): the container's files
    # as the container sees them, its volumes, binds and tmpfs included, on any state but
    # removed. Paths are container paths, resolved inside the container (no symlink or `..`
    # leads out of it). A missing path is NotFound; one that can't be used as asked BadInput.

    def path_stat(self, container: Container, path: str) -> dict[str, Any]:
        """docker's ContainerPathStat of `path`: name, size, mode (Go's FileMode bits),
        mtime (RFC 3339) and linkTarget (a symlink's target, absolute in the container)."""
        ...

    def archive_out(self, container: Container, path: str, out: BinaryIO,
                    follow_link: bool = False,
                    on_stat: Callable[[dict[str, Any]], None] | None = None
                    ) -> dict[str, Any]:
        """Write `path` as a tar to `out` (docker's format: the top entry named after the
        path's base, `.` for `dir/.`); a final symlink archived as itself unless
        `follow_link`. Returns the path stat (of what was archived), also handed to
        `on_stat` before the first byte is written (an HTTP answer puts it in its head)."""
        ...

    def archive_in(self, container: Container, path: str, tar: BinaryIO,
                   no_overwrite_dir_non_dir: bool = False, copy_uid_gid: bool = False) -> None:
        """Extract `tar` (plain, gzip, bzip2 or xz) into the directory `path` (BadInput
        if it is not one, or is on a read-only mount). Owners are the tar's, or with
        `copy_uid_gid` the container's user's; `no_overwrite_dir_non_dir` refuses to
        replace a directory with a non-directory and the reverse."""
        ...


# --- registries ------------------------------------------------------------------------------


class Reference(Protocol):
    """A parsed image reference: registry host, repository, and a tag or a digest."""

    @property
    def registry(self) -> str: ...

    @property
    def repository(self) -> str: ...

    @property
    def tag(self) -> str | None: ...

    @property
    def digest(self) -> str | None: ...

    @property
    def familiar_name(self) -> str:
        """The name as docker prints it and lamina tags with it: `busybox`, `host:5000/x`."""
        ...

    @property
    def local_tag(self) -> str | None:
        """The tag a pull gives the image (none for a pull by digest)."""
        ...


class RemoteImage(Protocol):
    """One image of a registry, resolved and checked: its manifest's digest, the image (its
    config checked against its digest), the manifest's layer descriptors (digest, size)."""

    @property
    def image(self) -> ArchiveImage: ...

    @property
    def blobs(self) -> list[dict[str, Any]]: ...

    @property
    def manifest_digest(self) -> str: ...

    @property
    def source(self) -> str:
        """`name@manifest digest`: what ImageLoaded records as where the image came from."""
        ...


@dataclass(frozen=True)
class PushOutcome:
    manifest_digest: str
    size: int
    layers: list[dict[str, Any]] = field(default_factory=list)  # digest, size, status


class Registry(Protocol):
    """What pull and push (core/distribution.py) need from a registry."""

    def parse(self, text: str) -> Reference:
        """A reference as typed (NAME[:TAG] or NAME@DIGEST); BadInput if it is none."""
        ...

    def resolve(self, ref: Reference, platform: str | None) -> RemoteImage:
        """The image a reference names (one platform's of an index); NotFound if none."""
        ...

    def fetch(self, remote: RemoteImage,
              need: Sequence[int]) -> AbstractContextManager[ImageSource]:
        """Layers `need` (indexes) fetched, checked and staged, for
        core.engine.loading.load_archive; what is not installed by the end of the block is
        removed."""
        ...

    def push(self, ref: Reference, config: bytes, layers: Sequence[LayerBlob],
             mount_from: str | None) -> PushOutcome:
        """The layers (each the bytes its diff_id names), the config and a manifest."""
        ...


# --- builds --------------------------------------------------------------------------------


class CopySource(Protocol):
    """Where COPY and ADD read from: the build context or an image's root filesystem.

    Opaque to the build on purpose: core/build.py only asks it for the digest its cache key
    is made of and hands it back to the BuildHost that gave it (BuildHost.copy), so the
    files can stay wherever the host keeps them (a directory on Linux, a dict in memory).
    A host copies only from the sources it gave (TypeError for another host's)."""

    def digest(self, sources: Sequence[str], chown: str, chmod: str, add: bool) -> str:
        """`file:<hex>`, `dir:<hex>` or `multi:<hex>` over the files and their metadata
        (BadInput when a source is missing or outside the context)."""
        ...


class BuildHost(Protocol):
    """What a build needs from the world besides the Engine: the Dockerfile and the context
    it reads, and the two steps that touch a container's files or run its process (COPY,
    RUN). The containers themselves are the Engine's (create, commit, rm), so that every
    step is recorded as those commands are; the host only fills and runs them."""

    def read_dockerfile(self, context_dir: str, dockerfile: str | None) -> tuple[str, str]:
        """(name to show in errors, text): `dockerfile` within the context (default
        `Dockerfile`) or an absolute path; BadInput, one line, if there is none."""
        ...

    def context(self, context_dir: str) -> AbstractContextManager[CopySource]: ...

    def image_root(self, image: str) -> AbstractContextManager[CopySource]:
        """An image's files, for COPY --from, for the length of the block."""
        ...

    def copy(self, source: CopySource, container: str, sources: Sequence[str], dest: str,
             chown: str, chmod: str, add: bool) -> None:
        """Copy into the container's read-write layer (dest absolute, '/'-ended for dirs)."""
        ...

    def run(self, container: str, out: Callable[[str], None]) -> int:
        """Start the container, stream its output, wait for it to be recorded stopped;
        return its exit code."""
        ...


# --- ids -------------------------------------------------------------------------------------


class Ids(Protocol):
    def new_id(self) -> str:
        """A fresh 64-hex-character id."""
        ...


# --- volumes ---------------------------------------------------------------------------------


class VolumeStore(Protocol):
    """Volumes' data: one directory per volume, outside every union view.

    The log says which volumes exist (core/engine/volumes.py); the store only keeps their
    data. Order of writes: a volume's directory is made before the log says the volume
    exists, and deleted only after the log says it is gone. A volume appears whole (staged,
    then put in place by one move) and is taken away whole (moved out of sight, then
    deleted), so a crash never leaves a half-made or half-deleted volume that looks whole.
    """

    def create(self, name: str) -> str:
        """Make the volume's (empty) data directory, or find the one there is: its host
        path (the `_data` directory a container mounts)."""
        ...

    def path(self, name: str) -> str:
        """Its host path (the same as create's), whether or not it exists."""
        ...

    def exists(self, name: str) -> bool: ...

    def remove(self, name: str) -> None:
        """Delete its data; a volume that is not there is no error."""
        ...

    def size(self, name: str) -> int:
        """Bytes its files use (for prune's reclaimed space, `system df`); 0 if missing."""
        ...

    def names(self) -> list[str]:
        """The volumes on disk, sorted (for reconcile: what the log doesn't know)."""
        ...

    # What a container's create asks of the host besides volumes (core/engine/mounting.py).

    def empty(self, name: str) -> bool:
        """Whether the volume holds no file (docker fills only an empty volume from the
        image); a volume that is not there is empty."""
        ...

    def bind_source(self, path: str, *, create: bool) -> None:
        """A bind mount's host source (absolute): there, or made as a directory (0755, as
        docker's `-v` makes it) when `create`; else BadInput in docker's words."""
        ...


# --- networks ---------------------------------------------------------------------------------


class NetworkHost(Protocol):
    """Bridge networks on the host: one bridge per network, with the gateway's address,
    and lamina's nftables chains for it.

    The log says which networks exist (core/engine/networks.py); the host only carries
    them. Order of writes: a network's bridge and chains are made before the log says it
    exists (and removed again if the append fails); they go only after the log says it is
    gone. The predefined networks (bridge, host, none) are no concern of this port yet.
    """

    def create(self, network: ipam.Network) -> None:
        """Make the network's bridge (its gateway's address, up) and its chains; a bridge
        already there of that name is taken as it is and given what it lacks."""
        ...

    def remove(self, network: ipam.Network) -> None:
        """Remove exactly this network's bridge and chains; what is not there is no error."""
        ...

    def discard(self, bridge: str) -> None:
        """Remove a bridge and its chains known by name only (reconcile's leftovers);
        what is not there is no error."""
        ...

    def names(self) -> list[str]:
        """The bridges lamina owns on the host (a bridge of lamina's names, or chains of
        lamina's table for one), sorted: for reconcile, against the log's networks."""
        ...


class ExecDetached(Exception):  # noqa: N818 - docker's word: the client detached
    """Raised by Runtime.exec when the exec's client typed the detach keys: the process
    runs on, unwatched by the client. `watch(record)` waits for its end where the runtime
    can: in this process (a server's worker: it returns the exit code, having called
    `record` with it), or in a child that outlives the caller (it returns None at once;
    the child calls `record` when the process ends, or never if its code is lost)."""

    def __init__(self, watch: Callable[[Callable[[int], None]], int | None]) -> None:
        super().__init__("read escape sequence")  # docker's words for it
        self.watch = watch
