"""Ports: the small Protocols through which the pure core talks to the world.

The core never opens a file or starts a process itself. Real adapters (SQLite log, overlayfs,
cgroups) and the in-memory ones in core/memory.py both implement these, and one contract test
per port runs against each implementation.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from core.model import Container, Image, Layer
from events.envelope import Recorded

if TYPE_CHECKING:
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

    def container_named(self, name: str) -> Container | None: ...

    def container_ids(self, prefix: str, limit: int = 2) -> list[str]: ...

    def image(self, iid: str) -> Image | None: ...

    def images(self) -> list[Image]: ...

    def image_ids(self, prefix: str, limit: int = 2) -> list[str]: ...

    def image_tagged(self, tag: str) -> Image | None: ...

    def layer(self, lid: str) -> Layer | None: ...

    def layers(self) -> list[Layer]: ...


@dataclass(frozen=True, slots=True)
class LayerInfo:
    """What the layer store reports about a read-only layer it has written."""

    id: str
    diff_id: str
    size: int


class LayerStore(Protocol):
    """Read-only layers, read-write layers and the union view."""

    def import_layer(self, source: Any, parent: str | None) -> LayerInfo: ...

    def create_rw_layer(self, container_id: str, layers: Sequence[str]) -> str: ...

    def commit_rw_layer(self, rw_layer: str, parent: str | None) -> LayerInfo: ...

    def remove_rw_layer(self, rw_layer: str) -> None: ...

    def remove_layer(self, layer_id: str) -> None: ...


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

    def ending(self, container: Container) -> AbstractContextManager[None]:
        """Exclusive right to record how the container's current process ends."""
        ...

    def signal(self, container: Container, sig: int) -> Ended | None:
        """Send sig; return how the process ended if it did, None if it survived."""
        ...

    def stop(self, container: Container, timeout: float) -> Ended: ...

    def freeze(self, container: Container) -> None: ...

    def thaw(self, container: Container) -> None: ...

    def exec(self, container: Container, argv: Sequence[str], user: str,
             options: Mapping[str, Any]) -> int: ...

    def release(self, container: Container) -> None:
        """Free what a stopped container's process left (cgroup, mounts kept by the runtime)."""
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

    def watched(self, container: Container, settle: float = 0) -> bool:
        """Whether the process's monitor still lives (and so will record its end itself);
        `settle`: wait up to that many seconds for a monitor to finish first."""
        ...

    def orphans(self, known: Mapping[str, Container]) -> list[str]:
        """What the host holds that the log doesn't account for, one line each."""
        ...

    def clean_orphans(self, known: Mapping[str, Container]) -> None: ...


class Ids(Protocol):
    def new_id(self) -> str:
        """A fresh 64-hex-character id."""
        ...
