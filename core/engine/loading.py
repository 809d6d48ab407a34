"""load (and the installing half of pull): images from an archive or a registry session.

Layers not already here (by chain id) are staged and checked first, installed by rename
only once all are, and the log then says so in one append (LayerRegistered, ImageCreated,
tags, ImageLoaded); if the append fails, the layers it would have registered are removed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.command import Command
from core.engine.base import EngineBase
from core.engine.images import tag_events
from core.images import chain_id
from events import types as ev


def load(e: EngineBase, source: Any, file: str = "-") -> list[tuple[str, list[str]]]:
    """Images from a docker or OCI archive. Returns (image id, tags) per image."""
    with e.command("load", file) as cmd:
        store: Any = e.layers
        with store.open_archive(source) as archive:
            return load_archive(e, cmd, archive, file)


def load_archive(e: EngineBase, cmd: Command, archive: Any,
                 file: str) -> list[tuple[str, list[str]]]:
    """Install and record what `archive` holds, as part of `cmd` (a load, or a pull with a
    registry session as the archive: .images(), and .stage(image, index) for a layer).
    `file` is the source the records name. Returns (image id, tags) per image."""
    store: Any = e.layers
    images = {img.id: img for img in archive.images()}  # the same image twice: once
    ordered = sorted(images.values(), key=lambda img: len(img.diff_ids))  # parents first
    known = {la.chain_id: la.id for la in e.log.layers()}
    todo: dict[str, tuple[Any, str | None, Any, int]] = {}
    chains: dict[str, list[str]] = {}
    for img in ordered:
        chain: str | None = None
        chains[img.id] = []
        for i, diff_id in enumerate(img.diff_ids):
            parent_chain, chain = chain, chain_id(chain, diff_id)
            chains[img.id].append(chain)
            if chain not in known and chain not in todo:
                todo[chain] = (archive.stage(img, i), parent_chain, img, i)
    installed: list[str] = []
    try:
        events: list[ev.Event] = []
        expected: dict[str, int] = {}
        for chain, (staged, parent_chain, img, i) in todo.items():
            parent = known[parent_chain] if parent_chain else None
            info = store.install_layer(staged, parent)
            installed.append(info.id)
            known[chain] = info.id
            hist = _layer_history(img.config, i)
            events.append(ev.LayerRegistered(
                id=info.id, parent=parent, diff_id=info.diff_id, chain_id=chain,
                size=info.size, created_by=str(hist.get("created_by") or ""),
                comment=str(hist.get("comment") or "")))
            expected[f"layer:{info.id}"] = 0
        for img in ordered:
            existing = e.log.image(img.id)
            if existing is not None:
                expected[f"image:{img.id}"] = existing.version
                continue
            last = (img.config.get("history") or [{}])[-1]
            events.append(ev.ImageCreated(
                id=img.id, parent=_loaded_parent(e, img, images),
                layers=[known[c] for c in chains[img.id]], config=img.config,
                created_by=str(last.get("created_by") or ""),
                comment=str(last.get("comment") or ""), source="load"))
            expected[f"image:{img.id}"] = cmd.stream_version(f"image:{img.id}")
        final = {tag: img.id for img in ordered for tag in img.tags}  # the last one wins
        for tag, iid in final.items():
            events += tag_events(e, iid, tag, expected)
        out = []
        for img in ordered:
            tags = [t for t, iid in final.items() if iid == img.id]
            events.append(ev.ImageLoaded(id=img.id, file=file, tags=tags,
                                         config=img.descriptor()))
            out.append((img.id, tags))
        cmd.append(events, expected)
    except BaseException:
        for lid in installed:  # the log never said they existed
            store.remove_layer(lid)
        raise
    return out


def _loaded_parent(e: EngineBase, img: Any, loading: Mapping[str, Any]) -> str | None:
    """The Parent a docker archive names, kept only if that image is (being) loaded and
    really is the parent: its layers and history one step short of the child's."""
    pid = img.parent
    if not pid or pid == img.id:
        return None
    parent = loading.get(pid)
    config = parent.config if parent is not None else None
    if config is None:
        existing = e.log.image(pid)
        config = existing.config if existing is not None else None
    if config is None:
        return None
    p_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
    p_hist = list(config.get("history") or [])
    c_hist = list(img.config.get("history") or [])
    if img.diff_ids[:len(p_ids)] != p_ids or len(img.diff_ids) - len(p_ids) not in (0, 1):
        return None
    if len(c_hist) - len(p_hist) != 1 or c_hist[:len(p_hist)] != p_hist:
        return None
    return pid


def _layer_history(config: Mapping[str, Any], index: int) -> dict[str, Any]:
    """The history entry of the `index`-th layer (entries with empty_layer skipped)."""
    entries = [h for h in config.get("history") or []
               if isinstance(h, dict) and not h.get("empty_layer")]
    return entries[index] if index < len(entries) else {}
