"""Keeping containers and images tidy: rename, update, and the prunes (container, image,
system), in docker's words.

- `rename`: a ContainerRenamed in the container's stream, in any state. Who gets a name is
  decided by the read model's UNIQUE name (SQLite's index, the memory log's check): of two
  commands racing for one name, the second append fails and the rename is judged again,
  now against the winner, and refused in docker's words.
- `update`: new limits (memory, cpus, pids, core/resources.py's) for a container in any
  state: written into a running or paused container's cgroup first, then recorded
  (ContainerUpdated, `applied`); a stopped one's are recorded for its next start. The
  container's lock is held from the cgroup write to the append, and a failed append puts
  the old limits back. What lamina can't change is refused by name, as create refuses it.
  `restart` (a restart policy) is accepted only once core/restart.py judges it
  (`for_update`): the restart-policy work owns it.
- `container prune`: every stopped container the filters select (until, label, label!),
  each removed as `rm` removes it; the read-write layers' bytes are what it reclaims.
- `image prune`: docker's images without children (moby's topImages) that no container
  uses, dangling (untagged) ones only unless `all` (`dangling=false`), with until, label
  and label! filters; each goes as `rmi` by id would (its tags, its untagged parents), all in
  one append; the layers freed are what it reclaims.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core import compat, resources
from core import prune as rules
from core.command import Command
from core.engine.base import EngineBase
from core.errors import BadInput, Conflict, LaminaError, NotFound
from core.filters import labels_hold
from core.model import Container, Image
from core.references import check_name
from events import types as ev

Filters = Mapping[str, Sequence[str]]

LIMITS = ("memory", "cpus", "pids", *resources.KEYS)
MIN_MEMORY = 6 * 1024 * 1024  # docker's linuxMinMemory
CONTAINER_PRUNE_KEYS = frozenset({"until", "label", "label!"})
IMAGE_PRUNE_KEYS = frozenset({"dangling", "until", "label", "label!"})


# --- rename --------------------------------------------------------------------------------


def rename(e: EngineBase, ref: str, new_name: str) -> Container:
    with e.command("rename", ref) as cmd:
        if not ref or not new_name:
            raise BadInput("Neither old nor new names may be empty")
        name = check_name(new_name.lstrip("/")) if new_name.lstrip("/") else ""
        if not name:
            raise BadInput("Neither old nor new names may be empty")
        return cmd.retrying(lambda: _rename(e, cmd, ref, name))


def _rename(e: EngineBase, cmd: Command, ref: str, name: str) -> Container:
    c = e.container(ref)
    if c.name == name:
        raise BadInput("Renaming a container with the same name as its current name")
    holder = e.log.container_named(name)
    if holder is not None:
        raise Conflict(f'Error when allocating new name: Conflict. The container name '
                       f'"/{name}" is already in use by container "{holder.id}". You have '
                       "to remove (or rename) that container to be able to reuse that name.")
    cmd.append([ev.ContainerRenamed(id=c.id, name=name, old_name=c.name)],
               {f"container:{c.id}": c.version})
    return e.log.container(c.id) or c


# --- update --------------------------------------------------------------------------------


def update(e: EngineBase, ref: str, options: Mapping[str, Any]) -> Container:
    """`options`: lamina's keys (memory bytes, cpus, pids; None lifts a limit; `restart`
    the API's RestartPolicy), and `unsupported`, the request's fields lamina can't change
    (the API's names), refused by name."""
    with e.command("update", ref) as cmd:
        changes = judged(options)
        if not changes:
            c = e.container(ref)  # docker answers an empty update with the container
            return c
        return cmd.retrying(lambda: _update(e, cmd, ref, changes))


def judged(options: Mapping[str, Any]) -> dict[str, Any]:
    """The changes an update asks for, judged as docker's daemon judges them; what lamina
    can't update is refused by name."""
    for api in options.get("unsupported") or ():
        raise BadInput(compat.refusal(api))
    changes: dict[str, Any] = {}
    for key, value in options.items():
        if key == "unsupported":
            continue
        if key == "restart":
            changes[key] = _restart(value)
        elif key not in LIMITS:
            raise BadInput(compat.refusal(compat.BY_KEY[key].api) if key in compat.BY_KEY
                           else f"{key} is not supported by lamina's update")
        else:
            changes[key] = _limit(key, value)
    return changes


def _limit(key: str, value: Any) -> Any:
    if value is None or key in resources.KEYS:  # these judged with the rest, in _update
        return value
    if key == "memory":
        value = int(value)
        if value < 0:
            return None  # -1: no limit
        if value < MIN_MEMORY:
            raise BadInput("Minimum memory limit allowed is 6MB")
        return value
    if key == "pids":
        value = int(value)
        return value if value > 0 else None  # 0 and -1: no limit, as docker's update
    cpus = float(value)
    if cpus < 0.01:
        raise BadInput("Range of CPUs is from 0.01 to the number of CPUs available")
    return cpus


def _restart(value: Any) -> Any:
    """The restart policy's change, if core/restart.py can judge one (its `for_update`:
    the policy as recorded, or a refusal); until it can, refused by name."""
    try:
        from core import restart
    except ImportError:
        restart = None  # type: ignore[assignment]
    judge = getattr(restart, "for_update", None)
    if judge is None:
        raise BadInput(compat.refusal("HostConfig.RestartPolicy"))
    return judge(value)


def _judged_with(c: Container, changes: dict[str, Any]) -> dict[str, Any]:
    """core/resources.py's changes judged with what the container has (a swap limit
    against its memory limit...), in their recorded shapes (None: back to no limit)."""
    if not any(k in resources.KEYS for k in changes):
        return changes
    merged = {**{k: c.config.get(k) for k in ("memory", "cpus", *resources.KEYS)},
              **changes}
    judged = resources.judged(merged)
    return {k: judged.get(k) if k in resources.KEYS else v for k, v in changes.items()}


def _update(e: EngineBase, cmd: Command, ref: str, changes: dict[str, Any]) -> Container:
    c = e.container(ref)
    with e.runtime.ending(c):  # no start, stop or exit between the cgroup and the record
        now = e.log.container(c.id)
        if now is None:
            raise NotFound(f"no such container: {ref}")
        changes = _judged_with(now, changes)
        limits = {k: v for k, v in changes.items() if k in LIMITS}
        live = now.state in ("running", "paused") and bool(limits)
        if live:
            before = {k: now.config.get(k) for k in limits}
            e.runtime.limit(now, limits)
        try:
            cmd.append_locked(now, ev.ContainerUpdated(id=now.id, changes=changes,
                                                       applied=live))
        except BaseException:
            if live:
                e.runtime.limit(now, before)  # not recorded: the cgroup as the log says
            raise
    return e.log.container(c.id) or now


# --- container prune ---------------------------------------------------------------------


@dataclass(frozen=True)
class PrunedContainers:
    ids: list[str] = field(default_factory=list)
    reclaimed: int = 0


def container_prune(e: EngineBase, filters: Filters | None = None) -> PrunedContainers:
    """Remove every stopped container the filters select, each as `rm` does (one that
    started or went meanwhile is left, as docker's prune leaves it)."""
    from core.engine.containers import rm

    filters = dict(filters or {})
    with e.command("container prune", "containers"):
        rules.check_keys(filters, CONTAINER_PRUNE_KEYS)
        until = rules.cutoff(filters, e.clock())
    doomed = [c for c in e.log.containers(("stopped",))
              if rules.created_before(c.created, until)
              and labels_hold(c.config.get("labels") or {}, filters)]
    ids, reclaimed = [], 0
    for c in sorted(doomed, key=lambda c: c.created):
        size = e.layers.rw_size(c.rw_layer)
        try:
            rm(e, c.id)
        except LaminaError:
            continue
        ids.append(c.id)
        reclaimed += size
    return PrunedContainers(ids, reclaimed)


# --- image prune -------------------------------------------------------------------------


@dataclass(frozen=True)
class PrunedImages:
    """docker's ImagesDeleted items, in order ({"Untagged": tag} or {"Deleted": id}), and
    the bytes of the layers freed."""

    deleted: list[dict[str, str]] = field(default_factory=list)
    reclaimed: int = 0


def image_prune(e: EngineBase, filters: Filters | None = None,
                all: bool = False) -> PrunedImages:
    filters = dict(filters or {})
    with e.command("image prune", "images") as cmd:
        rules.check_keys(filters, IMAGE_PRUNE_KEYS)
        dangling = _dangling(filters, default=not all)
        until = rules.cutoff(filters, e.clock())
        return cmd.retrying(lambda: _image_prune(e, cmd, filters, dangling, until))


def _dangling(filters: Filters, default: bool) -> bool:
    values = {v.lower() for v in filters.get("dangling") or ()}
    if not values:
        return default
    if values - {"true", "1", "false", "0"} or len(values) > 1 and \
            values & {"true", "1"} and values & {"false", "0"}:
        raise BadInput(f"invalid filter 'dangling={','.join(sorted(values))}'")
    return bool(values & {"true", "1"})


def _image_prune(e: EngineBase, cmd: Command, filters: Filters, dangling: bool,
                 until: Any) -> PrunedImages:
    from core.engine.images import apply_plan
    from core.images import RmiPlan, children, plan_rmi

    images = {i.id: i for i in e.log.images()}
    layers = {la.id: la for la in e.log.layers()}
    containers = e.log.containers()
    used = {c.image for c in containers}
    leaves = [i for i in images.values()
              if not i.removed and not children(i.id, images.values()) and i.id not in used
              and (not dangling or not i.tags) and _image_holds(i, filters, until)]
    whole, left = RmiPlan(), dict(images)
    for image in sorted(leaves, key=lambda i: i.created):
        try:
            plan = plan_rmi(image, image.id, True, left, containers, layers)
        except Conflict:
            continue
        whole.untag += plan.untag
        whole.remove += plan.remove
        whole.delete_layers += plan.delete_layers
        for iid, _kept in plan.remove:
            left.pop(iid, None)
        for lid in plan.delete_layers:
            layers.pop(lid, None)
    if not whole.remove:
        return PrunedImages()
    freed = sum(la.size for la in e.log.layers() if la.id in set(whole.delete_layers))
    apply_plan(e, cmd, whole, images, force=False, extra=[], expected={})
    deleted = [{"Untagged": tag} for _, tag in whole.untag]
    deleted += [{"Deleted": f"sha256:{iid}"} for iid, kept in whole.remove if not kept]
    return PrunedImages(deleted, freed)


def _image_holds(i: Image, filters: Filters, until: Any) -> bool:
    created = str(i.config.get("created") or i.created)
    cfg = i.config.get("config") or {}
    return rules.created_before(created, until) and labels_hold(cfg.get("Labels") or {},
                                                                filters)


# --- what a prune of everything removes (system prune) -------------------------------------


@dataclass(frozen=True)
class PrunedSystem:
    containers: PrunedContainers
    networks: list[str]
    volumes: list[str]
    images: PrunedImages
    volume_bytes: int = 0

    @property
    def reclaimed(self) -> int:
        return self.containers.reclaimed + self.images.reclaimed + self.volume_bytes


def system_prune(e: Any, filters: Filters | None = None, all: bool = False,
                 volumes: bool = False) -> PrunedSystem:
    """docker's system prune: stopped containers, unused networks, (with `volumes`) unused
    anonymous volumes, dangling images (every unused one with `all`), in that order, each
    its own command. `e` is the Engine facade (the volume and network prunes are its)."""
    filters = dict(filters or {})
    if volumes and "until" in filters:
        e.refuse("system prune", "system", 'The "until" filter is not supported with '
                 '"--volumes"')
    pruned = container_prune(e, filters)
    nets = e.network_prune(filters)
    vols, vol_bytes = [], 0
    if volumes:
        gone = e.volume_prune({k: v for k, v in filters.items() if k != "until"})
        vols, vol_bytes = gone.names, gone.reclaimed
    images = image_prune(e, filters, all=all)
    return PrunedSystem(pruned, nets, vols, images, vol_bytes)


__all__ = ["PrunedContainers", "PrunedImages", "PrunedSystem",
           "container_prune", "image_prune", "rename", "system_prune", "update"]
