"""In-memory ports: the fakes behind model checking and fast unit tests.

They keep the same contracts as the real adapters (the contract tests run against both), but
hold everything in dicts: a fake process is a record with `alive` and `frozen` flags, a fake
layer is a dict of files.
"""

from __future__ import annotations

import copy
import hashlib
import signal as _signal
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from core.errors import BadInput, ConcurrencyError
from core.model import Container, Image, Layer, World
from core.ports import Ended, LayerInfo, Started
from events.envelope import Recorded
from events.types import Event


class WorldReader:
    """The EventLog port's read side over a World: the in-memory log's read model, and what
    a picture of the past (`viz --at`) reads a folded World through, so the engine's own
    name resolution (id, name or tag, unique prefix) works on it too."""

    def __init__(self, world: World) -> None:
        self.world = world

    def container(self, cid: str) -> Container | None:
        return self.world.containers.get(cid)

    def containers(self, states: Sequence[str] | None = None) -> list[Container]:
        return [c for c in self.world.containers.values() if states is None or c.state in states]

    def container_named(self, name: str) -> Container | None:
        return next((c for c in self.world.containers.values() if c.name == name), None)

    def container_ids(self, prefix: str, limit: int = 2) -> list[str]:
        return sorted(c for c in self.world.containers if c.startswith(prefix))[:limit]

    def image(self, iid: str) -> Image | None:
        return self.world.images.get(iid)

    def images(self) -> list[Image]:
        return list(self.world.images.values())

    def image_ids(self, prefix: str, limit: int = 2) -> list[str]:
        return sorted(i for i in self.world.images if i.startswith(prefix))[:limit]

    def image_tagged(self, tag: str) -> Image | None:
        return next((i for i in self.world.images.values() if tag in i.tags), None)

    def layer(self, lid: str) -> Layer | None:
        return self.world.layers.get(lid)

    def layers(self) -> list[Layer]:
        return list(self.world.layers.values())


class MemoryEventLog(WorldReader):
    """A list of Recorded events and a World folded from them as they are appended."""

    def __init__(self) -> None:
        self.records: list[Recorded] = []
        self.world = World()
        self.versions: dict[str, int] = {}

    def append(self, events: Sequence[Event], *, expected: Mapping[str, int],
               meta: Mapping[str, Any], at: str = "") -> list[Recorded]:
        for stream, version in expected.items():
            if self.versions.get(stream, 0) != version:
                raise ConcurrencyError(f"{stream} is at version {self.versions.get(stream, 0)}, "
                                       f"expected {version}")
        versions = dict(self.versions)
        world = copy.copy(self.world)
        world.containers, world.images = dict(world.containers), dict(world.images)
        world.layers = dict(world.layers)
        out = []
        for i, event in enumerate(events):
            stream = event.stream()
            versions[stream] = versions.get(stream, 0) + 1
            seq = len(self.records) + i + 1
            rec = Recorded(seq=seq, stream=stream, version=versions[stream],
                           type=event.type_name(), schema=event.SCHEMA, data=event.data(),
                           meta=dict(meta), at=at or f"t{seq}")
            world.apply(rec)  # raises before anything is kept
            out.append(rec)
        self.records.extend(out)
        self.versions, self.world = versions, world
        return out

    def read(self, *, after: int = 0, stream: str | None = None) -> Iterator[Recorded]:
        return (r for r in self.records[after:] if stream is None or r.stream == stream)


def _digest(files: Mapping[str, str]) -> str:
    body = "\n".join(f"{k}={v}" for k, v in sorted(files.items()))
    return "sha256:" + hashlib.sha256(body.encode()).hexdigest()


@dataclass
class MemoryLayerStore:
    """Layers as dicts of files; `source` for import is such a dict."""

    ids: Any
    layers: dict[str, dict[str, str]] = field(default_factory=dict)
    rw: dict[str, dict[str, str]] = field(default_factory=dict)

    def import_layer(self, source: Any, parent: str | None) -> LayerInfo:
        if not isinstance(source, Mapping):
            raise BadInput(f"not a rootfs: {source!r}")
        lid = self.ids.new_id()
        self.layers[lid] = dict(source)
        return LayerInfo(id=lid, diff_id=_digest(source), size=len(source))

    def create_rw_layer(self, container_id: str, layers: Sequence[str]) -> str:
        rw = f"rw-{container_id}"
        self.rw[rw] = {}
        return rw

    def commit_rw_layer(self, rw_layer: str, parent: str | None) -> LayerInfo:
        files = self.rw[rw_layer]
        lid = self.ids.new_id()
        self.layers[lid] = dict(files)
        return LayerInfo(id=lid, diff_id=_digest(files), size=len(files))

    def remove_rw_layer(self, rw_layer: str) -> None:
        self.rw.pop(rw_layer, None)

    def remove_layer(self, layer_id: str) -> None:
        self.layers.pop(layer_id, None)


