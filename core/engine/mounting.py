"""A container's volumes and bind mounts at create and rm (core/mounts.py judges the request).

At create: every mount the request asks for is judged (core.mounts.requested), anonymous
volumes get their names, a missing named volume is created, bind sources are checked (or
made, for `-v`), new volumes are filled from the image's files at their target, and the
container's ContainerCreated is appended with one VolumeCreated per new volume and one
VolumeMounted per use, all at once. At rm: VolumeUnmounted for each volume it used, and
with `-v` (or `--rm`) VolumeRemoved for its anonymous volumes nobody else uses.

Order of writes, as everywhere: a volume's directory exists before the log says the volume
does (and is removed if the append fails); its data is deleted only after VolumeRemoved is
recorded. A bind source `-v` made stays, as docker's does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from core import mounts
from core.engine.base import EngineBase
from core.model import Container, Image
from core.mounts import MountPoint
from events import types as ev


@dataclass
class Prepared:
    """What a create made on the host and will append for its mounts."""

    points: list[MountPoint]
    events: list[ev.Event] = field(default_factory=list)
    expected: dict[str, int] = field(default_factory=dict)
    made: list[str] = field(default_factory=list)  # volumes whose directories this create made


def plan(e: EngineBase, options: Mapping[str, Any], image: Image) -> list[MountPoint]:
    """The mount points a create asks for, judged (BadInput/NotFound before anything is
    made), each anonymous volume named."""
    image_cfg = image.config.get("config") or {}
    wanted = mounts.requested(options, sorted(image_cfg.get("Volumes") or {}),
                              lambda ref: mounts.recorded(e.container(ref).config))
    points = [replace(m, source=e.ids.new_id()) if m.type == "volume" and not m.source else m
              for m in wanted]
    mounts.check_drivers(points)
    return points


def prepare(e: EngineBase, cid: str, rw: str, points: list[MountPoint],
            image: Image) -> Prepared:
    """Make what the mounts need on the host; the events that record them. `rw` is the
    container's new read-write layer (its union view is where new volumes are filled from)."""
    out = Prepared(points)
    try:
        for m in points:
            if m.type == "bind":
                e.volumes.bind_source(m.source, create=m.create_source)
            elif m.type == "volume":
                _use_volume(e, cid, rw, m, image, out)
    except BaseException:
        undo(e, out)
        raise
    return out


def _use_volume(e: EngineBase, cid: str, rw: str, m: MountPoint, image: Image,
                out: Prepared) -> None:
    name = m.source
    stream = f"volume:{name}"
    known = e.log.volume(name)
    if stream not in out.expected:
        out.expected[stream] = known.version if known is not None else _version(e, name)
        if known is None and name not in out.made:
            e.volumes.create(name)
            out.made.append(name)
            out.events.append(ev.VolumeCreated(id=name, anonymous=m.anonymous,
                                               labels=dict(m.volume_labels)))
    if m.copy and not m.read_only and (name in out.made or e.volumes.empty(name)):
        e.layers.copy_out(rw, image.layers, m.target, e.volumes.path(name))
    out.events.append(ev.VolumeMounted(id=name, container=cid, target=m.target,
                                       read_only=m.read_only))


def _version(e: EngineBase, name: str) -> int:
    """The volume stream's version now (a removed volume's name can come back: its stream
    goes on from where it ended)."""
    last = 0
    for rec in e.log.read(stream=f"volume:{name}"):
        last = rec.version
    return last


def undo(e: EngineBase, prepared: Prepared) -> None:
    """The append failed: remove the volumes this create made (the log never had them)."""
    for name in prepared.made:
        e.volumes.remove(name)


def released(e: EngineBase, c: Container, remove_anonymous: bool
             ) -> tuple[list[ev.Event], dict[str, int], list[str]]:
    """rm's volume events, their expected versions, and the volumes whose data to delete
    once they are recorded."""
    events: list[ev.Event] = []
    expected: dict[str, int] = {}
    gone: list[str] = []
    points = [m for m in mounts.recorded(c.config) if m.type == "volume"]
    # docker's rule: -v removes what this container mounted anonymously (`-v /path`, an
    # image's VOLUME), not a volume it named, even one that was made anonymous elsewhere
    unnamed = {m.source for m in points if m.anonymous}
    for name in dict.fromkeys(m.source for m in points):
        v = e.log.volume(name)
        if v is None or c.id not in v.users:
            continue
        expected[f"volume:{name}"] = v.version
        events.append(ev.VolumeUnmounted(id=name, container=c.id))
        if remove_anonymous and name in unnamed and set(v.users) == {c.id}:
            events.append(ev.VolumeRemoved(id=name))
            gone.append(name)
    return events, expected, gone
