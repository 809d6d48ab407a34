"""commit: a container's read-write layer burnt into a new layer and a child image.

Order of writes: the layer is copied and installed by rename first, then LayerRegistered,
ImageCreated, [ImageTagged] and ContainerCommitted go in one append; if the append fails,
the layer the log never knew is removed. A build commits its steps through commit_layer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.command import Command
from core.engine.base import EngineBase
from core.engine.containers import ending, image_of
from core.engine.images import changed, tag_events
from core.images import chain_id, image_config, image_id
from core.model import Container, Image
from core.ports import LayerInfo
from core.references import normalize_tag
from events import types as ev


def commit(e: EngineBase, ref: str, tag: str | None = None, *, comment: str = "",
           author: str = "", config: dict[str, Any] | None = None,
           changes: Sequence[str] = ()) -> str:
    """Burn the read-write layer into a new read-only layer and image (the container is
    paused meanwhile when it runs, as docker does). `config` overrides fields of the
    image's config (the Docker API's body), then `changes` (docker's --change:
    Dockerfile instructions) apply, both judged before anything is written."""
    with e.command("commit", ref) as cmd:
        tag = normalize_tag(tag) if tag else None
        with ending(e, ref, "commit") as c:  # a freeze no reconcile mistakes for stray
            image = image_of(e, c)
            new = changed({**(image.config.get("config") or {}), **(config or {})},
                          changes, image)
            info = commit_layer(e, c, image)
            return _record(e, cmd, c, image, info, tag, comment, author, new)


def commit_layer(e: EngineBase, c: Container, image: Image) -> Any:
    """Copy the container's read-write layer into a new installed layer on top of its
    image's (a running container frozen meanwhile, so the copy is one moment's).
    Returns the store's LayerInfo; the caller records it, or removes it if it can't."""
    parent_layer = image.layers[-1] if image.layers else None
    freeze = c.state == "running"
    if freeze:
        e.runtime.freeze(c)
    try:
        return e.layers.commit_rw_layer(c.rw_layer, parent_layer)
    finally:
        if freeze:
            e.runtime.thaw(c)


def _record(e: EngineBase, cmd: Command, c: Container, image: Image, info: LayerInfo,
            tag: str | None, comment: str, author: str,
            changes: dict[str, Any] | None) -> str:
    parent_layer = image.layers[-1] if image.layers else None
    parent = e.log.layer(parent_layer) if parent_layer else None
    parent_chain = parent.chain_id if parent else None
    diff_ids = list(image.config.get("rootfs", {}).get("diff_ids", [])) + [info.diff_id]
    created_by = " ".join(c.cmd) if c.cmd else ""
    cfg = image_config(base=image.config, diff_ids=diff_ids, created=e.clock(),
                       created_by=created_by, comment=comment, author=author,
                       config=changes)
    iid = image_id(cfg)
    expected = {f"container:{c.id}": c.version, f"layer:{info.id}": 0}
    events: list[ev.Event] = [
        ev.LayerRegistered(id=info.id, parent=parent_layer, diff_id=info.diff_id,
                           chain_id=chain_id(parent_chain, info.diff_id), size=info.size,
                           created_by=created_by, comment=comment)]
    if e.log.image(iid) is None:
        events.append(ev.ImageCreated(id=iid, parent=image.id,
                                      layers=[*image.layers, info.id], config=cfg,
                                      created_by=created_by, comment=comment,
                                      source="commit"))
        expected[f"image:{iid}"] = cmd.stream_version(f"image:{iid}")
    events += tag_events(e, iid, tag, expected)
    events.append(ev.ContainerCommitted(id=c.id, image=iid))
    try:
        cmd.append(events, expected)
    except BaseException:
        e.layers.remove_layer(info.id)
        raise
    return iid