@dataclass
class FakeProcess:
    pid: int
    alive: bool = True
    frozen: bool = False
    pending: list[int] = field(default_factory=list)
    exit_code: int | None = None


# Signals a fake process survives (everything else ends it, as with a default handler).
SURVIVABLE = {_signal.SIGHUP, _signal.SIGUSR1, _signal.SIGUSR2, _signal.SIGWINCH,
              _signal.SIGCHLD, _signal.SIGCONT}


@dataclass
class MemoryRuntime:
    """Processes as records: enough to check that paused means frozen and stopped means none."""

    procs: dict[str, FakeProcess] = field(default_factory=dict)
    next_pid: int = 100

    def start(self, container: Container, image: Image) -> Started:
        self.next_pid += 1
        self.procs[container.id] = FakeProcess(pid=self.next_pid)
        return Started(pid=self.next_pid, cgroup=f"lamina/{container.id}")

    def _end(self, proc: FakeProcess, sig: int) -> Ended:
        proc.alive, proc.frozen, proc.exit_code = False, False, 128 + sig
        return Ended(signal=sig, exit_code=128 + sig)

    def signal(self, container: Container, sig: int) -> Ended | None:
        proc = self.procs[container.id]
        if not proc.alive:
            return Ended(signal=0, exit_code=proc.exit_code or 0)
        if sig in SURVIVABLE:
            if proc.frozen:
                proc.pending.append(sig)
            return None
        return self._end(proc, sig)  # SIGKILL reaches even a frozen process, as docker does

    def stop(self, container: Container, timeout: float) -> Ended:
        proc = self.procs.get(container.id)
        if proc is None or not proc.alive:
            return Ended(signal=0, exit_code=proc.exit_code if proc else 0)
        return self._end(proc, _signal.SIGTERM)

    def freeze(self, container: Container) -> None:
        self.procs[container.id].frozen = True

    def thaw(self, container: Container) -> None:
        proc = self.procs[container.id]
        proc.frozen = False
        proc.pending.clear()  # pending survivable signals are delivered, and survived

    def confirm_start(self, container: Container) -> None:
        pass

    def abort_start(self, container: Container) -> None:
        self.procs.pop(container.id, None)

    def ending(self, container: Container) -> AbstractContextManager[None]:
        return nullcontext()

    def exec(self, container: Container, argv: Sequence[str], user: str,
             options: Mapping[str, Any] | None = None) -> int:
        if argv[0] == "false":
            return 1
        return 0

    def release(self, container: Container) -> None:
        proc = self.procs.get(container.id)
        if proc is not None and not proc.alive:
            del self.procs[container.id]

    def remove(self, container: Container) -> None:
        self.procs.pop(container.id, None)

    def alive(self, container: Container) -> bool:
        proc = self.procs.get(container.id)
        return proc is not None and proc.alive

    def last_exit(self, container: Container) -> int | None:
        proc = self.procs.get(container.id)
        return proc.exit_code if proc is not None else None

    def watched(self, container: Container, settle: float = 0) -> bool:
        return False  # no monitors here: an ended process is recorded by whoever ends it

    def orphans(self, known: Mapping[str, Container]) -> list[str]:
        return [f"process of unknown container {cid[:12]}" for cid in self.procs
                if cid not in known]

    def clean_orphans(self, known: Mapping[str, Container]) -> None:
        for cid in [cid for cid in self.procs if cid not in known]:
            del self.procs[cid]

    def finish(self, container_id: str, exit_code: int) -> None:
        """The process ends by itself (what the model checker's `exit` step does)."""
        proc = self.procs[container_id]
        proc.alive, proc.exit_code = False, exit_code


@dataclass
class CountingIds:
    """Deterministic ids: sha256 of a counter, so runs and tests repeat exactly."""

    n: int = 0

    def new_id(self) -> str:
        self.n += 1
        return hashlib.sha256(str(self.n).encode()).hexdigest()


@dataclass
class TickingClock:
    """A clock that advances one microsecond per reading, in the log's `at` format."""

    t: int = 0

    def __call__(self) -> str:
        self.t += 1
        return f"2026-01-01T00:00:00.{self.t:06d}Z"


def memory_engine(**meta: Any) -> Any:
    """An Engine on in-memory ports (for tests, model checking and the spine's demo)."""
    from core.engine import Engine

    ids = CountingIds()
    return Engine(log=MemoryEventLog(), layers=MemoryLayerStore(ids=CountingIds(n=10**6)),
                  runtime=MemoryRuntime(), ids=ids, clock=TickingClock(),
                  meta=lambda: dict(meta))
