"""What every part of the engine stands on: its ports, a unit of work per command, and a
command's target resolved as docker resolves it.

The engine's parts (containers, processes, images, commit, archives, loading, host) are
functions over an EngineBase; the Engine facade is an EngineBase with one method per command
that calls them. The parts can't take the facade's type (it imports them), so they take this.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.command import Command
from core.errors import BadInput, NotFound
from core.model import Container, Image
from core.ports import EventLog, Ids, LayerStore, NetworkHost, Runtime, VolumeStore
from core.references import is_id_prefix, normalize_tag, pick_unique, strip_digest_prefix


@dataclass
class EngineBase:
    """The ports the composition root (adapters/bootstrap.py) injects. Holds no state of its
    own: the log is the state. `meta` gives the caller's part of every event's meta."""

    log: EventLog
    layers: LayerStore
    runtime: Runtime
    ids: Ids
    clock: Callable[[], str]
    volumes: VolumeStore
    networks: NetworkHost
    meta: Callable[[], dict[str, Any]] = field(default=dict)
    # work a command leaves for after its caller has the answer (rm's release of the host):
    # done at once unless the caller hands a deferring one (`run --rm`: adapters/deferred.py)
    later: Callable[[Callable[[], None]], None] = field(default=lambda work: work())
    # whether the host's shutdown is under way (or done, this boot): then no restart policy
    # fires (docker's IsShuttingDown; adapters/shutdown_mark.py reads the root's mark)
    shutting_down: Callable[[], bool] = field(default=lambda: False)

    def command(self, name: str, target: str) -> Command:
        """A unit of work for one command (`with engine.command(name, target) as cmd:`),
        with a fresh command id and the caller's meta as of now."""
        return Command.begin(self.log, name, target, self.meta(), self.ids.new_id())

    def container(self, ref: str) -> Container:
        """A container by full id, name or unique id prefix (docker's order)."""
        log = self.log
        found = log.container(ref) if len(ref) == 64 else None
        found = found or log.container_named(ref.lstrip("/"))
        if found is None and is_id_prefix(ref):
            cid = pick_unique(ref, log.container_ids(ref), "container")
            found = log.container(cid) if cid else None
        if found is None:
            raise NotFound(f"no such container: {ref}")
        return found

    def image(self, ref: str) -> Image:
        """An image by id (with or without sha256:), tag, or unique id prefix."""
        log = self.log
        bare = strip_digest_prefix(ref)
        found = log.image(bare) if len(bare) == 64 else None
        if found is None and not ref.startswith("sha256:"):
            try:
                found = log.image_tagged(normalize_tag(ref))
            except BadInput:
                found = None
        if found is None and is_id_prefix(bare):
            iid = pick_unique(ref, log.image_ids(bare), "image")
            found = log.image(iid) if iid else None
        if found is None:
            raise NotFound(f"no such image: {ref}")
        return found
