"""The image aggregate: import, tag, rmi, and the events that move a tag or apply an rmi
plan (shared with commit, load, rm and build, which record the same moves)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.command import Command
from core.engine.base import EngineBase
from core.errors import BadInput
from core.images import RmiPlan, chain_id, image_config, image_id, plan_rmi
from core.model import Image
from core.references import normalize_tag
from events import types as ev


def import_image(e: EngineBase, source: Any, tag: str | None = None, *, created_by: str = "",
                 comment: str = "", config: dict[str, Any] | None = None,
                 changes: Sequence[str] = ()) -> str:
    """A rootfs archive becomes a one-layer image (seed: the bottom of a stack);
    `changes` are docker's --change instructions for its config."""
    with e.command("import", str(tag or source)) as cmd:
        tag = normalize_tag(tag) if tag else None
        config = changed(config or {}, changes, None)
        info = e.layers.import_layer(source, None)
        now = e.clock()
        cfg = image_config(base=None, diff_ids=[info.diff_id], created=now,
                           created_by=created_by or f"lamina import {source}",
                           comment=comment, config=config)
        events: list[ev.Event] = [ev.LayerRegistered(
            id=info.id, parent=None, diff_id=info.diff_id,
            chain_id=chain_id(None, info.diff_id), size=info.size,
            created_by=cfg["history"][-1]["created_by"], comment=comment)]
        iid = image_id(cfg)
        events.append(ev.ImageCreated(id=iid, parent=None, layers=[info.id], config=cfg,
                                      created_by=cfg["history"][-1]["created_by"],
                                      comment=comment, source="import"))
        expected = {f"layer:{info.id}": 0,
                    f"image:{iid}": cmd.stream_version(f"image:{iid}")}
        events += tag_events(e, iid, tag, expected)
        try:
            cmd.append(events, expected)
        except BaseException:
            e.layers.remove_layer(info.id)  # the log never said it existed
            raise
        return iid


def tag_events(e: EngineBase, iid: str, tag: str | None,
               expected: dict[str, int]) -> list[ev.Event]:
    """The events that give image `iid` the (normalized) `tag`: ImageTagged, plus
    ImageUntagged on the image that held it before, whose version goes into `expected`.
    None when the image has it already (or no tag is asked for)."""
    if not tag:
        return []
    events: list[ev.Event] = []
    holder = e.log.image_tagged(tag)
    if holder is not None and holder.id == iid:
        return []
    if holder is not None:
        events.append(ev.ImageUntagged(id=holder.id, tag=tag))
        expected[f"image:{holder.id}"] = holder.version
    events.append(ev.ImageTagged(id=iid, tag=tag))
    return events


def tag(e: EngineBase, ref: str, new_tag: str) -> None:
    with e.command("tag", ref) as cmd:
        image = e.image(ref)
        expected = {f"image:{image.id}": image.version}
        events = tag_events(e, image.id, normalize_tag(new_tag), expected)
        if events:
            cmd.append(events, expected)


def rmi(e: EngineBase, ref: str, force: bool = False) -> RmiPlan:
    """Remove a top-level image (intermediate ones and ones in use only with -f)."""
    with e.command("rmi", ref) as cmd:
        return cmd.retrying(lambda: _rmi(e, cmd, ref, force))


def _rmi(e: EngineBase, cmd: Command, ref: str, force: bool) -> RmiPlan:
    target = e.image(ref)
    tag = _as_tag(ref)
    if tag not in target.tags:
        tag = ref  # named by id or id prefix
    images = {i.id: i for i in e.log.images()}
    layers = {la.id: la for la in e.log.layers()}
    plan = plan_rmi(target, tag, force, images, e.log.containers(), layers)
    apply_plan(e, cmd, plan, images, force, extra=[], expected={})
    return plan


def apply_plan(e: EngineBase, cmd: Command, plan: RmiPlan, images: dict[str, Image],
               force: bool, extra: list[ev.Event], expected: dict[str, int]) -> None:
    """Record an rmi plan (after `extra`, with the versions of every image and layer it
    touches), then delete the layers it frees: after the log says they're gone."""
    events = list(extra)
    for iid, tag in plan.untag:
        events.append(ev.ImageUntagged(id=iid, tag=tag))
    for iid, kept in plan.remove:
        events.append(ev.ImageRemoved(id=iid, force=force, kept=kept))
    for iid in {iid for iid, _ in plan.untag} | {iid for iid, _ in plan.remove}:
        expected[f"image:{iid}"] = images[iid].version
    for lid in plan.delete_layers:
        events.append(ev.LayerRemoved(id=lid))
        layer = e.log.layer(lid)
        expected[f"layer:{lid}"] = layer.version if layer else 0
    if events:
        cmd.append(events, expected)
    for lid in plan.delete_layers:  # after the log says they're gone
        e.layers.remove_layer(lid)


def changed(config: dict[str, Any], changes: Sequence[str], image: Image | None
            ) -> dict[str, Any]:
    """A config with docker's --change instructions applied, as a build applies them."""
    if not changes:
        return config
    from core.instructions import apply_changes  # the Dockerfile parser: only when asked for

    return apply_changes(image, config, changes)


def _as_tag(ref: str) -> str:
    """The tag a reference names, normalized (`cafe` -> `cafe:latest`), or ref itself."""
    try:
        return normalize_tag(ref)
    except BadInput:
        return ref
