"""Image and layer rules: configs and ids, what depends on what, and what rmi may delete.

Rules (from the seed and the clarifications):
- every layer but a base has exactly one parent; an image's layers are its parent's plus at
  most one of its own;
- an image that a container (even a stopped one) or a child image uses can't be removed
  without -f; with -f it loses its tags and its top-level place, and stays (listed by
  `images -a` as an untagged intermediate) as long as something needs it;
- nothing a child image or a container needs is ever deleted;
- naming one of an image's several tags removes that tag alone, -f or not; naming the id
  of an image with several tags needs -f, and then removes them all (docker's rules);
- removing an image also removes untagged parents that nothing else needs, as docker does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.errors import BadInput, Conflict, NotFound
from core.model import Container, Image, Layer
from core.references import short


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chain_id(parent_chain: str | None, diff_id: str) -> str:
    """OCI ChainID: ChainID(L0) = DiffID(L0);
    ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))."""
    if not parent_chain:
        return diff_id
    return "sha256:" + hashlib.sha256(f"{parent_chain} {diff_id}".encode()).hexdigest()


def image_config(*, base: dict[str, Any] | None, diff_ids: list[str], created: str,
                 created_by: str, comment: str = "", empty_layer: bool = False,
                 config: dict[str, Any] | None = None, author: str = "") -> dict[str, Any]:
    """An OCI image config: the parent's, with one more history entry and these diff_ids."""
    base = base or {}
    history = list(base.get("history") or [])
    entry: dict[str, Any] = {"created": created, "created_by": created_by}
    if comment:
        entry["comment"] = comment
    if author:
        entry["author"] = author
    if empty_layer:
        entry["empty_layer"] = True
    history.append(entry)
    merged = dict(base.get("config") or {})
    merged.update(config or {})
    out: dict[str, Any] = {
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": merged,
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": history,
    }
    if author:
        out["author"] = author
    return out


def image_id(config: dict[str, Any]) -> str:
    """An image's id is the sha256 of its config JSON (64 hex characters here)."""
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()


def children(image_id_: str, images: Iterable[Image]) -> list[Image]:
    return [i for i in images if i.parent == image_id_]


def users(image_id_: str, containers: Iterable[Container]) -> list[Container]:
    return [c for c in containers if c.image == image_id_]


@dataclass
class RmiPlan:
    """What an rmi does: tags to drop, images to remove (kept or not), layers to delete."""

    untag: list[tuple[str, str]] = field(default_factory=list)  # (image id, tag)
    remove: list[tuple[str, bool]] = field(default_factory=list)  # (image id, kept)
    delete_layers: list[str] = field(default_factory=list)


def plan_rmi(target: Image, ref: str, force: bool, images: dict[str, Image],
             containers: list[Container], layers: dict[str, Layer]) -> RmiPlan:
    """Decide an rmi, or raise Conflict with docker's kind of message.

    Named by one of several tags, only that tag goes, with or without -f: `-f` forces the
    removal of an image, never of its other names (moby's ImageDelete untags the reference
    and stops while references remain). Named by id while it has several tags, docker asks
    for -f ("referenced in multiple repositories"); with -f every tag goes with the image."""
    plan = RmiPlan()
    by_tag = ref in target.tags
    if by_tag and len(target.tags) > 1:
        plan.untag.append((target.id, ref))
        return plan
    if not by_tag and len(target.tags) > 1 and not force:
        raise Conflict(f"conflict: unable to delete {short(target.id)} (must be forced) - "
                       "image is referenced in multiple repositories")
    kids = [i for i in children(target.id, images.values())]
    used_by = users(target.id, containers)
    if not force:
        if kids:
            raise Conflict(f"conflict: unable to delete {short(target.id)} (must be forced) - "
                           "image has dependent child images")
        if used_by:
            c = used_by[0]
            what = f'repository reference "{ref}"' if by_tag else short(target.id)
            raise Conflict(f"conflict: unable to remove {what} (must force) - container "
                           f"{short(c.id)} is using its referenced image {short(target.id)}")
    plan.untag.extend((target.id, t) for t in target.tags)
    kept = bool(kids or used_by)
    plan.remove.append((target.id, kept))
    if not kept:
        _cascade(target, images, containers, plan)
    plan.delete_layers = _unneeded_layers(plan, images, layers)
    return plan


