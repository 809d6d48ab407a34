"""The EventLog port in memory: a list of Recorded events and the World folded from them."""

from __future__ import annotations

import copy
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

from core import networks as ipam
from core.errors import ConcurrencyError
from core.model import (
    Container,
    ContainerBrief,
    Image,
    ImageBrief,
    Layer,
    Network,
    Volume,
    World,
    brief_of,
    container_brief_of,
)
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

    def container_briefs(self, states: Sequence[str] | None = None) -> list[ContainerBrief]:
        return [container_brief_of(c) for c in self.containers(states)]

    def container_named(self, name: str) -> Container | None:
        return next((c for c in self.world.containers.values() if c.name == name), None)

    def container_ids(self, prefix: str, limit: int = 2) -> list[str]:
        return sorted(c for c in self.world.containers if c.startswith(prefix))[:limit]

    def image(self, iid: str) -> Image | None:
        return self.world.images.get(iid)

    def images(self, ids: Collection[str] | None = None) -> list[Image]:
        return [i for i in self.world.images.values() if ids is None or i.id in ids]

    def image_briefs(self, ids: Collection[str]) -> list[ImageBrief]:
        return [brief_of(i) for i in self.images(ids)]

    def image_ids(self, prefix: str, limit: int = 2) -> list[str]:
        return sorted(i for i in self.world.images if i.startswith(prefix))[:limit]

    def image_tagged(self, tag: str) -> Image | None:
        return next((i for i in self.world.images.values() if tag in i.tags), None)

    def layer(self, lid: str) -> Layer | None:
        return self.world.layers.get(lid)

    def layers(self) -> list[Layer]:
        return list(self.world.layers.values())

    def volume(self, name: str) -> Volume | None:
        return self.world.volumes.get(name)

    def volumes(self) -> list[Volume]:
        return list(self.world.volumes.values())

    def network(self, nid: str) -> Network | None:
        return self.world.networks.get(nid)

    def network_named(self, name: str) -> Network | None:
        return next((n for n in self.world.networks.values() if n.name == name), None)

    def networks(self) -> list[Network]:
        return list(self.world.networks.values())


LIVE = ("running", "paused")
# what can make a lease clash (a new lease, a network gone); any other event only gives
# leases back, so a world that held none twice still holds none twice after it
LEASING = frozenset({"ContainerStarted", "ContainerRestarted", "ContainerConnected",
                     "NetworkRemoved"})

# what can give a container a name another holds (SQLite's UNIQUE containers.name refuses it)
NAMING = frozenset({"ContainerCreated", "ContainerRenamed"})


def leases_clash(world: World) -> str | None:
    """What SQLite's read model refuses of a world's leases (adapters/eventstore/
    sqlite_log.py write_leases): an address or host port two running containers hold, an
    address on a network that is gone (core.networks.lease_clash judges)."""
    live = [c for c in world.containers.values() if c.state in LIVE]
    if not any(c.endpoints or c.ports for c in live):
        return None
    return ipam.lease_clash(live, {*world.networks, ipam.DEFAULT_NETWORK_ID})


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
        world.layers, world.volumes = dict(world.layers), dict(world.volumes)
        world.networks = dict(world.networks)
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
        if any(r.type in NAMING for r in out):
            names = [c.name for c in world.containers.values()]
            if len(names) != len(set(names)):  # the SQLite read model's UNIQUE name
                raise ConcurrencyError("a container name is held twice")
        if any(r.type in LEASING for r in out):
            clash = leases_clash(world)
            if clash is not None:  # the SQLite read model's refusal (its leases, bindings)
                raise ConcurrencyError(f"lease refused: {clash}")
        self.records.extend(out)
        self.versions, self.world = versions, world
        return out

    def read(self, *, after: int = 0, stream: str | None = None) -> Iterator[Recorded]:
        return (r for r in self.records[after:] if stream is None or r.stream == stream)
