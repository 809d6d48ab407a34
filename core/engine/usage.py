"""`system df`: what images, containers and volumes take on disk, as docker counts it (a
query: records nothing).

docker's rules (moby daemon/disk_usage.go, the CLI's formatter/disk_usage.go):
- LayersSize: every layer once; an image's Size: its layers; SharedSize: the bytes of its
  layers that another image uses too; Containers: how many containers use it (active);
- a container's SizeRw: its read-write layer's files; SizeRootFs: that plus its image's;
- a volume's UsageData: its data's bytes and RefCount, the containers that mount it;
- the build cache: lamina's build cache is its intermediate images (counted as images), so
  BuildCache is empty and its size 0.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from core.engine.base import EngineBase
from core.model import Container, Image, Layer, Volume


@dataclass(frozen=True)
class ImageUsage:
    image: Image
    size: int
    shared: int
    containers: int


@dataclass(frozen=True)
class ContainerUsage:
    container: Container
    size_rw: int
    size_root: int


@dataclass(frozen=True)
class VolumeUsage:
    volume: Volume
    size: int
    refs: int


@dataclass(frozen=True)
class DiskUsage:
    layers_size: int = 0
    images: list[ImageUsage] = field(default_factory=list)
    containers: list[ContainerUsage] = field(default_factory=list)
    volumes: list[VolumeUsage] = field(default_factory=list)

    # the summary lines of `system df`: (total, active, size, reclaimable)
    def image_line(self) -> tuple[int, int, int, int]:
        used = sum(i.size - i.shared for i in self.images if i.containers)
        active = sum(1 for i in self.images if i.containers)
        return len(self.images), active, self.layers_size, max(self.layers_size - used, 0)

    def container_line(self) -> tuple[int, int, int, int]:
        active = [c for c in self.containers if c.container.state in ("running", "paused")]
        size = sum(c.size_rw for c in self.containers)
        return len(self.containers), len(active), size, size - sum(c.size_rw for c in active)

    def volume_line(self) -> tuple[int, int, int, int]:
        size = sum(v.size for v in self.volumes)
        unused = sum(v.size for v in self.volumes if not v.refs)
        return len(self.volumes), sum(1 for v in self.volumes if v.refs), size, unused


def disk_usage(e: EngineBase) -> DiskUsage:
    layers: dict[str, Layer] = {la.id: la for la in e.log.layers()}
    images = [i for i in e.log.images() if not i.removed]
    containers = e.log.containers()
    users = Counter(c.image for c in containers)
    use = Counter(lid for i in images for lid in set(i.layers))

    def size_of(i: Image) -> int:
        return sum(layers[lid].size for lid in i.layers if lid in layers)

    image_rows = [ImageUsage(i, size_of(i),
                             sum(layers[lid].size for lid in i.layers
                                 if lid in layers and use[lid] > 1),
                             users[i.id]) for i in images]
    by_id = {i.id: i for i in e.log.images()}
    container_rows = []
    for c in containers:
        rw = e.layers.rw_size(c.rw_layer)
        base = by_id.get(c.image)
        container_rows.append(ContainerUsage(c, rw, rw + (size_of(base) if base else 0)))
    volume_rows = [VolumeUsage(v, e.volumes.size(v.id), len(v.users))
                   for v in e.log.volumes()]
    return DiskUsage(sum(la.size for la in layers.values()),
                     sorted(image_rows, key=lambda r: r.image.created, reverse=True),
                     sorted(container_rows, key=lambda r: r.container.created, reverse=True),
                     sorted(volume_rows, key=lambda r: r.volume.id))