def _cascade(gone: Image, images: dict[str, Image], containers: list[Container],
             plan: RmiPlan) -> None:
    """Remove untagged parents that nothing else needs any more (docker does the same)."""
    removed = {gone.id}
    parent = images.get(gone.parent) if gone.parent else None
    while parent is not None and not parent.tags:
        others = [k for k in children(parent.id, images.values()) if k.id not in removed]
        if others or users(parent.id, containers):
            break
        plan.remove.append((parent.id, False))
        removed.add(parent.id)
        parent = images.get(parent.parent) if parent.parent else None


def _unneeded_layers(plan: RmiPlan, images: dict[str, Image],
                     layers: dict[str, Layer]) -> list[str]:
    gone = {iid for iid, kept in plan.remove if not kept}
    if not gone:
        return []
    still = {lid for i in images.values() if i.id not in gone for lid in i.layers}
    candidates = [lid for iid in gone for lid in images[iid].layers]
    return [lid for lid in dict.fromkeys(candidates) if lid not in still and lid in layers]


def orphaned_by_container(container: Container, images: dict[str, Image],
                          containers: list[Container], layers: dict[str, Layer]) -> RmiPlan:
    """After a container goes: its image, if `rmi -f` kept it only for this container, goes too."""
    image = images.get(container.image)
    plan = RmiPlan()
    if image is None or not image.removed:
        return plan
    others = [c for c in containers if c.image == image.id and c.id != container.id]
    if others or children(image.id, images.values()):
        return plan
    plan.remove.append((image.id, False))
    _cascade(image, images, [c for c in containers if c.id != container.id], plan)
    plan.delete_layers = _unneeded_layers(plan, images, layers)
    return plan


IMAGE_FILTERS = ("before", "dangling", "label", "reference", "since")


def image_filter(images: dict[str, Image], filters: Mapping[str, Sequence[str]]
                 ) -> Callable[[Image], bool]:
    """docker images' filters (moby daemon/images/images.go), for the CLI's `images
    --filter` and the API's GET /images/json: `dangling=true|false` (no tag), `reference`
    (a glob on REPO or REPO:TAG, docker's short names), `label=K[=V]` (the config's labels),
    `before`/`since=IMAGE` (created before or after it; else No such image). Keys AND, the
    values of one key OR (a label's all hold). BadInput for a key or value docker refuses."""
    import fnmatch

    from core.filters import labels_match

    for key in filters:
        if key not in IMAGE_FILTERS:
            raise BadInput(f"invalid filter '{key}'")
    dangling = filters.get("dangling")
    if dangling and any(v not in ("true", "false") for v in dangling):
        raise BadInput(f"invalid filter 'dangling={dangling[0]}'")

    def created(i: Image) -> str:
        return i.config.get("created") or i.created

    def bound(key: str) -> str | None:
        values = filters.get(key)
        if not values:
            return None
        found = named(images, values[-1])
        if found is None:
            raise NotFound(f"No such image: {values[-1]}")
        return created(images[found])

    before, since = bound("before"), bound("since")

    def familiar(tag: str) -> str:
        for prefix in ("docker.io/library/", "docker.io/"):
            tag = tag.removeprefix(prefix)
        return tag

    def holds(i: Image) -> bool:
        if dangling and (not i.tags) != ("true" in dangling):
            return False
        if before is not None and not created(i) < before:
            return False
        if since is not None and not created(i) > since:
            return False
        labels = ((i.config.get("config") or {}).get("Labels")) or {}
        if filters.get("label") and not labels_match(labels, filters["label"]):
            return False
        if filters.get("reference"):
            names = [familiar(t) for t in i.tags]
            if not any(fnmatch.fnmatchcase(n, p) or fnmatch.fnmatchcase(n.rsplit(":", 1)[0], p)
                       for n in names for p in filters["reference"]):
                return False
        return True

    return holds


def named(images: dict[str, Image], ref: str) -> str | None:
    """An image's id by full id, then tag (docker's short names too), then unique id
    prefix; None when none (core.filters.image_named, the one rule)."""
    from core.filters import image_named

    return image_named(images, ref)
